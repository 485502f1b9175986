"""Which CA issued a certificate: its key, its owner, and the names it answers to in CAA.
Pure logic, no I/O.

A CA is identified by its key: a leaf's authority key identifier is the subject key
identifier (SKI) of the CA certificate that signed it. Never by the issuer name:
white-label CAs put another company in their subject (Cloudflare's issuing CAs are
operated by SSL.com, TrustAsia's DV CA chains to DigiCert). A key's **owner** is the
owner of the root it chains to: the CA certificates of the key, then their issuers' keys,
up to a key that has a self-signed certificate. A key with several CA certificates
(cross-signs) whose issuers lead to different owners belongs to the one whose organisation
its own subject names (Microsoft's Azure CAs, cross-signed by DigiCert, are Microsoft's),
else to the one its longest-lived certificate leads to (Let's Encrypt's R3, cross-signed
by IdenTrust until 2021, is ISRG's). Expired CA certificates count like the others: a
certificate logged years ago was issued under them.

An owner's **CAA identifiers** are the issuer domain names it recognises in CAA records
(CCADB's "Recognized CAA Domains"): :data:`OWNERS`, the contract's table. A CA whose root
is not an owner of that table is not identified: certwatch says the CA is unknown rather
than guess its CAA vocabulary (an operator adds it with ``CA_IDENTITIES_FILE``).

The built-in data (:func:`encode_builtin`, :func:`decode_builtin`) is generated from
CCADB's "All Certificate PEMs" report (:func:`ccadb_certificates`) by ``certwatch
ca-data``.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

import attrs
import msgspec
from cryptography import x509
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.error import PyAsn1Error
from pyasn1_modules import rfc5280

from certwatch.core.identity import key_identifier
from certwatch.core.names import normalise_entry
from certwatch.errors import InvalidName

__all__ = [
    "BUILTIN_FORMAT",
    "MAX_IDENTITIES_FILE_BYTES",
    "OWNERS",
    "CACertificate",
    "CAIdentities",
    "CAIdentity",
    "IdentitiesFile",
    "InvalidIdentities",
    "Owner",
    "Tally",
    "ca_certificate",
    "caa_identifier",
    "caa_identifiers",
    "ccadb_certificates",
    "decode_builtin",
    "decode_identities_file",
    "encode_builtin",
    "encode_identities_file",
    "identify",
    "summary",
]

BUILTIN_FORMAT = 1
"""The version of the built-in data's format (:func:`encode_builtin`)."""
MAX_IDENTITIES = 100_000
"""Entries one ``CA_IDENTITIES_FILE`` may hold (CCADB lists about 10,000 CA certificates)."""
MAX_IDENTITIES_FILE_BYTES = 64 * 1024 * 1024
"""The most ``CA_IDENTITIES_FILE`` may hold."""
MAX_OWNER = 200
"""Characters of an owner's name."""


class InvalidIdentities(ValueError):
    """CA identity data that cannot be used; the message says where and why."""


# --- CAA identifiers --------------------------------------------------------------------------


def caa_identifier(value: str) -> str:
    """A CAA issuer domain name, normalised (lowercase, one trailing dot stripped, IDNA), or
    :class:`InvalidName`."""
    if "*" in value:
        raise InvalidName("a CAA identifier is a domain name, without a wildcard")
    return normalise_entry(value)


def caa_identifiers(values: Iterable[str]) -> tuple[str, ...]:
    """Several, normalised, duplicates dropped, sorted."""
    return tuple(sorted({caa_identifier(v) for v in values}))


# --- identities -------------------------------------------------------------------------------


@attrs.frozen
class CAIdentity:
    """One CA key: who owns it and the CAA identifiers that owner recognises."""

    ski: str
    """The CA certificate's subject key identifier: lowercase hex, no colons."""
    owner: str
    caa_domains: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """As in the webhook payload and ``GET /alerts`` (``issuer_ca``)."""
        return {"owner": self.owner, "caa_domains": list(self.caa_domains), "ski": self.ski}


