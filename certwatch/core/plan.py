"""How a gap of a CT log is read: the requests, in order. Pure logic, no I/O.

An RFC 6962 log answers ``get-entries`` for a range, often fewer entries than asked (a cap
per answer): the next request starts where an answer ended, and once the cap is known the
requests are sized by it. A tiled log serves entries 256 at a time in data tiles: a gap is
read as the tiles it touches, each trimmed to the gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from certwatch.core.coverage import Range
from certwatch.core.ctlog import TILE_WIDTH

__all__ = ["batch_ranges", "tile_ranges"]


def batch_ranges(first: int, last: int, batch: Callable[[], int]) -> Iterator[Range]:
    """``get-entries`` ranges covering ``first``-``last``, each of ``batch()`` entries at
    most (asked again before each request: the log's cap, once learned, sizes the next)."""
    start = first
    while start <= last:
        end = min(last, start + batch() - 1)
        yield start, end
        start = end + 1


def tile_ranges(first: int, last: int) -> Iterator[Range]:
    """The part of ``first``-``last`` in each data tile it touches, in order."""
    for n in range(first // TILE_WIDTH, last // TILE_WIDTH + 1):
        yield max(first, n * TILE_WIDTH), min(last, n * TILE_WIDTH + TILE_WIDTH - 1)
