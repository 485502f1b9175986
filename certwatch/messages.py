"""Decoding certstream messages. Pure logic, no I/O.

Two phases keep the firehose cheap. :func:`peek` decodes only what matching needs (the
message type, the names, the log and the entry index) into msgspec structs, skipping every
other byte. Only a certificate that matches the watch list is decoded in full by
:func:`read_update`, and only then is its DER decoded.

Both raise :class:`MalformedMessage` with a bounded ``reason``; the consumer counts and
skips such messages and never dies of one.
"""

from __future__ import annotations

import binascii
from typing import Any

import attrs
import msgspec

from certwatch.errors import MalformedMessage
from certwatch.identity import fingerprint, key_identifier

__all__ = [
    "KNOWN_TYPES",
    "CertificateUpdate",
    "Other",
    "Peeked",
    "UpdateDetails",
    "decode_json",
    "peek",
    "read_update",
]

KNOWN_TYPES = ("certificate_update", "heartbeat", "dns_entries")

# Skip reasons: a closed set, used as a metric label.
INVALID_JSON = "invalid_json"
NOT_OBJECT = "not_object"
INVALID_FIELD = "invalid_field"
UNKNOWN_TYPE = "unknown_type"
SKIP_REASONS = (INVALID_JSON, NOT_OBJECT, INVALID_FIELD, UNKNOWN_TYPE)

_JSON_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


def decode_json(raw: str | bytes) -> Any:
    """Decode any JSON value; every way it can fail becomes ``MalformedMessage``.

    msgspec raises ``RecursionError`` on deeply nested input and ``UnicodeDecodeError``
    on invalid UTF-8 inside strings; neither may escape as a crash.
    """
    try:
        return msgspec.json.decode(raw)
    except _JSON_ERRORS as e:
        raise MalformedMessage(INVALID_JSON, str(e)) from None


# --- phase 1: only what matching and coverage accounting need ------------------------------


# gc=False: these structs never form reference cycles, and at 20,000 messages a second the
# cyclic garbage collector would otherwise keep walking them.
class _Source(msgspec.Struct, gc=False):
    name: str = ""
    url: str = ""


class _PeekLeaf(msgspec.Struct, gc=False):
    all_domains: list[str]


class _PeekSource(msgspec.Struct, gc=False):
    url: str = ""


class CertificateUpdate(msgspec.Struct, gc=False):
    """The ``data`` of a ``certificate_update``, as far as matching needs it."""

    leaf_cert: _PeekLeaf
    source: _PeekSource = msgspec.field(default_factory=_PeekSource)
    cert_index: int | None = None


class _Envelope(msgspec.Struct, gc=False):
    # One struct for every message type, not a tagged union: servers put ``message_type``
    # after ``data``, and a union would make msgspec read every message twice.
    message_type: str
    data: CertificateUpdate | list[Any] | None = None


@attrs.frozen
class Other:
    """A well-formed message that carries no certificate (heartbeat, dns_entries)."""

    message_type: str


Peeked = CertificateUpdate | Other

_OTHERS = {"heartbeat": Other("heartbeat"), "dns_entries": Other("dns_entries")}
_peek_decoder = msgspec.json.Decoder(_Envelope)


def _why_malformed(raw: str | bytes, error: Exception) -> MalformedMessage:
    """Work out, off the hot path, why a message did not decode."""
    value = decode_json(raw)
    if not isinstance(value, dict):
        return MalformedMessage(NOT_OBJECT, f"a JSON {type(value).__name__}")
    message_type = value.get("message_type")
    if isinstance(message_type, str) and message_type not in KNOWN_TYPES:
        return MalformedMessage(UNKNOWN_TYPE, message_type[:64])
    return MalformedMessage(INVALID_FIELD, str(error))


