"""X.509 facts from certificates, CSRs and public keys (pyca/cryptography). No I/O.

Everything here reads input from outside (the feed, an LB's push, an operator), so every
call into cryptography or pyasn1 is guarded: a failure is an :class:`InvalidCertificate`
with a short reason (never a parser's internals), or, when reading leniently, a missing
fact. Bounds keep any one certificate cheap: :data:`MAX_DER_BYTES` before anything is
parsed, :data:`MAX_EXTENSIONS` and :data:`MAX_NAME_ATTRIBUTES` before the pure-Python TBS
hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtensionOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_modules import rfc5280

from certwatch.errors import InvalidCertificate

__all__ = [
    "MAX_DER_BYTES",
    "MAX_EXTENSIONS",
    "MAX_NAME_ATTRIBUTES",
    "CertificateInfo",
    "certificate_names",
    "parse_certificate",
    "precert_signing_issuer",
    "precert_tbs_sha256",
    "spki_sha256_from_pem",
    "tbs_sha256_of_der",
]

T = TypeVar("T")

MAX_DER_BYTES = 64 * 1024
"""Larger certificates are not parsed. A leaf with 100 names is about 4 KiB; 64 KiB holds
some 2,500 names. Parsing costs about 80 ns per byte in cryptography (which holds the GIL),
so this bounds any one parse to a few milliseconds."""
MAX_NAME_ATTRIBUTES = 64
"""More subject and issuer attributes than this and the TBS hash is not computed: 2,500 of
them cost pyasn1 160 ms. Real certificates carry fewer than ten in each name."""
MAX_EXTENSIONS = 100
"""More extensions than this and the TBS hash is not computed. Real leaves carry about ten;
pyasn1 (pure Python) spends some 60 us on each, so 45,000 would hold the loop for seconds."""

_CT_POISON = ExtensionOID.PRECERT_POISON.dotted_string
_CT_SCT_LIST = ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS.dotted_string
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


@attrs.frozen
class CertificateInfo:
    """What certwatch derives from one certificate's DER.

    Read leniently (the feed), a fact that could not be read is empty (``None``, ``()``)
    and ``problems`` says why; read strictly (a push), any problem is an error instead.
    """

    sha1: str
    sha256: str
    serial: int
    sans: tuple[str, ...]
    subject_cn: str | None
    not_before: int
    not_after: int
    issuer: str
    """certstream's ``aggregated`` form of the issuer (``/C=US/CN=.../O=...``): the form the
    feed reports, so an issuance key built from either is the same."""
    issuer_dn: str
    """The issuer as RFC 4514 text, in the certificate's own order (for people)."""
    issuer_o: str | None
    issuer_cn: str | None
    authority_key_id: str | None
    spki_sha256: str | None
    tbs_sha256: str | None
    is_precert: bool
    problems: tuple[str, ...] = ()

    @property
    def serial_hex(self) -> str:
        """Uppercase, even-length hex, as ``openssl x509 -serial`` prints it."""
        digits = f"{self.serial:X}"
        return digits if len(digits) % 2 == 0 else "0" + digits


def _reason(e: Exception) -> str:
    """A short, user-facing reason for a parser's exception (never its internals)."""
    if isinstance(e, x509.InvalidVersion):
        return f"X.509 version {e.parsed_version + 1} is not valid"
    if isinstance(e, x509.DuplicateExtension):
        return f"extension {e.oid.dotted_string} appears twice"
    if isinstance(e, x509.UnsupportedGeneralNameType):
        return "holds a kind of name certwatch cannot read"
    if isinstance(e, UnsupportedAlgorithm):
        return "uses an algorithm certwatch cannot read"
    return "malformed DER"


def _read(problems: list[str], what: str, read: Callable[[], T], default: T) -> T:
    """``read()``, or ``default`` with a problem noted when the parser rejects the input."""
    try:
        return read()
    except Exception as e:  # noqa: BLE001 - a parser's failure on input is data, not a bug
        problems.append(f"{what}: {_reason(e)}")
        return default


