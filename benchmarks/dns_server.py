"""A slow CAA resolver for the benchmarks: a scripted DNS server answering after a delay.

    python benchmarks/dns_server.py --delay 1.0 --domain throughput.example

Prints ``port N`` once it listens on 127.0.0.1 (UDP and TCP), then serves until killed.
``--domain`` has ``0 issue "letsencrypt.org"``; names below it have no CAA of their own.
"""

from __future__ import annotations

import argparse

import trio

import benchmarks  # noqa: F401  (the checkout's tests package first: see benchmarks/__init__.py)
from tests.support.dns import Behaviour, DnsResponder, Records


async def main(delay_s: float, domain: str) -> None:
    async with trio.open_nursery() as nursery:
        zone: dict[str, Behaviour] = {domain: Records(('0 issue "letsencrypt.org"',))}
        responder = await DnsResponder(zone, delay_s=delay_s).start(nursery)
        print(f"port {responder.port}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--domain", default="latency.example")
    args = parser.parse_args()
    trio.run(main, args.delay, args.domain)
