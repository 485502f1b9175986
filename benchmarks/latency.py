"""Alert latency under load: from the feed sending a matched cert to the webhook receiving it.

    uv run python benchmarks/latency.py [--rate 5000] [--seconds 30] [--matched-every 50]

The feed process sends full-stream frames at ``--rate`` messages per second; every
``--matched-every``-th frame is a newly issued certificate for a watched name whose
``seen`` is the moment the feed sent it. certwatch (its own process, grace 0, 100,000
inventory certs) stores each alert (``synchronous=FULL``) and POSTs it to a receiver in
this process, which records ``now - seen_at``. Reports p50, p99 and the maximum.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trio

from benchmarks.common import Certwatch, capture, feed_server, machine, prepare_db
from tests.support.servers import Receiver


async def collect(receiver: Receiver, count: int, latencies: list[float], done: trio.Event) -> None:
    """Record ``now - seen_at`` for every delivery, as it arrives."""
    seen = 0
    while len(latencies) < count:
        deliveries = await receiver.wait_for(seen + 1)
        now = time.time()
        for delivery in deliveries[seen:]:
            latencies.append(now - delivery.json()["seen_at"])
        seen = len(deliveries)
    done.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--matched-every", type=int, default=50)
    args = parser.parse_args()
    total = args.rate * args.seconds
    alerts = total // args.matched_every
    latencies: list[float] = []
    frames = capture()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "cw.db"
        prepare_db(db, entries=10, certs=100_000, domains=["latency.example"])

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                receiver = await Receiver().start(nursery)
                done = trio.Event()
                nursery.start_soon(collect, receiver, alerts, latencies, done)
                hook = receiver.url
                extra = ["--rate", str(args.rate), "--matched-every", str(args.matched_every)]
                with feed_server(frames, total, *extra) as url:
                    service = Certwatch(
                        db, url, WEBHOOK_URL=hook, SUSPICIOUS_GRACE_S="0", LOG_LEVEL="ERROR"
                    )
                    try:
                        await trio.to_thread.run_sync(service.wait_ready)
                        with trio.fail_after(args.seconds * 3 + 30):
                            await done.wait()
                        health = await trio.to_thread.run_sync(service.health)
                    finally:
                        service.stop()
                nursery.cancel_scope.cancel()
            print(f"feed: {health['feed']['processed']:,} frames processed, "
                  f"dropped {health['feed']['dropped']}")  # fmt: skip

        trio.run(run)
    ordered = sorted(latencies)
    ms = [x * 1000 for x in ordered]
    print(f"machine: {machine()}")
    print(f"load: {args.rate:,} msgs/s for {args.seconds} s; {len(ms)} alerts "
          f"(every {args.matched_every}th frame a new watched cert, grace 0)")  # fmt: skip
    print("| alerts | p50 | p99 | max |")
    print("|---|---|---|---|")
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"| {len(ms)} | {statistics.median(ms):.1f} ms | {p99:.1f} ms | {ms[-1]:.1f} ms |")


if __name__ == "__main__":
    main()
