"""What requests carry: bodies, query strings, and their meaning.

Bodies are structured strictly into attrs classes with cattrs, then checked for meaning.

cattrs is lax by default (``5`` becomes ``"5"``, a string is iterated into a list of
characters); the hooks here accept exactly the JSON type each field declares, so a
boolean is not a number, a float is not an integer and a string is not a list. Unknown
keys are rejected. Every problem is reported with the path of its field.
"""

from __future__ import annotations

import enum
import re
import typing
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from quart import request

from certwatch.core.alerts import AckScope
from certwatch.core.cas import caa_identifier, caa_identifiers
from certwatch.core.certificates import parse_certificate
from certwatch.core.identity import fingerprint, serial_number
from certwatch.core.lookalikes import Brand, brand_domain
from certwatch.core.messages import decode_json
from certwatch.core.names import SuffixKind, normalise_entry, normalise_san, public_suffix_kind
from certwatch.core.policy import Rule, RuleKind
from certwatch.core.recognition import InventoryCert
from certwatch.errors import (
    FieldProblem,
    InputError,
    InvalidBody,
    InvalidCertificate,
    InvalidName,
    MalformedMessage,
    UnsupportedMediaType,
)
from certwatch.http.responses import EPOCH_MAX

__all__ = [
    "MAX_BODY_BYTES",
    "ROW_ID",
    "CertIn",
    "DomainIn",
    "KeyIn",
    "cert_from_json",
    "cert_from_pem",
    "check_pem_agrees",
    "decode_body",
    "json_body",
    "names_field",
    "query_choice",
    "query_flag",
    "query_number",
    "read_body",
    "source_field",
    "structure",
    "watch_entry",
]

T = TypeVar("T")
E = TypeVar("E", bound=enum.StrEnum)

MAX_BODY_BYTES = 1024 * 1024
ROW_ID = "int(min=1, max=9223372036854775807)"
"""The URL converter of a row id in a path: what a database id can be (a 64-bit signed
integer), so a larger number is no route (404), never an overflow in the database."""
MAX_STRING = 65536
MAX_LIST = 1000
_JSON_MEDIA = frozenset({"application/json"})
_PEM_MEDIA = frozenset(
    {"application/x-pem-file", "application/pem-certificate-chain", "text/plain"}
)


# --- bodies and query strings --------------------------------------------------------------


async def read_body() -> tuple[Literal["json", "pem"], bytes]:
    """The raw body and its kind; 400 or 415 when unusable (Quart answers 413)."""
    mimetype = request.mimetype
    data = await request.get_data(cache=False, as_text=False, parse_form_data=False)
    if not data:
        raise InvalidBody("the request body is empty", [("body", "expected a JSON object")])
    if mimetype in _JSON_MEDIA or mimetype.endswith("+json"):
        return "json", data
    if mimetype in _PEM_MEDIA or (not mimetype and data.lstrip().startswith(b"-----BEGIN")):
        return "pem", data
    if not mimetype:
        return "json", data
    raise UnsupportedMediaType(
        "unsupported content type",
        [("Content-Type", f"must be application/json, got {mimetype[:60]!r}")],
    )


def decode_body(data: bytes) -> Any:
    try:
        return decode_json(data)
    except MalformedMessage as e:
        raise InvalidBody("the body is not valid JSON", [("body", e.detail[:200])]) from None


async def json_body() -> Any:
    """The request's JSON body, decoded (of any shape)."""
    kind, data = await read_body()
    if kind != "json":
        raise UnsupportedMediaType(
            "unsupported content type", [("Content-Type", "must be application/json")]
        )
    return decode_body(data)


def query_number(name: str, default: float | None, lo: float, hi: float, *, integer: bool) -> Any:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value: float = int(raw, 10) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise InputError("invalid query", [(name, f"must be {kind}, got {raw[:40]!r}")]) from None
    if not lo <= value <= hi:
        raise InputError("invalid query", [(name, f"must be from {lo:g} to {hi:g}")])
    return value


def query_flag(name: str) -> bool | None:
    """A query parameter that is ``true`` or ``false``."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise InputError("invalid query", [(name, "must be one of true, false")])
    return raw == "true"


def query_choice(name: str, choices: type[E]) -> E | None:
    """A query parameter that is one of an enum's values."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return choices(raw)
    except ValueError:
        allowed = ", ".join(choice.value for choice in choices)
        raise InputError("invalid query", [(name, f"must be one of {allowed}")]) from None


