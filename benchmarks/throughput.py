"""End-to-end feed throughput: certwatch against the transport's own ceiling.

    uv run python benchmarks/throughput.py [--messages 100000] [--runs 3] [--rules 1000]

A feed process sends pre-built full-stream frames (4-9 KB) flat out over loopback. In the
same run this measures

- the ceiling: a bare trio-websocket client (the options certwatch uses) that only
  receives the frames;
- certwatch (``python -m certwatch``, its own process) receiving, decoding, matching and
  counting them, with 10 and with 100,000 watch entries, and 100,000 inventory certs.

certwatch's rate is read from ``/healthz`` (``feed.processed``) between the first and the
last processed frame. Each figure is the median of ``--runs`` runs.

With ``--caa-delay S``, two more: CAA off, and CAA on with a resolver that answers after
``S`` seconds, on the same feed of matched certificates.

With ``--brands N``, two more: no brands, and ``N`` brands (well-known brands' domains), so
every name of every frame goes through the lookalike watch.

With ``--rules N``, two more configurations run on a feed where every 500th frame is a new
certificate for a watched name (decided at once, ``SUSPICIOUS_GRACE_S=0``): without rules,
and with ``N`` rules (expect, restrict and protect) under the watched domain, so every
decision goes through the ladder with them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

from benchmarks.common import (
    Certwatch,
    add_brands,
    capture,
    dns_server,
    feed_server,
    machine,
    prepare_db,
)
from certwatch.sources.certstream import LIBRARY_QUEUE, MAX_MESSAGE_SIZE


async def bare_client(url: str, count: int) -> float:
    """Frames per second for a client that only receives."""
    async with open_websocket_url(
        url,
        max_message_size=MAX_MESSAGE_SIZE,
        message_queue_size=LIBRARY_QUEUE,
        receive_buffer_size=None,
    ) as ws:
        await ws.get_message()
        started = time.perf_counter()
        for _ in range(count - 1):
            await ws.get_message()
        return (count - 1) / (time.perf_counter() - started)


MATCHED_DOMAIN = "throughput.example"
RUNS = itertools.count()


def add_rules(db: Path, count: int) -> None:
    """``count`` rules under the matched domain: mostly expect, some restrict and protect."""
    kinds = ["expect"] * 8 + ["restrict", "protect"]
    rows = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        issuers = [] if kind == "protect" else ["letsencrypt.org", "pki.goog"]
        rows.append((kind, f"r{i}.{MATCHED_DOMAIN}", json.dumps(issuers), f"rule {i}", 1.0))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executemany(
        "INSERT INTO rules (kind, scope, issuers, note, created_at) VALUES (?, ?, ?, ?, ?)", rows
    )
    conn.close()


BRANDS = """
google apple microsoft amazon paypal facebook instagram whatsapp netflix linkedin twitter
github gitlab dropbox adobe oracle salesforce spotify airbnb uber shopify stripe coinbase
binance kraken metamask ethereum bitcoin blockchain opensea uniswap ledger trezor
chase wellsfargo bankofamerica citibank hsbc barclays santander revolut wise venmo
zelle americanexpress mastercard visa discover capitalone usbank paypal-business
outlook office365 icloud yahoo protonmail zoom slack atlassian docusign okta
cloudflare godaddy namecheap digitalocean heroku vercel netlify fastly akamai
walmart target bestbuy ebay alibaba aliexpress etsy ikea costco homedepot
fedex dhl usps ups royalmail postnl steam roblox epicgames playstation xbox
nintendo twitch discord telegram signal tiktok snapchat reddit pinterest
"""
"""Labels of well-known brands, each brand a ``.com`` domain (``--brands``)."""


def certwatch_rate(
    url: str, count: int, entries: int, workdir: Path, *, rules: int | None = None,
    resolver: str | None = None, brands: int | None = None,
) -> tuple[float, float]:  # fmt: skip
    """(frames per second, resident MB) for certwatch with ``entries`` watch entries (and,
    with ``rules``, the matched domain watched and that many rules)."""
    template = workdir / f"cw-{entries}-{rules}-{brands}.db"
    if not template.exists():
        domains = [] if rules is None else [MATCHED_DOMAIN]
        prepare_db(template, entries=entries, certs=100_000, domains=domains)
        if rules:
            add_rules(template, rules)
        if brands:
            add_brands(template, BRANDS.split()[:brands])
    # A fresh copy per run: the matched certificates are the same in every run, and a
    # database that alerted them already would only count duplicates.
    db = workdir / f"run-{next(RUNS)}.db"
    shutil.copyfile(template, db)
    if rules is None:
        service = Certwatch(db, url)
    elif resolver is None:
        service = Certwatch(db, url, SUSPICIOUS_GRACE_S="0")
    else:
        service = Certwatch(
            db, url, SUSPICIOUS_GRACE_S="0", CAA_CHECK="1", CAA_RESOLVER=resolver,
            CAA_TIMEOUT_S="5",
        )  # fmt: skip
    try:
        service.wait_ready()
        rate, health = service.follow(count)
        assert health["feed"]["dropped"] == 0, health
        if resolver is not None:  # CAA is really looked up (answers come seconds later)
            deadline = time.perf_counter() + 60
            while 'certwatch_caa_lookups_total{result="records"} 0.0' in (
                service.client.get("/metrics").text
            ):
                assert time.perf_counter() < deadline, "no CAA answer in 60 s"
                time.sleep(0.1)
        return rate, service.rss_mb()
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rules", type=int, default=0, help="also measure with this many rules")
    parser.add_argument(
        "--caa-delay", type=float, default=0.0, help="also measure CAA on, this slow (s)"
    )
    parser.add_argument(
        "--brands", type=int, default=0, help="also measure with this many brands (<= 100)"
    )
    args = parser.parse_args()
    frames = capture()
    sizes = sorted(len(line) for line in frames.read_text().splitlines())
    results: dict[str, list[float]] = {"ceiling": [], "10": [], "100000": []}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, feed_server(frames, args.messages) as url:
        for _ in range(args.runs):
            results["ceiling"].append(trio.run(bare_client, url, args.messages))
            for entries in (10, 100_000):
                rate, rss[str(entries)] = certwatch_rate(url, args.messages, entries, Path(tmp))
                results[str(entries)].append(rate)
    ceiling = statistics.median(results["ceiling"])
    print(f"machine: {machine()}")
    print(
        f"frames: {args.messages} per run, {len(sizes)} distinct, "
        f"median {sizes[len(sizes) // 2]} B, p95 {sizes[len(sizes) * 19 // 20]} B; "
        f"median of {args.runs} runs"
    )
    print()
    print("| client | msgs/s | of ceiling | RSS |")
    print("|---|---|---|---|")
    print(f"| bare trio-websocket (ceiling) | {ceiling:,.0f} | 100% | |")
    for label in ("10", "100000"):
        rate = statistics.median(results[label])
        print(
            f"| certwatch, {int(label):,} entries, 100,000 certs | {rate:,.0f} | "
            f"{rate / ceiling:.0%} | {rss[label]:.0f} MB |"
        )
    small, large = statistics.median(results["10"]), statistics.median(results["100000"])
    print(f"\n100,000 vs 10 entries: {large / small - 1:+.1%}")
    print("runs:", {k: [round(v) for v in vs] for k, vs in results.items()})
    if args.rules:
        rules_comparison(frames, args)
    if args.caa_delay:
        caa_comparison(frames, args)
    if args.brands:
        brands_comparison(frames, args)


def brands_comparison(frames: Path, args: argparse.Namespace) -> None:
    """No brands against ``args.brands`` brands: every name through the lookalike watch."""
    results: dict[int, list[float]] = {0: [], args.brands: []}
    with tempfile.TemporaryDirectory() as tmp, feed_server(frames, args.messages) as url:
        for _ in range(args.runs):
            for brands in results:
                rate, _ = certwatch_rate(url, args.messages, 10, Path(tmp), brands=brands)
                results[brands].append(rate)
    report(f"the lookalike watch on every name ({args.brands} brands):", "brands",
           {f"{n:,}": runs for n, runs in results.items()})  # fmt: skip


def rules_comparison(frames: Path, args: argparse.Namespace) -> None:
    """No rules against ``args.rules`` rules, on a feed with matched certificates."""
    results: dict[int, list[float]] = {0: [], args.rules: []}
    extra = ("--matched-every", "500", "--matched-domain", MATCHED_DOMAIN)
    with tempfile.TemporaryDirectory() as tmp, feed_server(frames, args.messages, *extra) as url:
        for _ in range(args.runs):
            for rules in results:
                rate, _ = certwatch_rate(url, args.messages, 10, Path(tmp), rules=rules)
                results[rules].append(rate)
    report("every 500th frame a new certificate for a watched name, decided at once:", "rules",
           {f"{n:,}": runs for n, runs in results.items()})  # fmt: skip


def caa_comparison(frames: Path, args: argparse.Namespace) -> None:
    """CAA off against CAA on with a slow resolver, on a feed with matched certificates."""
    results: dict[str, list[float]] = {"off": [], f"on, resolver {args.caa_delay} s": []}
    extra = ("--matched-every", "500", "--matched-domain", MATCHED_DOMAIN)
    with (
        tempfile.TemporaryDirectory() as tmp,
        feed_server(frames, args.messages, *extra) as url,
        dns_server(args.caa_delay, MATCHED_DOMAIN) as resolver,
    ):
        for _ in range(args.runs):
            for label in results:
                chosen = None if label == "off" else resolver
                rate, _ = certwatch_rate(url, args.messages, 10, Path(tmp), rules=0,
                                         resolver=chosen)  # fmt: skip
                results[label].append(rate)
    report(f"every 500th frame a new certificate for a watched name, decided at once, CAA "
           f"answered after {args.caa_delay} s:", "CAA", results)  # fmt: skip


def report(title: str, column: str, results: dict[str, list[float]]) -> None:
    """A comparison's table: the median of each case's runs, against the first case's."""
    medians = {label: statistics.median(runs) for label, runs in results.items()}
    first = next(iter(medians.values()))
    print(f"\n{title}")
    print(f"| {column} | msgs/s (median) | against the first |")
    print("|---|---|---|")
    for label, median in medians.items():
        print(f"| {label} | {median:,.0f} | {median / first:.1%} |")
    print("runs:", {label: [round(v) for v in runs] for label, runs in results.items()})


if __name__ == "__main__":
    main()
