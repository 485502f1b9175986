"""Noise: ninety simulated days of an organisation, without rules and with the README's.

    uv run python benchmarks/noise.py

The organisation watches ``example.org``. Five load balancers renew their Let's Encrypt
certificates with certbot every 60 days (90-day certificates, renewed 30 days before they
expire) and push each one from the deploy hook within seconds. Vendors renew theirs on
their own cadence, never through the deploy hook, with keys of their own:

- Cloudflare on ``shop.example.org``: a primary (Google Trust Services) and a backup
  (Let's Encrypt) certificate at every renewal, every 60 days;
- a Statuspage-like status page and a Zendesk-like help desk: Let's Encrypt, every 60 days;
- a HubSpot-like host: Google Trust Services, every 60 days;
- AWS ACM behind CloudFront: an Amazon certificate, renewed 60 days before its 395 days end.

Three attacks are mixed in: a Let's Encrypt certificate for ``www`` with a stranger's key,
a certificate from a CA that the README's ``restrict`` rule excludes (DigiCert), and one
for a ``protect``ed name (``login``). Every issuance is a precert logged in two logs and a
final certificate in one, through the real feed, a real certwatch (in this process, with a
real SQLite file and Hypercorn) and a real webhook receiver. The CAs are test CAs laid in
with ``CA_IDENTITIES_FILE`` as the real owners they stand for. Run once without rules and
once with the rules of the README's "Recipes" block (read from the README itself).

Prints pages (``critical``), tickets (``suspicious``), ``expected`` and ``info``, and how
each vendor renewal and each attack was decided; exits 1 if a vendor renewal opened a
ticket or paged with the rules, or an attack was not ``suspicious`` or ``critical``.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs
import trio

import benchmarks  # noqa: F401  (the checkout's tests package first: see benchmarks/__init__.py)
from certwatch.core.cas import OWNERS, CAIdentity, IdentitiesFile
from tests.support.certs import CA, Issuance
from tests.support.servers import FeedServer, Receiver
from tests.support.service import RunningService, run_service, wired

README = Path(__file__).parent.parent / "README.md"
DAYS = 90
GRACE_S = 1.0
"""The hold, in real seconds: the deploy hook pushes well within it."""


def owner(name: str) -> tuple[str, ...]:
    return next(o.caa_domains for o in OWNERS if o.name == name)


@attrs.frozen
class Event:
    day: int
    kind: str
    """``lb``, ``vendor`` or ``attack``."""
    label: str
    issuance: Issuance


def cas() -> dict[str, tuple[CA, str]]:
    """Test CAs standing for real issuing CAs, with the owner each stands for."""
    return {
        "LE R10": (CA("R10", "Let's Encrypt"), "ISRG (Let's Encrypt)"),
        "LE R11": (CA("R11", "Let's Encrypt"), "ISRG (Let's Encrypt)"),
        "GTS WR1": (CA("WR1", "Google Trust Services"), "Google Trust Services"),
        "Amazon M02": (CA("Amazon RSA 2048 M02", "Amazon"), "Amazon Trust Services"),
        "DigiCert": (CA("DigiCert Global G2 TLS RSA SHA256 2020 CA1", "DigiCert Inc"), "DigiCert"),
    }


def organisation(ca: dict[str, CA]) -> list[Event]:
    """Ninety days of issuances, in order."""
    events: list[Event] = []
    lbs = [
        ("lb-www", ["example.org", "www.example.org"]),
        ("lb-api", ["api.example.org"]),
        ("lb-login", ["login.example.org"]),
        ("lb-pay", ["pay.example.org"]),
        ("lb-mail", ["mail.example.org"]),
    ]
    for n, (label, names) in enumerate(lbs):
        for day in range(3 + 12 * n, DAYS, 60):  # certbot: every 60 days
            le = ca["LE R10"] if (day // 60 + n) % 2 else ca["LE R11"]
            events.append(Event(day, "lb", label, le.issue(names)))
    vendors = [
        ("Cloudflare primary", "GTS WR1", ["shop.example.org", "*.shop.example.org"], 10),
        ("Cloudflare backup", "LE R11", ["shop.example.org", "*.shop.example.org"], 10),
        ("Statuspage", "LE R10", ["status.example.org"], 20),
        ("Zendesk", "LE R11", ["help.example.org"], 5),
        ("HubSpot", "GTS WR1", ["info.example.org"], 33),
    ]
    for label, issuer, names, first in vendors:
        for day in range(first, DAYS, 60):
            events.append(Event(day, "vendor", label, ca[issuer].issue(names)))
    events.append(Event(45, "vendor", "AWS ACM", ca["Amazon M02"].issue(["app.example.org"])))
    events += [
        Event(40, "attack", "www, Let's Encrypt, a stranger's key",
              ca["LE R10"].issue(["www.example.org"])),
        Event(55, "attack", "api, DigiCert (excluded by restrict)",
              ca["DigiCert"].issue(["api.example.org"])),
        Event(72, "attack", "login (protected), Let's Encrypt",
              ca["LE R11"].issue(["login.example.org"])),
    ]  # fmt: skip
    return sorted(events, key=lambda e: e.day)


def readme_rules() -> list[dict[str, Any]]:
    """The rules of the README's Recipes block, as an operator would paste them."""
    text = README.read_text()
    block = text[text.index("### Recipes") : text.index("### Acknowledging an alert")]
    return [json.loads(body) for body in re.findall(r"^rule '(.+)'$", block, re.M)]


