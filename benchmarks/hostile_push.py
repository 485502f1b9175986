"""How long hostile input holds certwatch's event loop: certificate pushes, then hostile
sources (``hostile_sources.py``: a lying feed, bombing and lying CT logs).

    uv run python benchmarks/hostile_push.py [--pushes 5] [--seconds 10] [--checkout DIR]

certwatch runs in its own process (``--checkout`` runs another checkout's, from its own
``.venv``, so an older version can be measured the same way). In this process one client asks
``/healthz`` back to back (a probe every ~2 ms when the loop is free) while curl (a third
process) POSTs certificates as PEM: a 950 KiB one with 36,000 extensions (refused by its
size), one with 100 extensions (the most whose TBS hash is computed: parsed in full,
pyasn1 included) and one with 2,500 names (~64 KiB, the largest accepted). A probe's
time is how long the event loop was held. Reports, per push kind, the push's own time,
the probes' p50, p99 and maximum while pushes ran, against an idle baseline, and
certwatch's RSS after them; then the table of ``hostile_sources.py`` (``--seconds`` per
case; ``--seconds 0`` skips it).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import trio

from benchmarks import hostile_sources
from benchmarks.common import TOKEN, Certwatch, machine
from tests.support.certs import CA, pem, with_extensions


def hostile_certificates() -> dict[str, str]:
    ca = CA()
    names = [f"host{i}.example.org" for i in range(2500)]
    return {
        "36,000 extensions (950 KiB)": pem(with_extensions(ca, ["a.example.org"], 36_000)),
        "100 extensions (TBS hashed)": pem(with_extensions(ca, ["a.example.org"], 99)),
        "2,500 names (~64 KiB)": ca.issue(names).final_pem(),
    }


async def probe(url: str, until: trio.Event, times: list[float]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while not until.is_set():
            started = time.perf_counter()
            await client.get("/healthz")
            times.append(time.perf_counter() - started)


async def measure(url: str, body: Path | None, pushes: int) -> tuple[list[float], list[float]]:
    """(push durations, probe durations) while ``pushes`` pushes of ``body`` run (or, with
    ``body`` None, one idle second). curl pushes, in its own process, so that sending a
    megabyte never delays the probe here."""
    probes: list[float] = []
    durations: list[float] = []
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, url, done, probes)
        await trio.sleep(0.2)
        probes.clear()
        if body is None:
            await trio.sleep(1)
        else:
            for _ in range(pushes):
                result = await trio.run_process(
                    [
                        "curl", "-q", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                        "-H", f"Authorization: Bearer {TOKEN}",
                        "-H", "Content-Type: application/x-pem-file",
                        "--data-binary", f"@{body}", f"{url}/certs",
                    ],
                    capture_stdout=True,
                )  # fmt: skip
                status, seconds = result.stdout.decode().split()
                assert status in ("201", "422"), status
                durations.append(float(seconds))
        done.set()
    return durations, probes


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=5, help="pushes of each kind")
    parser.add_argument(
        "--checkout", type=Path, help="run the certwatch of this checkout (after uv sync there)"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="each hostile source's window (0: none)"
    )
    args = parser.parse_args()
    certificates = hostile_certificates()
    with tempfile.TemporaryDirectory() as tmp:
        db, feed = Path(tmp) / "cw.db", "ws://127.0.0.1:9/full-stream"
        certwatch = Certwatch(db, feed, checkout=args.checkout)
        try:
            certwatch.wait_ready()
            rows = [("idle (no push)", *trio.run(measure, certwatch.url, None, 0))]
            rss = [certwatch.rss_mb()]
            for n, (kind, text) in enumerate(certificates.items()):
                body = Path(tmp) / f"push-{n}.pem"
                body.write_text(text)
                rows.append((kind, *trio.run(measure, certwatch.url, body, args.pushes)))
                rss.append(certwatch.rss_mb())
        finally:
            certwatch.stop()
    print(f"\nhostile_push.py --pushes {args.pushes} on {machine()}\n")
    print("| push | push time (median) | probes | probe p50 | probe p99 | probe max | RSS after |")
    print("|---|---|---|---|---|---|---|")
    for (kind, durations, probes), after in zip(rows, rss, strict=True):
        quantiles = statistics.quantiles(probes, n=100, method="inclusive")
        push = ms(statistics.median(durations)) if durations else "-"
        print(
            f"| {kind} | {push} | {len(probes)} | {ms(statistics.median(probes))} | "
            f"{ms(quantiles[98])} | {ms(max(probes))} | {after:.0f} MB |"
        )
    if args.seconds:
        print()
        hostile_sources.report(hostile_sources.run_all(args.seconds, args.checkout), args.seconds)


if __name__ == "__main__":
    main()
