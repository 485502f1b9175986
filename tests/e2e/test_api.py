"""The HTTP API on a real Hypercorn: every route, the auth rules, and bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support.certs import CA
from tests.support.servers import Receiver
from tests.support.service import TOKEN, RunningService, make_settings, run_service

PROTECTED = [
    ("GET", "/domains"),
    ("POST", "/domains"),
    ("DELETE", "/domains/example.org"),
    ("GET", "/certs"),
    ("POST", "/certs"),
    ("DELETE", "/certs/" + "ab" * 20),
    ("GET", "/keys"),
    ("POST", "/keys"),
    ("DELETE", "/keys/" + "ab" * 32),
    ("GET", "/alerts"),
    ("POST", "/alerts/1/retry"),
    ("POST", "/alerts/retry-failed"),
]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[RunningService]:
    async with run_service(make_settings(tmp_path)) as running:
        yield running


def fields(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert isinstance(body["error"], str)
    return {f["field"]: f["problem"] for f in body.get("fields", [])}


class TestAuth:
    @pytest.mark.parametrize(("method", "path"), PROTECTED)
    async def test_protected_routes_need_the_token(
        self, service: RunningService, method: str, path: str
    ) -> None:
        """No header: 401 with a Bearer challenge; a wrong token: 403; both JSON."""
        async with httpx.AsyncClient(base_url=service.url) as anonymous:
            missing = await anonymous.request(method, path)
            wrong = await anonymous.request(
                method, path, headers={"Authorization": "Bearer not-the-token"}
            )
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "error" in missing.json()
        assert wrong.status_code == 403
        assert wrong.json() == {"error": "invalid token"}

    @pytest.mark.parametrize(
        "header", ["Token " + TOKEN, "Bearer", TOKEN, "Basic dXNlcjpwYXNz", "Bearer: " + TOKEN]
    )
    async def test_malformed_header_is_401(self, service: RunningService, header: str) -> None:
        """A header that is not `Bearer <token>` is 401, not 403."""
        async with httpx.AsyncClient(base_url=service.url) as client:
            response = await client.get("/domains", headers={"Authorization": header})
        assert response.status_code == 401

    @pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
    async def test_scheme_is_case_insensitive(self, service: RunningService, scheme: str) -> None:
        """`bearer`, `BEARER` and `Bearer` are the same scheme."""
        async with httpx.AsyncClient(base_url=service.url) as client:
            response = await client.get("/domains", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert response.status_code == 200

    async def test_health_and_metrics_are_anonymous(self, service: RunningService) -> None:
        """/healthz and /metrics need no token."""
        async with httpx.AsyncClient(base_url=service.url) as client:
            health = await client.get("/healthz")
            metrics = await client.get("/metrics")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok"
        assert body["feed"]["connected"] is False
        assert {"last_event_at", "reconnects", "messages", "dropped"} <= body["feed"].keys()
        assert body["webhook"] == "observer mode"
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "certwatch_ws_connected 0.0" in metrics.text


class TestDomains:
    async def test_add_list_update_delete(self, service: RunningService) -> None:
        """POST normalises and upserts, GET lists sorted, DELETE normalises its path value."""
        client = service.client
        created = await client.post("/domains", json={"value": " Example.ORG. ", "note": "prod"})
        assert created.status_code == 201
        assert created.json()["value"] == "example.org"
        await client.post("/domains", json={"value": "*.bücher.example"})
        again = await client.post("/domains", json={"value": "example.org", "note": "updated"})
        assert again.status_code == 200  # an update: nothing was created
        assert again.json() == {"value": "example.org", "created": False}
        listed = (await client.get("/domains")).json()
        assert [(d["value"], d["note"]) for d in listed] == [
            ("example.org", "updated"),
            ("xn--bcher-kva.example", ""),
        ]
        assert all(isinstance(d["added_at"], float) for d in listed)
        deleted = await client.delete("/domains/EXAMPLE.org.")
        assert deleted.status_code == 200
        assert deleted.json() == {"deleted": 1}
        assert (await client.delete("/domains/example.org")).status_code == 404
        assert (await client.delete("/domains/bücher.example")).json() == {"deleted": 1}
        assert (await client.get("/domains")).json() == []

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"value": ""}, "value"),
            ({"value": "org"}, "value"),
            ({"value": "a..b.org"}, "value"),
            ({"value": "a.*.example.org"}, "value"),
            ({"value": "exa mple.org"}, "value"),
            ({"value": "a" * 64 + ".org"}, "value"),
            ({"value": 5}, "value"),
            ({"value": ["example.org"]}, "value"),
            ({"value": None}, "value"),
            ({}, "value"),
            ({"value": "example.org", "note": 7}, "note"),
            ({"value": "example.org", "extra": 1}, "body"),
            ({"value": "co.uk"}, "value"),
            ({"value": "*.com"}, "value"),
            ({"value": "github.io"}, "value"),
            ({"value": "co.uk", "allow_private_suffix": True}, "value"),
            ({"value": "example.org", "allow_private_suffix": "yes"}, "allow_private_suffix"),
        ],
    )
    async def test_bad_values_are_422_naming_the_field(
        self, service: RunningService, body: dict[str, Any], field: str
    ) -> None:
        """Invalid entries and wrong types are 422 naming the field; nothing is stored."""
        response = await service.client.post("/domains", json=body)
        assert response.status_code == 422
        assert field in fields(response)
        assert (await service.client.get("/domains")).json() == []

    async def test_public_suffixes(self, service: RunningService) -> None:
        """A registry's suffix is refused, a company's needs allow_private_suffix."""
        # Domains registered under either are fine.
        refused = await service.client.post("/domains", json={"value": "co.uk"})
        assert "ICANN section" in fields(refused)["value"]
        unconfirmed = await service.client.post("/domains", json={"value": "github.io"})
        assert "allow_private_suffix" in fields(unconfirmed)["value"]
        for body in (
            {"value": "github.io", "allow_private_suffix": True},
            {"value": "example.co.uk"},
            {"value": "my-project.github.io"},
        ):
            response = await service.client.post("/domains", json=body)
            assert response.status_code == 201, response.text
        listed = [d["value"] for d in (await service.client.get("/domains")).json()]
        assert listed == ["example.co.uk", "github.io", "my-project.github.io"]

    @pytest.mark.parametrize(
        ("content", "content_type", "status"),
        [
            (b"", "application/json", 400),
            (b"not json", "application/json", 400),
            (b"[1, 2]", "application/json", 400),
            (b'"example.org"', "application/json", 400),
            (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
            (b'{"value": "\xff\xfe.org"}', "application/json", 400),
            (b'{"value": "example.org"}', "application/x-www-form-urlencoded", 415),
            (b'{"value": "example.org"}', "text/html", 415),
        ],
    )
    async def test_unusable_bodies_get_a_clear_4xx(
        self, service: RunningService, content: bytes, content_type: str, status: int
    ) -> None:
        """Not JSON, not an object, too deep, invalid UTF-8, wrong type or too big: 4xx JSON."""
        response = await service.client.post(
            "/domains", content=content, headers={"content-type": content_type}
        )
        assert response.status_code == status
        assert isinstance(response.json()["error"], str)
        assert (await service.client.get("/domains")).json() == []

    @pytest.mark.parametrize("framing", ["content-length", "chunked"])
    async def test_bodies_over_1_mib_are_413_and_close_the_connection(
        self, service: RunningService, framing: str
    ) -> None:
        """A body over the cap is refused with 413 JSON telling the client to close."""
        host, port = service.url.removeprefix("http://").rsplit(":", 1)
        body = b'{"value": "' + b"a" * (1024 * 1024) + b'.org"}'
        head = (
            f"POST /domains HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        if framing == "content-length":
            request = head + f"Content-Length: {len(body)}\r\n\r\n".encode()
        else:
            chunk = body[: 1024 * 1024 + 100]
            request = head + b"Transfer-Encoding: chunked\r\n\r\n"
            request += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request)
            received = b""
            with trio.fail_after(10):
                while b"}" not in received:  # the JSON error body is complete
                    received += await stream.receive_some(65536)
        head_text, _, payload = received.partition(b"\r\n\r\n")
        assert head_text.startswith(b"HTTP/1.1 413")
        assert b"connection: close" in head_text.lower()
        assert "error" in json.loads(payload)
        assert (await service.client.get("/domains")).json() == []

    async def test_bad_path_values(self, service: RunningService) -> None:
        """Path values that are not hostnames are 422; slashes and encodings are handled."""
        for path in [
            "/domains/org",
            "/domains/a%2Fb.example.org",
            "/domains/a/b.org",
            "/domains/%00",
        ]:
            response = await service.client.delete(path)
            assert response.status_code == 422, path
            assert "value" in fields(response)


class TestCerts:
    async def test_json_push_is_an_idempotent_upsert(self, service: RunningService, ca: CA) -> None:
        """The JSON push stores the cert keyed on its normalised SHA-1; re-POSTing is safe."""
        push = ca.issue(["a.example.org", "*.a.example.org"]).push("lb:colo-lb-0")
        first = await service.client.post("/certs", json=push)
        second = await service.client.post("/certs", json={**push, "source": "lb:colo-lb-1"})
        assert (first.status_code, second.status_code) == (201, 201)
        (row,) = (await service.client.get("/certs")).json()
        assert row["fingerprint_sha1"] == push["fingerprint"].replace(":", "").lower()
        assert row["serial"] == push["serial"].lower()
        assert row["sans"] == ["*.a.example.org", "a.example.org"]
        assert (row["not_before"], row["not_after"]) == (push["not_before"], push["not_after"])
        assert row["source"] == "lb:colo-lb-1"
        assert isinstance(row["added_at"], float)
        assert row["matchable_by"] == ["fingerprint", "serial_and_names"]

    async def test_a_pem_push_stores_the_names_as_a_json_push_does(
        self, service: RunningService, ca: CA
    ) -> None:
        """The SANs of a PEM push are sorted and unique, like those of a JSON push."""
        issuance = ca.issue(["www.example.org", "api.example.org", "*.api.example.org"])
        pem = await service.client.post(
            "/certs",
            content=issuance.final_pem(),
            headers={"content-type": "application/x-pem-file"},
        )
        json_push = await service.client.post("/certs", json=issuance.push())
        expected = ["*.api.example.org", "api.example.org", "www.example.org"]
        assert pem.json()["sans"] == json_push.json()["sans"] == expected

    async def test_a_long_source_is_refused_in_either_form(
        self, service: RunningService, ca: CA
    ) -> None:
        """A source over 200 characters is a 422 naming `source`, pushed as JSON or as PEM."""
        issuance = ca.issue(["a.example.org"])
        long = "lb:" + "x" * 198
        as_json = await service.client.post("/certs", json={**issuance.push(), "source": long})
        as_pem = await service.client.post(
            "/certs",
            params={"source": long},
            content=issuance.final_pem(),
            headers={"content-type": "application/x-pem-file"},
        )
        for response in (as_json, as_pem):
            assert response.status_code == 422
            assert fields(response) == {"source": "must be at most 200 characters"}
        assert (await service.client.get("/certs")).json() == []

    async def test_optional_fields(self, service: RunningService) -> None:
        """Serial and source are optional; a fingerprint without colons in any case is fine."""
        push = {
            "fingerprint": "AB" * 20,
            "sans": ["x.example.org"],
            "not_before": 1,
            "not_after": 2,
        }
        assert (await service.client.post("/certs", json=push)).status_code == 201
        (row,) = (await service.client.get("/certs")).json()
        assert (row["serial"], row["source"]) == (None, "")

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"fingerprint": "abc"}, "fingerprint"),
            ({"fingerprint": None}, "fingerprint"),
            ({"sans": []}, "sans"),
            ({"sans": "a.example.org"}, "sans"),
            ({"sans": ["a.example.org", 5]}, "sans[1]"),
            ({"sans": ["not a name"]}, "sans[0]"),
            ({"not_before": 10, "not_after": 5}, "not_after"),
            ({"not_before": True}, "not_before"),
            ({"not_before": 1.5}, "not_before"),
            ({"not_before": "1"}, "not_before"),
            ({"not_before": -1}, "not_before"),
            ({"not_after": 10**20}, "not_after"),
            ({"serial": "xyz"}, "serial"),
            ({"serial": 1234}, "serial"),
            ({"source": ["lb"]}, "source"),
            ({"unknown": 1}, "body"),
        ],
    )
    async def test_bad_pushes_are_422_naming_the_field(
        self, service: RunningService, ca: CA, change: dict[str, Any], field: str
    ) -> None:
        """Each invalid field is named in a 422; nothing is stored."""
        push = {**ca.issue(["a.example.org"]).push(), **change}
        response = await service.client.post("/certs", json=push)
        assert response.status_code == 422, response.text
        assert field in fields(response)
        assert (await service.client.get("/certs")).json() == []

    async def test_list_paging_and_limits(self, service: RunningService, ca: CA) -> None:
        """limit and offset page through rows; out-of-range values are 422 naming the field."""
        for _ in range(3):
            await service.client.post("/certs", json=ca.issue(["a.example.org"]).push())
        assert len((await service.client.get("/certs", params={"limit": 2})).json()) == 2
        page = await service.client.get("/certs", params={"limit": 2, "offset": 2})
        assert len(page.json()) == 1
        cases: list[tuple[dict[str, Any], str]] = [
            ({"limit": 0}, "limit"),
            ({"limit": 1001}, "limit"),
            ({"limit": "ten"}, "limit"),
            ({"offset": -1}, "offset"),
            ({"limit": "1.5"}, "limit"),
        ]
        for params, field in cases:
            response = await service.client.get("/certs", params=params)
            assert response.status_code == 422
            assert field in fields(response)

    async def test_delete(self, service: RunningService, ca: CA) -> None:
        """DELETE by SHA-1 (any case, colons allowed) is 200 then 404; junk is 422."""
        push = ca.issue(["a.example.org"]).push()
        await service.client.post("/certs", json=push)
        response = await service.client.delete(f"/certs/{push['fingerprint']}")
        assert response.status_code == 200
        assert response.json() == {"deleted": 1}
        assert (await service.client.delete(f"/certs/{push['fingerprint']}")).status_code == 404
        assert (await service.client.delete("/certs/not-a-sha1")).status_code == 422


class TestAlertsRoute:
    async def test_query_validation(self, service: RunningService) -> None:
        """since, limit, severity and status are validated and named when wrong."""
        assert (await service.client.get("/alerts")).json() == []
        cases: list[tuple[dict[str, Any], str]] = [
            ({"since": "yesterday"}, "since"),
            ({"since": -5}, "since"),
            ({"limit": 0}, "limit"),
            ({"limit": 5000}, "limit"),
            ({"severity": "bad"}, "severity"),
            ({"status": "lost"}, "status"),
        ]
        for params, field in cases:
            response = await service.client.get("/alerts", params=params)
            assert response.status_code == 422
            assert field in fields(response)

    async def test_retry_routes_in_observer_mode(self, service: RunningService) -> None:
        """Without WEBHOOK_URL there is nothing to re-queue: 409 with a reason."""
        response = await service.client.post("/alerts/retry-failed")
        assert response.status_code == 409
        assert "observer mode" in response.json()["error"]


class TestErrors:
    @pytest.mark.parametrize("alert_id", [2**63, 2**63 - 1, 10**30, 0])
    async def test_an_alert_id_no_database_can_hold_is_404(
        self, tmp_path: Path, receiver: Receiver, alert_id: int
    ) -> None:
        """Re-queueing alert 2^63 (past SQLite's integers) is 404, not a 500 with a traceback."""
        settings = make_settings(tmp_path, webhook_url=receiver.url)
        async with run_service(settings) as running:
            response = await running.client.post(f"/alerts/{alert_id}/retry")
        assert response.status_code == 404, response.text
        assert "error" in response.json()

    @pytest.mark.parametrize(
        ("method", "path", "body", "error", "field"),
        [
            ("POST", "/domains", {"value": "a..b.org"}, "invalid request body", "value"),
            ("POST", "/domains", {"value": 5}, "invalid request body", "value"),
            ("POST", "/domains", {"value": "co.uk"}, "invalid request body", "value"),
            ("DELETE", "/domains/a..b.org", None, "invalid path", "value"),
            ("POST", "/certs", {"pem": "junk"}, "invalid request body", "pem"),
            ("GET", "/alerts?limit=0", None, "invalid query", "limit"),
        ],
    )
    async def test_every_validation_error_has_one_shape(
        self,
        service: RunningService,
        method: str,
        path: str,
        body: Any,
        error: str,
        field: str,
    ) -> None:
        """A bad name, type, suffix, path or query: the error's kind, then each field."""
        response = await service.client.request(method, path, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == error
        assert [f["field"] for f in response.json()["fields"]] == [field]

    async def test_unknown_routes_and_methods_are_json(self, service: RunningService) -> None:
        """404 and 405 answers are JSON too."""
        missing = await service.client.get("/nope")
        wrong_method = await service.client.put("/domains")
        assert missing.status_code == 404
        assert wrong_method.status_code == 405
        assert "error" in missing.json()
        assert "error" in wrong_method.json()


async def test_state_survives_a_restart(tmp_path: Path, ca: CA) -> None:
    """Domains and inventory written before a restart are there after it, in memory too."""
    settings = make_settings(tmp_path)
    push = ca.issue(["a.example.org"]).push()
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await service.client.post("/certs", json=push)
    async with run_service(settings) as service:
        assert [d["value"] for d in (await service.client.get("/domains")).json()] == [
            "example.org"
        ]
        assert len((await service.client.get("/certs")).json()) == 1
        health = (await service.client.get("/healthz")).json()
        assert (health["watch_entries"], health["known_fingerprints"]) == (1, 1)