async def one_run(
    tmp: Path, events: list[Event], identities: IdentitiesFile, rules: list[dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    """Every issuance's payload, by its serial."""
    async with trio.open_nursery() as nursery:
        feed = await FeedServer().start(nursery)
        receiver = await Receiver().start(nursery)
        settings = wired(
            tmp, feed, receiver, suspicious_grace_s=GRACE_S, ca_identities_file=identities
        )
        async with run_service(settings) as service:
            await service.add_domain("example.org")
            for rule in rules:
                response = await service.client.post("/rules", json=rule)
                assert response.status_code == 201, response.text
            for event in events:
                await issue(service, feed, event)
            deliveries = await receiver.wait_for(len(events))
        receiver.stop()
        nursery.cancel_scope.cancel()
    return {int(d.json()["serial"], 16): d.json() for d in deliveries}


async def issue(service: RunningService, feed: FeedServer, event: Event) -> None:
    """The CA logs the precert in two logs; an LB pushes its certificate from the deploy
    hook at once; the final certificate is logged."""
    for log in ("https://ct.example-a.net/2026", "https://ct.example-b.net/2026"):
        await feed.send(event.issuance.message("go-full", log_url=log))
    if event.kind == "lb":
        pushed = await service.client.post("/certs", json={"pem": event.issuance.final_pem()})
        assert pushed.status_code == 201, pushed.text
    await feed.send(event.issuance.message("go-full", which="final"))


def main() -> None:
    logging.disable(logging.WARNING)  # each alert's log line: the tables below say it all
    standins = cas()
    events = organisation({name: ca for name, (ca, _) in standins.items()})
    identities = IdentitiesFile(
        "stand-ins",
        tuple(CAIdentity(ca.key_id.hex(), who, owner(who)) for ca, who in standins.values()),
    )
    rules = readme_rules()
    results = {}
    for label, with_rules in (("without rules", []), ("with the README's rules", rules)):
        with tempfile.TemporaryDirectory() as tmp:
            results[label] = trio.run(one_run, Path(tmp), events, identities, with_rules)
    print(f"{DAYS} days, {len(events)} issuances: "
          + ", ".join(f"{n} {k}" for k, n in collections.Counter(e.kind for e in events).items())
          + f"; {len(rules)} rules from the README")  # fmt: skip
    print()
    print("| run | pages (critical) | tickets (suspicious) | expected | info |")
    print("|---|---|---|---|---|")
    for label, payloads in results.items():
        count = collections.Counter(p["severity"] for p in payloads.values())
        print(f"| {label} | {count['critical']} | {count['suspicious']} | "
              f"{count['expected']} | {count['info']} |")  # fmt: skip
    ruled = results["with the README's rules"]
    bare = results["without rules"]
    print()
    print("| day | issuance | without rules | with the rules |")
    print("|---|---|---|---|")
    for event in events:
        if event.kind == "lb":
            continue
        a, b = bare[event.issuance.serial], ruled[event.issuance.serial]
        print(f"| {event.day} | {event.kind}: {event.label} | {a['severity']} | "
              f"{b['severity']} ({b['reason']}) |")  # fmt: skip
    vendor_noise = [
        e for e in events if e.kind == "vendor"
        and ruled[e.issuance.serial]["severity"] in ("suspicious", "critical")
    ]  # fmt: skip
    missed = [
        e for e in events if e.kind == "attack"
        and ruled[e.issuance.serial]["severity"] not in ("suspicious", "critical")
    ]  # fmt: skip
    lbs = [e for e in events if e.kind == "lb" and ruled[e.issuance.serial]["severity"] != "info"]
    print()
    print(f"with the rules: {len(vendor_noise)} vendor renewals paged or opened a ticket, "
          f"{len(missed)} attacks not suspicious or critical, {len(lbs)} LB certificates "
          "not info")  # fmt: skip
    if vendor_noise or missed or lbs:
        sys.exit(1)


if __name__ == "__main__":
    main()
