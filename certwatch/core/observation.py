"""What a source saw: one certificate in one log. Pure logic, no I/O.

An :class:`Observation` is where the wire formats end. The certstream decoder produces one
for each matched message, back-fill one for each matched log entry; everything after it,
recognition and the alert alike, works on these values and never on a message.
"""

from __future__ import annotations

from typing import Any

import attrs

from certwatch.core.certificates import parse_certificate
from certwatch.core.identity import CertFacts, serial_number
from certwatch.core.names import normalise_names, normalise_san
from certwatch.core.text import storable, storable_names, storable_or_none
from certwatch.errors import InvalidCertificate

__all__ = ["CertSummary", "Observation", "certificate_facts"]


def _text(default: str = "") -> Any:
    return attrs.field(default=default, converter=storable)


@attrs.frozen
class CertSummary:
    """What the source said about the certificate: the fields an alert reports.

    Its text is stored as it came but for NUL characters (:func:`~certwatch.core.text.storable`):
    a hostile value is stored the same on every database.
    """

    fingerprint_sha1: str = _text()
    """Lowercase hex without colons, as reported (may be the blank SHA-1)."""
    all_sans: tuple[str, ...] = attrs.field(default=(), converter=storable_names)
    issuer: str = _text()
    """The issuer in certstream's ``aggregated`` form."""
    issuer_o: str | None = attrs.field(default=None, converter=storable_or_none)
    issuer_cn: str | None = attrs.field(default=None, converter=storable_or_none)
    not_before: int | None = None
    not_after: int | None = None
    source_log: str = _text()
    source_url: str = _text()
    cert_link: str = _text()
    cert_index: int | None = None
    serial: str = _text()
    """The serial as the source gave it."""
    update_type: str = _text()
    observed_via: str = "certstream"
    """``certstream``, or ``ct-log`` for an entry back-filled from the log itself."""
    log_url: str = _text()
    """The log's read URL as the log list writes it, without the trailing slash."""
    log_verified: bool = False
    """The entry was proven included in a tree head signed by the log's listed key."""
    log_timestamp: float | None = None
    """When the log says it logged the entry (epoch seconds), for back-filled entries."""


@attrs.frozen
class Observation:
    """One certificate as a source showed it: what to report, and what identifies it."""

    summary: CertSummary
    facts: CertFacts
    seen: float | None
    """When the source saw it (epoch seconds), if it said."""


def certificate_facts(
    names: tuple[str, ...],
    *,
    subject_cn: str | None,
    sha1: str | None,
    sha256: str | None,
    authority_key_id: str | None,
    serial: str,
    issuer: str,
    der: bytes | None,
) -> CertFacts:
    """The identifying facts of a certificate from what a source reported.

    With the DER present, the facts come from the certificate itself (exact key identifier,
    serial, public key), read leniently: what cannot be read (an unknown key algorithm...)
    is left out, and a certificate that does not parse at all leaves the reported fields.
    """
    cn = normalise_san(subject_cn) if subject_cn else None
    normalised = normalise_names(names)
    if der is not None:
        try:
            info = parse_certificate(der, with_tbs=False, strict=False)
        except InvalidCertificate:
            pass
        else:
            return CertFacts(
                names=normalised,
                subject_cn=cn,
                # The reported fingerprint is kept: a DER-derived one is the same or better.
                sha1=sha1 or info.sha1,
                sha256=sha256 or info.sha256,
                authority_key_id=info.authority_key_id or authority_key_id,
                serial=info.serial,
                issuer=issuer or info.issuer,
                spki_sha256=info.spki_sha256,
                der=der,
            )
    return CertFacts(
        names=normalised,
        subject_cn=cn,
        sha1=sha1,
        sha256=sha256,
        authority_key_id=authority_key_id,
        serial=serial_number(serial) if serial else None,
        issuer=issuer,
    )
