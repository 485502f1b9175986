"""Start-up time and resident memory with 100,000 watch entries and 100,000 inventory certs.

    uv run python benchmarks/memory_startup.py [--messages 3600000]

Prepares a database with 100,000 entries and 100,000 inventory rows (PEM-like: key
identifier, serial, TBS hash), starts ``python -m certwatch`` on it and reports the time to
the first ``/healthz`` 200. Then the feed process sends ``--messages`` full-stream frames
(3.6 million = an hour of 2026 traffic at 1,000 msgs/s, sent as fast as certwatch takes
them), every 10,000th a new certificate for a watched name, and RSS is sampled as they are
processed: flat means no growth with messages processed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import Certwatch, capture, feed_server, machine, prepare_db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3_600_000)
    parser.add_argument("--starts", type=int, default=3, help="start-up measurements")
    args = parser.parse_args()
    frames = capture()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "cw.db"
        prepare_db(db, entries=100_000, certs=100_000, domains=["latency.example"])
        size_mb = db.stat().st_size / 1e6
        ready = []
        for _ in range(args.starts):
            service = Certwatch(db, "ws://127.0.0.1:9/full-stream")
            ready.append(service.wait_ready())
            service.stop()
        print(f"database: 100,000 entries + 100,000 certs, {size_mb:.0f} MB")
        print(f"start-up to /healthz 200: median {statistics.median(ready):.2f} s "
              f"(runs: {', '.join(f'{r:.2f}' for r in ready)})")  # fmt: skip
        extra = ["--matched-every", "10000", "--matched-domain", "latency.example"]
        with feed_server(frames, args.messages, *extra) as url:
            service = Certwatch(db, url)
            try:
                service.wait_ready()
                print(f"RSS after start: {service.rss_mb():.1f} MB")
                samples: list[tuple[int, float]] = []
                started = time.perf_counter()
                service.follow(args.messages, samples=samples, every=args.messages // 10)
                elapsed = time.perf_counter() - started
                health = service.health()
                processed = health["feed"]["processed"]
                alerts = health["alerts"]["dedupe_cache"]
                print(f"processed {processed:,} frames in {elapsed:.0f} s "
                      f"({processed / elapsed:,.0f} msgs/s), {alerts} alerts, "
                      f"dropped {health['feed']['dropped']}")  # fmt: skip
                print("| frames processed | RSS |")
                print("|---|---|")
                for count, rss in samples:
                    print(f"| {count:,} | {rss:.1f} MB |")
                growth = samples[-1][1] - samples[0][1]
                print(f"growth from the first to the last sample: {growth:+.1f} MB")
            finally:
                service.stop()


if __name__ == "__main__":
    main()
