"""From a CT log entry to what certwatch matches and reports. Pure logic, no I/O.

Back-fill reads every entry of a gap: :func:`entry_names` is all it asks of most of them.
A matched entry becomes an :class:`~certwatch.core.observation.Observation` like a
certstream message does (:func:`entry_observation`), so it goes through the same
recognise, decide and store path, and one issuance gives one event whichever way it came.
"""

from __future__ import annotations

import hashlib

import attrs

from certwatch.core.certificates import (
    MAX_DER_BYTES,
    certificate_names,
    parse_certificate,
    precert_signing_issuer,
)
from certwatch.core.ctlog import EntryType, LogEntry
from certwatch.core.loglist import LogInfo, LogKind
from certwatch.core.observation import CertSummary, Observation, certificate_facts
from certwatch.errors import InvalidCertificate

__all__ = ["entry_names", "entry_observation"]


def entry_names(entry: LogEntry) -> tuple[str, ...]:
    """The names to match (certstream's ``all_domains``). Raises
    :class:`~certwatch.errors.InvalidCertificate`."""
    return certificate_names(entry.certificate)


def entry_observation(
    entry: LogEntry,
    names: tuple[str, ...],
    log: LogInfo,
    *,
    verified: bool,
    seen: float,
    first_issuer: bytes | None = None,
) -> Observation:
    """The observation of a matched entry, read ``seen`` from ``log``.

    ``first_issuer`` is the DER of the first certificate of a precert's chain: when it is a
    Precertificate Signing Certificate, the issuance's issuer is the CA above it, as in the
    final certificate, so that one issuance keeps one identity.
    """
    try:
        info = parse_certificate(entry.certificate, with_tbs=False, strict=False)
    except InvalidCertificate:
        info = None
    issuer = info.issuer if info else ""
    key_id = info.authority_key_id if info else None
    if entry.entry_type is EntryType.PRECERT and first_issuer is not None:
        signer = precert_signing_issuer(first_issuer)
        if signer is not None:
            key_id, issuer = signer[0] or key_id, signer[1]
    index = entry.index
    summary = CertSummary(
        fingerprint_sha1=info.sha1 if info else "",
        all_sans=names,
        issuer=issuer,
        issuer_o=info.issuer_o if info else None,
        issuer_cn=info.issuer_cn if info else None,
        not_before=info.not_before if info else None,
        not_after=info.not_after if info else None,
        source_log=log.description,
        source_url=log.read_url,
        cert_link=(
            f"{log.read_url}/ct/v1/get-entries?start={index}&end={index}"
            if log.kind is LogKind.RFC6962
            else ""
        ),
        cert_index=index,
        serial=info.serial_hex if info else "",
        update_type=entry.entry_type.update_type,
        observed_via="ct-log",
        log_url=log.read_url,
        log_verified=verified,
        log_timestamp=entry.timestamp_ms / 1000,
    )
    facts = certificate_facts(
        names,
        subject_cn=info.subject_cn if info else None,
        sha1=info.sha1 if info else None,
        sha256=info.sha256 if info else None,
        authority_key_id=key_id,
        serial=info.serial_hex if info else "",
        issuer=issuer,
        der=entry.certificate,
    )
    if key_id != facts.authority_key_id or issuer != facts.issuer:
        # The certificate's own issuer is the precert signing certificate: not the issuance's.
        facts = attrs.evolve(facts, authority_key_id=key_id, issuer=issuer)
    if entry.tbs is not None and len(entry.tbs) <= MAX_DER_BYTES:
        # The logged TBS is the final certificate's without its SCT list (RFC 6962 §3.2:
        # the log removed the poison), also when a precert signing certificate signed the
        # precert: an exact second key for the issuance, hashed as it is. (Nothing to strip,
        # so no ASN.1 decoding: a hostile log's TBS costs a hash, not seconds of pyasn1.)
        facts = attrs.evolve(facts, tbs_sha256=hashlib.sha256(entry.tbs).hexdigest())
    return Observation(summary, facts, seen)
