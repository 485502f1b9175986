"""End-to-end feed throughput: certwatch against the transport's own ceiling.

    uv run python benchmarks/throughput.py [--messages 100000] [--runs 3]

A feed process sends pre-built full-stream frames (4-9 KB) flat out over loopback. In the
same run this measures

- the ceiling: a bare trio-websocket client (the options certwatch uses) that only
  receives the frames;
- certwatch (``python -m certwatch``, its own process) receiving, decoding, matching and
  counting them, with 10 and with 100,000 watch entries, and 100,000 inventory certs.

certwatch's rate is read from ``/healthz`` (``feed.processed``) between the first and the
last processed frame. Each figure is the median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from benchmarks.common import Certwatch, capture, feed_server, machine, prepare_db
from certwatch.sources.certstream import LIBRARY_QUEUE, MAX_MESSAGE_SIZE


async def bare_client(url: str, count: int) -> float:
    """Frames per second for a client that only receives."""
    async with open_websocket_url(
        url,
        max_message_size=MAX_MESSAGE_SIZE,
        message_queue_size=LIBRARY_QUEUE,
        receive_buffer_size=None,
    ) as ws:
        await ws.get_message()
        started = time.perf_counter()
        for _ in range(count - 1):
            await ws.get_message()
        return (count - 1) / (time.perf_counter() - started)


def certwatch_rate(url: str, count: int, entries: int, workdir: Path) -> tuple[float, float]:
    """(frames per second, resident MB) for certwatch with ``entries`` watch entries."""
    db = workdir / f"cw-{entries}.db"
    if not db.exists():
        prepare_db(db, entries=entries, certs=100_000)
    service = Certwatch(db, url)
    try:
        service.wait_ready()
        rate, health = service.follow(count)
        assert health["feed"]["dropped"] == 0, health
        return rate, service.rss_mb()
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    frames = capture()
    sizes = sorted(len(line) for line in frames.read_text().splitlines())
    results: dict[str, list[float]] = {"ceiling": [], "10": [], "100000": []}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, feed_server(frames, args.messages) as url:
        for _ in range(args.runs):
            results["ceiling"].append(trio.run(bare_client, url, args.messages))
            for entries in (10, 100_000):
                rate, rss[str(entries)] = certwatch_rate(url, args.messages, entries, Path(tmp))
                results[str(entries)].append(rate)
    ceiling = statistics.median(results["ceiling"])
    print(f"machine: {machine()}")
    print(
        f"frames: {args.messages} per run, {len(sizes)} distinct, "
        f"median {sizes[len(sizes) // 2]} B, p95 {sizes[len(sizes) * 19 // 20]} B; "
        f"median of {args.runs} runs"
    )
    print()
    print("| client | msgs/s | of ceiling | RSS |")
    print("|---|---|---|---|")
    print(f"| bare trio-websocket (ceiling) | {ceiling:,.0f} | 100% | |")
    for label in ("10", "100000"):
        rate = statistics.median(results[label])
        print(
            f"| certwatch, {int(label):,} entries, 100,000 certs | {rate:,.0f} | "
            f"{rate / ceiling:.0%} | {rss[label]:.0f} MB |"
        )
    small, large = statistics.median(results["10"]), statistics.median(results["100000"])
    print(f"\n100,000 vs 10 entries: {large / small - 1:+.1%}")
    print("runs:", {k: [round(v) for v in vs] for k, vs in results.items()})


if __name__ == "__main__":
    main()
