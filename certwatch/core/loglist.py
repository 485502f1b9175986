"""The CT log list: which logs exist, where to read them, and their keys. Pure logic, no I/O.

The list is Chrome's, in its v3 JSON schema: operators, each with RFC 6962 ``logs`` (one
``url``) and static-ct-api ``tiled_logs`` (a ``submission_url`` and a ``monitoring_url``).
certstream names a log by one of these URLs in ``source.url``, with or without the trailing
slash: :meth:`LogList.find` accepts any of them, ignoring the scheme's case and the
trailing slash.

A log is named everywhere (the ``log`` metric label, ``log_url`` in alerts) by its read
URL as the list writes it (``url``, or ``monitoring_url`` for a tiled log) without the
trailing slash. A log the list does not hold is read from the message's own URL, and
nothing it serves can be verified (:attr:`LogInfo.key` is ``None``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certwatch.errors import InvalidLogList

__all__ = [
    "LogInfo",
    "LogKind",
    "LogList",
    "PublicKey",
    "normalise_log_url",
    "parse_log_list",
    "readable_log_url",
]

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

MAX_LOGS = 1000
"""More logs than this in one list is not a log list (Chrome's holds about 100)."""


class LogKind(enum.StrEnum):
    RFC6962 = "rfc6962"
    TILED = "tiled"


def normalise_log_url(url: str) -> str:
    """A log URL for comparison and display: scheme and host lowercase, no trailing slash."""
    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or not parts.netloc:
        return text
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, "")
    )


def readable_log_url(url: str) -> bool:
    """Whether a log the list does not hold may be read at ``url`` (certstream's
    ``source.url``, which a hostile feed chooses): an ``http(s)`` URL with a host and
    nothing else of the caller's, no credentials, query or fragment. certwatch appends only
    the fixed paths of the CT read APIs to it, so it reads such a log as it reads CT logs,
    and nothing more."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and not parts.query
        and not parts.fragment
    )


def _origin(url: str) -> str:
    """static-ct-api's checkpoint origin: the submission prefix without scheme or slash."""
    text = normalise_log_url(url)
    return text.split("://", 1)[1] if "://" in text else text


@attrs.frozen
class LogInfo:
    """One CT log."""

    read_url: str
    """Where its entries are read (``url``, or ``monitoring_url`` for a tiled log), without
    the trailing slash: the log's name in metrics, ``/healthz`` and alerts."""
    kind: LogKind
    description: str = ""
    operator: str = ""
    origin: str = ""
    """A tiled log's checkpoint origin (its submission prefix without the scheme)."""
    key: PublicKey | None = attrs.field(default=None, eq=False, repr=False)
    """The key its tree heads are signed with: ``None`` when the list gives none usable,
    or the log is not in the list."""
    log_id: bytes | None = None
    urls: frozenset[str] = frozenset()
    """Every URL certstream may name it by, normalised."""
    state: str = ""
    listed: bool = True

    @classmethod
    def unlisted(cls, source_url: str, kind: LogKind) -> LogInfo:
        """A log the list does not hold, read from the URL certstream gave."""
        url = normalise_log_url(source_url)
        return cls(url, kind, origin=_origin(url), urls=frozenset([url]), listed=False)


@attrs.frozen
class LogList:
    """The logs of one list, found by any of their URLs."""

    logs: tuple[LogInfo, ...] = ()
    problems: tuple[str, ...] = ()
    """Entries that were left out or could not get a key, and why (for the log)."""
    _by_url: dict[str, LogInfo] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        by_url = {url: log for log in self.logs for url in log.urls}
        object.__setattr__(self, "_by_url", by_url)

    def __len__(self) -> int:
        return len(self.logs)

    def find(self, source_url: str) -> LogInfo | None:
        return self._by_url.get(normalise_log_url(source_url))


