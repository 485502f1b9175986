"""How hostile sources (a lying feed, lying or bombing CT logs) hold certwatch's event loop
and its memory.

    uv run python benchmarks/hostile_sources.py [--seconds 10] [--checkout DIR]

Each case runs a fresh certwatch in its own process (back-fill on, watching
``victim.example``, ``--checkout`` to measure another checkout the same way), fed by
``feed_server.py`` in a third process, with the CT logs it reads served from this one on
loopback. For ``--seconds`` this process asks ``/healthz`` back to back (a probe every few
ms when certwatch's loop is free); a probe's time is how long the loop was held (probes
that get no answer within 5 s are counted as such). RSS is certwatch's, at start and at
its highest during the case.

Cases:

- negative index: 20,000 frames of a listed tiled log claiming indexes -5 (a DER-less
  watched precert: a lookup) and -300 then 5 (a gap);
- gzip stack: a log (not in the list) whose data tile is 1.4 KB of ``gzip, gzip`` that
  inflates to 1 GiB, behind a gap;
- TBS bomb: a listed RFC 6962 log whose 32 entries in a gap are watched precerts with
  2,500 subject attributes each (a 40 KB TBS);
- lookup flood: 80,000 copies of one DER-less watched precert of a log that never answers.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gzip
import json
import statistics
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.common import TOKEN, Certwatch, feed_server, machine
from tests.support.certs import CA, Issuance
from tests.support.ctlog import TestLog, log_list, message_for
from tests.support.servers import HttpPeer, SilentServer, free_port

WATCHED = "victim.example"
AUTH = f"Bearer {TOKEN}"
PROBE_TIMEOUT_S = 5.0


def bomb(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed twice (streamed: never ``size`` in memory)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    inner = b"".join(compressor.compress(chunk) for _ in range(size >> 20)) + compressor.flush()
    return gzip.compress(inner, compresslevel=9)


def tbs_bomb(ca: CA, name: str) -> Issuance:
    """A precert for ``name`` whose subject has 2,500 attributes, and its 'final' twin."""
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"u{i}")]
            )
            for i in range(2500)
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .issuer_name(ca.name)
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    precert = builder.add_extension(x509.PrecertPoison(), critical=True).sign(
        ca.key, hashes.SHA256()
    )
    final = builder.sign(ca.key, hashes.SHA256())
    return Issuance(ca=ca, names=[name], precert=precert, final=final, key=key)


def unsigned_checkpoint(size: int) -> bytes:
    root = base64.b64encode(bytes(32)).decode()
    sig = base64.b64encode(bytes(68)).decode()
    return f"bomb.example/log\n{size}\n{root}\n\n\u2014 bomb.example/log {sig}\n".encode()


async def probe(url: str, seconds: float, times: list[float | None]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=PROBE_TIMEOUT_S) as client:
        deadline = trio.current_time() + seconds
        while trio.current_time() < deadline:
            started = time.perf_counter()
            try:
                await client.get("/healthz")
            except httpx.HTTPError:
                times.append(None)
                continue
            times.append(time.perf_counter() - started)


Case = Callable[[trio.Nursery, Path], Awaitable[tuple[list[str], dict[str, str]]]]
"""Starts its CT logs; returns the frames certwatch's feed sends and its environment."""


async def negative_index(nursery: trio.Nursery, tmp: Path) -> tuple[list[str], dict[str, str]]:
    log = await TestLog("tiled").start(nursery)
    log.add_filler(6)
    der_less = CA().issue([f"api.{WATCHED}"])
    frames = []
    for n in range(20_000):
        if n % 3 == 0:
            message = message_for(log, 0, der_less)
            message["data"]["cert_index"] = -5
        else:
            message = message_for(log, 0)
            message["data"]["cert_index"] = -300 if n % 3 == 1 else 5
        frames.append(json.dumps(message))
    return frames, listed(tmp, log)


async def gzip_stack(nursery: trio.Nursery, tmp: Path) -> tuple[list[str], dict[str, str]]:
    peer = await HttpPeer().start(nursery)
    body = bomb(1 << 30)
    peer.routes["bomb/checkpoint"] = (200, {}, unsigned_checkpoint(300))
    for n in ("000", "001.p/44"):
        peer.routes[f"bomb/tile/data/{n}"] = (200, {"Content-Encoding": "gzip, gzip"}, body)
    frames = []
    for index in (0, 299):
        message = message_for(TestLog("tiled"), index)
        message["data"]["source"]["url"] = peer.url("bomb").rstrip("/")
        frames.append(json.dumps(message))
    print(f"  (gzip stack: {len(body):,} bytes inflating to {1 << 30:,})")
    return frames, listed(tmp)


