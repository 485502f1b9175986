"""Alert latency under load: from the feed sending a matched cert to the webhook receiving it.

    uv run python benchmarks/latency.py [--rate 5000] [--seconds 30] [--matched-every 50]
                                        [--caa-delay 0.05]

The feed process sends full-stream frames at ``--rate`` messages per second; every
``--matched-every``-th frame is a newly issued certificate for a watched name whose
``seen`` is the moment the feed sent it. certwatch (its own process, grace 0, 100,000
inventory certs) stores each alert (``synchronous=FULL``) and POSTs it to a receiver in
this process, which records ``now - seen_at``. Reports p50, p99 and the maximum.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import trio

from benchmarks.common import (
    Certwatch,
    add_brands,
    capture,
    dns_server,
    feed_server,
    machine,
    prepare_db,
)
from certwatch.metrics import Metrics
from certwatch.sources.caa import CaaResolver
from tests.support.dnsservers import DnsServers
from tests.support.servers import Receiver

LATENCY_ZONE = "\n".join([
    "$ORIGIN latency.example.", "$TTL 0",
    "@ IN SOA ns hostmaster 1 3600 600 86400 0", "@ IN NS ns", "ns IN A 127.0.0.1",
    '@ IN CAA 0 issue "letsencrypt.org"', "",
])  # fmt: skip


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


async def probe(resolver: str, times: list[float]) -> None:
    """Look up a new name under latency.example ten times a second, as certwatch does
    (two queries), recording how long each took: the resolver's own time under this load."""
    address, port = resolver.rsplit(":", 1)
    caa = CaaResolver([(address, int(port))], Metrics().caa)
    for n in itertools.count():
        started = time.perf_counter()
        await caa.relevant(f"probe{n}.latency.example")
        times.append(time.perf_counter() - started)
        await trio.sleep(0.1)


def pin(pid: int, core: int) -> None:
    """Every thread of process ``pid`` on ``core`` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {core})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--matched-every", type=int, default=50)
    parser.add_argument(
        "--lookalike",
        action="store_true",
        help="the new certificates imitate a brand (latency.com) instead of being watched",
    )
    parser.add_argument(
        "--caa",
        action="store_true",
        help="CAA on, asking a real Unbound in front of a real NSD (Debian's packages)",
    )
    parser.add_argument(
        "--caa-delay", type=float, default=None,
        help="CAA on, with a scripted resolver answering after this many seconds",
    )  # fmt: skip
    parser.add_argument(
        "--pin",
        action="store_true",
        help="this process and the feed on the first core, certwatch on the second (Linux)",
    )
    args = parser.parse_args()
    if args.pin:  # before the feed starts: it inherits the core
        os.sched_setaffinity(0, {0})
    total = args.rate * args.seconds
    alerts = total // args.matched_every
    latencies: list[float] = []
    resolver_times: list[float] = []
    frames = capture()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "cw.db"
        domains = [] if args.lookalike else ["latency.example"]
        prepare_db(db, entries=10, certs=100_000, domains=domains)
        if args.lookalike:  # bench<n>.latency.example: a tld-swap of the brand latency.com
            add_brands(db, ["latency"])

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                receiver = await Receiver().start(nursery)
                done = trio.Event()
                nursery.start_soon(collect, receiver, alerts, latencies, done)
                hook = receiver.url
                extra = ["--rate", str(args.rate), "--matched-every", str(args.matched_every)]
                caa: dict[str, str] = {}
                with contextlib.ExitStack() as stack:
                    if args.caa_delay is not None:
                        resolver = stack.enter_context(
                            dns_server(args.caa_delay, "latency.example")
                        )
                        caa = {"CAA_CHECK": "1", "CAA_RESOLVER": resolver}
                    elif args.caa:
                        servers = DnsServers({"latency.example": LATENCY_ZONE}).start()
                        stack.callback(servers.stop)
                        caa = {"CAA_CHECK": "1", "CAA_RESOLVER": servers.resolver}
                    url = stack.enter_context(feed_server(frames, total, *extra))
                    env = {"WEBHOOK_URL": hook, "SUSPICIOUS_GRACE_S": "0", "LOG_LEVEL": "ERROR"}
                    service = Certwatch(db, url, environment={**env, **caa})
                    try:
                        await trio.to_thread.run_sync(service.wait_ready)
                        if args.pin:
                            pin(service.proc.pid, 1)
                        if caa:  # the resolver's own time, asked as certwatch asks it
                            nursery.start_soon(probe, caa["CAA_RESOLVER"], resolver_times)
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
    caa = "CAA off"
    if args.caa_delay is not None:
        caa = f"CAA on: two queries per alert, each answered after {args.caa_delay} s"
    elif args.caa:
        caa = "CAA on: two queries per alert to Unbound, in front of NSD"
    what = "lookalike of a brand" if args.lookalike else "watched"
    print(f"load: {args.rate:,} msgs/s for {args.seconds} s; {len(ms)} alerts "
          f"(every {args.matched_every}th frame a new {what} cert, grace 0, {caa})")  # fmt: skip
    if resolver_times:
        times = sorted(t * 1000 for t in resolver_times)
        print(f"resolver's own time ({len(times)} lookups of two queries, probed meanwhile): "
              f"p50 {times[len(times) // 2]:.1f} ms, p99 {times[int(len(times) * 0.99)]:.1f} ms, "
              f"max {times[-1]:.1f} ms")  # fmt: skip
    print("| alerts | p50 | p99 | max |")
    print("|---|---|---|---|")
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"| {len(ms)} | {statistics.median(ms):.1f} ms | {p99:.1f} ms | {ms[-1]:.1f} ms |")


if __name__ == "__main__":
    main()
