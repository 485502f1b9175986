"""CAA (RFC 8659): which CAs a name's DNS allows, and what that says of an issuance. Pure
logic, no I/O.

For each matched SAN the *relevant RRset* is the CAA RRset of the first name, climbing from
the SAN towards the root (never the root itself), that has CAA records; the resolver
follows CNAMEs, and the records are then the target's (:attr:`RRset.owner`). A wildcard SAN
``*.x`` is looked up at ``x``, and its ``issuewild`` properties, where any exist, take the
place of ``issue``. A CA is permitted when the relevant RRset is empty, or has no
``issue``/``issuewild`` property that applies, or an applicable property's issuer domain
name (parameters after ``;`` ignored: a certificate cannot show them) is one of the CA's
CAA identifiers. ``issue ";"``, an empty or malformed value permits no CA; an unknown
property with the critical flag (128) forbids every CA.

Verdicts, most severe first: ``forbidden`` (the CA is known, and an RRset certwatch saw
unchanged since at least ``CAA_STABLE_S`` before the issuance forbids it), ``changed``
(forbidden by an RRset first seen later: CAA changed around the issuance), ``unknown`` (a
lookup failed, or the CA is unknown), ``permitted``, ``none`` (no CAA records at any
level). Only ``forbidden`` changes the severity (``critical``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

import attrs

from certwatch.core.names import normalise_entry, self_and_parents
from certwatch.errors import InvalidName

__all__ = [
    "KNOWN_TAGS",
    "MAX_RECORDS",
    "CaaFinding",
    "CaaRecord",
    "CaaVerdict",
    "Lookup",
    "climb",
    "finding_for",
    "permits",
    "worst",
]

MAX_RECORDS = 64
"""A relevant RRset with more records than this is not evaluated (``unknown``): real ones
hold a handful, and a hostile zone must not make certwatch store 1,000 of them per name."""
MAX_VALUE = 1024
"""Characters of one record kept (the rest of a longer value is not a domain name anyway)."""
KNOWN_TAGS = frozenset(
    {"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone"}
)
"""Property tags a CA issuing TLS certificates understands (RFC 8659, 8657, 9495, the CA/B
Forum's contact tags): with the critical flag, any other tag forbids every CA."""
CRITICAL_FLAG = 128


class CaaVerdict(enum.StrEnum):
    """What CAA says of one issuance, from the least to the most severe."""

    NONE = "none"
    PERMITTED = "permitted"
    UNKNOWN = "unknown"
    CHANGED = "changed"
    FORBIDDEN = "forbidden"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {v: i for i, v in enumerate(CaaVerdict)}


@attrs.frozen
class CaaRecord:
    """One CAA resource record."""

    flags: int
    tag: str
    value: str

    def text(self) -> str:
        """Presentation form: ``0 issue "letsencrypt.org"``."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.flags} {self.tag} "{escaped}"'


@attrs.frozen
class Lookup:
    """The relevant RRset of one name: where it was found and its records. ``owner`` is
    ``None`` and ``records`` empty when no name up to the root has CAA records."""

    owner: str | None
    records: tuple[CaaRecord, ...] = ()

    def texts(self) -> tuple[str, ...]:
        return tuple(sorted(r.text() for r in self.records))


def climb(name: str) -> list[str]:
    """The names whose CAA is asked for ``name``, in order: itself, then each parent up
    to (and including) the top-level domain, never the root. ``*.x`` climbs from ``x``."""
    return list(self_and_parents(name.removeprefix("*.").rstrip(".")))


def _issuer(value: str) -> str | None:
    """The issuer domain name of an ``issue``/``issuewild`` value (before ``;``), or
    ``None`` when it names no CA (``;``, empty, malformed)."""
    name = value.split(";", 1)[0].strip()
    if not name:
        return None
    try:
        return normalise_entry(name) if "*" not in name else None
    except InvalidName:
        return None


def permits(records: Sequence[CaaRecord], identifiers: Iterable[str], *, wildcard: bool) -> bool:
    """Whether a CA known by ``identifiers`` may issue under the relevant RRset ``records``
    (non-empty) for a name (``wildcard``: a ``*.`` SAN)."""
    if any(r.flags & CRITICAL_FLAG and r.tag.lower() not in KNOWN_TAGS for r in records):
        return False
    issue = [r for r in records if r.tag.lower() == "issue"]
    issuewild = [r for r in records if r.tag.lower() == "issuewild"]
    applicable = issuewild if wildcard and issuewild else issue
    if not applicable:
        return True
    wanted = set(identifiers)
    return any(_issuer(r.value) in wanted for r in applicable)


@attrs.frozen
class CaaFinding:
    """The CAA evaluation of one issuance: the verdict, and the SAN that gave it."""

    verdict: CaaVerdict
    name: str
    """The SAN as on the certificate (``*.x`` stays ``*.x``)."""
    owner: str | None = None
    """The name whose CAA records these are (the CNAME target where one was followed)."""
    records: tuple[str, ...] = ()
    """Sorted presentation strings."""
    first_seen: float | None = None
    """When certwatch first saw this RRset (unchanged since)."""

    def as_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict.value,
            "name": self.name,
            "owner": self.owner,
            "records": list(self.records),
            "first_seen": self.first_seen,
        }


def finding_for(
    san: str,
    lookup: Lookup | None,
    identifiers: Sequence[str] | None,
    *,
    first_seen: float | None,
    issued_at: float,
    stable_s: float,
) -> CaaFinding:
    """The verdict for one SAN: ``lookup`` its relevant RRset (``None``: the lookup
    failed), ``identifiers`` its CA's CAA identifiers (``None``: the CA is unknown),
    ``first_seen`` when that RRset was first seen unchanged."""
    if lookup is None:
        return CaaFinding(CaaVerdict.UNKNOWN, san)
    records = lookup.texts()
    if lookup.owner is None or not lookup.records:
        return CaaFinding(CaaVerdict.NONE, san)
    seen = CaaFinding(CaaVerdict.UNKNOWN, san, lookup.owner, records, first_seen)
    if identifiers is None or len(lookup.records) > MAX_RECORDS:
        return seen
    if permits(lookup.records, identifiers, wildcard=san.startswith("*.")):
        return attrs.evolve(seen, verdict=CaaVerdict.PERMITTED)
    stable = first_seen is not None and first_seen <= issued_at - stable_s
    return attrs.evolve(seen, verdict=CaaVerdict.FORBIDDEN if stable else CaaVerdict.CHANGED)


def worst(findings: Iterable[CaaFinding]) -> CaaFinding | None:
    """The most severe finding (the first SAN's among equals); ``None`` for none."""
    found = None
    for finding in findings:
        if found is None or finding.verdict.rank > found.verdict.rank:
            found = finding
    return found
