"""`certwatch replay FILE`: the real pipeline over a capture, sending nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import trio
from support.certs import CA

from certwatch.classify import InventoryCert
from certwatch.identity import fingerprint
from certwatch.store import Store


async def prepare(db: Path, ours: InventoryCert) -> None:
    store = await Store.open(db)
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
    result = subprocess.run(
        [sys.executable, "-m", "certwatch", "replay", str(capture)],
        env={**os.environ, "DB_PATH": str(tmp_path / "cw.db")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["severity"], a["matched_sans"]) for a in alerts] == [
        ("info", ["www.example.org"]),
        ("suspicious", ["login.example.org"]),
    ]
    assert "replayed 5 messages" in result.stderr
    assert "1 duplicate copies, 1 skipped" in result.stderr


def test_replay_reads_stdin_and_needs_a_database(tmp_path: Path) -> None:
    """`-` reads stdin; a missing DB_PATH is a clear error, not a new empty database."""
    result = subprocess.run(
        [sys.executable, "-m", "certwatch", "replay", "-"],
        env={**os.environ, "DB_PATH": str(tmp_path / "missing.db")},
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "no database at" in result.stderr
    assert not (tmp_path / "missing.db").exists()
