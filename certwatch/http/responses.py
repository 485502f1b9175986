"""What the API answers, as attrs classes: the handlers build these, msgspec encodes them,
and the OpenAPI document is generated from them (with the request classes of
:mod:`certwatch.http.requests`), so the document cannot drift from the code. Every error,
whatever answers it, is an :class:`ErrorOut`.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import attrs
import msgspec
from quart import Response

from certwatch.core.alerts import Alert, Severity, Status
from certwatch.core.caa import CaaFinding
from certwatch.core.cas import CAIdentity
from certwatch.core.lookalikes import Brand, LookalikeHit
from certwatch.core.policy import Rule, RuleRef
from certwatch.core.recognition import InventoryCert, KnownKey

__all__ = [
    "LIMIT_MAX",
    "Acknowledgement",
    "AlertOut",
    "AlertsQuery",
    "BrandOut",
    "CertOut",
    "CertsQuery",
    "Deleted",
    "DomainCreated",
    "DomainOut",
    "ErrorOut",
    "HealthOut",
    "KeyCreated",
    "KeyOut",
    "Requeued",
    "RuleOut",
    "error_response",
    "json_response",
]

LIMIT_MAX = 1000
OFFSET_MAX = 10_000_000
EPOCH_MAX = 253402300799  # 9999-12-31T23:59:59Z


@attrs.frozen
class Problem:
    field: str
    problem: str


@attrs.frozen
class ErrorOut:
    """Every error: a short message, and for validation errors each offending field."""

    error: str
    fields: list[Problem] | None = None


@attrs.frozen
class DomainCreated:
    value: str
    """The normalised entry."""
    created: bool
    """False when the entry existed and only its note changed."""


@attrs.frozen
class DomainOut:
    value: str
    note: str
    added_at: float


@attrs.frozen
class Deleted:
    deleted: int


@attrs.frozen
class Requeued:
    requeued: int


@attrs.frozen
class CertOut:
    fingerprint_sha1: str
    serial: str | None
    sans: list[str]
    not_before: int
    not_after: int
    source: str
    added_at: float
    fingerprint_sha256: str | None
    authority_key_id: str | None
    tbs_sha256: str | None
    spki_sha256: str | None
    issuer: str | None
    matchable_by: list[str]
    """The kinds of evidence this row can recognise a certificate by."""

    @classmethod
    def of(cls, cert: InventoryCert) -> CertOut:
        return cls(
            fingerprint_sha1=cert.fingerprint_sha1,
            serial=cert.serial,
            sans=list(cert.sans),
            not_before=cert.not_before,
            not_after=cert.not_after,
            source=cert.source,
            added_at=cert.added_at,
            fingerprint_sha256=cert.fingerprint_sha256,
            authority_key_id=cert.authority_key_id,
            tbs_sha256=cert.tbs_sha256,
            spki_sha256=cert.spki_sha256,
            issuer=cert.issuer,
            matchable_by=cert.matchable_by(),
        )


@attrs.frozen
class KeyOut:
    spki_sha256: str
    names: list[str]
    note: str
    added_at: float

    @classmethod
    def of(cls, key: KnownKey) -> KeyOut:
        return cls(key.spki_sha256, list(key.names), key.note, key.added_at)


@attrs.frozen
class KeyCreated:
    spki_sha256: str
    names: list[str]
    note: str
    added_at: float
    created: bool


@attrs.frozen
class BrandOut:
    domain: str
    label: str
    """The brand's label left of its public suffix: what lookalikes imitate."""
    note: str
    allow: list[str]
    added_at: float

    @classmethod
    def of(cls, brand: Brand) -> BrandOut:
        return cls(brand.domain, brand.label, brand.note, list(brand.allow), brand.added_at)


@attrs.frozen
class LookalikeOut:
    brand: str
    technique: str
    """``homoglyph``, ``tld-swap``, ``hyphenation``, ``typo``, ``embedding``,
    ``combosquat`` or ``subdomain``."""
    name: str
    unicode_name: str
    domain: str
    score: int

    @classmethod
    def of(cls, hit: LookalikeHit) -> LookalikeOut:
        return cls(hit.brand, hit.technique, hit.name, hit.unicode_name, hit.domain, hit.score)


