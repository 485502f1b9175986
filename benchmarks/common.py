"""Shared plumbing for the benchmarks: captures, the feed process, certwatch processes."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import trio

from certwatch.store.sqlite import SQLiteStore
from tests.support.servers import free_port

HERE = Path(__file__).parent
CACHE = HERE / ".cache"
TOKEN = "bench-token"


def machine() -> str:
    cores = os.cpu_count()
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{cores} cores ({model}), Python {sys.version.split()[0]}"


def capture(count: int = 3000) -> Path:
    """A cached capture of ``count`` realistic full-stream frames."""
    path = CACHE / f"capture-{count}.jsonl"
    if not path.exists():
        from benchmarks.frames import build_frames

        CACHE.mkdir(exist_ok=True)
        path.write_text("".join(build_frames(count)))
    return path


@contextlib.contextmanager
def _helper(script: str, *args: str) -> Iterator[int]:
    """One of the helper scripts beside this file, in its own process; yields the port it
    prints first (``serving <port>``)."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline().split()[1])
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def feed_server(frames: Path, count: int, *extra: str) -> Iterator[str]:
    """The fast feed in its own process; yields its ws:// URL."""
    with _helper("feed_server.py", "--frames", str(frames), "--count", str(count), *extra) as port:
        yield f"ws://127.0.0.1:{port}/full-stream"


@contextlib.contextmanager
def dns_server(delay_s: float, domain: str) -> Iterator[str]:
    """A CAA resolver answering after ``delay_s``, in its own process; yields
    ``127.0.0.1:port`` (for ``CAA_RESOLVER``)."""
    with _helper("dns_server.py", "--delay", str(delay_s), "--domain", domain) as port:
        yield f"127.0.0.1:{port}"


def add_brands(db: Path, labels: Sequence[str]) -> None:
    """Brands ``<label>.com`` in a prepared database."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executemany(
        "INSERT INTO brands (domain, label, note, allow, added_at) VALUES (?, ?, '', '[]', 1)",
        [(f"{label}.com", label) for label in labels],
    )
    conn.close()


def prepare_db(path: Path, *, entries: int, certs: int, domains: Sequence[str] = ()) -> None:
    """A database with ``entries`` watch entries and ``certs`` inventory rows (bulk insert)."""
    store = trio.run(SQLiteStore.open, path)
    store.close()
    rng = random.Random(7)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    values = [(f"host{i}.{rng.randrange(10**9):x}.example", "", 0.0) for i in range(entries)]
    values += [(d, "", 0.0) for d in domains]
    conn.executemany(
        "INSERT OR IGNORE INTO domains (value, note, added_at) VALUES (?, ?, ?)", values
    )
    now = int(time.time())
    rows = []
    for i in range(certs):
        name = f"www{i}.{rng.randrange(10**9):x}.example"
        rows.append((
            secrets.token_hex(20), secrets.token_hex(16), f'["{name}","{name[4:]}"]',
            now - 86400, now + 80 * 86400, f"lb:lb-{i % 50}", float(now),
            secrets.token_hex(32), secrets.token_hex(20), secrets.token_hex(32),
            secrets.token_hex(32), "/C=US/O=Bench/CN=Bench R3",
        ))  # fmt: skip
    conn.executemany(
        "INSERT INTO certs (fingerprint_sha1, serial, sans, not_before, not_after, source, "
        "added_at, fingerprint_sha256, authority_key_id, tbs_sha256, spki_sha256, issuer) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as a long-running instance would have
    conn.close()


class Certwatch:
    """``python -m certwatch`` in its own process, on a free port."""

    def __init__(
        self,
        db: Path,
        feed_url: str,
        *,
        checkout: Path | None = None,
        environment: Mapping[str, str] | None = None,
        **env: str,
    ) -> None:
        """``checkout``: run the certwatch of another checkout (its ``.venv``, from its
        directory), for a before/after on one machine."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        python = sys.executable if checkout is None else str(checkout / ".venv/bin/python")
        self.proc = subprocess.Popen(
            [python, "-m", "certwatch"],
            cwd=checkout,
            env={
                **os.environ,
                "API_TOKEN": TOKEN,
                "API_PORT": str(self.port),
                "DB_PATH": str(db),
                "CERTSTREAM_URL": feed_url,
                "LOG_LEVEL": "WARNING",
                "CT_BACKFILL": "0",  # no benchmark but backfill.py reads CT logs
                "CAA_CHECK": "0",  # nor DNS, but those that serve their own resolver
                **(environment or {}),
                **env,
            },
            stderr=subprocess.DEVNULL,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from process start to the first 200 from /healthz."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if self.client.get("/healthz").status_code == 200:
                    return time.perf_counter() - self.started
            time.sleep(0.01)
        raise RuntimeError("certwatch did not become ready")

    def health(self) -> dict:  # type: ignore[type-arg]
        return self.client.get("/healthz").json()  # type: ignore[no-any-return]

    def follow(
        self, count: int, *, samples: list[tuple[int, float]] | None = None, every: int = 0
    ) -> tuple[float, dict]:  # type: ignore[type-arg]
        """Poll until ``count`` frames are processed; (frames/s from the first, last health).

        With ``samples``, append (frames processed, RSS MB) about every ``every`` frames.
        """
        first = first_at = None
        next_sample = 0
        while True:
            health = self.health()
            processed = health["feed"]["processed"]
            now = time.perf_counter()
            if first is None and processed:
                first, first_at = processed, now
            if samples is not None and processed >= next_sample:
                samples.append((processed, self.rss_mb()))
                next_sample += every
            if processed >= count:
                assert first is not None
                assert first_at is not None
                return (processed - first) / (now - first_at), health
            time.sleep(0.05)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
