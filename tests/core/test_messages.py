"""Decoding certstream messages in every server variant (pure logic, no sockets)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certwatch.core.messages import CertificateUpdate, Other, peek, read_update
from certwatch.errors import MalformedMessage
from tests.support import SAMPLES

SERIAL = "262047CC81D9E1C816F5041249FE194032AAEC59"
AKI = "58f0b30c8f76edfeb978944863850c8fefa67a3a"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


class TestPeek:
    @pytest.mark.parametrize(
        "name",
        [
            "go-full-precert.json",
            "go-full-final.json",
            "go-full-tiled-precert.json",
            "go-lite-precert.json",
            "elixir-full-precert.json",
        ],
    )
    def test_certificate_updates_in_every_variant(self, name: str) -> None:
        """Every server variant's certificate_update yields its names, log and index."""
        message = peek(sample(name))
        assert isinstance(message, CertificateUpdate)
        names = set(message.leaf_cert.all_domains)
        assert names == {"api.example.net", "*.api.example.net", "www.example.net"}
        assert message.source.url.startswith("https://")
        assert isinstance(message.cert_index, int)

    @pytest.mark.parametrize(
        ("name", "message_type"),
        [("legacy-heartbeat.json", "heartbeat"), ("dns-entries.json", "dns_entries")],
    )
    def test_messages_without_certificates(self, name: str, message_type: str) -> None:
        """The old JSON heartbeat and the domains-only stream are known types without a cert."""
        assert peek(sample(name)) == Other(message_type)

    def test_bytes_and_trailing_newline(self) -> None:
        """Binary frames and the Go server's trailing newline decode the same."""
        text = sample("go-full-precert.json") + "\n"
        assert isinstance(peek(text.encode()), CertificateUpdate)

    @pytest.mark.parametrize(
        ("frame", "reason"),
        [
            ("", "invalid_json"),
            ("not json", "invalid_json"),
            ('{"message_type": "certificate_update"', "invalid_json"),
            (b'{"message_type": "\xff"}', "invalid_json"),
            ("[" * 3000 + "]" * 3000, "invalid_json"),
            ('{"a":' * 3000 + "1" + "}" * 3000, "invalid_json"),
            ("[1, 2]", "not_object"),
            ('"certificate_update"', "not_object"),
            ("null", "not_object"),
            ("{}", "invalid_field"),
            ('{"message_type": 5}', "invalid_field"),
            ('{"message_type": "certificate_update"}', "invalid_field"),
            ('{"message_type": "certificate_update", "data": []}', "invalid_field"),
            ('{"message_type": "certificate_update", "data": {"leaf_cert": {}}}', "invalid_field"),
            (
                '{"message_type": "certificate_update", "data": '
                '{"leaf_cert": {"all_domains": "a.example.org"}}}',
                "invalid_field",
            ),
            ('{"message_type": "certificate_update", "data": {"leaf_cert": []}}', "invalid_field"),
            ('{"message_type": "surprise"}', "unknown_type"),
        ],
    )
    def test_malformed_messages_are_rejected_with_a_reason(
        self, frame: str | bytes, reason: str
    ) -> None:
        """Not JSON, not an object, bad fields, unknown type: rejected with a counted reason."""
        with pytest.raises(MalformedMessage) as caught:
            peek(frame)
        assert caught.value.reason == reason


class TestReadUpdate:
    def test_go_full_precert(self) -> None:
        """The full Go message gives every payload field, normalised identity facts and the DER."""
        seen = read_update(sample("go-full-precert.json"))
        summary, facts = seen.summary, seen.facts
        assert summary.update_type == "PrecertLogEntry"
        assert summary.fingerprint_sha1 == "1beb5c56ef341e6a4dfbbe66d997255789f14b77"
        assert facts.sha1 == summary.fingerprint_sha1
        assert summary.serial == SERIAL
        assert facts.serial == int(SERIAL, 16)
        assert facts.authority_key_id == AKI
        assert (summary.issuer_o, summary.issuer_cn) == ("Example Trust Services", "ETS R1")
        assert facts.subject_cn == "api.example.net"
        assert (summary.not_before, summary.not_after) == (1795821370, 1803597670)
        assert summary.source_log == "Example 'Quokka2026h2' log"
        assert facts.der is not None
        assert facts.der[:2] == b"\x30\x82"
        assert facts.spki_sha256 is not None  # read from the DER
        assert seen.seen is not None

    def test_tiled_precert_has_no_fingerprint(self) -> None:
        """The blank SHA-1/SHA-256 of certstream-server-go's tiled precerts mean no fingerprint."""
        seen = read_update(sample("go-full-tiled-precert.json"))
        assert seen.summary.fingerprint_sha1 == "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        assert seen.facts.sha1 is None
        assert seen.facts.sha256 is None
        assert seen.facts.der is None
        assert seen.summary.cert_link == ""
        assert seen.facts.authority_key_id == AKI

    def test_elixir_formats_normalise_to_the_same_identity(self) -> None:
        """Elixir's uppercase AKI with a newline and its serial compare equal to Go's."""
        elixir = read_update(sample("elixir-full-precert.json")).facts
        go = read_update(sample("go-full-precert.json")).facts
        assert elixir.authority_key_id == go.authority_key_id == AKI
        assert elixir.serial == go.serial

    def test_lenient_on_optional_fields(self) -> None:
        """Missing optional fields and Elixir's "no_expiration" do not reject a matched cert."""
        message: dict[str, Any] = {
            "message_type": "certificate_update",
            "data": {"leaf_cert": {"all_domains": ["a.example.org"], "not_after": "no_expiration"}},
        }
        seen = read_update(json.dumps(message))
        assert seen.summary.all_sans == ("a.example.org",)
        assert seen.summary.not_after is None
        assert seen.summary.serial == ""
        assert seen.facts.der is None

    def test_bad_base64_der_is_ignored(self) -> None:
        """A corrupt `as_der` leaves the DER out instead of dropping the certificate."""
        message = json.loads(sample("go-full-precert.json"))
        message["data"]["leaf_cert"]["as_der"] = "%%% not base64"
        assert read_update(json.dumps(message)).facts.der is None


