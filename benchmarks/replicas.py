"""certwatch on PostgreSQL: the feed's rate against SQLite, alerts per second by three
replicas, and failover time.

    uv run python benchmarks/replicas.py [--messages 100000] [--runs 3] [--alerts 2000]
                                         [--kills 20]

Needs PostgreSQL's server (Debian: ``apt-get install postgresql``): a throwaway cluster is
started in a temporary directory on a Unix socket (``tests/support/postgres.py``), with
``fsync`` off as in the tests.

1. **Feed throughput.** Full-stream frames flat out from a separate process (as
   ``throughput.py``) into certwatch with 10 watch entries and 100,000 inventory certs, on
   SQLite and on PostgreSQL (the same rows, copied by ``certwatch migrate-db``'s code),
   alternated, ``--runs`` each.
2. **Alerts.** Three replicas on one database, a feed each; ``--alerts`` certificates for
   a watched domain sent to every feed; one receiver. Alerts stored and delivered per
   second (first send to the last issuance's first delivery), and events per issuance.
3. **Failover.** ``--kills`` times: kill -9 the leader, then start it again. Measured:
   kill to another replica holding the leader role, and the next alert's delivery. With
   ``SUSPICIOUS_GRACE_S=0`` the certificate is sent at the kill, to the replicas left
   (any replica decides it): kill to delivered. With a 2 s grace it is sent, stored and
   held, and the leader is killed 0.2 s before the grace ends: the hold timer is the
   leader's, so the alert's delivery past the grace's end is what the failover cost.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from quart import Response

from benchmarks.common import Certwatch, capture, feed_server, machine, prepare_db
from certwatch.migrate import migrate_db
from certwatch.store.leadership import CHECK_S
from tests.support.certs import CA
from tests.support.postgres import NOT_INSTALLED, PostgresCluster, find_binaries, running_cluster
from tests.support.replicas import Replica, open_fleet
from tests.support.servers import Receiver
from tests.support.service import TOKEN

WATCHED = "bench-fleet.example"
KILL_BEFORE_S = 0.2
"""With a grace period, the leader holding the alert is killed this long before it ends."""


class TimedReceiver(Receiver):
    """A receiver that notes when each issuance (by serial) was first delivered."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[str, float] = {}
        self.events: dict[str, set[str]] = collections.defaultdict(set)

    async def _hook(self) -> Response:
        response = await super()._hook()
        if self.deliveries:
            # the hook appends this request's delivery and returns without a checkpoint
            delivery = self.deliveries[-1]
            self.first.setdefault(delivery.serial, time.perf_counter())
            self.events[delivery.serial].add(delivery.headers["webhook-id"])
        return response


def feed_rate(url: str, count: int, db: Path, database_url: str | None) -> float:
    service = (
        Certwatch(db, url)
        if database_url is None
        else Certwatch(db, url, DATABASE_URL=database_url)
    )
    try:
        service.wait_ready()
        rate, health = service.follow(count)
        assert health["feed"]["dropped"] == 0, health
        assert health["database"]["backend"] == ("sqlite" if database_url is None else "postgresql")
        return rate
    finally:
        service.stop()


def throughput(cluster: PostgresCluster, messages: int, runs: int, tmp: Path) -> dict[str, Any]:
    db = tmp / "feed.db"
    prepare_db(db, entries=10, certs=100_000)
    database_url = cluster.new_database()
    with Path(os.devnull).open("w") as quiet:
        trio.run(migrate_db, db, database_url, quiet)
    rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    with feed_server(capture(), messages) as url:
        for _ in range(runs):
            rates["sqlite"].append(feed_rate(url, messages, db, None))
            rates["postgresql"].append(feed_rate(url, messages, db, database_url))
    return rates


def fleet_env(database_url: str, receiver: Receiver, grace_s: float) -> dict[str, str]:
    return {
        **os.environ,
        "API_TOKEN": TOKEN,
        "DATABASE_URL": database_url,
        "WEBHOOK_URL": receiver.url,
        "SUSPICIOUS_GRACE_S": str(grace_s),
        "CT_BACKFILL": "0",
        "CAA_CHECK": "0",
        "LOG_LEVEL": "WARNING",
    }


async def until_delivered(receiver: TimedReceiver, serials: set[str], limit_s: float) -> None:
    with trio.fail_after(limit_s):
        while not serials <= receiver.first.keys():
            await receiver.wait_for(len(receiver.deliveries) + 1)


async def until_stored(replica: Replica, serial: str) -> None:
    """Until ``replica`` has stored (and holds) the alert of ``serial``."""
    with trio.fail_after(30):
        while True:
            response = await replica.client.get("/alerts", params={"limit": 10})
            if any(str(a["serial"]).lower().lstrip("0") == serial for a in response.json()):
                return
            await trio.sleep(0.005)  # another process: seen only through its API


