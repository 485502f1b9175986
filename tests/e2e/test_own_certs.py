"""Recognising the org's own certificates in real traffic, through the whole service.

Each test runs the real supervisor with a WebSocket feed, a webhook receiver, Hypercorn and
a SQLite file, and pushes inventory the way load balancers do.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import trio

from tests.support import CONTRIB, SAMPLES
from tests.support.certs import CA, Issuance, random_serial
from tests.support.servers import FeedServer, Receiver
from tests.support.service import (
    TOKEN,
    RunningService,
    make_settings,
    run_service,
    wait_until,
    wired,
)

HOOKS = CONTRIB / "certbot"


async def push(service: RunningService, issuance: Issuance, form: str) -> None:
    if form == "pem-body":
        response = await service.client.post(
            "/certs",
            content=issuance.final_pem(),
            headers={"content-type": "application/x-pem-file"},
            params={"source": "lb:pem"},
        )
    elif form == "pem-field":
        response = await service.client.post(
            "/certs", json={"pem": issuance.final_pem(), "source": "lb:pem"}
        )
    else:
        response = await service.client.post("/certs", json=issuance.push(serial_style=form))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("variant", ["go-full", "go-lite", "go-tiled", "elixir"])
@pytest.mark.parametrize("form", ["openssl", "lower-stripped", "pem-body", "pem-field"])
async def test_precert_of_an_inventoried_cert_is_info(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA, variant: str, form: str
) -> None:
    """The precert of a pushed cert is `info` in every server format and push form."""
    issuance = ca.issue(
        ["api.example.org", "*.api.example.org"], serial=random_serial(leading_zero_nibble=True)
    )
    async with run_service(wired(tmp_path, feed, receiver)) as service:
        await service.add_domain("example.org")
        await push(service, issuance, form)
        await feed.send(issuance.message(variant))
        (delivery,) = await receiver.wait_for(1)
    body = delivery.json()
    assert body["severity"] == "info"
    assert body["recognised_by"]["evidence"] in {"tbs", "issuance", "serial_and_names"}


async def test_the_sample_issuance_is_info_in_every_format(
    tmp_path: Path, feed: FeedServer, receiver: Receiver
) -> None:
    """The shared samples: lb-push.json recognises every variant of its issuance, once."""
    async with run_service(wired(tmp_path, feed, receiver)) as service:
        await service.add_domain("example.net")
        lb_push = json.loads((SAMPLES / "lb-push.json").read_text())
        assert (await service.client.post("/certs", json=lb_push)).status_code == 201
        for name in [
            "go-full-tiled-precert.json",
            "go-full-precert.json",
            "go-lite-precert.json",
            "elixir-full-precert.json",
            "go-full-final.json",
        ]:
            await feed.send((SAMPLES / name).read_text())
        await feed.send(CA().issue(["marker.example.net"]).message())
        deliveries = await receiver.wait_for(2)
        alerts = await service.alerts()
    by_name = {d.json()["matched_sans"][-1]: d.json()["severity"] for d in deliveries}
    assert by_name == {"www.example.net": "info", "marker.example.net": "suspicious"}
    assert len(alerts) == 2


async def test_three_tiled_issuances_are_three_alerts(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """Tiled precerts with the blank fingerprint from three issuances give three webhooks."""
    async with run_service(wired(tmp_path, feed, receiver)) as service:
        await service.add_domain("example.org")
        for _ in range(3):
            await feed.send(ca.issue(["a.example.org"]).message("go-tiled"))
        deliveries = await receiver.wait_for(3)
    assert len({d.json()["issuance_id"] for d in deliveries}) == 3
    assert {d.json()["fingerprint_sha1"] for d in deliveries} == {
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    }


async def test_log_copies_and_final_cert_are_one_webhook(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """One issuance seen in three logs and as its final cert makes one webhook."""
    issuance, marker = ca.issue(["a.example.org"]), ca.issue(["marker.example.org"])
    async with run_service(wired(tmp_path, feed, receiver)) as service:
        await service.add_domain("example.org")
        await feed.send(issuance.message("go-full", log_url="https://log-a.example"))
        await feed.send(issuance.message("go-tiled", log_url="https://log-b.example"))
        await feed.send(issuance.message("elixir", log_url="https://log-c.example"))
        await feed.send(issuance.message("go-full", which="final"))
        await feed.send(marker.message())
        deliveries = await receiver.wait_for(2)
        assert len(await service.alerts()) == 2
    assert sorted(d.json()["all_sans"] for d in deliveries) == [
        ["a.example.org"],
        ["marker.example.org"],
    ]


async def test_registration_during_the_hold_gives_one_info(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """The deploy hook running during SUSPICIOUS_GRACE_S turns the held cert into one `info`."""
    issuance = ca.issue(["a.example.org"])
    settings = wired(tmp_path, feed, receiver, suspicious_grace_s=600)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(issuance.message("go-tiled"))
        await feed.send(issuance.message("go-full"))  # processed after the first: it is held

        async def held() -> bool:
            alerts = await service.alerts()
            return bool(alerts) and alerts[0]["status"] == "held"

        await wait_until(held)
        assert await service.metric("certwatch_alerts_held") == 1
        await push(service, issuance, "openssl")
        (delivery,) = await receiver.wait_for(1)
        (alert,) = await service.alerts()
    assert delivery.json()["severity"] == "info"
    assert delivery.json()["event"] == "alert"
    assert alert["severity"] == "info"


async def test_registration_after_the_alert_sends_a_follow_up(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A late registration sends a `resolved` follow-up for the same issuance."""
    issuance = ca.issue(["a.example.org"])
    async with run_service(wired(tmp_path, feed, receiver)) as service:
        await service.add_domain("example.org")
        await feed.send(issuance.message("go-tiled"))
        (alert,) = await receiver.wait_for(1)
        await push(service, issuance, "pem-field")
        _, follow_up = await receiver.wait_for(2)
        assert await service.metric("certwatch_alerts_resolved_total") == 1
    first, second = alert.json(), follow_up.json()
    assert (first["severity"], first["event"]) == ("suspicious", "alert")
    assert (second["severity"], second["event"]) == ("info", "resolved")
    assert second["alert_id"] == first["alert_id"]
    assert second["issuance_id"] == first["issuance_id"]
    assert second["resolved_by"] == {
        "evidence": "issuance",
        "source": "lb:pem",
        "ref": issuance.final_sha1,
    }
    assert alert.headers["webhook-id"] != follow_up.headers["webhook-id"]