class CAIdentities:
    """Every known CA key, by SKI."""

    def __init__(self, identities: Iterable[CAIdentity] = ()) -> None:
        self._by_ski: dict[str, CAIdentity] = {i.ski: i for i in identities}

    def __len__(self) -> int:
        return len(self._by_ski)

    def __iter__(self) -> Iterator[CAIdentity]:
        return iter(self._by_ski.values())

    def find(self, authority_key_id: str | None) -> CAIdentity | None:
        """The CA whose key signed a certificate with this authority key identifier."""
        if not authority_key_id:
            return None
        return self._by_ski.get(authority_key_id)

    def overlaid(self, extra: Iterable[CAIdentity]) -> CAIdentities:
        """These identities with ``extra`` laid over them (the same SKI: ``extra`` wins)."""
        merged = CAIdentities()
        merged._by_ski = {**self._by_ski, **{i.ski: i for i in extra}}
        return merged

    def owners(self) -> dict[str, int]:
        """Keys per owner."""
        counts: dict[str, int] = {}
        for identity in self._by_ski.values():
            counts[identity.owner] = counts.get(identity.owner, 0) + 1
        return counts


# --- owners -----------------------------------------------------------------------------------


def _sorted_unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


@attrs.frozen
class Owner:
    """A CA owner of the contract's table, and how its certificates name it."""

    name: str
    caa_domains: tuple[str, ...] = attrs.field(converter=_sorted_unique)
    organizations: tuple[str, ...] = attrs.field()
    """Subject organisations (O) of its roots and CAs, exactly as they are written."""
    roots: tuple[str, ...] = attrs.field(default=())
    """Root common names that name it where another owner's organisation is on the root
    (Amazon's Starfield Services root says "Starfield Technologies, Inc.")."""


_DIGICERT_AMAZON = ("amazon.com", "amazontrust.com", "awstrust.com", "amazonaws.com")

OWNERS: tuple[Owner, ...] = (
    Owner("ISRG (Let's Encrypt)", ("letsencrypt.org",),
          ("Internet Security Research Group", "ISRG", "Let's Encrypt")),
    Owner("Google Trust Services", ("pki.goog",),
          ("Google Trust Services LLC", "Google Trust Services")),
    Owner("Sectigo",
          ("sectigo.com", "comodo.com", "comodoca.com", "usertrust.com", "trust-provider.com",
           "entrust.net", "affirmtrust.com"),
          ("Sectigo Limited", "The USERTRUST Network", "COMODO CA Limited", "Comodo CA Limited",
           "AddTrust AB")),
    Owner("DigiCert",
          ("digicert.com", "www.digicert.com", "digicert.ne.jp", "cybertrust.ne.jp",
           "thawte.com", "geotrust.com", "rapidssl.com", "symantec.com",
           "digitalcertvalidation.com", "quovadisglobal.com", *_DIGICERT_AMAZON),
          ("DigiCert Inc", "DigiCert, Inc.", "DigiCert, Inc", "QuoVadis Limited",
           "VeriSign, Inc.", "Symantec Corporation", "GeoTrust Inc.", "thawte, Inc.",
           "Baltimore", "Cybertrust, Inc")),
    Owner("Amazon Trust Services", (*_DIGICERT_AMAZON, "aws.amazon.com"), ("Amazon",),
          roots=("Starfield Services Root Certificate Authority - G2",)),
    Owner("GlobalSign", ("globalsign.com",), ("GlobalSign", "GlobalSign nv-sa")),
    Owner("SSL.com", ("ssl.com", "entrust.net", "affirmtrust.com"), ("SSL Corporation",)),
    Owner("Microsoft", ("microsoft.com",), ("Microsoft Corporation",)),
    Owner("GoDaddy / Starfield", ("godaddy.com", "starfieldtech.com"),
          ("GoDaddy.com, Inc.", "GoDaddy.com", "The Go Daddy Group, Inc.",
           "Starfield Technologies, Inc.")),
    Owner("Certainly", ("certainly.com",), ("Certainly",)),
    Owner("HARICA", ("harica.gr",),
          ("Hellenic Academic and Research Institutions Cert. Authority",
           "Hellenic Academic and Research Institutions CA")),
    Owner("Buypass", ("buypass.com", "buypass.no"), ("Buypass AS-983163327",)),
    Owner("Apple", ("pki.apple.com",), ("Apple Inc.",)),
    Owner("TrustAsia", ("trustasia.com",), ("TrustAsia Technologies, Inc.",)),
    Owner("IdenTrust", ("identrust.com", "www.identrust.com"),
          ("IdenTrust", "Digital Signature Trust Co.")),
    Owner("Actalis", ("actalis.it",), ("Actalis S.p.A./03358520967", "Actalis S.p.A.")),
)  # fmt: skip
"""The contract's owners and their CAA identifiers (sources: each CA's CP/CPS and CCADB)."""


