"""Real X.509 certificates for tests, and the certstream messages that carry them.

A :class:`CA` issues an :class:`Issuance`: a precert (with the CT poison extension) and the
final certificate (with an SCT-list extension) sharing serial, names, validity and key, as
a real CA produces them. :meth:`Issuance.message` renders either one in the format of each
certstream server variant (see tests/data/samples/README.md).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import itertools
import secrets
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280

SCT_LIST_OID = ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS


def _sct_list() -> bytes:
    """A well-formed (unverifiable) SCT list extension value, as logs return for a precert."""
    sct = (
        b"\x00"  # v1
        + bytes(32)  # log id
        + (1795821669086).to_bytes(8, "big")  # timestamp (ms)
        + b"\x00\x00"  # no extensions
        + b"\x04\x03"  # sha256 / ecdsa
        + b"\x00\x02\x30\x00"  # a 2-byte "signature"
    )
    tls_list = len(sct).to_bytes(2, "big") + sct
    tls_list = len(tls_list).to_bytes(2, "big") + tls_list
    return b"\x04" + bytes([len(tls_list)]) + tls_list


_FAKE_SCT_LIST = _sct_list()

VARIANTS = ("go-full", "go-lite", "go-tiled", "elixir")
BLANK_SHA1 = hashlib.sha1(b"").hexdigest()
BLANK_SHA256 = hashlib.sha256(b"").hexdigest()

_log_index = itertools.count(1_000_000)


def colon_hex(digest: bytes, *, upper: bool = True) -> str:
    text = digest.hex().upper() if upper else digest.hex()
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def random_serial(*, leading_zero_nibble: bool = False) -> int:
    """A positive serial of up to 20 octets.

    With ``leading_zero_nibble`` its hex has an odd number of digits, so the Go server and
    openssl print it with a leading ``0`` and the Elixir server without.
    """
    if leading_zero_nibble:
        return secrets.randbits(156) | (1 << 155)  # 39 hex digits
    return secrets.randbits(159) | (1 << 158)  # 40 hex digits


def _name(cn: str, org: str | None = None, country: str | None = None) -> x509.Name:
    attrs_ = []
    if country:
        attrs_.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    if org:
        attrs_.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs_.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs_)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def build_leaf(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    issuer_key: Any,
    public_key: Any,
    serial: int,
    names: list[str],
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    extra: x509.ExtensionType,
    critical: bool,
) -> x509.Certificate:
    """A TLS leaf as CAs issue them: SANs, not a CA, the issuer's key id, and ``extra``
    (the CT poison for a precert, the SCT list for its final certificate)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(extra, critical=critical)
        .sign(issuer_key, hashes.SHA256())
    )


class CA:
    """An issuing CA with its own key."""

    def __init__(self, cn: str = "ETS R1", org: str = "Example Trust Services") -> None:
        self.cn, self.org = cn, org
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.name = _name(cn, org, "US")
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(random_serial())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def key_id(self) -> bytes:
        return x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()).digest

    def precert_signer(self) -> CA:
        """A Precertificate Signing Certificate of this CA (RFC 6962 §3.1): a CA certificate
        with the CT precert-signing usage, which signs precerts in this CA's stead."""
        signer = CA(f"{self.cn} Precert Signer", self.org)
        now = datetime.datetime.now(datetime.UTC)
        signer.cert = (
            x509.CertificateBuilder()
            .subject_name(signer.name)
            .issuer_name(self.name)
            .public_key(signer.key.public_key())
            .serial_number(random_serial())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")]),
                critical=True,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        signer.parent = self
        return signer

    parent: CA | None = None
    """The CA a precert signer signs for."""

    def issue(
        self,
        names: list[str],
        *,
        serial: int | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        cn: str | None = None,
        days: int = 90,
        precert_signer: CA | None = None,
    ) -> Issuance:
        """One issuance: a precert and its final certificate (the precert signed by
        ``precert_signer`` when given)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        serial = serial or random_serial()
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        subject = _name(cn if cn is not None else names[0])

        def build(extra: x509.ExtensionType, critical: bool, signer: CA = self) -> x509.Certificate:
            return build_leaf(
                subject=subject,
                issuer=signer.name,
                issuer_key=signer.key,
                public_key=key.public_key(),
                serial=serial,
                names=names,
                not_before=now - datetime.timedelta(minutes=5),
                not_after=now + datetime.timedelta(days=days),
                extra=extra,
                critical=critical,
            )

        precert = build(x509.PrecertPoison(), critical=True, signer=precert_signer or self)
        final = build(x509.UnrecognizedExtension(SCT_LIST_OID, _FAKE_SCT_LIST), critical=False)
        return Issuance(self, names, precert, final, key)


@attrs.frozen
class Issuance:
    ca: CA
    names: list[str]
    precert: x509.Certificate
    final: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def serial(self) -> int:
        return self.final.serial_number

    @property
    def final_sha1(self) -> str:
        return hashlib.sha1(_der(self.final)).hexdigest()

    def final_pem(self) -> str:
        return self.final.public_bytes(serialization.Encoding.PEM).decode()

    def public_key_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def spki_sha256(self) -> str:
        spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(spki).hexdigest()

    def push(self, source: str = "lb:test-lb", *, serial_style: str = "openssl") -> dict[str, Any]:
        """The contract's JSON push, as an existing deploy hook sends it."""
        serial = f"{self.serial:X}"
        if len(serial) % 2:
            serial = "0" + serial
        if serial_style == "lower-stripped":
            serial = serial.lower().lstrip("0")
        elif serial_style == "colons":
            serial = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)).lower()
        return {
            "fingerprint": colon_hex(hashlib.sha1(_der(self.final)).digest()),
            "serial": serial,
            "sans": list(self.names),
            "not_before": int(self.final.not_valid_before_utc.timestamp()),
            "not_after": int(self.final.not_valid_after_utc.timestamp()),
            "source": source,
        }

    def message(
        self,
        variant: str = "go-full",
        *,
        which: str = "precert",
        log: str = "Example 'Quokka2026h2' log",
        log_url: str = "https://ct.example-logs.net/2026h2",
        index: int | None = None,
        seen: float | None = None,
    ) -> dict[str, Any]:
        """A ``certificate_update`` in the format of one certstream server variant."""
        assert variant in VARIANTS, variant
        cert = self.precert if which == "precert" else self.final
        return leaf_message(
            cert,
            variant=variant,
            update_type="PrecertLogEntry" if which == "precert" else "X509LogEntry",
            chain=[self.ca.cert],
            log=log,
            log_url=log_url,
            index=index,
            seen=seen,
        )


