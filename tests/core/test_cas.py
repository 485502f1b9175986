"""Which CA issued a certificate: CA keys to owners, through the roots they chain to."""

from __future__ import annotations

import base64
import csv
import datetime
import gzip
import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certwatch.core.cas import (
    OWNERS,
    CACertificate,
    CAIdentities,
    CAIdentity,
    InvalidIdentities,
    Owner,
    Tally,
    ca_certificate,
    caa_identifiers,
    ccadb_certificates,
    decode_builtin,
    decode_identities_file,
    encode_builtin,
    encode_identities_file,
    identify,
)
from certwatch.errors import InvalidName

CCADB_ROWS = Path(__file__).parent.parent / "data" / "ccadb"

# The contract's known SKIs (policy.md) and the owner each belongs to.
KNOWN = {
    "bbbcc347a5e4bca9c6c3a4720c108da235e1c8e8": "ISRG (Let's Encrypt)",  # R10
    "c5cf46a4eaf4c3c07a6c95c42db05e922f26e3b9": "ISRG (Let's Encrypt)",  # R11
    "ae489edc871d44a06fdaa2e560740478c29c0080": "ISRG (Let's Encrypt)",  # E7
    "666949d4de2a9c9103cf890e24b80e30036e882e": "Google Trust Services",  # WR1
    "9077923567c4ffa8cca9e67bd980797bcc93f938": "Google Trust Services",  # WE1
    "c03152cd5a50c3827c7471cecbe99cf97aeb82e2": "Amazon Trust Services",  # RSA 2048 M02
    "9cc409724718177ba71a89b39235d5e1038cfe92": "SSL.com",  # Cloudflare TLS Issuing ECC CA 1
    "4bbefa7684234404b9cebe316fe9f53206ff0c57": "Sectigo",  # ZeroSSL RSA DV SSL CA 2
    "b41228a5b4c01d9f2971693cd911964a756950c0": "DigiCert",  # TrustAsia DV TLS RSA CA 2025
}


def ccadb_rows() -> list[CACertificate]:
    tally = Tally()
    certs: list[CACertificate] = []
    for path in sorted(CCADB_ROWS.glob("AllCertificatePEMsCSVFormat_NotBeforeYear_*")):
        certs.extend(ccadb_certificates(path.read_text(encoding="utf-8"), tally))
    assert tally.unreadable == 0
    return certs


def owner_named(name: str) -> Owner:
    return next(o for o in OWNERS if o.name == name)