# --- bodies as attrs classes ---------------------------------------------------------------


@attrs.frozen
class DomainIn:
    value: str
    note: str = ""
    allow_private_suffix: bool = False
    """Watch a private-section public suffix (``github.io``) anyway: it matches every site
    under it, which is what one wants only for a suffix one runs oneself."""


@attrs.frozen
class CertIn:
    """``POST /certs``: the contract's JSON fields, or a PEM (or both, for old certwatches)."""

    fingerprint: str | None = None
    sans: list[str] | None = None
    not_before: int | None = None
    not_after: int | None = None
    serial: str | None = None
    source: str = ""
    pem: str | None = None


@attrs.frozen
class KeyIn:
    """``POST /keys``: a key by SPKI SHA-256 or as PEM (public key, CSR or certificate)."""

    names: list[str]
    spki_sha256: str | None = None
    pem: str | None = None
    note: str = ""


@attrs.frozen
class RuleIn:
    """``POST /rules``."""

    kind: str
    scope: str
    issuers: list[str] | None = None
    note: str = ""
    expires_at: int | None = None


@attrs.frozen
class BrandIn:
    """``POST /brands``."""

    domain: str
    note: str = ""
    allow: list[str] = attrs.Factory(list)


@attrs.frozen
class AcknowledgeIn:
    """``POST /alerts/<id>/acknowledge``."""

    scope: str
    note: str = ""


_JSON_TYPES = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control characters no text field takes (tab, line feed and carriage return are text:
a PEM has them). NUL in particular: PostgreSQL cannot store it, SQLite can, and a field
must mean the same on both."""
_CONTROL_PROBLEM = "must not contain control characters (NUL, ESC, ...)"


def _strict(kind: type) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"must be {_JSON_TYPES[kind]}, got {_describe(value)}")
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise ValueError(f"must be at most {MAX_STRING} characters")
            if _CONTROL.search(value):
                raise ValueError(_CONTROL_PROBLEM)
        return value

    return hook


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    for kind in (str, int, bool, float):
        converter.register_structure_hook(kind, _strict(kind))

    def is_str_list(t: Any) -> bool:
        return typing.get_origin(t) is list and typing.get_args(t) == (str,)

    def structure_str_list(value: Any, _: Any) -> list[str]:
        if not isinstance(value, list):
            raise TypeError(f"must be a list of strings, got {_describe(value)}")
        if len(value) > MAX_LIST:
            raise ValueError(f"must have at most {MAX_LIST} items")
        errors: list[Exception] = []
        for i, item in enumerate(value):
            if type(item) is not str:
                error = TypeError(f"must be a string, got {_describe(item)}")
                error.__notes__ = [f"@ [{i}]"]
                errors.append(error)
        if errors:
            raise IterableValidationError("invalid list items", errors, list[str])
        return list(value)

    converter.register_structure_hook_func(is_str_list, structure_str_list)
    return converter


_converter = _make_converter()


def _problems(error: BaseException, path: str = "") -> list[FieldProblem]:
    """Flatten a cattrs error tree into (field, problem) pairs."""
    if isinstance(error, ForbiddenExtraKeysError):
        keys = ", ".join(sorted(error.extra_fields))
        return [(path or "body", f"unknown field(s): {keys}")]
    if isinstance(error, ClassValidationError | IterableValidationError):
        found: list[FieldProblem] = []
        for sub in error.exceptions:
            found.extend(_problems(sub, _child_path(path, sub)))
        return found
    if isinstance(error, KeyError):
        return [(path, "required field is missing")]
    return [(path or "body", str(error))]


def _child_path(path: str, error: BaseException) -> str:
    """The path of a sub-error, from the note cattrs (or our list hook) attached to it."""
    for note in getattr(error, "__notes__", []):
        name = getattr(note, "name", None)  # cattrs' AttributeValidationNote
        if name is not None:
            return f"{path}.{name}" if path else str(name)
        if isinstance(note, str) and note.startswith("@ ["):  # structure_str_list's notes
            return f"{path}{note[2:]}"
    return path


def structure(value: Any, cls: type[T]) -> T:
    """Structure a decoded JSON body into ``cls``; raise :class:`InputError` naming fields."""
    if not isinstance(value, dict):
        raise InvalidBody("the body must be a JSON object", [("body", f"got {_describe(value)}")])
    try:
        return _converter.structure(value, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as e:
        raise InputError("invalid request body", _problems(e)) from None


# --- the meaning of well-typed fields ----------------------------------------------------


def path_entry(value: str, field: str) -> str:
    """A domain in a route's path, normalised like the input (a 422 naming ``field``)."""
    try:
        return normalise_entry(value)
    except InvalidName as e:
        raise e.in_field(field, "invalid path") from None