def edited(name: str, edit: Any) -> str:
    """A sample message with ``edit(data)`` applied."""
    message = json.loads(sample(name))
    edit(message["data"])
    return json.dumps(message)


def _set(path: str, value: Any) -> Any:
    def edit(data: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        target = data
        for parent in parents:
            target = target[parent]
        target[key] = value

    return edit


class TestLenientFields:
    """A matched certificate alerts whatever the type of a field other than its names."""

    @pytest.mark.parametrize(
        ("path", "value", "field"),
        [
            ("source.url", None, "source.url"),
            ("cert_index", 1.0, "cert_index"),
            ("cert_index", "123", "cert_index"),
            ("cert_index", True, "cert_index"),
            ("leaf_cert.serial_number", None, "serial_number"),
            ("leaf_cert.fingerprint", None, "fingerprint"),
            ("seen", "x", "seen"),
            ("leaf_cert.extensions", [], "extensions"),
            ("leaf_cert.not_before", "yesterday", "not_before"),
            ("leaf_cert.issuer", "ETS R1", "issuer"),
            ("leaf_cert.subject.CN", 7, "subject"),
            ("leaf_cert.as_der", 12, "as_der"),
            ("update_type", None, "update_type"),
            ("source", "ct.example", "source.url"),
            ("source.name", 5, "source.name"),
        ],
    )
    def test_a_wrong_type_is_coerced_and_counted_once(
        self, path: str, value: Any, field: str
    ) -> None:
        """The names still come through; the field is reported once over both phases."""
        frame = edited("go-full-precert.json", _set(path, value))
        coerced: list[str] = []
        peeked = peek(frame, coerced.append)
        assert isinstance(peeked, CertificateUpdate)
        seen = read_update(frame, coerced.append)
        assert coerced == [field]
        assert set(seen.summary.all_sans) == {
            "api.example.net",
            "*.api.example.net",
            "www.example.net",
        }

    def test_a_null_among_the_names_is_skipped(self) -> None:
        """A name that is not a string is skipped (and counted); the others are kept."""
        frame = edited(
            "go-full-precert.json", _set("leaf_cert.all_domains", ["www.example.net", None, 5])
        )
        coerced: list[str] = []
        peeked = peek(frame, coerced.append)
        assert isinstance(peeked, CertificateUpdate)
        assert peeked.leaf_cert.all_domains == ["www.example.net"]
        assert read_update(frame, coerced.append).summary.all_sans == ("www.example.net",)
        assert coerced == ["all_domains"]

    def test_coerced_values(self) -> None:
        """1.0 is index 1, "123" is 123; anything ambiguous is left out."""
        for value, expected in [(1.0, 1), ("123", 123), (1.5, None), ("12a", None), (None, None)]:
            frame = edited("go-full-precert.json", _set("cert_index", value))
            peeked = peek(frame)
            assert isinstance(peeked, CertificateUpdate)
            assert peeked.cert_index == expected, value
            assert read_update(frame).summary.cert_index == expected, value

    @pytest.mark.parametrize("value", [-1, -300, 2**40, 2**63, 2**70, 1e19, "99999999999999999999"])
    def test_an_index_no_log_can_have_is_none_and_counted(self, value: Any) -> None:
        """Negative indexes and those past 2^40 (static-ct-api's bound) read as no index."""
        frame = edited("go-full-precert.json", _set("cert_index", value))
        coerced: list[str] = []
        peeked = peek(frame, coerced.append)
        assert isinstance(peeked, CertificateUpdate)
        assert peeked.cert_index is None
        assert read_update(frame).summary.cert_index is None
        assert coerced == ["cert_index"]

    def test_a_well_typed_message_reports_nothing(self) -> None:
        """The samples of every server variant need no coercion."""
        for name in ("go-full-precert.json", "go-lite-precert.json", "elixir-full-precert.json"):
            coerced: list[str] = []
            peek(sample(name), coerced.append)
            read_update(sample(name), coerced.append)
            assert coerced == [], name


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


class TestFuzz:
    @settings(max_examples=300, deadline=None)
    @given(json_values)
    def test_any_json_value_is_parsed_or_skipped(self, value: object) -> None:
        """Any JSON value is either parsed or rejected as MalformedMessage, never a crash."""
        for frame in (
            json.dumps(value),
            json.dumps({"message_type": "certificate_update", "data": value}),
        ):
            with contextlib.suppress(MalformedMessage):
                peek(frame)
            with contextlib.suppress(MalformedMessage):
                read_update(frame)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_any_bytes_are_parsed_or_skipped(self, frame: bytes) -> None:
        """Any byte string is either parsed or rejected as MalformedMessage, never a crash."""
        with contextlib.suppress(MalformedMessage):
            peek(frame)
