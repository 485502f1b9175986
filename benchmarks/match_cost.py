"""Match cost per SAN against the size of the watch list.

    uv run python benchmarks/match_cost.py

Times :meth:`WatchIndex.match` on SANs from the benchmark capture (which match nothing:
the firehose case) and on SANs that do match, for watch lists of 10 to 1,000,000 entries.
The cost per SAN should depend on the SAN's labels, not on the number of entries.
"""

from __future__ import annotations

import json
import random
import time

from benchmarks.common import capture, machine
from certwatch.core.names import WatchIndex


def per_san(index: WatchIndex, certs: list[list[str]], repeat: int = 5) -> float:
    """Best-of-``repeat`` nanoseconds per SAN for matching every cert's names."""
    sans = sum(len(names) for names in certs)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for names in certs:
            index.match(names)
        best = min(best, time.perf_counter() - started)
    return best / sans * 1e9


def main() -> None:
    lines = capture().read_text().splitlines()
    firehose = [json.loads(line)["data"]["leaf_cert"]["all_domains"] for line in lines]
    rng = random.Random(3)
    print(f"machine: {machine()}")
    print(f"SANs per certificate in the capture: {sum(map(len, firehose)) / len(firehose):.1f}")
    print("| watch entries | firehose SAN (no match) | matching SAN |")
    print("|---|---|---|")
    for size in (10, 1_000, 100_000, 1_000_000):
        entries = [
            f"{rng.randrange(16**8):08x}.example{rng.randrange(100)}.org" for _ in range(size)
        ]
        index = WatchIndex(entries)
        hits = [[f"www.{e}", f"*.{e}", f"api.v1.{e}"] for e in rng.sample(entries, min(size, 1000))]
        print(f"| {size:,} | {per_san(index, firehose):.0f} ns | {per_san(index, hits):.0f} ns |")


if __name__ == "__main__":
    main()
