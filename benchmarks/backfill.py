"""Back-fill: how fast a big gap fills from a tiled log, the memory it takes, and the live
feed's alert latency meanwhile.

    uv run python benchmarks/backfill.py [--log-bits 20] [--live-rate 1000]

A tiled log of ``2**log-bits`` entries runs in its own process (ctlog_server.py; every
50,000th entry a certificate for a watched name). certwatch, in its own process, starts
with that log's saved position at 0, so it reads the tree size and back-fills everything
after it: about a million entries, each parsed and matched, the watched ones verified
against the signed checkpoint and alerted. Meanwhile a feed process sends ``--live-rate``
messages a second, every 50th a new watched certificate whose webhook latency (feed to
receiver) is recorded here. Reported: entries per second, RSS over the fill, and the
live alerts' p50/p99/max latency. ``--live-rate 0`` measures back-fill alone.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import trio

from benchmarks.common import HERE, Certwatch, capture, feed_server, machine, prepare_db
from tests.support.servers import Receiver


@contextlib.contextmanager
def log_server(log_bits: int, list_path: Path) -> Iterator[str]:
    """The tiled log in its own process; yields its URL once it serves."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "ctlog_server.py"), "--log-bits", str(log_bits),
         "--list", str(list_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        print(line.strip(), flush=True)
        port = int(proc.stdout.readline().split()[1])
        yield f"http://127.0.0.1:{port}/bench"
    finally:
        proc.terminate()
        proc.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def save_position(db: Path, log_url: str) -> None:
    """The log's saved position: 0 (as if certwatch had stopped right after entry 0)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(
        "INSERT INTO ct_log_positions (log, kind, position, high, gaps, updated_at) "
        "VALUES (?, 'tiled', 0, 0, '[]', ?)",
        (log_url, time.time()),
    )
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-bits", type=int, default=20)
    parser.add_argument("--live-rate", type=int, default=1000)
    parser.add_argument("--matched-every", type=int, default=50)
    args = parser.parse_args()
    size = 1 << args.log_bits
    live_alerts: list[float] = []
    backfill_alerts: list[dict[str, object]] = []
    samples: list[tuple[float, int, float]] = []  # (seconds, back-filled, RSS MB)
    frames = capture()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "cw.db"
        list_path = Path(tmp) / "list.json"
        prepare_db(db, entries=10, certs=100_000,
                   domains=["latency.example", "backfill.example"])  # fmt: skip

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                receiver = await Receiver().start(nursery)

                async def collect() -> None:
                    seen = 0
                    while True:
                        deliveries = await receiver.wait_for(seen + 1)
                        now = time.time()
                        for delivery in deliveries[seen:]:
                            event = delivery.json()
                            if event["observed_via"] == "ct-log":
                                backfill_alerts.append(event)
                            else:
                                live_alerts.append(now - event["seen_at"])
                        seen = len(deliveries)

                nursery.start_soon(collect)
                with contextlib.ExitStack() as stack:
                    log_url = stack.enter_context(log_server(args.log_bits, list_path))
                    save_position(db, log_url)
                    feed_url = "ws://127.0.0.1:9/full-stream"  # nothing: back-fill alone
                    if args.live_rate:
                        extra = ["--rate", str(args.live_rate),
                                 "--matched-every", str(args.matched_every)]  # fmt: skip
                        feed_url = stack.enter_context(
                            feed_server(frames, args.live_rate * 3600, *extra)
                        )
                    service = Certwatch(
                        db, feed_url, WEBHOOK_URL=receiver.url, SUSPICIOUS_GRACE_S="0",
                        LOG_LEVEL="WARNING", CT_BACKFILL="1", CT_LOG_LIST=str(list_path),
                    )  # fmt: skip
                    try:
                        await trio.to_thread.run_sync(service.wait_ready)
                        started = time.perf_counter()
                        while True:
                            health = await trio.to_thread.run_sync(service.health)
                            [entry] = [x for x in health["coverage"]["logs"]
                                       if x["log"] == log_url]  # fmt: skip
                            elapsed = time.perf_counter() - started
                            samples.append((elapsed, entry["backfilled"], rss_mb(service.proc.pid)))
                            if entry["position"] == size - 1 and entry["pending"] == 0:
                                break
                            if elapsed > 1800:
                                raise RuntimeError(f"not filled after 30 minutes: {entry}")
                            await trio.sleep(1)
                        feed = health["feed"]
                    finally:
                        service.stop()
                nursery.cancel_scope.cancel()
            print(f"live feed: {feed['processed']:,} frames processed, dropped {feed['dropped']}")

        trio.run(run)

    print(f"machine: {machine()}")
    filled = samples[-1][1]
    # The rate from the first entry back-filled to the last (start-up and the tree size read
    # excluded): what recovering an outage takes.
    first = next(s for s in samples if s[1] > 0)
    seconds = samples[-1][0] - first[0]
    print(f"back-filled {filled:,} entries in {seconds:.1f} s: {filled / seconds:,.0f} entries/s"
          f" (live feed {args.live_rate:,} msgs/s)")  # fmt: skip
    verified = sum(1 for e in backfill_alerts if e["log_verified"])
    print(f"back-filled alerts: {len(backfill_alerts)} ({verified} verified)")
    rss = [s[2] for s in samples]
    print(
        f"RSS: start {rss[0]:.0f} MB, max {max(rss):.0f} MB, end {rss[-1]:.0f} MB; "
        "samples " + ", ".join(f"{x:.0f}" for x in rss[:: max(1, len(rss) // 8)])
    )
    if live_alerts:
        ms = sorted(x * 1000 for x in live_alerts)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        print(f"live alerts during the fill: {len(ms)}; p50 {statistics.median(ms):.1f} ms, "
              f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
