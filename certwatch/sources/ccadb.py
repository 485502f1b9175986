"""CA identity data from CCADB: the built-in file, and ``certwatch ca-data``.

The built-in data (``certwatch/data/ca-identities.json.gz``) is generated from CCADB's
"All Certificate PEMs" report, one CSV per ``NotBeforeYear``, with the owner table of
:mod:`certwatch.core.cas`. ``certwatch ca-data`` generates it again from CCADB's live
reports (or from a directory holding them), for operators who want fresher data than the
release they run: it writes a ``CA_IDENTITIES_FILE``, which certwatch lays over the
built-in data at start (read and checked with the settings).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TextIO

import httpx
import trio

from certwatch.core.cas import (
    CACertificate,
    CAIdentities,
    CAIdentity,
    InvalidIdentities,
    Tally,
    ccadb_certificates,
    decode_builtin,
    encode_builtin,
    encode_identities_file,
    identify,
    summary,
)
from certwatch.errors import BodyError
from certwatch.httpclient import new_client, read_bounded

__all__ = ["BUILTIN_RESOURCE", "CCADB_REPORT_URL", "generate", "load", "load_builtin"]

BUILTIN_RESOURCE = "ca-identities.json.gz"
CCADB_REPORT_URL = "https://ccadb.my.salesforce-sites.com/ccadb/AllCertificatePEMsCSVFormat"
"""Asked with ``?NotBeforeYear=YYYY``, one year at a time."""
FIRST_YEAR = 1994
"""The oldest ``NotBeforeYear`` CCADB has certificates for."""
REPORT_NAME = "AllCertificatePEMsCSVFormat_NotBeforeYear_{year}"
"""A year's report in a directory (as CCADB names the download)."""
MAX_REPORT_BYTES = 64 * 1024 * 1024
"""A year's report is about 2 MB."""
REPORT_TIMEOUT_S = 60.0


def load_builtin() -> tuple[CAIdentities, str]:
    """The data shipped in the package, and where it came from."""
    data = resources.files("certwatch.data").joinpath(BUILTIN_RESOURCE).read_bytes()
    return decode_builtin(data)


def load(extra: Iterable[CAIdentity] = ()) -> CAIdentities:
    """The built-in data with ``extra`` (``CA_IDENTITIES_FILE``'s) laid over it."""
    builtin, _ = load_builtin()
    return builtin.overlaid(extra)


# --- certwatch ca-data ------------------------------------------------------------------------


async def _reports_from_url(base: str, years: Iterable[int], out: TextIO) -> list[str]:
    reports = []
    async with new_client(REPORT_TIMEOUT_S) as client:
        for year in years:
            try:
                async with client.stream("GET", base, params={"NotBeforeYear": year}) as r:
                    body = await read_bounded(r, MAX_REPORT_BYTES)
            except (httpx.HTTPError, BodyError) as e:
                raise InvalidIdentities(f"{base} (NotBeforeYear={year}): {e}") from None
            if r.status_code != 200:
                raise InvalidIdentities(
                    f"{base} (NotBeforeYear={year}): HTTP {r.status_code}, not 200"
                )
            print(f"read {year}: {len(body):,} bytes", file=out)
            reports.append(body.decode("utf-8", "replace"))
    return reports


def _reports_from_directory(directory: Path, years: Iterable[int]) -> list[str]:
    reports = []
    for year in years:
        path = directory / REPORT_NAME.format(year=year)
        if path.exists():
            reports.append(path.read_text(encoding="utf-8", errors="replace"))
    if not reports:
        raise InvalidIdentities(f"no {REPORT_NAME.format(year='YYYY')} file in {directory}")
    return reports


def _write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds all of ``data`` or is left as it was."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # read by certwatch, whichever user it runs as
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def generate(
    source: str,
    output: Path,
    *,
    builtin: bool = False,
    label: str | None = None,
    last_year: int | None = None,
    out: TextIO = sys.stderr,
) -> CAIdentities:
    """Read CCADB's reports from ``source`` (its URL, or a directory of downloads), identify
    every CA key, and write ``output``: a ``CA_IDENTITIES_FILE``, or with ``builtin`` the
    package's compact form (``label`` says where it came from). Raises
    :class:`InvalidIdentities`; ``output`` is then untouched."""
    years = range(FIRST_YEAR, (last_year or datetime.now(UTC).year) + 1)
    if source.startswith(("http://", "https://")):
        reports = trio.run(_reports_from_url, source, years, out)
    else:
        reports = _reports_from_directory(Path(source), years)
    tally = Tally()
    certs: list[CACertificate] = []
    for report in reports:
        certs.extend(ccadb_certificates(report, tally))
    identities = identify(certs)
    if not len(identities):
        raise InvalidIdentities(f"no CA of a known owner among {tally.rows} certificates")
    if builtin:
        data = encode_builtin(identities, source=label or source, generated_at=datetime.now(UTC))
    else:
        data = encode_identities_file(identities)
    _write_atomically(output, data)
    print(
        f"{tally.rows} CA certificates read ({tally.unreadable} unreadable), "
        f"{len(identities)} CA keys identified: {summary(identities.owners())}",
        file=out,
    )
    return identities
