"""X.509 facts from certificates, CSRs and public keys (pyca/cryptography). No I/O."""

from __future__ import annotations

import hashlib
import re

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtensionOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1_modules import rfc5280

from certwatch.errors import InvalidCertificate

__all__ = [
    "CertificateInfo",
    "parse_certificate",
    "precert_tbs_sha256",
    "spki_sha256_from_pem",
    "tbs_sha256_of_der",
]

_CT_POISON = ExtensionOID.PRECERT_POISON.dotted_string
_CT_SCT_LIST = ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS.dotted_string
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@attrs.frozen
class CertificateInfo:
    """What certwatch derives from one certificate's DER."""

    sha1: str
    sha256: str
    serial: int
    sans: tuple[str, ...]
    subject_cn: str | None
    not_before: int
    not_after: int
    issuer: str
    issuer_o: str | None
    issuer_cn: str | None
    authority_key_id: str | None
    spki_sha256: str
    tbs_sha256: str | None
    is_precert: bool

    @property
    def serial_hex(self) -> str:
        """Uppercase, even-length hex, as ``openssl x509 -serial`` prints it."""
        digits = f"{self.serial:X}"
        return digits if len(digits) % 2 == 0 else "0" + digits


def precert_tbs_sha256(tbs_der: bytes) -> str | None:
    """SHA-256 of a TBS certificate without the CT poison and SCT-list extensions.

    RFC 6962 §3.2: a precert's TBS minus the poison equals its final certificate's TBS
    minus the SCT list, so this is one value for both halves of an issuance. (pyca's
    ``tbs_precertificate_bytes`` strips only the SCT list and fails without one.)
    ``None`` when the TBS is not DER that pyasn1 can round-trip.
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
    except (PyAsn1Error, ValueError, TypeError):
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


def tbs_sha256_of_der(der: bytes) -> str | None:
    """:func:`precert_tbs_sha256` of a certificate's DER; ``None`` if it does not parse."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return precert_tbs_sha256(cert.tbs_certificate_bytes)


def _der_to_info(der: bytes, *, with_tbs: bool = True) -> CertificateInfo:
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
        serial = cert.serial_number
        not_before = int(cert.not_valid_before_utc.timestamp())
        not_after = int(cert.not_valid_after_utc.timestamp())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise InvalidCertificate(f"not a parsable X.509 certificate ({e})") from None

    sans: list[str] = []
    aki: str | None = None
    is_precert = False
    for ext in extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            sans = list(ext.value.get_values_for_type(x509.DNSName))
        elif isinstance(ext.value, x509.AuthorityKeyIdentifier) and ext.value.key_identifier:
            aki = ext.value.key_identifier.hex()
        elif isinstance(ext.value, x509.PrecertPoison):
            is_precert = True
    return CertificateInfo(
        sha1=hashlib.sha1(der, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(der).hexdigest(),
        serial=serial,
        sans=tuple(sans),
        subject_cn=_attr(cert.subject, NameOID.COMMON_NAME),
        not_before=not_before,
        not_after=not_after,
        issuer=_aggregated(cert.issuer),
        issuer_o=_attr(cert.issuer, NameOID.ORGANIZATION_NAME),
        issuer_cn=_attr(cert.issuer, NameOID.COMMON_NAME),
        authority_key_id=aki,
        spki_sha256=hashlib.sha256(spki).hexdigest(),
        tbs_sha256=precert_tbs_sha256(cert.tbs_certificate_bytes) if with_tbs else None,
        is_precert=is_precert,
    )


def parse_certificate(data: bytes | str, *, with_tbs: bool = True) -> CertificateInfo:
    """Facts from one certificate, PEM (the first block) or DER.

    ``with_tbs=False`` skips the TBS hash, which costs a hundred times the rest (pyasn1).
    Raises :class:`InvalidCertificate` when it does not parse.
    """
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    if b"-----BEGIN" in raw:
        block = _PEM_CERT.search(raw)
        if block is None:
            raise InvalidCertificate("no '-----BEGIN CERTIFICATE-----' block found")
        try:
            cert = x509.load_pem_x509_certificate(block.group(0))
        except ValueError as e:
            raise InvalidCertificate(f"not a parsable PEM certificate ({e})") from None
        raw = cert.public_bytes(serialization.Encoding.DER)
    return _der_to_info(raw, with_tbs=with_tbs)


def spki_sha256_from_pem(text: str) -> str:
    """SHA-256 of the SubjectPublicKeyInfo in a PEM public key, CSR or certificate."""
    data = text.encode("utf-8", "replace")
    key: PublicKeyTypes
    try:
        if b"CERTIFICATE REQUEST-----" in data:
            key = x509.load_pem_x509_csr(data).public_key()
        elif b"-----BEGIN CERTIFICATE-----" in data:
            return parse_certificate(data).spki_sha256
        else:
            key = serialization.load_pem_public_key(data)
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as e:
        raise InvalidCertificate(
            f"not a parsable PEM public key, CSR or certificate ({e})"
        ) from None
    return hashlib.sha256(spki).hexdigest()
