"""Rules, CA identity and acknowledgements end to end: the real feed, the real receiver,
real certificates from test CAs laid in with CA_IDENTITIES_FILE, both databases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from certwatch.settings import Settings
from certwatch.settings import read as read_setting
from tests.support.certs import CA, Issuance
from tests.support.servers import FeedServer, Receiver
from tests.support.service import RunningService, run_service, wait_until, wired

WATCHED = "example.net"


@attrs.frozen
class CAs:
    """A vendor's CA and another CA, both known to certwatch; a third it does not know."""

    vendor: CA
    other: CA
    unknown: CA


@pytest.fixture
def cas() -> CAs:
    return CAs(CA("VEN R1", "Vendor Trust"), CA("OTH R1", "Other Trust"), CA("UNK", "Unheard"))


def identities_file(tmp_path: Path, cas: CAs) -> Any:
    """CA_IDENTITIES_FILE naming the vendor's and the other CA, read as certwatch reads it."""
    path = tmp_path / "cas.json"
    entries = [
        {"ski": ca.key_id.hex(), "owner": owner, "caa_domains": [domain]}
        for ca, owner, domain in [(cas.vendor, "Vendor Trust", "vendor.example"),
                                  (cas.other, "Other Trust", "other.example")]
    ]  # fmt: skip
    path.write_text(json.dumps(entries))
    return read_setting("CA_IDENTITIES_FILE", {"CA_IDENTITIES_FILE": str(path)})


def settings_for(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, cas: CAs, **overrides: Any
) -> Settings:
    return wired(tmp_path, feed, receiver, ca_identities_file=identities_file(tmp_path, cas),
                 **overrides)  # fmt: skip