def watch_entry(body: DomainIn) -> str:
    """The normalised entry of a ``POST /domains``; refuses public suffixes (see the README)."""
    try:
        value = normalise_entry(body.value)
    except InvalidName as e:
        raise e.in_field("value") from None
    kind = public_suffix_kind(value)
    if kind is SuffixKind.ICANN:
        raise InputError(
            "invalid request body",
            [("value", f"{value} is a public suffix (ICANN section of the Public Suffix "
              "List): it would match every domain registered under it")],
        )  # fmt: skip
    if kind is SuffixKind.PRIVATE and not body.allow_private_suffix:
        raise InputError(
            "invalid request body",
            [("value", f"{value} is a public suffix run for many customers (private section "
              "of the Public Suffix List): it matches every customer's site under it; send "
              '"allow_private_suffix": true to watch it anyway')],
        )  # fmt: skip
    return value


def names_field(field: str, values: list[str], *, wildcards: bool) -> list[str]:
    """Validate certificate names; ``*.`` kept where allowed."""
    if not values:
        raise InputError("invalid request body", [(field, "must be a non-empty list of names")])
    out: list[str] = []
    problems: list[tuple[str, str]] = []
    for i, value in enumerate(values):
        wildcard = value.strip().startswith("*.")
        try:
            name = normalise_entry(value)
        except InvalidName as e:
            problems.append((f"{field}[{i}]", e.message))
            continue
        if wildcard and not wildcards:
            problems.append((f"{field}[{i}]", "a wildcard is not allowed here"))
            continue
        out.append(f"*.{name}" if wildcard else name)
    if problems:
        raise InputError("invalid request body", problems)
    return sorted(set(out))


MAX_SOURCE = 200


def source_field(source: str) -> str:
    """An inventory row's ``source`` (from the JSON body or, for a PEM push, the query)."""
    if len(source) > MAX_SOURCE:
        raise InputError(
            "invalid request", [("source", f"must be at most {MAX_SOURCE} characters")]
        )
    if _CONTROL.search(source):
        raise InputError("invalid request", [("source", _CONTROL_PROBLEM)])
    return source


def _epoch_field(name: str, value: int | None) -> int:
    if value is None:
        raise InputError("invalid request body", [(name, "required field is missing")])
    if not 0 <= value <= EPOCH_MAX:
        raise InputError(
            "invalid request body", [(name, f"must be epoch seconds from 0 to {EPOCH_MAX}")]
        )
    return value


def cert_from_pem(pem: str, source: str, now: float, field: str = "pem") -> InventoryCert:
    try:
        info = parse_certificate(pem)
    except InvalidCertificate as e:
        raise e.in_field(field) from None
    if info.is_precert:
        raise InputError(
            "invalid certificate", [(field, "is a precertificate; push the issued certificate")]
        )
    if not info.sans and not (info.subject_cn and normalise_san(info.subject_cn)):
        raise InputError("invalid certificate", [(field, "has no DNS names")])
    return InventoryCert.from_certificate(info, source=source, added_at=now)


def cert_from_json(body: CertIn, now: float) -> InventoryCert:
    problems: list[tuple[str, str]] = []
    sha1 = fingerprint(body.fingerprint) if body.fingerprint is not None else None
    if sha1 is None:
        problems.append(("fingerprint", "required: 40 hex digits (colons optional)"))
    sans: list[str] = []
    try:
        sans = names_field("sans", body.sans or [], wildcards=True)
    except InputError as e:
        problems.extend(e.problems)
    for name in ("not_before", "not_after"):
        try:
            _epoch_field(name, getattr(body, name))
        except InputError as e:
            problems.extend(e.problems)
    if (
        body.not_before is not None
        and body.not_after is not None
        and body.not_before >= body.not_after
    ):
        problems.append(("not_after", "must be later than not_before"))
    serial = None
    if body.serial is not None:
        number = serial_number(body.serial)
        if number is None:
            problems.append(("serial", "must be hex digits (colons optional), at most 64"))
        else:
            serial = body.serial.replace(":", "").strip().lower()
    if problems:
        raise InputError("invalid request body", problems)
    assert sha1 is not None
    assert body.not_before is not None
    assert body.not_after is not None
    return InventoryCert(
        fingerprint_sha1=sha1,
        serial=serial,
        sans=tuple(sans),
        not_before=body.not_before,
        not_after=body.not_after,
        source=body.source,
        added_at=now,
    )


