"""A hand-run smoke test: a fake certstream feed and a webhook receiver on loopback.

    uv run python tests/e2e_harness.py

serves ``ws://127.0.0.1:8080/full-stream`` (certwatch's default ``CERTSTREAM_URL``) and
``http://127.0.0.1:9000/hook``. Every few seconds it sends a newly issued certificate for
``www.example.net`` (unknown to any inventory), plus one for a name nobody watches, and
prints every webhook it receives. Then, in a second terminal:

    API_TOKEN=changeme WEBHOOK_URL=http://127.0.0.1:9000/hook SUSPICIOUS_GRACE_S=0 \\
        DB_PATH=/tmp/certwatch-smoke.db CT_BACKFILL=0 CAA_CHECK=0 uv run -m certwatch

and in a third:

    curl -sS -X POST http://127.0.0.1:8765/domains -H 'Authorization: Bearer changeme' \\
        -H 'Content-Type: application/json' -d '{"value": "example.net"}'

Within seconds the harness prints ``webhook: suspicious www.example.net ...``. Ctrl-C
stops it. (The README's command gives certwatch a database of its own and no back-fill:
the fake feed's made-up CT log must not end up in the Quick start's database.)
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

# The checkout first: run as a script, Python puts tests/ on the path, not the checkout, and a
# dependency (confusables 1.2.0) installs a stray top-level ``tests`` package into
# site-packages that would shadow this repository's.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

from tests.support.certs import CA, unrelated_message
from tests.support.servers import FeedServer, Receiver


async def run(
    feed_port: int, hook_port: int, domain: str, interval: float, *, verbose: bool
) -> None:
    feed = FeedServer()
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        await feed.start(nursery, port=feed_port)
        await receiver.start(nursery, port=hook_port)
        print(f"feed:    {feed.url}", flush=True)
        print(f"webhook: {receiver.url}", flush=True)

        async def report() -> None:
            seen = 0
            while True:
                deliveries = await receiver.wait_for(seen + 1)
                for delivery in deliveries[seen:]:
                    body = delivery.json()
                    print(
                        f"webhook: {body['severity']} {' '.join(body['matched_sans'])} "
                        f"(event {delivery.headers.get('webhook-id')}, issuer {body['issuer_cn']})",
                        flush=True,
                    )
                    if verbose:
                        headers = {
                            k: v for k, v in delivery.headers.items() if k.startswith("webhook-")
                        }
                        print(
                            json.dumps({"headers": headers, "payload": body}, indent=2), flush=True
                        )
                seen = len(deliveries)

        nursery.start_soon(report)
        ca = CA()
        while True:
            if feed.connections:
                await feed.send(ca.issue([domain]).message("go-full"))
                await feed.send(unrelated_message())
            await trio.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feed-port", type=int, default=8080)
    parser.add_argument("--hook-port", type=int, default=9000)
    parser.add_argument("--domain", default="www.example.net")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between certs")
    parser.add_argument(
        "--verbose", action="store_true", help="print each delivery's headers and full payload"
    )
    args = parser.parse_args()
    try:
        trio.run(
            functools.partial(
                run, args.feed_port, args.hook_port, args.domain, args.interval,
                verbose=args.verbose,
            )
        )  # fmt: skip
    except* KeyboardInterrupt:  # Ctrl-C, inside trio's exception group: one line, not 30
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
