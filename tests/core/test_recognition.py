"""Issuance identity and recognition of the org's own certificates (pure logic, no sockets)."""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from certwatch.core import certificates
from certwatch.core.certificates import (
    MAX_DER_BYTES,
    MAX_EXTENSIONS,
    parse_certificate,
    precert_tbs_sha256,
    spki_sha256_from_pem,
    tbs_sha256_of_der,
)
from certwatch.core.identity import CertFacts, fingerprint, key_identifier, serial_number
from certwatch.core.messages import read_update
from certwatch.core.recognition import (
    Evidence,
    Inventory,
    InventoryCert,
    KnownKey,
)
from certwatch.errors import InvalidCertificate
from tests.support import SAMPLES
from tests.support.certs import (
    CA,
    public_key_pem_with_unknown_algorithm,
    random_serial,
    with_extensions,
    with_unknown_key_algorithm,
    with_version,
)

VARIANT_FILES = [
    "go-full-precert.json",
    "go-full-final.json",
    "go-full-tiled-precert.json",
    "go-lite-precert.json",
    "elixir-full-precert.json",
]


def sample_facts(name: str) -> CertFacts:
    return read_update((SAMPLES / name).read_text()).facts


def json_row(push: dict[str, object]) -> InventoryCert:
    """An inventory row as the API stores a contract JSON push."""
    return InventoryCert(
        fingerprint_sha1=fingerprint(str(push["fingerprint"])) or "",
        serial=str(push["serial"]),
        sans=tuple(push["sans"]),  # type: ignore[arg-type]
        not_before=int(push["not_before"]),  # type: ignore[call-overload]
        not_after=int(push["not_after"]),  # type: ignore[call-overload]
        source=str(push.get("source", "")),
    )


def pem_row(pem: str, source: str = "lb:pem") -> InventoryCert:
    return InventoryCert.from_certificate(parse_certificate(pem), source=source)


class TestNormalisers:
    def test_fingerprints(self) -> None:
        """Colons and case do not matter; the empty-input hashes and junk are no fingerprint."""
        assert fingerprint("EF:CE:CD:39:64:1A:14:78:DA:61:36:A3:6A:1F:FF:5C:75:22:B5:BB") == (
            "efcecd39641a1478da6136a36a1fff5c7522b5bb"
        )
        assert fingerprint("DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09") is None
        assert fingerprint(hashlib.sha256(b"").hexdigest(), length=64) is None
        assert fingerprint("xyz") is None
        assert fingerprint("ab" * 19) is None

    def test_serials_compare_as_integers(self) -> None:
        """Padded, unpadded, lowercase and colon-separated serials are one serial."""
        forms = ["05A1FF", "5A1FF", "5a1ff", "05:a1:ff"]
        assert {serial_number(f) for f in forms} == {0x5A1FF}
        assert serial_number("not hex") is None
        assert serial_number("") is None

    def test_key_identifiers(self) -> None:
        """Go's lowercase `keyid:` and Elixir's uppercase with a newline are one identifier."""
        assert key_identifier("keyid:58:f0:b3") == key_identifier("keyid:58:F0:B3\n") == "58f0b3"
        assert key_identifier("58F0B3") == "58f0b3"
        assert key_identifier("keyid:zz") is None