def check_pem_agrees(body: CertIn, cert: InventoryCert) -> None:
    """A push with both PEM and JSON fields must describe one certificate."""
    problems = []
    if body.fingerprint is not None and fingerprint(body.fingerprint) != cert.fingerprint_sha1:
        problems.append(("fingerprint", "does not match the certificate in pem"))
    if body.serial is not None and serial_number(body.serial) != serial_number(cert.serial or ""):
        problems.append(("serial", "does not match the certificate in pem"))
    if problems:
        raise InputError("invalid request body", problems)


MAX_NOTE = 1000
"""Characters of a rule's or an acknowledgement's note."""


def rule_from(body: RuleIn, now: float) -> Rule:
    """The rule a ``POST /rules`` asks for, every field checked (all problems at once)."""
    problems: list[FieldProblem] = []
    kind: RuleKind | None = None
    try:
        kind = RuleKind(body.kind)
    except ValueError:
        problems.append(("kind", f"must be one of {', '.join(RuleKind)}"))
    scope = ""
    try:
        scope = normalise_entry(body.scope)
        if public_suffix_kind(scope) is SuffixKind.ICANN:
            problems.append(("scope", f"{scope} is a public suffix (ICANN section of the "
                                      "Public Suffix List): a rule for it would cover every "
                                      "domain registered under it"))  # fmt: skip
    except InvalidName as e:
        problems.append(("scope", e.message))
    issuers: tuple[str, ...] = ()
    given = body.issuers or []
    if kind is RuleKind.PROTECT and given:
        problems.append(("issuers", "a protect rule names no issuer (nobody else may issue)"))
    elif kind in (RuleKind.EXPECT, RuleKind.RESTRICT) and not given:
        problems.append(("issuers", f"a {kind} rule needs at least one CAA identifier, "
                                    'such as "letsencrypt.org"'))  # fmt: skip
    for i, issuer in enumerate(given):
        try:
            caa_identifier(issuer)
        except InvalidName as e:
            problems.append((f"issuers[{i}]", e.message))
    if not any(field.startswith("issuers") for field, _ in problems):
        issuers = caa_identifiers(given)
    if len(body.note) > MAX_NOTE:
        problems.append(("note", f"must be at most {MAX_NOTE} characters"))
    if body.expires_at is not None and not now < body.expires_at <= EPOCH_MAX:
        problems.append(("expires_at", "must be epoch seconds in the future"))
    if problems:
        raise InputError("invalid request body", problems)
    assert kind is not None
    return Rule(kind, scope, issuers, body.note, created_at=now, expires_at=body.expires_at)


def acknowledgement_from(body: AcknowledgeIn) -> tuple[AckScope, str]:
    problems: list[FieldProblem] = []
    scope: AckScope | None = None
    try:
        scope = AckScope(body.scope)
    except ValueError:
        problems.append(("scope", f"must be one of {', '.join(AckScope)}"))
    if len(body.note) > MAX_NOTE:
        problems.append(("note", f"must be at most {MAX_NOTE} characters"))
    if problems:
        raise InputError("invalid request body", problems)
    assert scope is not None
    return scope, body.note


def brand_from(body: BrandIn, now: float) -> Brand:
    """The brand a ``POST /brands`` asks for, every field checked (all problems at once)."""
    problems: list[FieldProblem] = []
    domain = label = ""
    try:
        domain, label, _ = brand_domain(body.domain)
    except InvalidName as e:
        problems.append(("domain", e.message))
    allow: list[str] = []
    for i, value in enumerate(body.allow):
        try:
            allow.append(normalise_entry(value))
        except InvalidName as e:
            problems.append((f"allow[{i}]", e.message))
    if len(body.note) > MAX_NOTE:
        problems.append(("note", f"must be at most {MAX_NOTE} characters"))
    if problems:
        raise InputError("invalid request body", problems)
    return Brand(domain, label, body.note, tuple(sorted(set(allow))), now)