@attrs.frozen
class RuleOut:
    id: int
    kind: str
    """``expect``, ``restrict`` or ``protect``."""
    scope: str
    issuers: list[str]
    note: str
    created_at: float
    expires_at: float | None

    @classmethod
    def of(cls, rule: Rule) -> RuleOut:
        return cls(
            rule.id or 0, rule.kind, rule.scope, list(rule.issuers), rule.note,
            rule.created_at, rule.expires_at,
        )  # fmt: skip


@attrs.frozen
class RuleRefOut:
    """The rule that decided an alert, as it was then."""

    id: int
    kind: str
    scope: str
    note: str

    @classmethod
    def of(cls, ref: RuleRef) -> RuleRefOut:
        return cls(ref.id, ref.kind, ref.scope, ref.note)


@attrs.frozen
class IssuerCAOut:
    """The certificate's CA, identified by its key (CCADB data)."""

    owner: str
    caa_domains: list[str]
    """The CAA identifiers its owner recognises."""
    ski: str
    """The issuing CA certificate's subject key identifier, lowercase hex."""

    @classmethod
    def of(cls, ca: CAIdentity) -> IssuerCAOut:
        return cls(ca.owner, list(ca.caa_domains), ca.ski)


@attrs.frozen
class CaaOut:
    """What CAA says of an issuance (see the README's "CAA")."""

    verdict: str
    """``forbidden``, ``changed``, ``unknown``, ``permitted`` or ``none``."""
    name: str
    """The SAN that gave the verdict, as on the certificate."""
    owner: str | None
    """The name whose CAA records these are (a CNAME's target where one was followed)."""
    records: list[str]
    first_seen: float | None
    """When certwatch first saw this RRset, unchanged since."""

    @classmethod
    def of(cls, finding: CaaFinding) -> CaaOut:
        return cls(
            finding.verdict, finding.name, finding.owner, list(finding.records),
            finding.first_seen,
        )  # fmt: skip


@attrs.frozen
class Acknowledgement:
    """What ``POST /alerts/<id>/acknowledge`` created."""

    alert_id: int
    scope: str
    rules: list[int]
    """The ``expect`` rules created (``issuer``)."""
    keys: list[str]
    """The SPKI SHA-256 of the key registered (``key``)."""


@attrs.frozen
class AlertOut:
    id: int
    fingerprint: str
    severity: str | None
    sans: list[str]
    matched: list[str]
    issuer: str | None
    seen_at: float
    delivered: bool
    event_id: str
    kind: str
    parent_id: int | None
    status: str
    matched_sans: list[str]
    issuance_id: str
    serial: str | None
    update_type: str | None
    source_log: str | None
    not_before: int | None
    not_after: int | None
    created_at: float
    decide_at: float | None
    recognised_by: dict[str, str] | None
    resolved_at: float | None
    resolved_by: dict[str, str] | None
    attempts: int
    last_error: str | None
    next_attempt_at: float | None
    delivered_at: float | None
    reason: str | None
    """Which rung of the ladder decided (null while held)."""
    issuer_ca: IssuerCAOut | None
    rule: RuleRefOut | None
    caa: CaaOut | None
    """The CAA evaluation of the SAN that gave the verdict (null: not evaluated)."""
    acknowledged_at: float | None
    acknowledged_scope: str | None
    acknowledged_note: str | None
    lookalikes: list[LookalikeOut]
    """For a ``lookalike`` alert: the names imitating brands, best first."""

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        cert = alert.cert
        return cls(
            id=alert.id or 0,
            fingerprint=cert.fingerprint_sha1,
            severity=alert.severity,
            sans=list(cert.all_sans),
            matched=list(alert.matched_entries),
            issuer=cert.issuer or cert.issuer_cn,
            seen_at=alert.seen_at,
            delivered=alert.delivered,
            event_id=alert.event_id,
            kind=alert.kind,
            parent_id=alert.parent_id,
            status=alert.status,
            matched_sans=list(alert.matched_sans),
            issuance_id=alert.issuance,
            serial=cert.serial,
            update_type=cert.update_type,
            source_log=cert.source_log,
            not_before=cert.not_before,
            not_after=cert.not_after,
            created_at=alert.created_at,
            decide_at=alert.decide_at,
            recognised_by=None if alert.recognised_by is None else alert.recognised_by.as_dict(),
            resolved_at=alert.resolved_at,
            resolved_by=None if alert.resolved_by is None else alert.resolved_by.as_dict(),
            attempts=alert.attempts,
            last_error=alert.last_error,
            next_attempt_at=alert.next_attempt_at,
            delivered_at=alert.delivered_at,
            reason=alert.reason,
            issuer_ca=None if alert.issuer_ca is None else IssuerCAOut.of(alert.issuer_ca),
            rule=None if alert.rule is None else RuleRefOut.of(alert.rule),
            caa=None if alert.caa is None else CaaOut.of(alert.caa),
            acknowledged_at=alert.acknowledged_at,
            acknowledged_scope=alert.acknowledged_scope,
            acknowledged_note=alert.acknowledged_note,
            lookalikes=[LookalikeOut.of(h) for h in alert.lookalikes],
        )


