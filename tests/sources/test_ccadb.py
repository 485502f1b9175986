"""``certwatch ca-data``: CA identities from CCADB's reports, over HTTP or from a directory."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import trio

from certwatch.core.cas import decode_builtin, decode_identities_file
from certwatch.settings import Settings
from certwatch.sources.ccadb import FIRST_YEAR, REPORT_NAME
from tests.core.test_cas import CCADB_ROWS, KNOWN
from tests.support.servers import HttpPeer
from tests.support.service import TOKEN, run_certwatch

EMPTY_REPORT = b"SHA-256 Fingerprint,X.509 Certificate (PEM)\r\n"


def env() -> dict[str, str]:
    return {**os.environ, "API_TOKEN": TOKEN}


def owners(path: Path) -> dict[str, str]:
    return {i.ski: i.owner for i in decode_identities_file(path.read_bytes())}


def test_from_a_directory_of_downloads(tmp_path: Path) -> None:
    """The per-year downloads in a directory become a file CA_IDENTITIES_FILE accepts."""
    out = tmp_path / "cas.json"
    result = run_certwatch("ca-data", str(out), "--from", str(CCADB_ROWS), env=env())
    assert result.returncode == 0, result.stderr
    assert "158 CA certificates read (0 unreadable)" in result.stderr
    assert owners(out).items() >= KNOWN.items()
    settings = Settings.from_env({"API_TOKEN": TOKEN, "CA_IDENTITIES_FILE": str(out)})
    assert settings.ca_identities_file is not None
    assert len(settings.ca_identities_file.identities) == len(owners(out))


def test_the_builtin_form_for_maintainers(tmp_path: Path) -> None:
    """--builtin writes the compact form shipped in the package."""
    out = tmp_path / "ca-identities.json.gz"
    result = run_certwatch("ca-data", str(out), "--builtin", "--from", str(CCADB_ROWS), env=env())
    assert result.returncode == 0, result.stderr
    identities, _ = decode_builtin(out.read_bytes())
    assert {i.ski: i.owner for i in identities}.items() >= KNOWN.items()


async def test_from_ccadbs_report_url(tmp_path: Path, nursery: trio.Nursery) -> None:
    """Each year's report is asked by NotBeforeYear, as CCADB serves them."""
    peer = await HttpPeer().start(nursery)
    this_year = datetime.datetime.now(datetime.UTC).year
    for year in range(FIRST_YEAR, this_year + 1):
        path = CCADB_ROWS / REPORT_NAME.format(year=year)
        body = path.read_bytes() if path.exists() else EMPTY_REPORT
        peer.routes[f"ccadb/AllCertificatePEMsCSVFormat?NotBeforeYear={year}"] = (200, {}, body)
    out = tmp_path / "cas.json"
    url = peer.url("ccadb/AllCertificatePEMsCSVFormat")
    result = await trio.to_thread.run_sync(
        lambda: run_certwatch("ca-data", str(out), "--from", url, env=env())
    )
    assert result.returncode == 0, result.stderr
    assert owners(out).items() >= KNOWN.items()
    asked = sorted(int(path.rsplit("=", 1)[1]) for _, path, _ in peer.requests)
    assert asked == list(range(FIRST_YEAR, this_year + 1))


async def test_a_failing_report_leaves_the_file_as_it_was(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A year that does not answer 200 is one line and exit 1; the old file stays."""
    peer = await HttpPeer().start(nursery)
    for year in range(FIRST_YEAR, 2031):
        peer.routes[f"r?NotBeforeYear={year}"] = (200, {}, EMPTY_REPORT)
    peer.routes["r?NotBeforeYear=2001"] = (503, {}, b"maintenance")
    out = tmp_path / "cas.json"
    out.write_text("[]\n")
    result = await trio.to_thread.run_sync(
        lambda: run_certwatch("ca-data", str(out), "--from", peer.url("r"), env=env())
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"certwatch: {peer.url('r')} (NotBeforeYear=2001): HTTP 503, not 200"
    )
    assert out.read_text() == "[]\n"
    left = await trio.to_thread.run_sync(lambda: [p.name for p in tmp_path.iterdir()])
    assert left == ["cas.json"]  # no temporary left


def test_reports_without_a_known_owner_write_nothing(tmp_path: Path) -> None:
    """Reports with no CA of an owner certwatch knows are an error, not an empty file."""
    (tmp_path / REPORT_NAME.format(year=2020)).write_bytes(EMPTY_REPORT)
    out = tmp_path / "cas.json"
    result = run_certwatch("ca-data", str(out), "--from", str(tmp_path), env=env())
    assert result.returncode == 1
    assert "no CA of a known owner among 0 certificates" in result.stderr
    assert not out.exists()