class Key:
    """A CA key and its name, issuing CA certificates made with pyca/cryptography."""

    def __init__(self, cn: str, org: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name(
            [
                x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(x509.NameOID.COMMON_NAME, cn),
            ]
        )

    @property
    def ski(self) -> str:
        return x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()).digest.hex()

    def certified_by(
        self, issuer: Key, *, days: int = 3650, aki: bool = True, expired: bool = False
    ) -> bytes:
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(days=days + 10 if expired else 1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(issuer.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
        )
        if aki:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def root(self) -> bytes:
        return self.certified_by(self)


def facts(ders: Iterable[bytes]) -> list[CACertificate]:
    out = []
    for der in ders:
        cert = ca_certificate(der)
        assert cert is not None
        out.append(cert)
    return out


def report(ders: Iterable[bytes]) -> str:
    """A CCADB All Certificate PEMs report of these certificates."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["SHA-256 Fingerprint", "X.509 Certificate (PEM)"])
    for der in ders:
        pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        writer.writerow([hashlib.sha256(der).hexdigest().upper(), pem.decode()])
    return out.getvalue()


class TestRealCCADBRows:
    def test_the_contracts_known_keys_map_to_their_owners(self) -> None:
        """Let's Encrypt, Google, Amazon, Cloudflare, ZeroSSL, TrustAsia: each to its owner."""
        identities = identify(ccadb_rows())
        for ski, owner in KNOWN.items():
            found = identities.find(ski)
            assert found is not None, ski
            assert found.owner == owner
            assert found.caa_domains == owner_named(owner).caa_domains

    def test_white_label_cas_belong_to_the_root_they_chain_to(self) -> None:
        """A subject naming Cloudflare, ZeroSSL or TrustAsia does not make them the owner."""
        certs = ccadb_rows()
        subjects = {c.ski: c.organization for c in certs}
        identities = identify(certs)
        for ski, subject in [
            ("9cc409724718177ba71a89b39235d5e1038cfe92", "CLOUDFLARE, INC."),
            ("4bbefa7684234404b9cebe316fe9f53206ff0c57", "ZeroSSL GmbH"),
            ("b41228a5b4c01d9f2971693cd911964a756950c0", "TrustAsia Technologies, Inc."),
        ]:
            assert subjects[ski] == subject
            found = identities.find(ski)
            assert found is not None
            assert found.owner == KNOWN[ski]

    @pytest.mark.parametrize(
        ("common_name", "owner"),
        [
            ("R3", "ISRG (Let's Encrypt)"),  # also cross-signed by IdenTrust's DST Root CA X3
            ("Microsoft Azure TLS Issuing CA 01", "Microsoft"),  # also by DigiCert Global Root G2
            ("GIAG4", "Google Trust Services"),  # also under GlobalSign
            ("Certainly Intermediate R1", "Certainly"),  # also under GoDaddy
        ],
    )
    def test_a_cross_signed_key_belongs_to_its_own_organisations_owner(
        self, common_name: str, owner: str
    ) -> None:
        """A key certified by two owners' roots is the one its own subject names."""
        certs = ccadb_rows()
        key = next(c.ski for c in certs if c.common_name == common_name)
        issuers = {c.aki for c in certs if c.ski == key}
        assert len(issuers) >= 2  # really cross-signed
        found = identify(certs).find(key)
        assert found is not None
        assert found.owner == owner

    def test_the_builtin_data_agrees_with_these_rows(self) -> None:
        """Every key the rows identify is in the built-in data with the same owner."""
        from certwatch.sources.ccadb import load_builtin

        builtin, source = load_builtin()
        assert "CCADB" in source
        assert len(builtin) > 4000
        for identity in identify(ccadb_rows()):
            assert builtin.find(identity.ski) == identity


class TestOwnership:
    def test_an_unknown_owners_root_identifies_nothing(self) -> None:
        """A CA under a root of an owner certwatch has no CAA identifiers for stays unknown."""
        root = Key("Unheard Root", "Unheard Trust Ltd")
        issuing = Key("Unheard CA 1", "Unheard Trust Ltd")
        identities = identify(facts([root.root(), issuing.certified_by(root)]))
        assert len(identities) == 0
        assert identities.find(issuing.ski) is None

    def test_an_issuing_ca_two_levels_below_its_root(self) -> None:
        """Root, intermediate, issuing CA: all three keys belong to the root's owner."""
        root = Key("ISRG Root X9", "Internet Security Research Group")
        middle = Key("Transit", "Let's Encrypt")
        issuing = Key("R99", "Let's Encrypt")
        certs = [root.root(), middle.certified_by(root), issuing.certified_by(middle)]
        identities = identify(facts(certs))
        assert {i.ski: i.owner for i in identities} == dict.fromkeys(
            [root.ski, middle.ski, issuing.ski], "ISRG (Let's Encrypt)"
        )

    def test_an_expired_ca_certificate_still_identifies_its_key(self) -> None:
        """A certificate logged years ago was issued under a CA certificate since expired."""
        root = Key("GTS Root R9", "Google Trust Services LLC")
        old = Key("GTS CA 1X9", "Google Trust Services")
        identities = identify(facts([root.root(), old.certified_by(root, days=365, expired=True)]))
        found = identities.find(old.ski)
        assert found is not None
        assert found.owner == "Google Trust Services"

    def test_a_cross_sign_without_its_own_organisation_follows_the_longest_lived(self) -> None:
        """Two owners' roots, a subject naming neither: the certificate that lives longest."""
        a = Key("Root A", "SSL Corporation")
        b = Key("Root B", "Sectigo Limited")
        issuing = Key("White Label CA", "Somebody Else Inc")
        certs = [
            a.root(),
            b.root(),
            issuing.certified_by(a, days=3000),
            issuing.certified_by(b, days=300),
        ]
        found = identify(facts(certs)).find(issuing.ski)
        assert found is not None
        assert found.owner == "SSL.com"

    def test_a_root_cross_signed_by_another_owner_is_its_own(self) -> None:
        """A key with a self-signed certificate stops the climb: its root decides."""
        isrg = Key("ISRG Root X1", "Internet Security Research Group")
        dst = Key("DST Root CA X3", "Digital Signature Trust Co.")
        certs = [isrg.root(), dst.root(), isrg.certified_by(dst, days=9000)]
        found = identify(facts(certs)).find(isrg.ski)
        assert found is not None
        assert found.owner == "ISRG (Let's Encrypt)"

    def test_an_issuer_without_a_key_identifier_is_found_by_its_name(self) -> None:
        """An old CA certificate without an authority key identifier: found by issuer name."""
        root = Key("Baltimore CyberTrust Root", "Baltimore")
        issuing = Key("Old Issuing CA", "Cybertrust Inc")
        certs = [root.certified_by(root, aki=False), issuing.certified_by(root, aki=False)]
        found = identify(facts(certs)).find(issuing.ski)
        assert found is not None
        assert found.owner == "DigiCert"

    def test_a_loop_of_cross_signs_ends(self) -> None:
        """Two keys certifying each other (no root) are unknown, and the climb ends."""
        a, b = Key("A", "Amazon"), Key("B", "Amazon")
        assert len(identify(facts([a.certified_by(b), b.certified_by(a)]))) == 0

    def test_starfield_services_root_is_amazons(self) -> None:
        """Amazon's Starfield Services root carries Starfield's organisation, not Amazon's."""
        services = Key("Starfield Services Root Certificate Authority - G2",
                       "Starfield Technologies, Inc.")  # fmt: skip
        starfield = Key("Starfield Root Certificate Authority - G2", "Starfield Technologies, Inc.")
        identities = identify(facts([services.root(), starfield.root()]))
        assert {i.owner for i in identities if i.ski == services.ski} == {"Amazon Trust Services"}
        assert {i.owner for i in identities if i.ski == starfield.ski} == {"GoDaddy / Starfield"}


class TestCCADBReports:
    def test_rows_are_read_and_the_unusable_counted(self) -> None:
        """A PEM whose header runs into its base64 is read; garbage or a wrong hash counted."""
        root = Key("HARICA TLS Root", "Hellenic Academic and Research Institutions CA")
        der = root.root()
        text = report([der])
        body = base64.b64encode(der).decode()
        broken_header = (
            f"-----BEGIN CERTIFICATE-----{body[:64]}\n{body[64:]}\n-----END CERTIFICATE-----"
        )
        extra = [
            [hashlib.sha256(der).hexdigest().upper(), broken_header],
            ["00" * 32, "not a certificate"],
            ["11" * 32, text.splitlines()[1]],  # a fingerprint that is not the PEM's
        ]
        out = io.StringIO()
        csv.writer(out).writerows(extra)
        tally = Tally()
        certs = list(ccadb_certificates(text + out.getvalue(), tally))
        assert [c.ski for c in certs] == [root.ski, root.ski]
        assert (tally.rows, tally.unreadable) == (4, 2)

    def test_another_csv_is_refused(self) -> None:
        """A CSV without CCADB's columns is an error, not an empty result."""
        with pytest.raises(InvalidIdentities, match="not a CCADB"):
            list(ccadb_certificates("a,b\n1,2\n", Tally()))


class TestIdentitiesFile:
    def test_entries_are_normalised(self) -> None:
        """Colon hex in any case, domains with a trailing dot or capitals: normalised."""
        data = json.dumps(
            [{"ski": "AB:CD:EF:01:23:45:67:89", "owner": " Corp PKI ",
              "caa_domains": ["PKI.Corp.Example.", "pki.corp.example", "ca.corp.example"]}]
        ).encode()  # fmt: skip
        assert decode_identities_file(data) == [
            CAIdentity("abcdef0123456789", "Corp PKI", ("ca.corp.example", "pki.corp.example"))
        ]

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"nope", "not JSON"),
            (b'{"ski": "ab"}', "Expected `array`"),
            (b'[{"ski": "abcdabcd", "owner": "x", "caa_domains": ["a.example"], "extra": 1}]',
             "unknown field `extra`"),
            (b'[{"ski": "abcdabcd", "owner": "x"}]', "missing required field `caa_domains`"),
            (b'[{"ski": "xyz", "owner": "x", "caa_domains": ["a.example"]}]',
             "entry 0: ski: 'xyz' is not a key identifier"),
            (b'[{"ski": "abcdabcd", "owner": "", "caa_domains": ["a.example"]}]',
             "entry 0: owner: must be printable"),
            (b'[{"ski": "abcdabcd", "owner": "x", "caa_domains": []}]',
             "entry 0: caa_domains: must list at least one"),
            (b'[{"ski": "abcdabcd", "owner": "x", "caa_domains": ["*.a.example"]}]',
             "entry 0: caa_domains: a CAA identifier is a domain name"),
            (b'[{"ski": "abcdabcd", "owner": "x", "caa_domains": ["localhost"]}]',
             "entry 0: caa_domains: needs at least two labels"),
        ],
    )  # fmt: skip
    def test_a_bad_file_says_where(self, data: bytes, message: str) -> None:
        """Each kind of mistake is refused with the entry and the field."""
        with pytest.raises(InvalidIdentities, match=message.replace("*", r"\*")):
            decode_identities_file(data)

    def test_written_files_read_back(self) -> None:
        """What ``certwatch ca-data`` writes is a valid CA_IDENTITIES_FILE."""
        identities = identify(ccadb_rows())
        again = decode_identities_file(encode_identities_file(identities))
        assert sorted(again, key=lambda i: i.ski) == sorted(identities, key=lambda i: i.ski)

    def test_a_file_overrides_the_same_key(self) -> None:
        """An entry for a key already known replaces it; new keys are added."""
        builtin = CAIdentities([CAIdentity("aa" * 20, "Old", ("old.example",))])
        merged = builtin.overlaid(
            [
                CAIdentity("aa" * 20, "New", ("new.example",)),
                CAIdentity("bb" * 20, "B", ("b.example",)),
            ]
        )
        assert merged.find("aa" * 20) == CAIdentity("aa" * 20, "New", ("new.example",))
        assert len(merged) == 2
        assert builtin.find("aa" * 20) == CAIdentity("aa" * 20, "Old", ("old.example",))


class TestBuiltinForm:
    def test_round_trip(self) -> None:
        """The compact form holds every key with its owner and identifiers."""
        identities = identify(ccadb_rows())
        data = encode_builtin(
            identities,
            source="rows",
            generated_at=datetime.datetime(2026, 8, 21, tzinfo=datetime.UTC),
        )
        back, source = decode_builtin(data)
        assert source == "rows (2026-08-21T00:00:00+00:00)"
        assert sorted(back, key=lambda i: i.ski) == sorted(identities, key=lambda i: i.ski)

    def test_not_certwatchs_data_is_refused(self) -> None:
        """A file that is not the compact form says so."""
        with pytest.raises(InvalidIdentities, match="not certwatch's CA data"):
            decode_builtin(gzip.compress(b"[]"))


def test_caa_identifiers_are_normalised_and_checked() -> None:
    """Lowercase, one trailing dot dropped, duplicates dropped, sorted; a wildcard refused."""
    assert caa_identifiers(["LetsEncrypt.org.", "pki.goog", "letsencrypt.org"]) == (
        "letsencrypt.org",
        "pki.goog",
    )
    with pytest.raises(InvalidName):
        caa_identifiers(["*.letsencrypt.org"])
