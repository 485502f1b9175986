"""`certwatch replay FILE`: the real pipeline over a capture, sending nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import trio

from certwatch.core.certificates import parse_certificate
from certwatch.core.identity import fingerprint
from certwatch.core.lookalikes import Brand
from certwatch.core.recognition import InventoryCert, KnownKey
from certwatch.store.sqlite import SQLiteStore
from tests.support import CONTRIB, SAMPLES
from tests.support.certs import CA
from tests.support.service import run_certwatch


async def prepare(db: Path, ours: InventoryCert) -> None:
    store = await SQLiteStore.open(db)
    await store.upsert_domain("example.org", "", 0.0)
    await store.upsert_cert(ours)
    store.close()


def test_replay_prints_what_would_alert(tmp_path: Path, ca: CA) -> None:
    """Matches become payload lines (info for the inventory), once per issuance; none sent."""
    ours, theirs = ca.issue(["www.example.org"]), ca.issue(["login.example.org"])
    push = ours.push()
    row = InventoryCert(
        fingerprint_sha1=fingerprint(push["fingerprint"]) or "",
        serial=push["serial"],
        sans=tuple(push["sans"]),
        not_before=push["not_before"],
        not_after=push["not_after"],
        source="lb:a",
    )
    trio.run(prepare, tmp_path / "cw.db", row)
    capture = tmp_path / "capture.jsonl"
    lines = [
        ours.message("go-tiled"),
        theirs.message("go-full"),
        theirs.message("elixir"),  # another copy of the same issuance
        CA().issue(["unrelated.example.com"]).message(),
    ]
    capture.write_text("\n".join(json.dumps(m) for m in lines) + "\nnot json\n\n", encoding="utf-8")
    result = run_certwatch(
        "replay", str(capture), env={**os.environ, "DB_PATH": str(tmp_path / "cw.db")}
    )
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["severity"], a["matched_sans"]) for a in alerts] == [
        ("info", ["www.example.org"]),
        ("suspicious", ["login.example.org"]),
    ]
    assert "replayed 5 messages" in result.stderr
    assert "1 duplicate copy, 1 skipped" in result.stderr
    assert [a["alert_id"] for a in alerts] == [None, None]  # nothing stored: no made-up id


def test_replay_reads_stdin_and_needs_a_database(tmp_path: Path) -> None:
    """`-` reads stdin; a missing DB_PATH is a clear error, not a new empty database."""
    result = run_certwatch(
        "replay", "-", env={**os.environ, "DB_PATH": str(tmp_path / "missing.db")}, stdin=""
    )
    assert result.returncode == 1
    assert "no database at" in result.stderr
    assert not (tmp_path / "missing.db").exists()


def run_replay(capture: Path, db: Path) -> subprocess.CompletedProcess[str]:
    return run_certwatch("replay", str(capture), env={**os.environ, "DB_PATH": str(db)})


def test_the_shipped_capture_replays_as_the_readme_says(tmp_path: Path) -> None:
    """contrib/replay: suspicious in every server variant; info once the cert is registered."""
    capture = CONTRIB / "replay" / "sample-capture.jsonl"
    samples = SAMPLES
    db = tmp_path / "cw.db"

    async def watch() -> None:
        store = await SQLiteStore.open(db)
        await store.upsert_domain("example.net", "", 0.0)
        store.close()

    trio.run(watch)
    before = run_replay(capture, db)
    info = parse_certificate((samples / "deployed-cert.pem").read_text())

    async def register() -> None:
        store = await SQLiteStore.open(db)
        await store.upsert_cert(InventoryCert.from_certificate(info, source="lb:colo-lb-0"))
        store.close()

    trio.run(register)
    after = run_replay(capture, db)
    for result in (before, after):
        assert result.returncode == 0, result.stderr
        assert "replayed 8 messages" in result.stderr
        assert "5 matched" in result.stderr
        assert "4 duplicate copies, 0 skipped" in result.stderr
    (first,) = [json.loads(line) for line in before.stdout.splitlines()]
    (second,) = [json.loads(line) for line in after.stdout.splitlines()]
    assert first["severity"] == "suspicious"
    assert first["matched_sans"] == ["*.api.example.net", "api.example.net", "www.example.net"]
    assert second["severity"] == "info"


def test_replay_simulates_the_grace_period(tmp_path: Path, ca: CA) -> None:
    """replay follows the service's grace: info within it, suspicious then resolved after."""
    # With no grace, the alert is suspicious at once and a resolved follow-up comes.
    ours = ca.issue(["www.example.org"])
    db = tmp_path / "cw.db"

    async def prepare_key() -> None:
        store = await SQLiteStore.open(db)
        await store.upsert_domain("example.org", "", 0.0)
        await store.upsert_key(KnownKey(ours.spki_sha256(), ("www.example.org",), "lb:a"))
        store.close()

    trio.run(prepare_key)
    capture = tmp_path / "capture.jsonl"
    seen = 1_800_000_000.0
    capture.write_text(
        json.dumps(ours.message("go-tiled", seen=seen))  # no DER: the key cannot be seen
        + "\n"
        + json.dumps(ours.message("go-full", seen=seen + 10))  # the DER: our registered key
        + "\n"
    )

    def events(grace: str) -> list[tuple[str, str]]:
        result = run_certwatch(
            "replay", "--grace", grace, str(capture), env={**os.environ, "DB_PATH": str(db)}
        )
        assert result.returncode == 0, result.stderr
        payloads = [json.loads(line) for line in result.stdout.splitlines()]
        return [(p["event"], p["severity"]) for p in payloads]

    assert events("60") == [("alert", "info")]
    assert events("5") == [("alert", "suspicious"), ("resolved", "info")]
    assert events("0") == [("alert", "suspicious"), ("resolved", "info")]


def test_one_message_is_one_message_in_the_summary(tmp_path: Path) -> None:
    """The summary counts in the singular for one (replayed 1 message, not 1 messages)."""

    async def empty_database() -> None:
        (await SQLiteStore.open(tmp_path / "cw.db")).close()

    trio.run(empty_database)
    capture = tmp_path / "capture.jsonl"
    capture.write_text(json.dumps(CA().issue(["a.example.com"]).message()) + "\n")
    result = run_certwatch(
        "replay", str(capture), env={**os.environ, "DB_PATH": str(tmp_path / "cw.db")}
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 1 message in" in result.stderr
    assert "0 duplicate copies" in result.stderr


async def with_brand(db: Path) -> None:
    store = await SQLiteStore.open(db)
    await store.upsert_brand(Brand("ethereum.org", "ethereum", allow=("ethereum.foundation",)))
    store.close()


def test_replay_reports_lookalikes_of_the_brands(tmp_path: Path, ca: CA) -> None:
    """A capture's lookalike certificate is a lookalike payload line; the allow list is not."""
    trio.run(with_brand, tmp_path / "cw.db")
    capture = tmp_path / "capture.jsonl"
    lines = [
        ca.issue(["ethereum-wallet.net"]).message(),
        ca.issue(["docs.ethereum.foundation"]).message(),
        ca.issue(["www.example.com"]).message(),
    ]
    capture.write_text("\n".join(json.dumps(m) for m in lines) + "\n", encoding="utf-8")
    result = run_certwatch(
        "replay", str(capture), env={**os.environ, "DB_PATH": str(tmp_path / "cw.db")}
    )
    assert result.returncode == 0, result.stderr
    [alert] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (alert["severity"], alert["lookalikes"][0]["technique"]) == ("lookalike", "combosquat")
    assert "1 lookalike" in result.stderr