# --- CA certificates --------------------------------------------------------------------------


@attrs.frozen
class CACertificate:
    """What :func:`identify` needs of one CA certificate."""

    ski: str
    aki: str | None
    subject: bytes
    """The subject name's DER (to find an issuer without an authority key identifier)."""
    issuer: bytes
    organization: str
    common_name: str
    not_after: float

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer and self.aki in (None, self.ski)


_SKI_OID = "2.5.29.14"
_AKI_OID = "2.5.29.35"


def _first(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    value = values[0].value if values else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _key_ids_with_pyasn1(der: bytes) -> tuple[str | None, str | None]:
    """SKI and AKI read with pyasn1, for the old CA certificates whose other extensions
    cryptography refuses (a malformed policy notice, say)."""
    try:
        cert, _ = der_decoder.decode(der, asn1Spec=rfc5280.Certificate())
        ski = aki = None
        for ext in cert["tbsCertificate"]["extensions"]:
            oid, value = str(ext["extnID"]), bytes(ext["extnValue"])
            if oid == _SKI_OID:
                decoded, _ = der_decoder.decode(value, asn1Spec=rfc5280.SubjectKeyIdentifier())
                ski = bytes(decoded).hex()
            elif oid == _AKI_OID:
                decoded, _ = der_decoder.decode(value, asn1Spec=rfc5280.AuthorityKeyIdentifier())
                if decoded["keyIdentifier"].isValue:
                    aki = bytes(decoded["keyIdentifier"]).hex()
    except (PyAsn1Error, ValueError, TypeError):
        return None, None
    return ski, aki


def ca_certificate(der: bytes) -> CACertificate | None:
    """The facts of one CA certificate; ``None`` when it cannot be read at all."""
    with warnings.catch_warnings():  # old CAs break rules cryptography warns about
        warnings.simplefilter("ignore")
        return _ca_certificate(der)


def _ca_certificate(der: bytes) -> CACertificate | None:
    try:
        cert = x509.load_der_x509_certificate(der)
        subject, issuer = cert.subject, cert.issuer
        names = (subject.public_bytes(), issuer.public_bytes())
        organization = _first(subject, NameOID.ORGANIZATION_NAME)
        common_name = _first(subject, NameOID.COMMON_NAME)
        not_after = cert.not_valid_after_utc.timestamp()
    except ValueError:
        return None
    ski: str | None
    aki: str | None
    try:
        extensions = cert.extensions
    except ValueError:
        ski, aki = _key_ids_with_pyasn1(der)
    else:
        try:
            ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
        except x509.ExtensionNotFound:
            ski = None
        try:
            identifier = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
            aki = identifier.value.key_identifier.hex() if identifier.value.key_identifier else None
        except x509.ExtensionNotFound:
            aki = None
    if ski is None:
        try:  # RFC 5280's method 1: what a CA without the extension is known by
            ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()
        except (ValueError, TypeError):  # a key type cryptography does not support
            return None
    return CACertificate(
        ski=ski,
        aki=aki,
        subject=names[0],
        issuer=names[1],
        organization=organization,
        common_name=common_name,
        not_after=not_after,
    )


@attrs.define
class Tally:
    """What :func:`ccadb_certificates` read."""

    rows: int = 0
    unreadable: int = 0
    """Rows whose PEM is not a certificate cryptography reads, or does not match its
    SHA-256 fingerprint."""


_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def ccadb_certificates(report: str, tally: Tally) -> Iterator[CACertificate]:
    """The CA certificates of one CCADB "All Certificate PEMs" CSV report (columns
    ``SHA-256 Fingerprint``, ``X.509 Certificate (PEM)``). A few of CCADB's PEMs have their
    header run into the base64: the base64 between the markers is what counts."""
    rows = csv.DictReader(io.StringIO(report))
    if rows.fieldnames is None or not {"SHA-256 Fingerprint", "X.509 Certificate (PEM)"} <= set(
        rows.fieldnames
    ):
        raise InvalidIdentities(
            "not a CCADB All Certificate PEMs report (columns 'SHA-256 Fingerprint' and "
            "'X.509 Certificate (PEM)' expected)"
        )
    for row in rows:
        tally.rows += 1
        found = _PEM.search(row["X.509 Certificate (PEM)"] or "")
        try:
            der = base64.b64decode("".join(found.group(1).split()), validate=True) if found else b""
        except ValueError:
            der = b""
        expected = (row["SHA-256 Fingerprint"] or "").strip().lower()
        cert = ca_certificate(der) if hashlib.sha256(der).hexdigest() == expected else None
        if cert is None:
            tally.unreadable += 1
            continue
        yield cert


# --- from certificates to identities ----------------------------------------------------------


class _Graph:
    def __init__(self, certs: Iterable[CACertificate], owners: Iterable[Owner]) -> None:
        self.by_key: dict[str, list[CACertificate]] = {}
        by_subject: dict[bytes, set[str]] = {}
        for cert in certs:
            self.by_key.setdefault(cert.ski, []).append(cert)
            by_subject.setdefault(cert.subject, set()).add(cert.ski)
        self.by_subject = by_subject
        self.owners = tuple(owners)
        self.by_organization = {o: owner for owner in self.owners for o in owner.organizations}
        self.by_root_name = {n: owner for owner in self.owners for n in owner.roots}
        self.resolved: dict[str, Owner | None] = {}

    def parent(self, cert: CACertificate) -> str | None:
        """The issuer's key: its authority key identifier, else the one key whose
        certificates have the issuer's name as their subject."""
        if cert.aki is not None:
            return cert.aki
        keys = self.by_subject.get(cert.issuer, set())
        return next(iter(keys)) if len(keys) == 1 else None

    def owner_of_root(self, cert: CACertificate) -> Owner | None:
        return self.by_root_name.get(cert.common_name) or self.by_organization.get(
            cert.organization
        )

    def owner(self, key: str, visiting: frozenset[str] = frozenset()) -> Owner | None:
        if key in self.resolved:
            return self.resolved[key]
        certs = self.by_key.get(key)
        if not certs or key in visiting:
            return None
        roots = [c for c in certs if c.self_signed]
        if roots:
            found = self.owner_of_root(roots[0])
        else:
            found = self._through_issuers(key, certs, visiting | {key})
        self.resolved[key] = found
        return found

    def _through_issuers(
        self, key: str, certs: list[CACertificate], visiting: frozenset[str]
    ) -> Owner | None:
        candidates: list[Owner] = []
        for cert in sorted(certs, key=lambda c: c.not_after, reverse=True):
            parent = self.parent(cert)
            if parent is None or parent == key:
                continue
            owner = self.owner(parent, visiting)
            if owner is not None and owner not in candidates:
                candidates.append(owner)
        if len(candidates) > 1:
            named = [o for o in candidates if any(c.organization in o.organizations for c in certs)]
            if named:
                return named[0]
        return candidates[0] if candidates else None


def identify(certs: Iterable[CACertificate], owners: Iterable[Owner] = OWNERS) -> CAIdentities:
    """Every CA key among ``certs`` that chains to a root of one of ``owners``."""
    graph = _Graph(certs, owners)
    found = []
    for key in sorted(graph.by_key):
        owner = graph.owner(key)
        if owner is not None:
            found.append(CAIdentity(ski=key, owner=owner.name, caa_domains=owner.caa_domains))
    return CAIdentities(found)


# --- the built-in data ------------------------------------------------------------------------


class _BuiltinOwner(msgspec.Struct, forbid_unknown_fields=True):
    owner: str
    caa_domains: list[str]
    keys: list[str]


class _Builtin(msgspec.Struct, forbid_unknown_fields=True):
    format: int
    source: str
    generated_at: str
    owners: list[_BuiltinOwner]


def encode_builtin(identities: CAIdentities, *, source: str, generated_at: datetime) -> bytes:
    """The compact form shipped in the package: gzipped JSON, keys grouped by owner.
    The same input gives the same bytes (no timestamp in the gzip header)."""
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for identity in identities:
        grouped.setdefault((identity.owner, identity.caa_domains), []).append(identity.ski)
    data = _Builtin(
        format=BUILTIN_FORMAT,
        source=source,
        generated_at=generated_at.astimezone(UTC).isoformat(timespec="seconds"),
        owners=[
            _BuiltinOwner(owner=owner, caa_domains=list(domains), keys=sorted(keys))
            for (owner, domains), keys in sorted(grouped.items())
        ],
    )
    return gzip.compress(msgspec.json.encode(data), mtime=0)


def decode_builtin(data: bytes) -> tuple[CAIdentities, str]:
    """The identities in :func:`encode_builtin`'s form, and where they came from."""
    try:
        decoded = msgspec.json.decode(gzip.decompress(data), type=_Builtin)
    except (OSError, EOFError, msgspec.DecodeError) as e:
        raise InvalidIdentities(f"not certwatch's CA data: {e}") from None
    if decoded.format != BUILTIN_FORMAT:
        raise InvalidIdentities(f"CA data format {decoded.format}, not {BUILTIN_FORMAT}")
    identities = [
        CAIdentity(ski=ski, owner=o.owner, caa_domains=tuple(o.caa_domains))
        for o in decoded.owners
        for ski in o.keys
    ]
    return CAIdentities(identities), f"{decoded.source} ({decoded.generated_at})"


# --- CA_IDENTITIES_FILE -----------------------------------------------------------------------


class _FileEntry(msgspec.Struct, forbid_unknown_fields=True):
    ski: str
    owner: str
    caa_domains: list[str]


def decode_identities_file(data: bytes) -> list[CAIdentity]:
    """``CA_IDENTITIES_FILE``: a JSON list of ``{"ski", "owner", "caa_domains"}``, each
    checked; :class:`InvalidIdentities` names the first bad entry and field."""
    try:
        entries = msgspec.json.decode(data, type=list[_FileEntry])
    except msgspec.ValidationError as e:
        raise InvalidIdentities(f"{e} (expected a list of {{ski, owner, caa_domains}})") from None
    except msgspec.DecodeError as e:
        raise InvalidIdentities(f"not JSON: {e}") from None
    if len(entries) > MAX_IDENTITIES:
        raise InvalidIdentities(f"more than {MAX_IDENTITIES} entries")
    return [_checked(i, entry) for i, entry in enumerate(entries)]


def _checked(i: int, entry: _FileEntry) -> CAIdentity:
    where = f"entry {i}"
    ski = key_identifier(entry.ski)
    if ski is None or len(ski) % 2 or not 8 <= len(ski) <= 128:
        raise InvalidIdentities(f"{where}: ski: {entry.ski[:80]!r} is not a key identifier in hex")
    owner = entry.owner.strip()
    if not owner or len(owner) > MAX_OWNER or not owner.isprintable():
        raise InvalidIdentities(
            f"{where}: owner: must be printable text of 1 to {MAX_OWNER} characters"
        )
    if not entry.caa_domains:
        raise InvalidIdentities(f"{where}: caa_domains: must list at least one CAA identifier")
    try:
        domains = caa_identifiers(entry.caa_domains)
    except InvalidName as e:
        raise InvalidIdentities(f"{where}: caa_domains: {e}") from None
    return CAIdentity(ski=ski, owner=owner, caa_domains=domains)


@attrs.frozen
class IdentitiesFile:
    """``CA_IDENTITIES_FILE``, read and checked with the settings."""

    path: str
    identities: tuple[CAIdentity, ...] = attrs.field(repr=False, eq=False)


def encode_identities_file(identities: Iterable[CAIdentity]) -> bytes:
    """The ``CA_IDENTITIES_FILE`` form, one entry per line."""
    lines = [
        msgspec.json.encode({"ski": i.ski, "owner": i.owner, "caa_domains": list(i.caa_domains)})
        for i in sorted(identities, key=lambda i: (i.owner, i.ski))
    ]
    return b"[\n" + b",\n".join(lines) + b"\n]\n"


def summary(identities: Mapping[str, int]) -> str:
    """``"ISRG (Let's Encrypt)": 18 keys, ...``, largest first."""
    ordered = sorted(identities.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{owner}: {count}" for owner, count in ordered)
