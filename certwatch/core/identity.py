"""What identifies a certificate and its issuance. Pure logic, no I/O.

A fingerprint identifies one DER encoding, not an issuance: the precert and the final
certificate of one issuance have different fingerprints, and certstream-server-go reports
the SHA-1 of the empty string for precerts from tiled logs. The issuance is identified by
(authority key identifier, serial); with the DER at hand, the SHA-256 of the TBS certificate
without the CT poison and SCT-list extensions is a second exact key (RFC 6962 §3.2).

Servers format these values differently (padded or unpadded serials, ``keyid:`` prefixes,
colons, case, trailing newlines); the normalisers here make them comparable.
"""

from __future__ import annotations

import hashlib
import string

import attrs

__all__ = [
    "BLANK_SHA1",
    "BLANK_SHA256",
    "CertFacts",
    "fingerprint",
    "key_identifier",
    "serial_number",
]

BLANK_SHA1 = hashlib.sha1(b"", usedforsecurity=False).hexdigest()
"""certstream-server-go's ``fingerprint`` for precerts from tiled logs: no fingerprint."""
BLANK_SHA256 = hashlib.sha256(b"").hexdigest()

_HEX = frozenset(string.hexdigits)
_SEPARATORS = str.maketrans("", "", ": \t\r\n")


def _hex(value: str) -> str | None:
    digits = value.translate(_SEPARATORS).lower()
    if not digits or not _HEX.issuperset(digits):
        return None
    return digits


def fingerprint(value: str, *, length: int = 40) -> str | None:
    """Lowercase hex without colons; ``None`` for a blank (empty-input) or malformed value."""
    digits = _hex(value)
    if digits is None or len(digits) != length or digits in (BLANK_SHA1, BLANK_SHA256):
        return None
    return digits


def serial_number(value: str) -> int | None:
    """A serial as an integer: ``05A1``, ``5a1`` and ``05:a1`` are one serial."""
    digits = _hex(value)
    if digits is None or len(digits) > 64:
        return None
    return int(digits, 16)


def key_identifier(value: str) -> str | None:
    """An authority key identifier as lowercase hex (``keyid:AA:BB\\n`` -> ``aabb``)."""
    text = value.strip()
    # OpenSSL prints "keyid:..." and sometimes further lines ("DirName:", "serial:").
    first = text.splitlines()[0] if text else ""
    return _hex(first.removeprefix("keyid:"))


@attrs.frozen
class CertFacts:
    """The identifying facts of one certificate, whatever form it arrived in."""

    names: frozenset[str]
    """Normalised hostnames on the certificate (SANs, and the CN when it is a hostname)."""
    subject_cn: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    authority_key_id: str | None = None
    serial: int | None = None
    issuer: str = ""
    tbs_sha256: str | None = None
    spki_sha256: str | None = None
    der: bytes | None = attrs.field(default=None, eq=False, repr=False)
    """The DER when the feed carried it: the TBS hash is computed from it only if needed."""

    def issuance_key(self) -> str:
        """One string per issuance: the precert, the final cert and every log copy share it."""
        if self.serial is not None:
            if self.authority_key_id:
                return f"aki:{self.authority_key_id}:{self.serial:x}"
            if self.issuer:
                issuer = hashlib.sha256(self.issuer.encode()).hexdigest()[:32]
                return f"dn:{issuer}:{self.serial:x}"
        if self.tbs_sha256:
            return f"tbs:{self.tbs_sha256}"
        if self.sha1:
            return f"sha1:{self.sha1}"
        digest = hashlib.sha256("\n".join(sorted(self.names)).encode()).hexdigest()
        return f"names:{digest}"

    def name_sets(self) -> tuple[frozenset[str], ...]:
        """The names a deploy hook would list: with the CN, and without it when it is no SAN.

        certstream's ``all_domains`` is the SANs plus the subject CN; a pushed inventory row
        lists the SANs.
        """
        if self.subject_cn and self.subject_cn in self.names:
            return (self.names, self.names - {self.subject_cn})
        return (self.names,)