async def add_rule(service: RunningService, **body: Any) -> dict[str, Any]:
    response = await service.client.post("/rules", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def decided(receiver: Receiver, feed: FeedServer, issuance: Issuance) -> dict[str, Any]:
    """Send ``issuance`` and return the webhook payload it leads to."""
    before = len(receiver.deliveries)
    await feed.send(issuance.message("go-full"))
    deliveries = await receiver.wait_for(before + 1)
    return deliveries[before].json()  # type: ignore[no-any-return]


async def test_each_rung_of_the_ladder(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, cas: CAs, backend: dict[str, Any]
) -> None:
    """expect, restrict, protect, unknown CA and ours: each decided as the contract says."""
    settings = settings_for(tmp_path, feed, receiver, cas, **backend)
    async with run_service(settings) as service:
        await service.add_domain(WATCHED)
        status = await add_rule(service, kind="expect", scope="status.example.net",
                                issuers=["Vendor.Example."], note="Statuspage")  # fmt: skip
        restrict = await add_rule(service, kind="restrict", scope="example.net",
                                  issuers=["vendor.example"])  # fmt: skip
        protect = await add_rule(service, kind="protect", scope="login.example.net",
                                 note="SSO")  # fmt: skip
        ours = cas.vendor.issue(["login.example.net"])
        pushed = await service.client.post("/certs", json={"pem": ours.final_pem()})
        assert pushed.status_code == 201, pushed.text

        vendor = await decided(receiver, feed, cas.vendor.issue(["status.example.net"]))
        stranger = await decided(receiver, feed, cas.other.issue(["www.example.net"]))
        unknown = await decided(receiver, feed, cas.unknown.issue(["www.example.net"]))
        sso = await decided(receiver, feed, cas.vendor.issue(["login.example.net"]))
        own = await decided(receiver, feed, ours)
        critical = await service.alerts(severity="critical")
        counted = await service.metric('certwatch_alerts_total{severity="critical"}')
        rules_gauge = await service.metric('certwatch_rules{kind="expect"}')

    vendor_ca = {"owner": "Vendor Trust", "caa_domains": ["vendor.example"],
                 "ski": cas.vendor.key_id.hex()}  # fmt: skip
    assert status["issuers"] == ["vendor.example"]
    assert (vendor["severity"], vendor["reason"], vendor["issuer_ca"]) == (
        "expected", "expect-rule", vendor_ca,
    )  # fmt: skip
    assert vendor["rule"] == {"id": status["id"], "kind": "expect",
                              "scope": "status.example.net", "note": "Statuspage"}  # fmt: skip
    assert (stranger["severity"], stranger["reason"]) == ("critical", "restrict-rule")
    assert stranger["rule"]["id"] == restrict["id"]
    assert stranger["issuer_ca"]["owner"] == "Other Trust"
    assert (unknown["severity"], unknown["reason"], unknown["issuer_ca"]) == (
        "suspicious", "unrecognised", None,
    )  # fmt: skip
    assert (sso["severity"], sso["reason"], sso["rule"]["id"]) == (
        "critical", "protect-rule", protect["id"],
    )  # fmt: skip
    assert (own["severity"], own["reason"], own["rule"]) == ("info", "recognised", None)
    assert all(p["caa"] is None for p in (vendor, stranger, unknown, sso, own))
    assert sorted(a["reason"] for a in critical) == ["protect-rule", "restrict-rule"]
    assert all(a["issuer_ca"] is not None and a["rule"] is not None for a in critical)
    assert (counted, rules_gauge) == (2, 1)


async def test_rules_expire(tmp_path: Path, feed: FeedServer, receiver: Receiver, cas: CAs) -> None:
    """A rule explains issuances until its expires_at, and nothing after it."""
    now = [1_900_000_000.0]
    settings = settings_for(tmp_path, feed, receiver, cas)
    async with run_service(settings, clock=lambda: now[0]) as service:
        await service.add_domain(WATCHED)
        await add_rule(service, kind="expect", scope="status.example.net",
                       issuers=["vendor.example"], expires_at=int(now[0]) + 3600)  # fmt: skip
        before = await decided(receiver, feed, cas.vendor.issue(["status.example.net"]))
        now[0] += 3600
        after = await decided(receiver, feed, cas.vendor.issue(["status.example.net"]))
        listed = (await service.client.get("/rules")).json()
    assert (before["severity"], after["severity"]) == ("expected", "suspicious")
    assert len(listed) == 1  # an expired rule is listed until deleted


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"kind": "allow", "scope": "a.example.net"}, ["kind"]),
        ({"kind": "expect", "scope": "a.example.net"}, ["issuers"]),
        ({"kind": "restrict", "scope": "a.example.net", "issuers": []}, ["issuers"]),
        ({"kind": "protect", "scope": "a.example.net", "issuers": ["x.example"]}, ["issuers"]),
        ({"kind": "expect", "scope": "a.example.net", "issuers": ["ok.example", "no way"]},
         ["issuers[1]"]),
        ({"kind": "expect", "scope": "*.example.net", "issuers": ["*.x.example"]},
         ["issuers[0]"]),
        ({"kind": "protect", "scope": "co.uk"}, ["scope"]),
        ({"kind": "protect", "scope": "localhost"}, ["scope"]),
        ({"kind": "protect", "scope": "a.example.net", "expires_at": 1000}, ["expires_at"]),
        ({"kind": "protect", "scope": "a.example.net", "note": "n" * 1001}, ["note"]),
        ({"kind": "protect", "scope": "a.example.net", "id": 5}, ["body"]),
        ({"kind": 1, "scope": ["a.example.net"]}, ["kind", "scope"]),
        ({"scope": "a.example.net"}, ["kind"]),
    ],
)  # fmt: skip
async def test_a_bad_rule_is_a_422_naming_the_field_and_stores_nothing(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, cas: CAs,
    body: dict[str, Any], fields: list[str],
) -> None:  # fmt: skip
    """Each malformed rule: 422 with the fields named; no rule stored."""
    async with run_service(settings_for(tmp_path, feed, receiver, cas)) as service:
        response = await service.client.post("/rules", json=body)
        listed = (await service.client.get("/rules")).json()
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid request body"
    assert [f["field"] for f in response.json()["fields"]] == fields
    assert listed == []