async def tbs_bombs(nursery: trio.Nursery, tmp: Path) -> tuple[list[str], dict[str, str]]:
    log = await TestLog("rfc6962").start(nursery)
    ca = CA()
    log.add_filler(1)
    for n in range(32):
        log.add_issuance(tbs_bomb(ca, f"h{n}.{WATCHED}"))
    log.add_filler(1)
    frames = [json.dumps(message_for(log, 0)), json.dumps(message_for(log, 33))]
    return frames, listed(tmp, log)


async def lookup_flood(nursery: trio.Nursery, tmp: Path) -> tuple[list[str], dict[str, str]]:
    silent = await SilentServer().start(nursery)
    message = CA().issue([f"api.{WATCHED}"]).message("go-tiled", index=7)
    message["data"]["source"]["url"] = silent.url("log").rstrip("/")
    message["data"]["source"]["type"] = "tiled"
    return [json.dumps(message)] * 1000, {**listed(tmp), "FRAMES": "80000"}


def listed(tmp: Path, *logs: TestLog) -> dict[str, str]:
    path = tmp / "log_list.json"
    path.write_text(json.dumps(log_list(*logs)))
    return {"CT_LOG_LIST": str(path)}


CASES: dict[str, Case] = {
    "negative index": negative_index,
    "gzip stack": gzip_stack,
    "TBS bomb": tbs_bombs,
    "lookup flood": lookup_flood,
}


async def run_case(case: Case, seconds: float, checkout: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        async with trio.open_nursery() as nursery:
            frames, env = await case(nursery, tmp)
            count = int(env.pop("FRAMES", str(len(frames))))
            capture = tmp / "frames.jsonl"
            capture.write_text("".join(f + "\n" for f in frames))
            # certwatch first (the feed's port chosen, nothing listening yet: it retries),
            # watching WATCHED through its API (so another checkout's schema is its own);
            # then the feed.
            port = free_port()
            certwatch = Certwatch(
                tmp / "cw.db", f"ws://127.0.0.1:{port}/full-stream", checkout=checkout,
                CT_BACKFILL="1", SUSPICIOUS_GRACE_S="60", CT_BACKFILL_RETRY_PERIOD_S="600",
                environment=env,
            )  # fmt: skip
            try:
                await trio.to_thread.run_sync(certwatch.wait_ready)
                added = certwatch.client.post(
                    "/domains", json={"value": WATCHED}, headers={"Authorization": AUTH}
                )
                assert added.status_code == 201, added.text
                with feed_server(capture, count, "--port", str(port)):
                    rss_start = rss_max = certwatch.rss_mb()
                    probes: list[float | None] = []
                    async with trio.open_nursery() as inner:
                        inner.start_soon(probe, certwatch.url, seconds, probes)
                        for _ in range(int(seconds * 2)):
                            await trio.sleep(0.5)
                            try:
                                rss_max = max(rss_max, certwatch.rss_mb())
                            except (OSError, RuntimeError):
                                break  # the process died
                alive = certwatch.proc.poll() is None
            finally:
                certwatch.stop()
            nursery.cancel_scope.cancel()
    answered = [p for p in probes if p is not None]
    quantiles = statistics.quantiles(answered, n=100, method="inclusive") if answered else [0.0]
    return {
        "probes": len(probes),
        "unanswered": len(probes) - len(answered),
        "p50": statistics.median(answered) if answered else None,
        "p99": quantiles[98] if len(answered) > 1 else None,
        "max": max(answered) if answered else None,
        "rss": (rss_start, rss_max),
        "alive": alive,
    }


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def run_all(
    seconds: float, checkout: Path | None, cases: list[str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for name in cases or list(CASES):
        print(f"running {name}...", flush=True)
        rows.append((name, trio.run(run_case, CASES[name], seconds, checkout)))
    return rows


def report(rows: list[tuple[str, dict[str, Any]]], seconds: float) -> None:
    print(f"hostile sources, {seconds:g} s each, on {machine()}\n")
    columns = ["case", "probes", "no answer in 5 s", "probe p50", "probe p99", "probe max"]
    print("| " + " | ".join([*columns, "RSS start → max", "alive"]) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        start, high = r["rss"]
        print(
            f"| {name} | {r['probes']} | {r['unanswered']} | {ms(r['p50'])} | {ms(r['p99'])} | "
            f"{ms(r['max'])} | {start:.0f} → {high:.0f} MB | {'yes' if r['alive'] else 'no'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each case's window")
    parser.add_argument("--checkout", type=Path, help="run the certwatch of this checkout")
    parser.add_argument("--case", action="append", choices=list(CASES), help="only these")
    args = parser.parse_args()
    rows = run_all(args.seconds, args.checkout, args.case)
    print()
    report(rows, args.seconds)


if __name__ == "__main__":
    main()