def peek(raw: str | bytes) -> Peeked:
    """Decode just enough of a message to match it.

    Raises :class:`MalformedMessage` for anything that is not a known, well-typed message;
    a ``certificate_update`` comes back as its decoded ``data``.
    """
    try:
        message = _peek_decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise _why_malformed(raw, e) from None
    except _JSON_ERRORS as e:
        raise MalformedMessage(INVALID_JSON, str(e)) from None
    message_type = message.message_type
    if message_type == "certificate_update":
        data = message.data
        if type(data) is not CertificateUpdate:
            raise MalformedMessage(INVALID_FIELD, "certificate_update without a data object")
        return data
    other = _OTHERS.get(message_type)
    if other is None:
        raise MalformedMessage(UNKNOWN_TYPE, message_type[:64])
    return other


# --- phase 2: everything an alert reports, for matched certificates only -------------------


class _Name(msgspec.Struct):
    CN: str | None = None
    O: str | None = None  # noqa: E741 (the feed's key)
    aggregated: str | None = None


class _FullLeaf(msgspec.Struct):
    all_domains: list[str]
    fingerprint: str = ""
    sha256: str = ""
    serial_number: str = ""
    not_before: int | float | None = None
    not_after: int | float | str | None = None  # Elixir may send "no_expiration"
    subject: _Name | None = None
    issuer: _Name | None = None
    extensions: dict[str, Any] | None = None
    as_der: str = ""


class _FullData(msgspec.Struct):
    leaf_cert: _FullLeaf
    update_type: str = ""
    cert_index: int | None = None
    cert_link: str = ""
    seen: float | None = None
    source: _Source = msgspec.field(default_factory=_Source)


class _FullMessage(msgspec.Struct):
    data: _FullData


_full_decoder = msgspec.json.Decoder(_FullMessage)


@attrs.frozen
class UpdateDetails:
    """A matched certificate_update, decoded in full and normalised."""

    update_type: str
    names: tuple[str, ...]
    fingerprint_sha1: str
    """Lowercase hex without colons, as the feed reported it (may be the blank SHA-1)."""
    sha1: str | None
    """The fingerprint as an identity: ``None`` when missing or blank."""
    sha256: str | None
    serial: str
    """The serial as the feed gave it."""
    authority_key_id: str | None
    subject_cn: str | None
    issuer: str
    issuer_o: str | None
    issuer_cn: str | None
    not_before: int | None
    not_after: int | None
    seen: float | None
    source_name: str
    source_url: str
    cert_link: str
    cert_index: int | None
    der: bytes | None


def _epoch(value: int | float | str | None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def read_update(raw: str | bytes) -> UpdateDetails:
    """Decode a certificate_update in full. Raises :class:`MalformedMessage`."""
    try:
        data = _full_decoder.decode(raw).data
    except msgspec.ValidationError as e:
        raise MalformedMessage(INVALID_FIELD, str(e)) from None
    except _JSON_ERRORS as e:
        raise MalformedMessage(INVALID_JSON, str(e)) from None
    leaf = data.leaf_cert
    extensions = leaf.extensions or {}
    aki_text = extensions.get("authorityKeyIdentifier")
    issuer = leaf.issuer or _Name()
    der: bytes | None = None
    if leaf.as_der:
        try:
            der = binascii.a2b_base64(leaf.as_der, strict_mode=True)
        except (binascii.Error, ValueError):
            der = None
    reported = leaf.fingerprint.replace(":", "").strip().lower()
    return UpdateDetails(
        update_type=data.update_type,
        names=tuple(leaf.all_domains),
        fingerprint_sha1=reported,
        sha1=fingerprint(leaf.fingerprint),
        sha256=fingerprint(leaf.sha256, length=64) if leaf.sha256 else None,
        serial=leaf.serial_number,
        authority_key_id=key_identifier(aki_text) if isinstance(aki_text, str) else None,
        subject_cn=leaf.subject.CN if leaf.subject else None,
        issuer=issuer.aggregated or "",
        issuer_o=issuer.O,
        issuer_cn=issuer.CN,
        not_before=_epoch(leaf.not_before),
        not_after=_epoch(leaf.not_after),
        seen=data.seen,
        source_name=data.source.name,
        source_url=data.source.url,
        cert_link=data.cert_link,
        cert_index=data.cert_index,
        der=der,
    )