class TestCertificates:
    def test_deployed_certificate(self) -> None:
        """The LB's PEM yields the fingerprint, serial, names and key identifier the feed shows."""
        info = parse_certificate((SAMPLES / "deployed-cert.pem").read_text())
        push = json.loads((SAMPLES / "lb-push.json").read_text())
        assert info.sha1 == push["fingerprint"]
        assert info.serial == int(push["serial"], 16)
        assert sorted(info.sans) == sorted(push["sans"])
        assert (info.not_before, info.not_after) == (push["not_before"], push["not_after"])
        assert info.authority_key_id == "58f0b30c8f76edfeb978944863850c8fefa67a3a"
        assert info.issuer_o == "Example Trust Services"
        assert not info.is_precert

    def test_precert_and_final_share_the_tbs_hash(self, ca: CA) -> None:
        """RFC 6962: the precert's TBS minus poison equals the final's TBS minus SCTs."""
        issuance = ca.issue(["a.example.org", "b.example.org"])
        pre = parse_certificate(issuance.precert.public_bytes(Encoding.DER))
        final = parse_certificate(issuance.final_pem())
        assert pre.is_precert
        assert pre.tbs_sha256 is not None
        assert pre.tbs_sha256 == final.tbs_sha256
        # pyca strips the SCT list itself: an independent check of the same bytes.
        assert (
            final.tbs_sha256 == hashlib.sha256(issuance.final.tbs_precertificate_bytes).hexdigest()
        )
        assert pre.sha1 != final.sha1

    def test_distinct_issuances_have_distinct_tbs_hashes(self, ca: CA) -> None:
        """Two issuances for the same names differ in their TBS hash."""
        one, two = ca.issue(["a.example.org"]), ca.issue(["a.example.org"])
        assert (
            parse_certificate(one.final_pem()).tbs_sha256
            != parse_certificate(two.final_pem()).tbs_sha256
        )

    def test_sample_precert_and_final(self) -> None:
        """The sample precert's and final certificate's DER in the feed share one TBS hash."""
        pre = read_update((SAMPLES / "go-full-precert.json").read_text()).facts
        final = read_update((SAMPLES / "go-full-final.json").read_text()).facts
        assert pre.der is not None
        assert final.der is not None
        assert parse_certificate(pre.der).tbs_sha256 == parse_certificate(final.der).tbs_sha256
        assert precert_tbs_sha256(b"\x30\x00") is None

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ],
    )
    def test_bad_pem_is_rejected(self, text: str) -> None:
        """Text that is not a parsable certificate raises InvalidCertificate."""
        with pytest.raises(InvalidCertificate):
            parse_certificate(text)

    def test_spki_from_key_csr_and_certificate(self, ca: CA) -> None:
        """A public key, a CSR and a certificate for one key give one SPKI hash."""
        issuance = ca.issue(["a.example.org"])
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example.org")]))
            .sign(issuance.key, hashes.SHA256())
            .public_bytes(Encoding.PEM)
            .decode()
        )
        expected = issuance.spki_sha256()
        assert spki_sha256_from_pem(issuance.public_key_pem()) == expected
        assert spki_sha256_from_pem(csr) == expected
        assert spki_sha256_from_pem(issuance.final_pem()) == expected
        with pytest.raises(InvalidCertificate):
            spki_sha256_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")


PARSER_INTERNALS = ("ParseError", "{", "kind:", "asn1", "Traceback")