async def alerts(cluster: PostgresCluster, count: int, tmp: Path) -> dict[str, Any]:
    ca = CA()
    issuances = [ca.issue([f"h{n}.{WATCHED}"]) for n in range(count)]
    messages = [issuance.message("go-full") for issuance in issuances]
    serials = {f"{i.serial:x}" for i in issuances}
    async with trio.open_nursery() as nursery:
        receiver = TimedReceiver()
        await receiver.start(nursery)
        env = fleet_env(cluster.new_database(), receiver, 0)
        async with open_fleet(nursery, env, tmp, watch=WATCHED) as fleet:
            started = time.perf_counter()
            for message in messages:
                await fleet.send(message)
            sent = time.perf_counter()
            await until_delivered(receiver, serials, 600)
            finished = max(receiver.first[s] for s in serials)
        nursery.cancel_scope.cancel()
    once = sum(len(receiver.events[s]) == 1 for s in serials)
    return {
        "alerts": count,
        "send_s": sent - started,
        "rate": count / (finished - started),
        "one_event": once,
        "deliveries": len(receiver.deliveries),
    }


async def failover(cluster: PostgresCluster, kills: int, grace_s: float, tmp: Path) -> Any:
    ca = CA()
    takeover, delivered = [], []
    async with trio.open_nursery() as nursery:
        receiver = TimedReceiver()
        await receiver.start(nursery)
        env = fleet_env(cluster.new_database(), receiver, grace_s)
        async with open_fleet(nursery, env, tmp, watch=WATCHED) as fleet:
            phase = random.Random(13)
            for n in range(kills):
                # the replicas retry the lock once a second: kill anywhere in that cycle
                await trio.sleep(phase.uniform(0.0, CHECK_S))
                leader = await fleet.leader()
                issuance = ca.issue([f"k{n}.{WATCHED}"])
                serial = f"{issuance.serial:x}"
                if grace_s:
                    sent = time.perf_counter()
                    await fleet.send(issuance.message("go-full"))
                    await until_stored(leader, serial)
                    # kill just before the grace ends: the new leader must decide it
                    await trio.sleep(
                        max(0.0, grace_s - KILL_BEFORE_S - (time.perf_counter() - sent))
                    )
                leader.kill()
                killed = time.perf_counter()
                if not grace_s:
                    await fleet.send(issuance.message("go-full"))
                new_leader = await fleet.leader()
                takeover.append(time.perf_counter() - killed)
                assert new_leader is not leader
                await until_delivered(receiver, {serial}, 120)
                if grace_s:
                    delivered.append(receiver.first[serial] - sent - grace_s)
                else:
                    delivered.append(receiver.first[serial] - killed)
                leader.start()
                await leader.wait_ready()
        nursery.cancel_scope.cancel()
    return takeover, delivered


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"min {ordered[0]:.2f} s, median {statistics.median(ordered):.2f} s, "
        f"p90 {p90:.2f} s, max {ordered[-1]:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    binaries = find_binaries()
    if binaries is None:
        raise SystemExit(NOT_INSTALLED)
    with tempfile.TemporaryDirectory() as tmp, running_cluster(binaries) as cluster:
        work = Path(tmp)
        rates = throughput(cluster, args.messages, args.runs, work)
        sqlite, pg = statistics.median(rates["sqlite"]), statistics.median(rates["postgresql"])
        print(f"\n1. feed throughput, {args.messages:,} frames, median of {args.runs} runs")
        change = pg / sqlite - 1
        print(f"   SQLite: {sqlite:,.0f} msgs/s, PostgreSQL: {pg:,.0f} msgs/s ({change:+.1%})")
        print("   runs:", {k: [round(v) for v in vs] for k, vs in rates.items()})

        result = trio.run(alerts, cluster, args.alerts, work)
        print(f"\n2. three replicas, {result['alerts']:,} matching certificates to every feed")
        print(
            f"   {result['rate']:,.0f} alerts stored and delivered per second "
            f"(sent in {result['send_s']:.1f} s); {result['one_event']:,} of "
            f"{result['alerts']:,} issuances delivered under one event id; "
            f"{result['deliveries']:,} deliveries"
        )

        for grace in (0.0, 2.0):
            takeover, delivered = trio.run(failover, cluster, args.kills, grace, work)
            print(f"\n3. failover, {args.kills} kills, SUSPICIOUS_GRACE_S={grace:g}")
            print(f"   kill -> another replica leads: {spread(takeover)}")
            what = "held alert delivered, past its grace" if grace else "next alert delivered"
            print(f"   kill -> {what}: {spread(delivered)}")


if __name__ == "__main__":
    main()
