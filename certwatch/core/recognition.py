"""Recognising the organisation's own certificates. Pure logic, no I/O.

The inventory (certificates the load balancers pushed) and the registered keys live here
in memory, indexed by every kind of evidence that can recognise a certificate seen in CT.
The hot path asks :meth:`Inventory.recognise` and never waits on SQLite.

Evidence, strongest first:

``fingerprint``
    The SHA-1/SHA-256 of the very certificate the LB deployed. Exact, but only final
    certificates carry it, and few final certificates are ever logged.
``tbs``
    The hash of the TBS certificate without the CT poison / SCT list: the same value for a
    precert and its final certificate. Exact; needs the DER (full stream, RFC 6962 logs).
``issuance``
    (authority key identifier, serial) from a PEM push. A CA never reuses a serial under
    one key, so this is one issuance; works on every stream and tiled logs.
``key``
    A public key registered in advance, and every name on the certificate in its list.
    Strong (whoever has the certificate has our key) but needs the DER to see the key.
``acknowledged``
    Not evidence from the inventory: an analyst authorised the issuance after the fact
    (``POST /alerts/<id>/acknowledge``).
``serial_and_names``
    For rows pushed as JSON without the PEM (no key identifier known): the same serial with
    the same set of names.
    Serials carry at least 64 random bits (CA/B Forum BR 7.1), so a collision across CAs
    is not practical, but nothing binds the row to a CA: the weakest kind.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from certwatch.core.certificates import CertificateInfo, tbs_sha256_of_der
from certwatch.core.identity import CertFacts, serial_number
from certwatch.core.names import normalise_names

__all__ = [
    "Evidence",
    "Inventory",
    "InventoryCert",
    "KnownKey",
    "Recognition",
]


class Evidence(enum.StrEnum):
    FINGERPRINT = "fingerprint"
    TBS = "tbs"
    ISSUANCE = "issuance"
    KEY = "key"
    SERIAL_AND_NAMES = "serial_and_names"
    ACKNOWLEDGED = "acknowledged"
    """An analyst acknowledged the alert (``source``: the note; ``ref``: the scope)."""


@attrs.frozen
class Recognition:
    """Why a certificate counts as the organisation's own."""

    evidence: Evidence
    source: str
    """The inventory row's ``source`` or the registered key's note."""
    reference: str
    """The inventory row's SHA-1 fingerprint, or the key's SPKI SHA-256."""

    def as_dict(self) -> dict[str, str]:
        return {"evidence": self.evidence.value, "source": self.source, "ref": self.reference}


@attrs.frozen
class InventoryCert:
    """One certificate an LB obtained (a row of ``certs``)."""

    fingerprint_sha1: str
    sans: tuple[str, ...]
    not_before: int
    not_after: int
    serial: str | None = None
    source: str = ""
    added_at: float = 0.0
    fingerprint_sha256: str | None = None
    authority_key_id: str | None = None
    tbs_sha256: str | None = None
    spki_sha256: str | None = None
    issuer: str | None = None

    @classmethod
    def from_certificate(
        cls, info: CertificateInfo, *, source: str = "", added_at: float = 0.0
    ) -> InventoryCert:
        """The row for a pushed certificate, every identifier derived from it."""
        return cls(
            fingerprint_sha1=info.sha1,
            serial=info.serial_hex.lower(),
            # Sorted and unique, as a JSON push stores them.
            sans=tuple(sorted(set(info.sans))) or ((info.subject_cn,) if info.subject_cn else ()),
            not_before=info.not_before,
            not_after=info.not_after,
            source=source,
            added_at=added_at,
            fingerprint_sha256=info.sha256,
            authority_key_id=info.authority_key_id,
            tbs_sha256=info.tbs_sha256,
            spki_sha256=info.spki_sha256,
            issuer=info.issuer_dn,
        )

    def matchable_by(self) -> list[str]:
        """The kinds of evidence this row can provide (shown by ``GET /certs``)."""
        kinds = [Evidence.FINGERPRINT]
        if self.authority_key_id and self.serial:
            if self.tbs_sha256:
                kinds.append(Evidence.TBS)
            kinds.append(Evidence.ISSUANCE)
        elif self.serial:
            kinds.append(Evidence.SERIAL_AND_NAMES)
        return [k.value for k in kinds]

    def name_set(self) -> frozenset[str]:
        return normalise_names(self.sans)


@attrs.frozen
class KnownKey:
    """A public key registered in advance, with the names it may be used for."""

    spki_sha256: str
    names: tuple[str, ...]
    note: str = ""
    added_at: float = 0.0

    def name_set(self) -> frozenset[str]:
        return normalise_names(self.names)


def _issuance_key(authority_key_id: str, serial: int) -> bytes | None:
    """(key id, serial) packed into one small bytes object."""
    try:
        key_id = bytes.fromhex(authority_key_id)
    except ValueError:
        return None
    return key_id + b"/" + serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")


def _digest(hex_digest: str | None) -> bytes | None:
    if not hex_digest:
        return None
    try:
        return bytes.fromhex(hex_digest)
    except ValueError:
        return None