def _subject_dict(name: x509.Name) -> dict[str, Any]:
    def get(oid: x509.ObjectIdentifier) -> str | None:
        values = name.get_attributes_for_oid(oid)
        return str(values[0].value) if values else None

    out = {
        "C": get(NameOID.COUNTRY_NAME),
        "CN": get(NameOID.COMMON_NAME),
        "L": None,
        "O": get(NameOID.ORGANIZATION_NAME),
        "OU": None,
        "ST": None,
    }
    out["aggregated"] = "".join(f"/{k}={v}" for k, v in out.items() if v is not None)
    out["email_address"] = None
    return out


def leaf_message(
    cert: x509.Certificate,
    *,
    variant: str,
    update_type: str,
    chain: list[x509.Certificate],
    log: str,
    log_url: str,
    index: int | None,
    seen: float | None,
) -> dict[str, Any]:
    der = _der(cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = list(sans.get_values_for_type(x509.DNSName))
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    all_domains = [*names, str(cn[0].value)] if cn else list(names)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = f"{cert.serial_number:X}"
    if len(serial) % 2:
        serial = "0" + serial
    precert = update_type == "PrecertLogEntry"
    extensions: dict[str, Any] = {
        "basicConstraints": "CA:FALSE",
        "authorityKeyIdentifier": "keyid:" + colon_hex(aki.key_identifier or b"", upper=False),
        "subjectAltName": ", ".join(f"DNS:{n}" for n in names),
    }
    if precert:
        extensions["ctlPoisonByte"] = True
    leaf: dict[str, Any] = {
        "all_domains": list(dict.fromkeys(all_domains)),
        "extensions": extensions,
        "fingerprint": colon_hex(hashlib.sha1(der).digest()),
        "not_after": int(cert.not_valid_after_utc.timestamp()),
        "not_before": int(cert.not_valid_before_utc.timestamp()),
        "serial_number": serial,
        "signature_algorithm": "ecdsa, sha256",
        "subject": _subject_dict(cert.subject),
        "issuer": _subject_dict(cert.issuer),
        "sha1": colon_hex(hashlib.sha1(der).digest()),
        "sha256": colon_hex(hashlib.sha256(der).digest()),
        "is_ca": False,
        "as_der": base64.b64encode(der).decode(),
    }
    index = next(_log_index) if index is None else index
    data: dict[str, Any] = {
        "cert_index": index,
        "cert_link": f"{log_url}/ct/v1/get-entries?start={index}&end={index}",
        "leaf_cert": leaf,
        "seen": seen if seen is not None else datetime.datetime.now(datetime.UTC).timestamp(),
        "source": {"name": log, "url": log_url, "timestamp": 0.0, "type": "rfc6962"},
        "update_type": update_type,
        "chain": [chain_entry(c) for c in chain],
    }
    if variant in ("go-lite", "go-tiled"):
        del leaf["as_der"]
        del data["chain"]
    if variant == "go-tiled":
        leaf["fingerprint"] = leaf["sha1"] = colon_hex(bytes.fromhex(BLANK_SHA1))
        leaf["sha256"] = colon_hex(bytes.fromhex(BLANK_SHA256))
        data["cert_link"] = ""
        data["source"]["type"] = "tiled"
    if variant == "elixir":
        leaf["serial_number"] = serial.lstrip("0") or "0"
        extensions["authorityKeyIdentifier"] = extensions["authorityKeyIdentifier"].upper()
        extensions["authorityKeyIdentifier"] = (
            "keyid:" + extensions["authorityKeyIdentifier"].removeprefix("KEYID:") + "\n"
        )
        leaf["all_domains"] = sorted(set(all_domains))
        for key in ("sha1", "sha256", "is_ca"):
            del leaf[key]
        del data["source"]["timestamp"]
        del data["source"]["type"]
    return {"data": data, "message_type": "certificate_update"}


def chain_entry(cert: x509.Certificate) -> dict[str, Any]:
    der = _der(cert)
    return {
        "all_domains": [],
        "extensions": {"basicConstraints": "CA:TRUE"},
        "fingerprint": colon_hex(hashlib.sha1(der).digest()),
        "not_after": int(cert.not_valid_after_utc.timestamp()),
        "not_before": int(cert.not_valid_before_utc.timestamp()),
        "serial_number": f"{cert.serial_number:X}",
        "signature_algorithm": "ecdsa, sha256",
        "subject": _subject_dict(cert.subject),
        "issuer": _subject_dict(cert.issuer),
        "as_der": base64.b64encode(der).decode(),
    }


def unrelated_message(name: str = "www.unrelated-example.com") -> dict[str, Any]:
    """A certificate for a name nobody watches."""
    return CA("Other CA", "Other Org").issue([name]).message()


# --- certificates that parsers reject, as a hostile CA or client would make them --------

UNKNOWN_KEY_ALGORITHM = "1.3.6.1.4.1.55555.1"


def _edit_tbs(cert: x509.Certificate, edit: Any) -> bytes:
    """The certificate's DER after ``edit(tbs)`` (pyasn1); the signature is left as it was."""

    decoded, _ = decoder.decode(_der(cert), asn1Spec=rfc5280.Certificate())
    edit(decoded["tbsCertificate"])
    return bytes(encoder.encode(decoded))


def with_unknown_key_algorithm(cert: x509.Certificate) -> bytes:
    """The DER of ``cert`` with its public key under an algorithm OID nobody knows."""

    def edit(tbs: Any) -> None:
        spki_algorithm = tbs["subjectPublicKeyInfo"]["algorithm"]
        spki_algorithm["algorithm"] = univ.ObjectIdentifier(UNKNOWN_KEY_ALGORITHM)

    return _edit_tbs(cert, edit)


def with_version(cert: x509.Certificate, version: int) -> bytes:
    """The DER of ``cert`` claiming X.509 version ``version`` (only 1 to 3 exist)."""

    def edit(tbs: Any) -> None:
        tbs["version"] = version - 1

    return _edit_tbs(cert, edit)


def public_key_pem_with_unknown_algorithm() -> str:
    """A PEM public key (SubjectPublicKeyInfo) under an unknown algorithm OID."""

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    decoded, _ = decoder.decode(spki, asn1Spec=rfc5280.SubjectPublicKeyInfo())
    decoded["algorithm"]["algorithm"] = univ.ObjectIdentifier(UNKNOWN_KEY_ALGORITHM)
    body = base64.encodebytes(bytes(encoder.encode(decoded))).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{body}-----END PUBLIC KEY-----\n"


def with_extensions(ca: CA, names: list[str], count: int) -> x509.Certificate:
    """A final certificate for ``names`` carrying ``count`` extra (unknown) extensions."""
    now = datetime.datetime.now(datetime.UTC)
    extensions: list[x509.Extension[x509.ExtensionType]] = [
        x509.Extension(
            x509.ObjectIdentifier(f"1.3.6.1.4.1.55555.2.{i}"),
            False,
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(f"1.3.6.1.4.1.55555.2.{i}"), b"\x05\x00"
            ),
        )
        for i in range(count)
    ]
    builder = x509.CertificateBuilder(
        issuer_name=ca.name,
        subject_name=_name(names[0]),
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        serial_number=random_serial(),
        not_valid_before=now - datetime.timedelta(minutes=5),
        not_valid_after=now + datetime.timedelta(days=90),
        extensions=extensions,
    )
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
    )
    return builder.sign(ca.key, hashes.SHA256())


def pem(cert: x509.Certificate | bytes) -> str:
    """PEM of a certificate or of raw DER (which need not parse)."""
    der = cert if isinstance(cert, bytes) else _der(cert)
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"