async def test_registered_key_recognises_new_issuances(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A key registered before issuance: `info` with it, `suspicious` with another key."""
    ours = ca.issue(["a.example.org", "b.example.org"])
    async with run_service(wired(tmp_path, feed, receiver)) as service:
        await service.add_domain("example.org")
        registered = await service.client.post(
            "/keys",
            json={
                "pem": ours.public_key_pem(),
                "names": ["a.example.org", "b.example.org"],
                "note": "lb:colo-lb-0 key",
            },
        )
        assert registered.status_code == 201, registered.text
        assert registered.json()["spki_sha256"] == ours.spki_sha256()
        again = ca.issue(["a.example.org", "b.example.org"], key=ours.key)
        stranger = ca.issue(["a.example.org", "b.example.org"])
        await feed.send(again.message("go-full"))
        await feed.send(stranger.message("go-full"))
        # Deliveries run concurrently: order them by severity, info first.
        ok, bad = sorted(await receiver.wait_for(2), key=lambda d: str(d.json()["severity"]))
        listed = (await service.client.get("/keys")).json()
        assert [k["spki_sha256"] for k in listed] == [ours.spki_sha256()]
    assert ok.json()["severity"] == "info"
    assert ok.json()["recognised_by"] == {
        "evidence": "key",
        "source": "lb:colo-lb-0 key",
        "ref": ours.spki_sha256(),
    }
    assert bad.json()["severity"] == "suspicious"


async def test_key_routes_validate_and_delete(tmp_path: Path, ca: CA) -> None:
    """Keys by SPKI hash, PEM key or CSR; bad input is a 422 naming the field; DELETE works."""
    issuance = ca.issue(["a.example.org"])
    async with run_service(make_settings(tmp_path)) as service:
        client = service.client
        for body, field in [
            ({"names": ["a.example.org"]}, "spki_sha256"),
            ({"names": ["a.example.org"], "spki_sha256": "ab", "pem": "x"}, "spki_sha256"),
            ({"names": ["a.example.org"], "spki_sha256": "zz" * 32}, "spki_sha256"),
            ({"names": ["a.example.org"], "pem": "-----BEGIN PUBLIC KEY-----\nAA\n"}, "pem"),
            ({"names": [], "spki_sha256": "ab" * 32}, "names"),
            ({"names": ["bad name"], "spki_sha256": "ab" * 32}, "names[0]"),
            ({"names": "a.example.org", "spki_sha256": "ab" * 32}, "names"),
        ]:
            response = await client.post("/keys", json=body)
            assert response.status_code == 422, body
            assert field in {f["field"] for f in response.json()["fields"]}, body
        assert (await client.get("/keys")).json() == []
        spki = issuance.spki_sha256()
        created = await client.post(
            "/keys", json={"spki_sha256": spki.upper(), "names": ["*.a.example.org"]}
        )
        assert created.status_code == 201
        assert created.json()["names"] == ["*.a.example.org"]
        assert (await client.delete(f"/keys/{spki}")).json() == {"deleted": 1}
        assert (await client.delete(f"/keys/{spki}")).status_code == 404


async def test_pem_pushes_are_validated(tmp_path: Path, ca: CA) -> None:
    """A PEM that does not parse, a precert, or a PEM contradicting the JSON fields is a 4xx."""
    issuance = ca.issue(["a.example.org"])
    async with run_service(make_settings(tmp_path)) as service:
        client = service.client
        bad_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        for response, field in [
            (await client.post("/certs", json={"pem": bad_pem}), "pem"),
            (await client.post("/certs", json={"pem": "hello"}), "pem"),
            (
                await client.post(
                    "/certs", content=bad_pem, headers={"content-type": "application/x-pem-file"}
                ),
                "body",
            ),
            (
                await client.post(
                    "/certs",
                    json={"pem": issuance.final_pem(), "fingerprint": "ab" * 20},
                ),
                "fingerprint",
            ),
        ]:
            assert response.status_code == 422, response.text
            assert field in {f["field"] for f in response.json()["fields"]}
        assert (await client.get("/certs")).json() == []
        response = await client.post("/certs", json={"pem": issuance.final_pem()})
        assert response.json()["matchable_by"] == ["fingerprint", "tbs", "issuance"]


async def test_restart_between_copies_is_still_one_webhook(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """A copy of an issuance arriving after a restart does not alert again."""
    issuance, marker = ca.issue(["a.example.org"]), ca.issue(["marker.example.org"])
    settings = wired(tmp_path, feed, receiver)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(issuance.message("go-full"))
        await receiver.wait_for(1)

        async def recorded() -> bool:  # else the restart redelivers it: at least once
            return bool((await service.alerts())[0]["delivered"])

        await wait_until(recorded)
    async with run_service(settings) as service:
        await feed.wait_for_connections(2)
        await feed.send(issuance.message("go-tiled", log_url="https://other-log.example"))
        await feed.send(marker.message())
        deliveries = await receiver.wait_for(2)
        assert await service.metric("certwatch_dedupe_cache_size") == 2
    assert sorted(d.json()["all_sans"] for d in deliveries) == [
        ["a.example.org"],
        ["marker.example.org"],
    ]


async def test_restart_during_the_hold_still_decides_and_delivers(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """An alert held when certwatch stops is decided and delivered after the restart."""
    settings = wired(tmp_path, feed, receiver, suspicious_grace_s=60.0)
    async with run_service(settings) as service:
        await service.add_domain("example.org")
        await feed.send(ca.issue(["a.example.org"]).message())
        await feed.send(ca.issue(["b.example.org"]).message())

        async def both_held() -> bool:
            return len(await service.alerts(status="held")) == 2

        await wait_until(both_held)
    assert receiver.deliveries == []
    # Restarted two minutes later (its clock says so): the grace periods have ended.
    async with run_service(settings, clock=lambda: time.time() + 120):
        deliveries = await receiver.wait_for(2)
    assert {d.json()["severity"] for d in deliveries} == {"suspicious"}


def hook_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """What the hook runs with in tests: nothing from the host's configuration (no
    /etc/default/certwatch-hook, no ~/.curlrc, no openssl.cnf, no local time zone)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "TZ": "UTC",
        "OPENSSL_CONF": os.devnull,
        "CERTWATCH_HOOK_CONFIG": str(tmp_path / "certwatch-hook.conf"),
        **values,
    }


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_contrib_deploy_hook_registers_the_cert(
    tmp_path: Path, feed: FeedServer, receiver: Receiver, ca: CA
) -> None:
    """The certbot hook, run with real openssl on a real PEM, makes the precert `info`."""
    issuance = ca.issue(["www.example.org", "example.org"])
    lineage = tmp_path / "live" / "example.org"
    lineage.mkdir(parents=True)
    (lineage / "cert.pem").write_text(issuance.final_pem())
    async with run_service(wired(tmp_path, feed, receiver)) as service:
        await service.add_domain("example.org")
        env = hook_env(
            tmp_path,
            CERTWATCH_URL=service.url,
            CERTWATCH_TOKEN=TOKEN,
            CERTWATCH_SOURCE="lb:test-host",
        )
        done = await trio.run_process(
            [str(HOOKS / "certwatch-catch-up"), str(tmp_path / "live")],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        (row,) = (await service.client.get("/certs")).json()
        assert row["source"] == "lb:test-host"
        assert row["fingerprint_sha1"] == issuance.final_sha1
        await feed.send(issuance.message("go-tiled"))
        (delivery,) = await receiver.wait_for(1)
    assert delivery.json()["severity"] == "info"


@pytest.mark.parametrize(
    ("drop", "token", "message"),
    [
        ("CERTWATCH_URL", TOKEN, "CERTWATCH_URL is not set"),
        ("CERTWATCH_TOKEN", TOKEN, "CERTWATCH_TOKEN is not set"),
        ("", "wrong-token", "answered HTTP 403"),
    ],
)
async def test_contrib_deploy_hook_fails_loudly(
    tmp_path: Path, ca: CA, drop: str, token: str, message: str
) -> None:
    """A missing variable or a rejected POST makes the hook exit non-zero and say why."""
    lineage = tmp_path / "example.org"
    lineage.mkdir()
    (lineage / "cert.pem").write_text(ca.issue(["example.org"]).final_pem())
    async with run_service(make_settings(tmp_path)) as service:
        env = hook_env(
            tmp_path,
            CERTWATCH_URL=service.url,
            CERTWATCH_TOKEN=token,
            RENEWED_LINEAGE=str(lineage),
        )
        env.pop(drop, None)
        done = await trio.run_process(
            [str(HOOKS / "certwatch-deploy-hook")],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert (await service.client.get("/certs")).json() == []
    assert done.returncode != 0
    assert message in done.stderr.decode()
    assert token not in done.stderr.decode() or token == TOKEN


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_the_environment_wins_over_the_hook_config_file(tmp_path: Path, ca: CA) -> None:
    """The config file fills in what the environment leaves unset, never overrides it."""
    lineage = tmp_path / "example.org"
    lineage.mkdir()
    (lineage / "cert.pem").write_text(ca.issue(["example.org"]).final_pem())
    (tmp_path / "certwatch-hook.conf").write_text(
        "CERTWATCH_URL=http://127.0.0.1:9\n"  # wrong: nothing listens there
        f"CERTWATCH_TOKEN={TOKEN}\n"  # right, and only here
        "CERTWATCH_SOURCE=lb:from-the-file\n"
    )
    async with run_service(make_settings(tmp_path)) as service:
        env = hook_env(
            tmp_path,
            CERTWATCH_URL=service.url,
            CERTWATCH_SOURCE="lb:from-the-environment",
            RENEWED_LINEAGE=str(lineage),
        )
        done = await trio.run_process(
            [str(HOOKS / "certwatch-deploy-hook")],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        rows = (await service.client.get("/certs")).json()
    assert done.returncode == 0, done.stderr.decode()
    assert [row["source"] for row in rows] == ["lb:from-the-environment"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_the_hook_needs_no_gnu_date_and_quotes_its_json(tmp_path: Path, ca: CA) -> None:
    """Without GNU date (a BSD-like date first on PATH), a source with quotes registers."""
    lineage = tmp_path / "example.org"
    lineage.mkdir()
    issuance = ca.issue(["example.org"])
    (lineage / "cert.pem").write_text(issuance.final_pem())
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "date").write_text('#!/bin/sh\necho "date: illegal option -- d" >&2; exit 1\n')
    (fake / "date").chmod(0o755)
    source = 'lb:"edge" \\ 1'
    async with run_service(make_settings(tmp_path)) as service:
        env = hook_env(
            tmp_path,
            CERTWATCH_URL=service.url,
            CERTWATCH_TOKEN=TOKEN,
            CERTWATCH_SOURCE=source,
            RENEWED_LINEAGE=str(lineage),
        )
        env["PATH"] = f"{fake}:{env['PATH']}"
        done = await trio.run_process(
            [str(HOOKS / "certwatch-deploy-hook")],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        [row] = (await service.client.get("/certs")).json()
    assert done.returncode == 0, done.stderr.decode()
    assert row["source"] == source
    assert row["not_before"] == int(issuance.final.not_valid_before_utc.timestamp())
    assert row["not_after"] == int(issuance.final.not_valid_after_utc.timestamp())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_the_hook_says_when_openssl_cannot_read_the_certificate(
    tmp_path: Path,
) -> None:
    """A cert.pem that is not a certificate: exit non-zero, saying openssl cannot read it."""
    lineage = tmp_path / "example.org"
    lineage.mkdir()
    (lineage / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    env = hook_env(
        tmp_path,
        CERTWATCH_URL="http://127.0.0.1:9",
        CERTWATCH_TOKEN=TOKEN,
        RENEWED_LINEAGE=str(lineage),
    )
    done = await trio.run_process(
        [str(HOOKS / "certwatch-deploy-hook")],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode != 0
    assert "openssl cannot read" in done.stderr.decode()


def test_certbot_runs_the_hook_on_every_issuance() -> None:
    """The shipped cli.ini names the hook as certbot's deploy-hook, where it is installed."""
    # For certonly and renew, at the path its own install line puts it.
    text = (HOOKS / "cli.ini.example").read_text()
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert settings == ["deploy-hook = /usr/local/lib/certwatch/certwatch-deploy-hook"]
    assert "install -D -m 0755 certwatch-deploy-hook /usr/local/lib/certwatch/" in text