class Inventory:
    """The inventory and the registered keys, indexed by evidence.

    Built to hold 100,000 rows in little memory: digests are kept as bytes, sources are
    shared, a row pushed without its PEM is indexed by the hash of its name set, and the
    rows themselves stay in SQLite. A row's TBS hash rides along with its (key id, serial)
    entry: a TBS can only match where they match, so it is checked there, and computed
    from the feed's DER (costly) only then.
    """

    __slots__ = ("_by_issuance", "_by_serial", "_by_sha1", "_keys", "_sources")

    def __init__(self, certs: Iterable[InventoryCert] = (), keys: Iterable[KnownKey] = ()) -> None:
        self._by_sha1: dict[bytes, str] = {}
        """SHA-1 -> source: one entry per row (its length is the row count)."""
        self._by_issuance: dict[bytes, bytes] = {}
        """(key id, serial) -> SHA-1 (20 bytes) followed by the TBS hash when known."""
        self._by_serial: dict[int, dict[int, bytes]] = {}
        """serial -> {hash of the name set: SHA-1}, for rows without a key identifier."""
        self._keys: dict[str, tuple[frozenset[str], str]] = {}
        self._sources: dict[str, str] = {}
        self.add_certs(certs)
        for key in keys:
            self.add_key(key)

    def __len__(self) -> int:
        return len(self._by_sha1)

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def add_certs(self, certs: Iterable[InventoryCert]) -> None:
        for cert in certs:
            self.add_cert(cert)

    def add_cert(self, cert: InventoryCert) -> None:
        """Index a row. To replace a row, :meth:`remove_cert` the old one first."""
        sha1 = _digest(cert.fingerprint_sha1)
        if sha1 is None:
            return
        self._by_sha1[sha1] = self._sources.setdefault(cert.source, cert.source)
        serial = serial_number(cert.serial) if cert.serial else None
        if serial is None:
            return
        issuance = _issuance_key(cert.authority_key_id, serial) if cert.authority_key_id else None
        if issuance is not None:
            self._by_issuance[issuance] = sha1 + (_digest(cert.tbs_sha256) or b"")
        else:  # a row that knows its CA never matches another CA's certificate
            self._by_serial.setdefault(serial, {})[hash(cert.name_set())] = sha1

    def remove_cert(self, cert: InventoryCert) -> None:
        """Forget a row (as stored: the index keys are recomputed from it)."""
        sha1 = _digest(cert.fingerprint_sha1)
        if sha1 is None or self._by_sha1.pop(sha1, None) is None:
            return
        serial = serial_number(cert.serial) if cert.serial else None
        if serial is None:
            return
        issuance = _issuance_key(cert.authority_key_id, serial) if cert.authority_key_id else None
        if issuance is not None:
            entry = self._by_issuance.get(issuance)
            if entry is not None and entry[:20] == sha1:
                del self._by_issuance[issuance]
            return
        by_names = self._by_serial.get(serial, {})
        names = hash(cert.name_set())
        if by_names.get(names) == sha1:
            del by_names[names]
        if not by_names:
            self._by_serial.pop(serial, None)

    def replace(self, other: Inventory) -> None:
        """Take ``other``'s contents in place (every holder of this inventory sees them)."""
        self._by_sha1 = other._by_sha1
        self._by_issuance = other._by_issuance
        self._by_serial = other._by_serial
        self._keys = other._keys
        self._sources = other._sources

    def add_key(self, key: KnownKey) -> None:
        self._keys[key.spki_sha256] = (key.name_set(), key.note)

    def remove_key(self, spki_sha256: str) -> None:
        self._keys.pop(spki_sha256, None)

    def recognise(self, facts: CertFacts) -> Recognition | None:
        """The strongest evidence that this certificate is the organisation's own."""
        sha1 = _digest(facts.sha1)
        if sha1 is not None and sha1 in self._by_sha1:
            return self._from_row(Evidence.FINGERPRINT, sha1)
        if facts.serial is not None and facts.authority_key_id:
            issuance = _issuance_key(facts.authority_key_id, facts.serial)
            entry = self._by_issuance.get(issuance) if issuance is not None else None
            if entry is not None:
                recognition = self._check_tbs(facts, entry)
                if recognition is not None:
                    return recognition
        if facts.spki_sha256 and facts.spki_sha256 in self._keys:
            allowed, note = self._keys[facts.spki_sha256]
            if facts.names and facts.names <= allowed:
                return Recognition(Evidence.KEY, note, facts.spki_sha256)
        if facts.serial is not None:
            by_names = self._by_serial.get(facts.serial)
            if by_names:
                for names in facts.name_sets():
                    found = by_names.get(hash(names))
                    if found is not None:
                        return self._from_row(Evidence.SERIAL_AND_NAMES, found)
        return None

    def _check_tbs(self, facts: CertFacts, entry: bytes) -> Recognition | None:
        """The (key id, serial) of a row matched: compare TBS hashes where both are known.

        Equal: exact (``tbs``). Different: a certificate that is not ours carries our
        serial under our CA's key (a CA fault or worse), so this evidence does not count.
        """
        sha1, row_tbs = entry[:20], entry[20:]
        if row_tbs:
            seen = facts.tbs_sha256
            if seen is None and facts.der is not None:
                seen = tbs_sha256_of_der(facts.der)
            if seen is not None:
                if _digest(seen) != row_tbs:
                    return None
                return self._from_row(Evidence.TBS, sha1)
        return self._from_row(Evidence.ISSUANCE, sha1)

    def _from_row(self, evidence: Evidence, sha1: bytes) -> Recognition:
        return Recognition(evidence, self._by_sha1[sha1], sha1.hex())