@attrs.frozen
class FeedHealth:
    url: str
    connected: bool
    last_event_at: float | None
    connections: int
    reconnects: int
    messages: int
    processed: int
    dropped: int
    missed_entries: int
    disconnected_seconds: float
    last_error: str | None


@attrs.frozen
class AlertsHealth:
    held: int
    dedupe_cache: int


@attrs.frozen
class OutboxHealth:
    pending: int
    failed: int
    oldest_pending_at: float | None


@attrs.frozen
class LogCoverageHealth:
    log: str
    """The log's read URL (the ``log`` label of the coverage metrics)."""
    kind: str
    listed: bool
    """In the CT log list (else read from certstream's URL for it)."""
    verifiable: bool
    """The list gives its key: what back-fill reads from it is verified."""
    position: int | None
    """Everything up to this index was processed (from certstream or back-filled)."""
    pending: int
    unrecovered: int
    backfilled: int
    missed: int
    last_error: str | None


@attrs.frozen
class LogListHealth:
    source: str
    logs: int
    loaded_at: float | None
    error: str | None


@attrs.frozen
class CoverageHealth:
    backfill: bool
    log_list: LogListHealth | None
    pending: int
    unrecovered: int
    untracked: int
    lookups: int
    logs: list[LogCoverageHealth]


@attrs.frozen
class DatabaseHealth:
    backend: str
    """``sqlite`` or ``postgresql``."""
    ok: bool
    round_trip_ms: float | None
    """One ``SELECT 1``, in milliseconds; ``None`` when the database did not answer."""
    leader: bool
    """This replica holds the leader role (always, on SQLite)."""
    leader_since: float | None
    error: str | None


@attrs.frozen
class HealthOut:
    status: str
    version: str
    uptime_s: float
    feed: FeedHealth
    watch_entries: int
    known_fingerprints: int
    known_keys: int
    brands: int
    """Brands the lookalike watch protects (0: it does no work)."""
    alerts: AlertsHealth
    webhook: str
    coverage: CoverageHealth
    database: DatabaseHealth
    outbox: OutboxHealth | None = None


# Query strings, for the document (the handlers check the same bounds, with messages).


def _one_of(values: type[enum.StrEnum]) -> str:
    return "^(" + "|".join(values) + ")$"


@attrs.frozen
class CertsQuery:
    limit: Annotated[int, msgspec.Meta(ge=1, le=LIMIT_MAX)] = 100
    offset: Annotated[int, msgspec.Meta(ge=0, le=OFFSET_MAX)] = 0


@attrs.frozen
class AlertsQuery:
    since: Annotated[float, msgspec.Meta(ge=0, le=EPOCH_MAX)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=LIMIT_MAX)] = 100
    severity: Annotated[str, msgspec.Meta(pattern=_one_of(Severity))] | None = None
    status: Annotated[str, msgspec.Meta(pattern=_one_of(Status))] | None = None
    delivered: Annotated[str, msgspec.Meta(pattern="^(true|false)$")] | None = None


_encode = msgspec.json.Encoder().encode


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; the attrs classes above encode as objects."""
    return Response(_encode(value), status=status, content_type="application/json", headers=headers)


def error_response(
    status: int, message: str, problems: list[tuple[str, str]] | None = None
) -> Response:
    """The one error body: ``{"error": ..., "fields": [{"field", "problem"}]}``."""
    body = ErrorOut(message, [Problem(f, p) for f, p in problems] if problems else None)
    headers = {"WWW-Authenticate": 'Bearer realm="certwatch"'} if status == 401 else None
    value = attrs.asdict(body, filter=lambda _, field_value: field_value is not None)
    return json_response(value, status, headers)