def _load_key(encoded: Any, log_id: bytes | None) -> tuple[PublicKey | None, str | None]:
    """The public key of a list entry, or ``None`` and why not."""
    if not isinstance(encoded, str):
        return None, "no key"
    try:
        der = base64.b64decode(encoded, validate=True)
        key = serialization.load_der_public_key(der)
    except (binascii.Error, ValueError):
        return None, "a key that does not parse"
    except Exception:  # noqa: BLE001 - cryptography raises several kinds on odd keys
        return None, "a key certwatch cannot use"
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return None, "a key that is neither ECDSA nor RSA"
    if log_id is not None and hashlib.sha256(der).digest() != log_id:
        return None, "a log_id that is not the SHA-256 of its key"
    return key, None


def _url(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 500:
        return None
    url = normalise_log_url(value)
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url


def _entry(item: Any, operator: str, kind: LogKind) -> tuple[LogInfo | None, str | None]:
    if not isinstance(item, dict):
        return None, "an entry that is not an object"
    description = item.get("description")
    description = description[:200] if isinstance(description, str) else ""
    log_id = None
    raw_id = item.get("log_id")
    if isinstance(raw_id, str):
        try:
            log_id = base64.b64decode(raw_id, validate=True)
        except (binascii.Error, ValueError):
            log_id = None
    if kind is LogKind.RFC6962:
        read = _url(item.get("url"))
        urls = [read]
        origin = ""
    else:
        read = _url(item.get("monitoring_url"))
        submission = _url(item.get("submission_url"))
        urls = [read, submission]
        origin = _origin(submission) if submission else ""
    if read is None:
        return None, f"{description or 'a log'}: no usable URL"
    key, problem = _load_key(item.get("key"), log_id)
    state = item.get("state")
    state_name = next(iter(state), "") if isinstance(state, dict) and state else ""
    log = LogInfo(
        read_url=read,
        kind=kind,
        description=description,
        operator=operator,
        origin=origin,
        key=key,
        log_id=log_id if key is not None else None,
        urls=frozenset(u for u in urls if u),
        state=state_name if isinstance(state_name, str) else "",
    )
    return log, (f"{read}: {problem}; its tree heads cannot be verified" if problem else None)


def parse_log_list(data: bytes) -> LogList:
    """A log list in Chrome's v3 schema. Entries that cannot be used are left out (see
    :attr:`LogList.problems`); a document that is not a log list at all raises
    :class:`InvalidLogList`."""
    try:
        document = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as e:
        raise InvalidLogList(f"not JSON ({e})") from None
    operators = document.get("operators") if isinstance(document, dict) else None
    if not isinstance(operators, list):
        raise InvalidLogList("no 'operators' list: not a v3 log list")
    _check_count(operators)
    logs: list[LogInfo] = []
    problems: list[str] = []
    for operator in operators:
        if not isinstance(operator, dict):
            problems.append("an operator that is not an object")
            continue
        name = operator.get("name")
        name = name[:200] if isinstance(name, str) else ""
        for field, kind in (("logs", LogKind.RFC6962), ("tiled_logs", LogKind.TILED)):
            items = operator.get(field, [])
            if not isinstance(items, list):
                problems.append(f"{name}: '{field}' is not a list")
                continue
            for item in items:
                log, problem = _entry(item, name, kind)
                if problem:
                    problems.append(problem)
                if log is not None:
                    logs.append(log)
    return LogList(tuple(logs), tuple(problems))


def _check_count(operators: list[Any]) -> None:
    """Refuse a list of more than :data:`MAX_LOGS` logs before reading any of them (keys
    are slow to load: 60,000 of them took seconds)."""
    count = 0
    for operator in operators:
        if isinstance(operator, dict):
            for field in ("logs", "tiled_logs"):
                items = operator.get(field)
                count += len(items) if isinstance(items, list) else 0
    if count > MAX_LOGS:
        raise InvalidLogList(f"{count} logs; a log list holds at most {MAX_LOGS}")
