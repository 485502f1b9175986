"""Decoding certstream messages. Pure logic, no I/O.

Two phases keep the firehose cheap. :func:`peek` decodes only what matching needs (the
message type, the names, the log and the entry index) into msgspec structs, skipping every
other byte. Only a certificate that matches the watch list is decoded in full by
:func:`read_update`, and only then is its DER decoded.

The names are read strictly: without a list of names there is nothing to match, and the
message is skipped (:class:`MalformedMessage`, with a bounded ``reason``). Every other
field is read leniently: a matched certificate must alert even when a server sends
``null`` for a serial or ``"123"`` for an index. A value of the wrong type is converted
where that is unambiguous (``1.0`` is index 1, ``"123"`` is 123) and dropped
otherwise, and each such field is reported once per message (``on_coerced``, counted in
``certwatch_ct_coerced_fields_total``). A name that is not a string is skipped, reported
the same way.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Annotated, Any

import attrs
import msgspec

from certwatch.core.ctlog import MAX_TREE_SIZE
from certwatch.core.identity import fingerprint, key_identifier
from certwatch.core.observation import CertSummary, Observation, certificate_facts
from certwatch.errors import MalformedMessage

__all__ = [
    "COERCIBLE_FIELDS",
    "KNOWN_TYPES",
    "NEW_CONNECTION",
    "CertificateUpdate",
    "FeedItem",
    "NewConnection",
    "Other",
    "Peeked",
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


class NewConnection:
    """Put on the feed channel when a connection opens: per-log index tracking restarts."""


NEW_CONNECTION = NewConnection()
FeedItem = str | bytes | NewConnection
"""What travels from the feed consumer to the pipeline: a frame, or the start of a
connection."""

COERCIBLE_FIELDS = (
    "all_domains",
    "cert_index",
    "source.url",
    "source.type",
    "source.name",
    "update_type",
    "cert_link",
    "seen",
    "fingerprint",
    "sha256",
    "serial_number",
    "not_before",
    "not_after",
    "subject",
    "issuer",
    "extensions",
    "as_der",
)
"""Fields read leniently: a closed set, used as a metric label."""

OnCoerced = Callable[[str], None]


def _ignore(field: str) -> None:
    """An ``on_coerced`` that counts nothing."""


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
class _PeekLeaf(msgspec.Struct, gc=False):
    all_domains: list[str]


class _PeekSource(msgspec.Struct, gc=False):
    url: str = ""
    type: str = ""
    """certstream-server-go ≥ 1.9: ``rfc6962`` or ``tiled`` (others send none)."""


Index = Annotated[int, msgspec.Meta(ge=0, lt=MAX_TREE_SIZE)]
"""An entry index: what a log can hold. Anything else (negative, 2^63, 1e19) is not an
index, and the message is read as if it had none."""


class CertificateUpdate(msgspec.Struct, gc=False):
    """The ``data`` of a ``certificate_update``, as far as matching needs it."""

    leaf_cert: _PeekLeaf
    source: _PeekSource = msgspec.field(default_factory=_PeekSource)
    cert_index: Index | None = None


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


def peek(raw: str | bytes, on_coerced: OnCoerced = _ignore) -> Peeked:
    """Decode just enough of a message to match it.

    Raises :class:`MalformedMessage` for anything that is not a known message with a list
    of names; a ``certificate_update`` comes back as its decoded ``data``. The strict
    struct is the fast path; a message it rejects is read again leniently.
    """
    try:
        message = _peek_decoder.decode(raw)
    except msgspec.ValidationError:
        return _peek_leniently(decode_json(raw), on_coerced)
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


def _peek_leniently(value: Any, on_coerced: OnCoerced) -> Peeked:
    """:func:`peek` for a message the strict struct rejected, from its generic decoding."""
    parts = _certificate_parts(value)
    if isinstance(parts, Other):
        return parts
    data, leaf = parts
    source = _object(data, "source", "source.url", on_coerced)
    return CertificateUpdate(
        leaf_cert=_PeekLeaf(all_domains=_names(leaf, on_coerced)),
        source=_PeekSource(
            url=_text(source, "url", "source.url", on_coerced),
            type=_text(source, "type", "source.type", on_coerced),
        ),
        cert_index=_index(data.get("cert_index"), on_coerced),
    )


def _certificate_parts(value: Any) -> tuple[dict[str, Any], dict[str, Any]] | Other:
    """The ``data`` and ``leaf_cert`` objects of a certificate_update (strict), or the
    known message without a certificate that it is."""
    if not isinstance(value, dict):
        raise MalformedMessage(NOT_OBJECT, f"a JSON {type(value).__name__}")
    message_type = value.get("message_type")
    if not isinstance(message_type, str):
        raise MalformedMessage(INVALID_FIELD, "message_type is not a string")
    if message_type != "certificate_update":
        if message_type in _OTHERS:
            return _OTHERS[message_type]
        raise MalformedMessage(UNKNOWN_TYPE, message_type[:64])
    data = value.get("data")
    if not isinstance(data, dict):
        raise MalformedMessage(INVALID_FIELD, "certificate_update without a data object")
    leaf = data.get("leaf_cert")
    if not isinstance(leaf, dict):
        raise MalformedMessage(INVALID_FIELD, "certificate_update without a leaf_cert object")
    return data, leaf


# --- lenient field readers: the declared type, or what unambiguously converts to it -------


def _names(leaf: dict[str, Any], on_coerced: OnCoerced) -> list[str]:
    names = leaf.get("all_domains")
    if not isinstance(names, list):
        raise MalformedMessage(INVALID_FIELD, "leaf_cert.all_domains is not a list")
    strings = [name for name in names if isinstance(name, str)]
    if len(strings) != len(names):
        on_coerced("all_domains")
    return strings


def _object(obj: dict[str, Any], key: str, field: str, on_coerced: OnCoerced) -> dict[str, Any]:
    value = obj.get(key)
    if isinstance(value, dict):
        return value
    if value is not None:
        on_coerced(field)
    return {}


def _text(obj: dict[str, Any], key: str, field: str, on_coerced: OnCoerced) -> str:
    value = obj.get(key, "")
    if isinstance(value, str):
        return value
    on_coerced(field)
    return ""


def _index(value: Any, on_coerced: OnCoerced) -> int | None:
    """An entry index (see :data:`Index`), from an integer or what unambiguously is one."""
    if value is None:
        return None
    index = None
    if type(value) is int:
        index = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20
    ):
        index = int(value)
    valid = index is not None and 0 <= index < MAX_TREE_SIZE
    if type(value) is not int or not valid:
        on_coerced("cert_index")
    return index if valid else None


def _number(obj: dict[str, Any], key: str, on_coerced: OnCoerced) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    on_coerced(key)
    return None


def _epoch(obj: dict[str, Any], key: str, on_coerced: OnCoerced) -> int | None:
    if obj.get(key) == "no_expiration":  # Elixir's not_after for a certificate without one
        return None
    number = _number(obj, key, on_coerced)
    if number is None or not -1e12 < number < 1e12:
        return None
    return int(number)


def _name_part(name: dict[str, Any], key: str, field: str, on_coerced: OnCoerced) -> str | None:
    value = name.get(key)
    if value is None or isinstance(value, str):
        return value
    on_coerced(field)
    return None


# --- phase 2: everything an alert reports, for matched certificates only -------------------


def read_update(raw: str | bytes, on_coerced: OnCoerced = _ignore) -> Observation:
    """Decode a matched certificate_update in full, leniently, into an :class:`Observation`
    (its DER parsed too). Raises :class:`MalformedMessage` only when it has no list of names.

    Fields that :func:`peek` reads (names, log URL, index) were reported there and are not
    reported again.
    """
    parts = _certificate_parts(decode_json(raw))
    if isinstance(parts, Other):
        raise MalformedMessage(INVALID_FIELD, "not a certificate_update")
    data, leaf = parts
    quiet = _ignore
    source = _object(data, "source", "source.url", quiet)  # reported by peek
    extensions = _object(leaf, "extensions", "extensions", on_coerced)
    aki_text = extensions.get("authorityKeyIdentifier")
    if aki_text is not None and not isinstance(aki_text, str):
        on_coerced("extensions")
    subject = _object(leaf, "subject", "subject", on_coerced)
    issuer = _object(leaf, "issuer", "issuer", on_coerced)
    fingerprint_text = _text(leaf, "fingerprint", "fingerprint", on_coerced)
    sha256_text = _text(leaf, "sha256", "sha256", on_coerced)
    der = None
    as_der = _text(leaf, "as_der", "as_der", on_coerced)
    if as_der:
        try:
            der = binascii.a2b_base64(as_der, strict_mode=True)
        except (binascii.Error, ValueError):
            on_coerced("as_der")
    names = tuple(_names(leaf, quiet))
    issuer_text = _name_part(issuer, "aggregated", "issuer", on_coerced) or ""
    serial = _text(leaf, "serial_number", "serial_number", on_coerced)
    summary = CertSummary(
        fingerprint_sha1=fingerprint_text.replace(":", "").strip().lower(),
        all_sans=names,
        issuer=issuer_text,
        issuer_o=_name_part(issuer, "O", "issuer", on_coerced),
        issuer_cn=_name_part(issuer, "CN", "issuer", on_coerced),
        not_before=_epoch(leaf, "not_before", on_coerced),
        not_after=_epoch(leaf, "not_after", on_coerced),
        source_log=_text(source, "name", "source.name", on_coerced),
        source_url=_text(source, "url", "source.url", quiet),
        cert_link=_text(data, "cert_link", "cert_link", on_coerced),
        cert_index=_index(data.get("cert_index"), quiet),
        serial=serial,
        update_type=_text(data, "update_type", "update_type", on_coerced),
    )
    facts = certificate_facts(
        names,
        subject_cn=_name_part(subject, "CN", "subject", on_coerced),
        sha1=fingerprint(fingerprint_text),
        sha256=fingerprint(sha256_text, length=64) if sha256_text else None,
        authority_key_id=key_identifier(aki_text) if isinstance(aki_text, str) else None,
        serial=serial,
        issuer=issuer_text,
        der=der,
    )
    return Observation(summary, facts, _number(data, "seen", on_coerced))