async def test_rules_are_listed_by_id_and_deleted(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, cas: CAs
) -> None:
    """GET /rules by id; DELETE answers 200 once, then 404; a deleted rule explains nothing."""
    async with run_service(settings_for(tmp_path, feed, receiver, cas)) as service:
        await service.add_domain(WATCHED)
        a = await add_rule(service, kind="expect", scope="status.example.net",
                           issuers=["pki.goog", "vendor.example", "PKI.goog"])  # fmt: skip
        b = await add_rule(service, kind="protect", scope="login.example.net")
        listed = (await service.client.get("/rules")).json()
        first = await service.client.delete(f"/rules/{a['id']}")
        again = await service.client.delete(f"/rules/{a['id']}")
        payload = await decided(receiver, feed, cas.vendor.issue(["status.example.net"]))
    assert [r["id"] for r in listed] == [a["id"], b["id"]]
    assert a["issuers"] == ["pki.goog", "vendor.example"]
    assert (a["expires_at"], b["issuers"], b["note"]) == (None, [], "")
    assert (first.status_code, first.json()) == (200, {"deleted": 1})
    assert again.status_code == 404
    assert payload["severity"] == "suspicious"


async def test_acknowledging_held_alerts_decides_them_at_once(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, cas: CAs, backend: dict[str, Any]
) -> None:
    """certificate and key: info now; issuer: expected now, and its rule explains the next."""
    settings = settings_for(tmp_path, feed, receiver, cas, suspicious_grace_s=3600, **backend)
    async with run_service(settings) as service:
        await service.add_domain(WATCHED)
        first = cas.vendor.issue(["cdn.example.net", "*.cdn.example.net"])
        keyed = cas.vendor.issue(["api.example.net"])
        vendor = cas.vendor.issue(["help.example.net"])
        ids: dict[str, int] = {}
        for name, issuance in (("certificate", first), ("key", keyed), ("issuer", vendor)):
            await feed.send(issuance.message("go-full"))

            async def held(n: int = len(ids) + 1) -> bool:
                return len(await service.alerts(status="held")) == n

            await wait_until(held)
            ids[name] = (await service.alerts(status="held"))[0]["id"]
        answers = {}
        for scope, alert_id in ids.items():
            response = await service.client.post(
                f"/alerts/{alert_id}/acknowledge", json={"scope": scope, "note": f"ok {scope}"}
            )
            assert response.status_code == 200, response.text
            answers[scope] = response.json()
        sent = [d.json() for d in await receiver.wait_for(3)]
        stored = {a["id"]: a for a in await service.alerts()}
        keys = (await service.client.get("/keys")).json()
        held_now = await service.metric("certwatch_alerts_held")
    assert held_now == 0
    by_scope = {p["recognised_by"]["ref"]: p for p in sent}
    assert {s: (p["severity"], p["reason"]) for s, p in by_scope.items()} == {
        "certificate": ("info", "recognised"),
        "key": ("info", "recognised"),
        "issuer": ("expected", "expect-rule"),
    }
    assert all(p["event"] == "alert" and p["recognised_by"]["evidence"] == "acknowledged"
               for p in sent)  # fmt: skip
    assert answers["key"]["keys"] == [keyed.spki_sha256()]
    assert answers["key"]["rules"] == []
    assert [k["names"] for k in keys] == [["api.example.net"]]
    assert len(answers["issuer"]["rules"]) == 1
    assert by_scope["issuer"]["rule"]["id"] == answers["issuer"]["rules"][0]
    for scope, alert_id in ids.items():
        assert (stored[alert_id]["acknowledged_scope"], stored[alert_id]["acknowledged_note"]) == (
            scope, f"ok {scope}",
        )  # fmt: skip


async def test_acknowledging_a_sent_alert_resolves_it_and_its_rule_applies_next(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, cas: CAs, backend: dict[str, Any]
) -> None:
    """Acknowledged by issuer after it was sent: resolved (expected); the next is expected."""
    settings = settings_for(tmp_path, feed, receiver, cas, **backend)
    async with run_service(settings) as service:
        await service.add_domain(WATCHED)
        first = await decided(receiver, feed, cas.vendor.issue(["*.help.example.net"]))
        response = await service.client.post(
            f"/alerts/{first['alert_id']}/acknowledge", json={"scope": "issuer", "note": "Zendesk"}
        )
        [_, follow_up] = await receiver.wait_for(2)
        second = await service.client.post(
            f"/alerts/{first['alert_id']}/acknowledge", json={"scope": "certificate"}
        )
        next_one = await decided(receiver, feed, cas.vendor.issue(["www.help.example.net"]))
        rules = (await service.client.get("/rules")).json()
    assert first["severity"] == "suspicious"
    assert response.status_code == 200, response.text
    [rule_id] = response.json()["rules"]
    assert rules == [{"id": rule_id, "kind": "expect", "scope": "help.example.net",
                      "issuers": ["vendor.example"], "note": "Zendesk",
                      "created_at": rules[0]["created_at"], "expires_at": None}]  # fmt: skip
    event = follow_up.json()
    assert (event["event"], event["alert_id"], event["severity"], event["reason"]) == (
        "resolved", first["alert_id"], "expected", "expect-rule",
    )  # fmt: skip
    assert event["resolved_by"] == {"evidence": "acknowledged", "source": "Zendesk",
                                    "ref": "issuer"}  # fmt: skip
    assert second.status_code == 409
    assert "acknowledged before" in second.json()["error"]
    assert (next_one["severity"], next_one["rule"]["id"]) == ("expected", rule_id)


