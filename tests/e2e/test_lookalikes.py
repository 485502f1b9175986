"""The lookalike watch end to end: brands through the API, certificates through the real
feed, alerts at the real receiver, on both databases."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.certs import CA
from tests.support.servers import FeedServer, Receiver
from tests.support.service import RunningService, run_service, wait_until, wired

SECRET = "a-webhook-secret-of-some-length"


async def add_brand(service: RunningService, **body: Any) -> dict[str, Any]:
    response = await service.client.post("/brands", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


class TestBrandsApi:
    async def test_brands_are_added_updated_listed_and_deleted(self, tmp_path: Path) -> None:
        """201 normalised with its label; 200 on update; sorted; 200 then 404 on delete."""
        async with run_service(wired(tmp_path, _Url(), _Url())) as service:
            first = await service.client.post(
                "/brands", json={"domain": "Ethereum.ORG.", "allow": ["Ethereum.Foundation"]}
            )
            again = await service.client.post(
                "/brands", json={"domain": "ethereum.org", "note": "ours", "allow": []}
            )
            await add_brand(service, domain="apple.com")
            listed = (await service.client.get("/brands")).json()
            deleted = await service.client.delete("/brands/Apple.com")
            missing = await service.client.delete("/brands/apple.com")
            health = (await service.client.get("/healthz")).json()
        assert first.status_code == 201
        assert first.json() | {"added_at": 0} == {
            "domain": "ethereum.org", "label": "ethereum", "note": "",
            "allow": ["ethereum.foundation"], "added_at": 0,
        }  # fmt: skip
        assert again.status_code == 200
        assert (again.json()["note"], again.json()["allow"]) == ("ours", [])
        assert again.json()["added_at"] == first.json()["added_at"]
        assert [b["domain"] for b in listed] == ["apple.com", "ethereum.org"]
        assert (deleted.status_code, deleted.json()) == (200, {"deleted": 1})
        assert missing.status_code == 404
        assert health["brands"] == 1

    @pytest.mark.parametrize(
        ("body", "fields"),
        [
            ({"domain": "co.uk"}, ["domain"]),
            ({"domain": "www.ethereum.org"}, ["domain"]),
            ({"domain": ""}, ["domain"]),
            ({"domain": "not valid!.org"}, ["domain"]),
            ({"domain": "ethereum.org", "allow": ["ok.example", "bad name"]}, ["allow[1]"]),
            ({"domain": "ethereum.org", "note": "n" * 1001}, ["note"]),
            ({"domain": "ethereum.org", "extra": 1}, ["body"]),
            ({"domain": 5}, ["domain"]),
        ],
    )
    async def test_a_bad_brand_is_a_422_naming_the_field(
        self, tmp_path: Path, body: dict[str, Any], fields: list[str]
    ) -> None:
        """Public suffix, subdomain, empty or invalid name, bad allow or note: 422; none stored."""
        async with run_service(wired(tmp_path, _Url(), _Url())) as service:
            response = await service.client.post("/brands", json=body)
            listed = (await service.client.get("/brands")).json()
        assert response.status_code == 422, response.text
        assert [f["field"] for f in response.json()["fields"]] == fields
        assert listed == []


class _Url:
    """A peer nobody listens on (these tests send nothing)."""

    url = "http://127.0.0.1:9/"


async def test_a_lookalike_certificate_reaches_the_webhook_signed_once(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA, backend: dict[str, Any]
) -> None:
    """One lookalike alert per issuance, signed, with the lookalikes list; counted."""
    settings = wired(tmp_path, feed, receiver, webhook_secret=SECRET, **backend)
    async with run_service(settings) as service:
        await add_brand(service, domain="ethereum.org", allow=["ethereum.foundation"])
        phish = ca.issue(["ethereum-wallet.net", "www.ethereum-wallet.net", "ethereum.foundation"])
        for log in ("https://ct.example/a", "https://ct.example/b"):
            await feed.send(phish.message("go-full", log_url=log))
        await feed.send(phish.message("go-full", which="final"))
        unrelated = ca.issue(["www.example.com"])
        await feed.send(unrelated.message())
        [delivery] = await receiver.wait_for(1)
        alerts = await service.alerts(severity="lookalike")
        counted = await service.metric('certwatch_alerts_total{severity="lookalike"}')
        hits = await service.metric('certwatch_lookalike_hits_total{technique="combosquat"}')
    payload = delivery.json()
    assert (payload["severity"], payload["reason"], payload["event"]) == (
        "lookalike", "lookalike", "alert",
    )  # fmt: skip
    assert payload["matched_entries"] == []
    assert payload["matched_sans"] == ["ethereum-wallet.net", "www.ethereum-wallet.net"]
    assert [(h["technique"], h["name"], h["domain"]) for h in payload["lookalikes"]] == [
        ("combosquat", "ethereum-wallet.net", "ethereum-wallet.net"),
        ("combosquat", "www.ethereum-wallet.net", "ethereum-wallet.net"),
    ]
    assert all(
        h["brand"] == "ethereum.org" and 0 < h["score"] <= 100 for h in payload["lookalikes"]
    )
    signed = f"{delivery.headers['webhook-id']}.{delivery.headers['webhook-timestamp']}.".encode()
    expected = hmac.new(SECRET.encode(), signed + delivery.body, hashlib.sha256).digest()
    assert delivery.headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
    assert len(alerts) == 1
    assert alerts[0]["lookalikes"][0]["technique"] == "combosquat"
    assert counted == 1
    assert hits >= 2


async def test_a_watched_certificate_is_decided_as_before(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A certificate with a watched name and a lookalike name: one watch alert only."""
    async with run_service(wired(tmp_path, feed, receiver)) as service:
        await service.add_domain("example.net")
        await add_brand(service, domain="ethereum.org")
        await feed.send(ca.issue(["www.example.net", "ethereum-login.com"]).message())
        [delivery] = await receiver.wait_for(1)
        lookalikes = await service.alerts(severity="lookalike")
    assert (delivery.json()["severity"], delivery.json()["lookalikes"]) == ("suspicious", [])
    assert lookalikes == []


async def test_replicas_agree_on_a_brand_added_to_one_of_them(
    tmp_path: Path, nursery: trio.Nursery, receiver: Receiver, ca: CA, pg_url: str
) -> None:
    """A brand added through one replica: the other alerts on its lookalikes."""
    feeds = [await FeedServer().start(nursery) for _ in range(2)]
    one, other = (wired(tmp_path, f, receiver, database_url=pg_url) for f in feeds)
    async with run_service(one) as a, run_service(other) as b:
        await add_brand(a, domain="paypal.com")

        async def b_has_it() -> bool:
            return await b.metric("certwatch_brands") == 1

        await wait_until(b_has_it, within=5)
        await feeds[1].send(ca.issue(["paypa1.com"]).message())
        [delivery] = await receiver.wait_for(1)
    [hit] = delivery.json()["lookalikes"]
    assert (hit["brand"], hit["technique"]) == ("paypal.com", "homoglyph")