def precert_tbs_sha256(tbs_der: bytes) -> str | None:
    """SHA-256 of a TBS certificate without the CT poison and SCT-list extensions.

    RFC 6962 §3.2: a precert's TBS minus the poison equals its final certificate's TBS
    minus the SCT list, so this is one value for both halves of an issuance. (pyca's
    ``tbs_precertificate_bytes`` strips only the SCT list and fails without one.)
    ``None`` when the TBS is not DER that pyasn1 can round-trip. Callers bound the work
    first (:data:`MAX_EXTENSIONS`): pyasn1 is slow.
    """
    try:
        tbs, rest = der_decoder.decode(tbs_der, asn1Spec=rfc5280.TBSCertificate())
        if rest:
            return None
        extensions = tbs["extensions"]
        if extensions.isValue:
            kept = extensions.clone()
            for ext in extensions:
                if str(ext["extnID"]) not in (_CT_POISON, _CT_SCT_LIST):
                    kept.append(ext)
            tbs["extensions"] = kept
        return hashlib.sha256(der_encoder.encode(tbs)).hexdigest()
    except Exception:  # noqa: BLE001 - pyasn1 raises more than PyAsn1Error on hostile input
        return None


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _aggregated(name: x509.Name) -> str:
    """certstream's ``aggregated`` form: ``/C=US/CN=ETS R1/O=Example Trust Services``."""
    parts = []
    for key, oid in (
        ("C", NameOID.COUNTRY_NAME),
        ("CN", NameOID.COMMON_NAME),
        ("L", NameOID.LOCALITY_NAME),
        ("O", NameOID.ORGANIZATION_NAME),
        ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME),
        ("ST", NameOID.STATE_OR_PROVINCE_NAME),
    ):
        value = _attr(name, oid)
        if value is not None:
            parts.append(f"/{key}={value}")
    return "".join(parts)


def _tbs_sha256(cert: x509.Certificate, extension_count: int) -> str | None:
    if extension_count > MAX_EXTENSIONS:
        return None
    try:
        attributes = sum(len(rdn) for rdn in (*cert.subject.rdns, *cert.issuer.rdns))
    except Exception:  # noqa: BLE001 - hostile input
        return None
    if attributes > MAX_NAME_ATTRIBUTES:
        return None
    return precert_tbs_sha256(cert.tbs_certificate_bytes)


def tbs_sha256_of_der(der: bytes) -> str | None:
    """:func:`precert_tbs_sha256` of a certificate's DER; ``None`` if it cannot be computed
    (it does not parse, or it is beyond the bounds)."""
    if len(der) > MAX_DER_BYTES:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        count = len(cert.extensions)
    except Exception:  # noqa: BLE001 - hostile input
        return None
    return _tbs_sha256(cert, count)


def _too_large(der_bytes: int) -> InvalidCertificate:
    return InvalidCertificate(
        f"is {der_bytes:,} bytes of DER; certificates over {MAX_DER_BYTES:,} are not accepted"
    )


def _load_der(der: bytes) -> x509.Certificate:
    if len(der) > MAX_DER_BYTES:
        raise _too_large(len(der))
    try:
        return x509.load_der_x509_certificate(der)
    except Exception as e:  # noqa: BLE001 - hostile input
        raise InvalidCertificate(f"not a parsable X.509 certificate ({_reason(e)})") from None