async def test_acknowledgements_that_cannot_be_are_refused(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, cas: CAs
) -> None:
    """Unknown id 404; bad scope 422; key without the DER, issuer unknown, info: 422/409."""
    async with run_service(settings_for(tmp_path, feed, receiver, cas)) as service:
        await service.add_domain(WATCHED)
        tiled = cas.vendor.issue(["a.example.net"])
        before = len(receiver.deliveries)
        await feed.send(tiled.message("go-tiled"))  # a precert without its DER
        no_der = (await receiver.wait_for(before + 1))[before].json()
        unknown = await decided(receiver, feed, cas.unknown.issue(["b.example.net"]))
        ours = cas.vendor.issue(["c.example.net"])
        await service.client.post("/certs", json={"pem": ours.final_pem()})
        info = await decided(receiver, feed, ours)

        async def ack(alert_id: int, body: Any) -> Any:
            return await service.client.post(f"/alerts/{alert_id}/acknowledge", json=body)

        answers = {
            "missing": await ack(99999, {"scope": "certificate"}),
            "bad scope": await ack(no_der["alert_id"], {"scope": "everything"}),
            "not an object": await ack(no_der["alert_id"], ["certificate"]),
            "extra field": await ack(no_der["alert_id"], {"scope": "key", "force": True}),
            "no key seen": await ack(no_der["alert_id"], {"scope": "key"}),
            "unknown CA": await ack(unknown["alert_id"], {"scope": "issuer"}),
            "info already": await ack(info["alert_id"], {"scope": "certificate"}),
        }
        rules = (await service.client.get("/rules")).json()
        keys = (await service.client.get("/keys")).json()
        still = {a["id"]: a["acknowledged_at"] for a in await service.alerts()}
    assert {k: r.status_code for k, r in answers.items()} == {
        "missing": 404, "bad scope": 422, "not an object": 400, "extra field": 422,
        "no key seen": 422, "unknown CA": 422, "info already": 409,
    }  # fmt: skip
    assert answers["bad scope"].json()["fields"][0]["field"] == "scope"
    assert answers["no key seen"].json()["fields"][0]["field"] == "scope"
    assert "DER" in answers["no key seen"].json()["fields"][0]["problem"]
    assert "unknown" in answers["unknown CA"].json()["fields"][0]["problem"]
    assert (rules, keys) == ([], [])
    assert set(still.values()) == {None}


async def test_replicas_agree_on_a_rule_added_to_one_of_them(
    tmp_path: Path, nursery: trio.Nursery, receiver: Receiver, cas: CAs, pg_url: str
) -> None:
    """A rule added through one replica decides the next issuance another replica sees."""
    feeds = [await FeedServer().start(nursery) for _ in range(2)]
    one, other = (settings_for(tmp_path, f, receiver, cas, database_url=pg_url) for f in feeds)
    async with run_service(one) as a, run_service(other) as b:
        await a.add_domain(WATCHED)
        await add_rule(a, kind="protect", scope="pay.example.net", note="payments")

        async def b_has_it() -> bool:
            return await b.metric('certwatch_rules{kind="protect"}') == 1

        await wait_until(b_has_it, within=5)
        payload = await decided(receiver, feeds[1], cas.vendor.issue(["pay.example.net"]))
    assert (payload["severity"], payload["reason"]) == ("critical", "protect-rule")