class TestHostileCertificates:
    """Whatever the bytes, parsing ends in facts or an InvalidCertificate with a plain reason."""

    def test_an_unknown_key_algorithm_is_a_named_input_error(self, ca: CA) -> None:
        """Read strictly (a push), a key nobody can read is an error that says so."""
        der = with_unknown_key_algorithm(ca.issue(["a.example.org"]).final)
        with pytest.raises(InvalidCertificate) as caught:
            parse_certificate(der)
        assert "public key" in caught.value.message
        assert not any(word in caught.value.message for word in PARSER_INTERNALS)

    def test_an_unknown_key_algorithm_still_gives_the_other_facts(self, ca: CA) -> None:
        """Read leniently (the feed), the serial, names and key id survive; the key is left out."""
        issuance = ca.issue(["a.example.org"])
        info = parse_certificate(with_unknown_key_algorithm(issuance.precert), strict=False)
        assert info.serial == issuance.serial
        assert info.sans == ("a.example.org",)
        assert info.authority_key_id == ca.key_id.hex()
        assert info.spki_sha256 is None
        assert info.problems == ("public key: uses an algorithm certwatch cannot read",)

    def test_version_8_is_refused_with_its_number(self, ca: CA) -> None:
        """An X.509 version that does not exist is refused, naming it."""
        der = with_version(ca.issue(["a.example.org"]).final, 8)
        with pytest.raises(InvalidCertificate, match=r"X\.509 version 8 is not valid"):
            parse_certificate(der, strict=False)

    @pytest.mark.parametrize("cut", [1, 10, 100, 300])
    def test_truncated_der_shows_no_parser_internals(self, ca: CA, cut: int) -> None:
        """A certificate cut short is 'malformed DER', not the parser's own error text."""
        der = ca.issue(["a.example.org"]).final.public_bytes(Encoding.DER)[:-cut]
        with pytest.raises(InvalidCertificate) as caught:
            parse_certificate(der)
        assert "malformed DER" in caught.value.message
        assert not any(word in caught.value.message for word in PARSER_INTERNALS)

    def test_a_key_of_unknown_algorithm_is_a_named_input_error(self) -> None:
        """A PEM public key under an unknown algorithm is an InvalidCertificate, not a crash."""
        with pytest.raises(InvalidCertificate, match="cannot read"):
            spki_sha256_from_pem(public_key_pem_with_unknown_algorithm())

    def test_an_oversized_certificate_is_not_parsed(self) -> None:
        """Over MAX_DER_BYTES, nothing is parsed: the size alone is the answer."""
        with pytest.raises(InvalidCertificate, match="certificates over 65,536 are not accepted"):
            parse_certificate(b"\x30" * (MAX_DER_BYTES + 1), strict=False)
        assert tbs_sha256_of_der(b"\x30" * (MAX_DER_BYTES + 1)) is None

    def test_too_many_extensions_skip_the_tbs_hash(
        self, ca: CA, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past MAX_EXTENSIONS, pyasn1 (slow, pure Python) is never asked for the TBS hash."""
        cert = with_extensions(ca, ["a.example.org"], MAX_EXTENSIONS + 1)
        der = cert.public_bytes(Encoding.DER)

        def forbidden(tbs_der: bytes) -> str:
            raise AssertionError("pyasn1 was asked to hash a hostile TBS")

        monkeypatch.setattr(certificates, "precert_tbs_sha256", forbidden)
        assert tbs_sha256_of_der(der) is None
        lenient = parse_certificate(der, strict=False)
        assert lenient.tbs_sha256 is None
        assert lenient.sans == ("a.example.org",)
        with pytest.raises(InvalidCertificate, match="has 102 extensions; at most 100"):
            parse_certificate(der)

    def test_too_many_name_attributes_skip_the_tbs_hash(
        self, ca: CA, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """2,500 subject attributes (160 ms of pyasn1 each) skip the TBS hash entirely."""
        subject = x509.Name(
            [
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"u{i}")]
                )
                for i in range(2500)
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder(
                issuer_name=ca.name,
                subject_name=subject,
                public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
                serial_number=5,
                not_valid_before=now,
                not_valid_after=now + datetime.timedelta(days=1),
            )
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example.org")]), False)
            .sign(ca.key, hashes.SHA256())
        )

        def forbidden(tbs_der: bytes) -> str:
            raise AssertionError("pyasn1 was asked to hash a hostile TBS")

        monkeypatch.setattr(certificates, "precert_tbs_sha256", forbidden)
        assert len(cert.public_bytes(Encoding.DER)) <= MAX_DER_BYTES
        assert tbs_sha256_of_der(cert.public_bytes(Encoding.DER)) is None

    def test_the_issuer_keeps_its_order_for_people(self, ca: CA) -> None:
        """issuer_dn is the RFC 4514 text in the certificate's own order."""
        info = parse_certificate(ca.issue(["a.example.org"]).final_pem())
        assert info.issuer_dn == "CN=ETS R1,O=Example Trust Services,C=US"
        assert info.issuer == "/C=US/CN=ETS R1/O=Example Trust Services"  # certstream's form


class TestIssuanceKey:
    def test_every_variant_of_one_issuance_has_one_key(self) -> None:
        """Precert, final, tiled, lite and Elixir copies of one issuance share an issuance key."""
        keys = {sample_facts(name).issuance_key() for name in VARIANT_FILES}
        assert keys == {
            "aki:58f0b30c8f76edfeb978944863850c8fefa67a3a:"
            + "262047cc81d9e1c816f5041249fe194032aaec59"
        }

    def test_distinct_issuances_have_distinct_keys(self, ca: CA) -> None:
        """Tiled precerts of three issuances for the same names are three issuances."""
        keys = {
            read_update(
                json.dumps(ca.issue(["a.example.org"]).message("go-tiled"))
            ).facts.issuance_key()
            for _ in range(3)
        }
        assert len(keys) == 3


class TestInventory:
    @pytest.mark.parametrize("name", VARIANT_FILES)
    def test_json_push_recognises_every_variant(self, name: str) -> None:
        """A contract JSON push (fingerprint, serial, SANs) recognises precerts in every format."""
        push = json.loads((SAMPLES / "lb-push.json").read_text())
        inventory = Inventory([json_row(push)])
        recognition = inventory.recognise(sample_facts(name))
        assert recognition is not None
        expected = (
            Evidence.FINGERPRINT if name == "go-full-final.json" else Evidence.SERIAL_AND_NAMES
        )
        assert recognition.evidence is expected
        assert recognition.source == "lb:colo-lb-0"

    @pytest.mark.parametrize(
        ("name", "evidence"),
        [
            ("go-full-precert.json", Evidence.TBS),
            ("go-full-final.json", Evidence.FINGERPRINT),
            ("go-full-tiled-precert.json", Evidence.ISSUANCE),
            ("go-lite-precert.json", Evidence.ISSUANCE),
            ("elixir-full-precert.json", Evidence.TBS),
        ],
    )
    def test_pem_push_recognises_every_variant(self, name: str, evidence: Evidence) -> None:
        """A PEM push recognises by fingerprint, TBS hash or (key id, serial), strongest first."""
        inventory = Inventory([pem_row((SAMPLES / "deployed-cert.pem").read_text())])
        recognition = inventory.recognise(sample_facts(name))
        assert recognition is not None
        assert recognition.evidence is evidence

    @pytest.mark.parametrize("style", ["openssl", "lower-stripped", "colons"])
    def test_serial_format_of_the_push_does_not_matter(self, ca: CA, style: str) -> None:
        """Serials with and without leading zeros, in any case, recognise the tiled precert."""

        issuance = ca.issue(["a.example.org"], serial=random_serial(leading_zero_nibble=True))
        inventory = Inventory([json_row(issuance.push(serial_style=style))])
        for variant in ("go-tiled", "elixir"):
            facts = read_update(json.dumps(issuance.message(variant))).facts
            assert inventory.recognise(facts) is not None, variant

    def test_same_serial_other_names_is_not_recognised(self, ca: CA) -> None:
        """A JSON row only vouches for its own set of names."""
        issuance = ca.issue(["a.example.org"])
        push = issuance.push()
        push["sans"] = ["b.example.org"]
        inventory = Inventory([json_row(push)])
        facts = read_update(json.dumps(issuance.message("go-tiled"))).facts
        assert inventory.recognise(facts) is None

    def test_pem_row_never_vouches_for_another_ca(self, ca: CA) -> None:
        """A PEM row needs its CA's key id: the same serial and names from another CA is unknown."""
        ours = ca.issue(["a.example.org"])
        theirs = CA("Evil CA", "Evil").issue(["a.example.org"], serial=ours.serial)
        inventory = Inventory([pem_row(ours.final_pem())])
        facts = read_update(json.dumps(theirs.message("go-tiled"))).facts
        assert inventory.recognise(facts) is None

    def test_removed_rows_stop_recognising(self) -> None:
        """After remove_cert nothing of the row is left in any index."""
        row = pem_row((SAMPLES / "deployed-cert.pem").read_text())
        inventory = Inventory([row])
        inventory.remove_cert(row)
        assert len(inventory) == 0
        for name in VARIANT_FILES:
            assert inventory.recognise(sample_facts(name)) is None

    def test_registered_key_recognises_new_issuances_for_its_names(self, ca: CA) -> None:
        """A key registered in advance recognises any issuance with it, for its names only."""
        key = ec.generate_private_key(ec.SECP256R1())
        ours = ca.issue(["a.example.org", "b.example.org"], key=key)
        inventory = Inventory(
            keys=[KnownKey(ours.spki_sha256(), ("a.example.org", "b.example.org", "c.example.org"))]
        )

        def facts(issuance_names: list[str], *, same_key: bool = True) -> CertFacts:
            issuance = ca.issue(issuance_names, key=key if same_key else None)
            return read_update(json.dumps(issuance.message("go-full"))).facts

        recognition = inventory.recognise(facts(["a.example.org", "b.example.org"]))
        assert recognition is not None
        assert recognition.evidence is Evidence.KEY
        assert inventory.recognise(facts(["a.example.org", "evil.example.org"])) is None
        assert inventory.recognise(facts(["a.example.org"], same_key=False)) is None
        inventory.remove_key(ours.spki_sha256())
        assert inventory.recognise(facts(["a.example.org"])) is None


class TestTbsCheck:
    def test_same_serial_and_ca_key_but_another_certificate_is_not_ours(self, ca: CA) -> None:
        """Our (key id, serial) on a certificate whose TBS differs is not recognised."""
        ours = ca.issue(["a.example.org"])
        theirs = ca.issue(["a.example.org"], serial=ours.serial)  # another key, same serial
        inventory = Inventory([pem_row(ours.final_pem())])
        with_der = read_update(json.dumps(theirs.message("go-full"))).facts
        assert inventory.recognise(with_der) is None
        own = read_update(json.dumps(ours.message("go-full"))).facts
        recognition = inventory.recognise(own)
        assert recognition is not None
        assert recognition.evidence is Evidence.TBS

    def test_without_the_der_the_issuance_still_counts(self, ca: CA) -> None:
        """A tiled precert (no DER) is recognised by (key id, serial) alone."""
        ours = ca.issue(["a.example.org"])
        inventory = Inventory([pem_row(ours.final_pem())])
        tiled = read_update(json.dumps(ours.message("go-tiled"))).facts
        recognition = inventory.recognise(tiled)
        assert recognition is not None
        assert recognition.evidence is Evidence.ISSUANCE