def _der_to_info(der: bytes, *, with_tbs: bool) -> CertificateInfo:
    """Every fact that can be read; what cannot is empty and listed in ``problems``."""
    cert = _load_der(der)
    problems: list[str] = []
    no_extensions: list[x509.Extension[x509.ExtensionType]] = []
    extensions = _read(problems, "extensions", lambda: list(cert.extensions), no_extensions)
    if len(extensions) > MAX_EXTENSIONS:
        problems.append(f"has {len(extensions):,} extensions; at most {MAX_EXTENSIONS} are read")
    sans: list[str] = []
    aki: str | None = None
    is_precert = False
    for ext in extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            sans = ext.value.get_values_for_type(x509.DNSName)
        elif isinstance(ext.value, x509.AuthorityKeyIdentifier) and ext.value.key_identifier:
            aki = ext.value.key_identifier.hex()
        elif isinstance(ext.value, x509.PrecertPoison):
            is_precert = True
    spki = _read(problems, "public key", lambda: _spki_sha256(cert.public_key()), None)
    issuer = _read(problems, "issuer", lambda: cert.issuer, x509.Name([]))
    subject = _read(problems, "subject", lambda: cert.subject, x509.Name([]))
    validity = _read(problems, "validity", lambda: _validity(cert), (0, 0))
    return CertificateInfo(
        sha1=hashlib.sha1(der, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(der).hexdigest(),
        serial=cert.serial_number,
        sans=tuple(sans),
        subject_cn=_read(problems, "subject", lambda: _attr(subject, NameOID.COMMON_NAME), None),
        not_before=validity[0],
        not_after=validity[1],
        issuer=_read(problems, "issuer", lambda: _aggregated(issuer), ""),
        issuer_dn=_read(problems, "issuer", issuer.rfc4514_string, ""),
        issuer_o=_read(problems, "issuer", lambda: _attr(issuer, NameOID.ORGANIZATION_NAME), None),
        issuer_cn=_read(problems, "issuer", lambda: _attr(issuer, NameOID.COMMON_NAME), None),
        authority_key_id=aki,
        spki_sha256=spki,
        tbs_sha256=_tbs_sha256(cert, len(extensions)) if with_tbs and not problems else None,
        is_precert=is_precert,
        problems=tuple(dict.fromkeys(problems)),
    )


def _validity(cert: x509.Certificate) -> tuple[int, int]:
    return (int(cert.not_valid_before_utc.timestamp()), int(cert.not_valid_after_utc.timestamp()))


def _spki_sha256(key: PublicKeyTypes | CertificatePublicKeyTypes) -> str:
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _first_pem_block(data: bytes) -> bytes:
    """The first PEM certificate block, refused by its size before anything parses it
    (cryptography would decode and parse all of it, holding the GIL)."""
    begin = data.find(_PEM_BEGIN)
    end = data.find(_PEM_END, begin + len(_PEM_BEGIN))
    if begin < 0 or end < 0:
        raise InvalidCertificate("no '-----BEGIN CERTIFICATE-----' block found")
    body = data[begin + len(_PEM_BEGIN) : end]
    der_bytes = (len(body) - body.count(b"\n") - body.count(b"\r")) * 3 // 4
    if der_bytes > MAX_DER_BYTES:
        raise _too_large(der_bytes)
    return data[begin : end + len(_PEM_END)]


def parse_certificate(
    data: bytes | str, *, with_tbs: bool = True, strict: bool = True
) -> CertificateInfo:
    """Facts from one certificate, PEM (the first block) or DER.

    ``with_tbs=False`` skips the TBS hash, which costs a hundred times the rest (pyasn1).
    Raises :class:`InvalidCertificate` when it does not parse at all, or, if ``strict``,
    when any fact cannot be read; otherwise such facts are empty (see ``problems``).
    """
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    if b"-----BEGIN" in raw:
        block = _first_pem_block(raw)
        try:
            cert = x509.load_pem_x509_certificate(block)
            raw = cert.public_bytes(serialization.Encoding.DER)
        except Exception as e:  # noqa: BLE001 - hostile input
            raise InvalidCertificate(f"not a parsable PEM certificate ({_reason(e)})") from None
    info = _der_to_info(raw, with_tbs=with_tbs)
    if strict and info.problems:
        raise InvalidCertificate(f"not a usable certificate: {info.problems[0]}")
    return info


def certificate_names(der: bytes) -> tuple[str, ...]:
    """A certificate's names as certstream's ``all_domains`` has them: its DNS SANs, then the
    subject CN if it is not one of them. The fast path for every entry back-fill reads.

    Raises :class:`InvalidCertificate` when the names cannot be read.
    """
    if len(der) > MAX_DER_BYTES:
        raise _too_large(len(der))
    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = san.value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        cn = _attr(cert.subject, NameOID.COMMON_NAME)
    except Exception as e:  # noqa: BLE001 - hostile input
        raise InvalidCertificate(f"names cannot be read ({_reason(e)})") from None
    if cn is not None and cn not in names:
        names.append(cn)
    return tuple(names)


_PRECERT_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")


def precert_signing_issuer(der: bytes) -> tuple[str | None, str] | None:
    """For the first certificate of a precert's chain: when it is a Precertificate Signing
    Certificate (RFC 6962 §3.1), the (key identifier, ``aggregated`` name) of the CA that
    issued it, who is the final certificate's issuer; else ``None``."""
    try:
        cert = x509.load_der_x509_certificate(der)
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if _PRECERT_SIGNING not in usage:
            return None
        try:
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
            key_id = aki.key_identifier.hex() if aki.key_identifier else None
        except x509.ExtensionNotFound:
            key_id = None
        return key_id, _aggregated(cert.issuer)
    except Exception:  # noqa: BLE001 - hostile input: not a precert signing certificate
        return None


def spki_sha256_from_pem(text: str) -> str:
    """SHA-256 of the SubjectPublicKeyInfo in a PEM public key, CSR or certificate."""
    data = text.encode("utf-8", "replace")
    if b"-----BEGIN CERTIFICATE-----" in data:
        spki = parse_certificate(data, with_tbs=False).spki_sha256
        assert spki is not None  # strict: a key that cannot be read is an error
        return spki
    if len(data) > 4 * MAX_DER_BYTES:
        raise InvalidCertificate(f"is over {4 * MAX_DER_BYTES:,} bytes; not a public key")
    try:
        if b"CERTIFICATE REQUEST-----" in data:
            return _spki_sha256(x509.load_pem_x509_csr(data).public_key())
        return _spki_sha256(serialization.load_pem_public_key(data))
    except Exception as e:  # noqa: BLE001 - hostile input
        raise InvalidCertificate(
            f"not a usable PEM public key, CSR or certificate ({_reason(e)})"
        ) from None
