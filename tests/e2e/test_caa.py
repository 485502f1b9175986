"""CAA end to end: the real service asking a real Unbound, which asks a real NSD serving the
zones written here (the watched zone, a vendor's zone with its own CAA, a CNAME between
them); certificates from test CAs laid in with CA_IDENTITIES_FILE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
import trio

from certwatch.settings import Settings
from certwatch.settings import read as read_setting
from tests.support.certs import CA, Issuance
from tests.support.dns import DnsResponder, Records
from tests.support.dnsservers import DnsServers, dns_servers_or_skip
from tests.support.servers import FeedServer, Receiver
from tests.support.service import RunningService, run_service, wait_until, wired

WATCHED = "example.test"


def zone(origin: str, serial: int, *records: str) -> str:
    return "\n".join([
        f"$ORIGIN {origin}.", "$TTL 0",
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. {serial} 3600 600 86400 0",
        f"@ IN NS ns.{origin}.", "ns IN A 127.0.0.1", *records, "",
    ])  # fmt: skip


def watched_zone(serial: int = 1, apex: str = '@ IN CAA 0 issue "vendor.example"') -> str:
    return zone(WATCHED, serial, apex, '@ IN CAA 0 issuewild ";"',
                "help IN CNAME x.saas.test.", 'shop IN CAA 128 tbs "Unknown"',
                "loop1 IN CNAME loop2", "loop2 IN CNAME loop1")  # fmt: skip


SAAS = zone("saas.test", 1, 'x IN CAA 0 issue "other.example"')
PLAIN = zone("plain.test", 1, "www IN A 127.0.0.1")
"""A zone without CAA: no name up to the root has any."""


@pytest.fixture
def dns_servers() -> Iterator[DnsServers]:
    # The top-level domain too, as the root's servers would answer it: no CAA there.
    zones = {WATCHED: watched_zone(), "saas.test": SAAS, "plain.test": PLAIN,
             "test": zone("test", 1)}  # fmt: skip
    with dns_servers_or_skip(zones) as servers:
        yield servers


@pytest.fixture
def vendor() -> CA:
    return CA("VEN R1", "Vendor Trust")


@pytest.fixture
def other() -> CA:
    return CA("OTH R1", "Other Trust")


def caa_settings(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, cas: list[CA], resolver: str,
    **overrides: Any,
) -> Settings:  # fmt: skip
    """CAA on, asking ``resolver``, forbidding counted as stable at once (CAA_STABLE_S=0:
    an RRset seen before the issuance is enough)."""
    path = tmp_path / "cas.json"
    path.write_text(json.dumps([
        {"ski": ca.key_id.hex(), "owner": ca.org,
         "caa_domains": [f"{ca.org.split()[0].lower()}.example"]}
        for ca in cas
    ]))  # fmt: skip
    env = {"CA_IDENTITIES_FILE": str(path), "CAA_RESOLVER": resolver}
    values = {
        "ca_identities_file": read_setting("CA_IDENTITIES_FILE", env),
        "caa_check": True,
        "caa_resolver": read_setting("CAA_RESOLVER", env),
        "caa_stable_s": 0.0,
        "caa_timeout_s": 3.0,
    }
    return wired(tmp_path, feed, receiver, **{**values, **overrides})


async def looked_up(service: RunningService, records: int) -> None:
    """Wait until certwatch has seen ``records`` answers with CAA records in all."""

    async def enough() -> bool:
        return await service.metric('certwatch_caa_lookups_total{result="records"}') >= records

    await wait_until(enough, within=10)


async def decided(receiver: Receiver, feed: FeedServer, issuance: Issuance) -> dict[str, Any]:
    before = len(receiver.deliveries)
    await feed.send(issuance.message("go-full"))
    return (await receiver.wait_for(before + 1))[before].json()  # type: ignore[no-any-return]


async def test_a_stable_caa_forbidding_the_ca_pages_with_the_evidence(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, dns_servers: DnsServers,
    vendor: CA, other: CA,
) -> None:  # fmt: skip
    """Other Trust issues for www while CAA allows only Vendor Trust: critical, evidence."""
    settings = caa_settings(tmp_path, feed, receiver, [vendor, other], dns_servers.resolver)
    async with run_service(settings) as service:
        await service.add_domain(WATCHED)
        await looked_up(service, 1)  # the entry's CAA, looked up when it was added
        forbidden = await decided(receiver, feed, other.issue([f"www.{WATCHED}"]))
        permitted = await decided(receiver, feed, vendor.issue([f"www.{WATCHED}"]))
        wildcard = await decided(receiver, feed, vendor.issue([f"*.{WATCHED}"]))
        critical = await service.alerts(severity="critical")
        errors = await service.metric('certwatch_caa_lookups_total{result="error"}')
    assert (forbidden["severity"], forbidden["reason"]) == ("critical", "caa-forbidden")
    caa = forbidden["caa"]
    assert (caa["verdict"], caa["name"], caa["owner"]) == ("forbidden", f"www.{WATCHED}", WATCHED)
    assert caa["records"] == ['0 issue "vendor.example"', '0 issuewild ";"']
    assert caa["first_seen"] <= forbidden["seen_at"]
    assert forbidden["issuer_ca"]["owner"] == "Other Trust"
    assert (permitted["severity"], permitted["caa"]["verdict"]) == ("suspicious", "permitted")
    # issuewild ";" forbids every CA for a wildcard, Vendor Trust included.
    assert (wildcard["severity"], wildcard["caa"]["verdict"]) == ("critical", "forbidden")
    assert wildcard["caa"]["name"] == f"*.{WATCHED}"
    assert [a["caa"]["verdict"] for a in critical] == ["forbidden", "forbidden"]
    assert errors == 0


async def test_a_cname_takes_its_targets_caa_and_a_new_rrset_is_only_changed(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, dns_servers: DnsServers,
    vendor: CA, other: CA,
) -> None:  # fmt: skip
    """A CNAME's target's CAA decides; first seen at the decision: changed; again: forbidden."""
    settings = caa_settings(tmp_path, feed, receiver, [vendor, other], dns_servers.resolver)
    async with run_service(settings) as service:
        await service.add_domain(WATCHED)
        first = await decided(receiver, feed, vendor.issue([f"help.{WATCHED}"]))
        allowed = await decided(receiver, feed, other.issue([f"help.{WATCHED}"]))
        again = await decided(receiver, feed, vendor.issue([f"help.{WATCHED}"]))
        critical_flag = await decided(receiver, feed, vendor.issue([f"shop.{WATCHED}"]))
    assert (first["severity"], first["caa"]["verdict"]) == ("suspicious", "changed")
    assert (first["caa"]["owner"], first["caa"]["records"]) == (
        "x.saas.test", ['0 issue "other.example"'],
    )  # fmt: skip
    assert allowed["caa"]["verdict"] == "permitted"
    assert (again["severity"], again["caa"]["verdict"]) == ("critical", "forbidden")
    # shop has an unknown property with the critical flag: every CA is forbidden there.
    assert critical_flag["caa"]["verdict"] in ("changed", "forbidden")
    assert critical_flag["caa"]["records"] == ['128 tbs "Unknown"']


async def test_caa_changed_around_the_issuance_never_pages(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, dns_servers: DnsServers,
    vendor: CA, other: CA,
) -> None:  # fmt: skip
    """The zone is rewritten to forbid Vendor Trust just before its issuance: changed."""
    settings = caa_settings(tmp_path, feed, receiver, [vendor, other], dns_servers.resolver,
                            caa_stable_s=3600.0)  # fmt: skip
    async with run_service(settings) as service:
        await service.add_domain(WATCHED)
        await looked_up(service, 1)
        dns_servers.rewrite(WATCHED, watched_zone(2, '@ IN CAA 0 issue "other.example"'))
        await serial_is(dns_servers, 2)
        payload = await decided(receiver, feed, vendor.issue([f"www.{WATCHED}"]))
    assert (payload["severity"], payload["reason"]) == ("suspicious", "unrecognised")
    assert payload["caa"]["verdict"] == "changed"
    assert payload["caa"]["records"] == ['0 issue "other.example"', '0 issuewild ";"']


async def serial_is(servers: DnsServers, serial: int) -> None:
    """Wait until NSD serves the rewritten zone (its SOA serial)."""

    async def reloaded() -> bool:
        query = dns.message.make_query(WATCHED, "SOA")
        answer = await trio.to_thread.run_sync(
            lambda: dns.query.udp(query, "127.0.0.1", port=servers.nsd_port, timeout=1)
        )
        return bool(answer.answer) and answer.answer[0][0].serial == serial

    await wait_until(reloaded, within=10)


async def test_a_cname_loop_is_unknown_and_no_caa_anywhere_is_none(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, dns_servers: DnsServers,
    vendor: CA, other: CA,
) -> None:  # fmt: skip
    """A CNAME loop (the resolver's SERVFAIL) is unknown; a zone without CAA is none."""
    settings = caa_settings(tmp_path, feed, receiver, [vendor, other], dns_servers.resolver)
    async with run_service(settings) as service:
        await service.add_domain(WATCHED)
        await service.add_domain("plain.test")
        with trio.fail_after(10):
            loop = await decided(receiver, feed, other.issue([f"loop1.{WATCHED}"]))
        plain = await decided(receiver, feed, other.issue(["www.plain.test"]))
    assert (loop["severity"], loop["caa"]["verdict"]) == ("suspicious", "unknown")
    assert (plain["severity"], plain["caa"]) == (
        "suspicious",
        {"verdict": "none", "name": "www.plain.test", "owner": None, "records": [],
         "first_seen": None},
    )  # fmt: skip


async def test_a_failing_resolver_is_unknown_and_decides_on_time(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, nursery: trio.Nursery,
    vendor: CA, other: CA,
) -> None:  # fmt: skip
    """A resolver that never answers: unknown within CAA_TIMEOUT_S, the alert still sent."""
    silent = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    await silent.bind(("127.0.0.1", 0))
    with silent:
        port = silent.getsockname()[1]
        settings = caa_settings(tmp_path, feed, receiver, [vendor, other], f"127.0.0.1:{port}",
                                caa_timeout_s=0.5)  # fmt: skip
        async with run_service(settings) as service:
            await service.add_domain(WATCHED)
            with trio.fail_after(10):
                payload = await decided(receiver, feed, other.issue([f"www.{WATCHED}"]))
    assert (payload["severity"], payload["caa"]["verdict"]) == ("suspicious", "unknown")
    assert payload["caa"]["name"] == f"www.{WATCHED}"


async def test_caa_check_0_sends_no_query(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, nursery: trio.Nursery,
    vendor: CA, other: CA,
) -> None:  # fmt: skip
    """CAA_CHECK=0: no DNS query at all, even with a resolver set; caa is null."""
    responder = await DnsResponder({WATCHED: Records(('0 issue "vendor.example"',))}).start(nursery)
    resolver = f"127.0.0.1:{responder.port}"
    settings = caa_settings(tmp_path, feed, receiver, [vendor, other], resolver,
                            caa_check=False)  # fmt: skip
    async with run_service(settings) as service:
        await service.add_domain(WATCHED)
        payload = await decided(receiver, feed, other.issue([f"www.{WATCHED}"]))
        counted = await service.metric('certwatch_caa_lookups_total{result="records"}')
    assert (payload["severity"], payload["caa"]) == ("suspicious", None)
    assert responder.queries == []
    assert counted == 0
