"""The one settings object, built once from the environment."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import attrs

from certwatch.core.cas import (
    MAX_IDENTITIES_FILE_BYTES,
    IdentitiesFile,
    InvalidIdentities,
    decode_identities_file,
)
from certwatch.errors import ConfigError

__all__ = ["PRODUCTION_TIMING", "Settings", "Timing", "names", "read", "redact_url"]

T = TypeVar("T")


DEFAULT_DB_PATH = Path("certwatch.db")
DEFAULT_LOG_LIST = "https://www.gstatic.com/ct/log_list/v3/log_list.json"
"""Chrome's published CT log list (v3 schema)."""


@attrs.frozen
class Timing:
    """Protocol timings that are not operator settings.

    Production uses the defaults; tests shorten them (stamina's testing-mode idea) instead
    of monkeypatching module constants.
    """

    ping_interval_s: float = 20.0
    """Send a WebSocket ping this often (servers drop clients silent for 60 s)."""
    ping_timeout_s: float = 10.0
    """A ping without its pong after this long means the connection is dead."""
    idle_timeout_s: float = 300.0
    """No message at all for this long means the feed is stuck: reconnect."""
    connect_timeout_s: float = 15.0
    disconnect_timeout_s: float = 3.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    webhook_retry_delays_s: tuple[float, ...] = (1.0, 4.0)
    """Waits between the contract's three quick attempts."""
    webhook_backoff_s: float = 30.0
    """Wait after the quick attempts, doubling at each further failure..."""
    webhook_backoff_max_s: float = 3600.0
    """...up to this."""
    outbox_poll_s: float = 5.0
    """How often the webhook sender looks for due alerts in the outbox."""
    shutdown_grace_s: float = 5.0
    """How long in-flight HTTP requests may take to finish after SIGTERM."""
    api_idle_timeout_s: float = 5.0
    """An API connection without a complete request for this long is closed: keep-alive
    between requests, and the whole of a request's headers (slowloris)."""
    api_read_timeout_s: float = 30.0
    """A read on an API connection waiting longer than this closes it."""
    api_body_timeout_s: float = 30.0
    """A request body not complete after this long gets a 408 (slow bodies)."""
    store_retry_initial_s: float = 0.5
    """A write that failed for a database fault (alert state, saved positions) is tried
    again after this long, doubling..."""
    store_retry_max_s: float = 30.0
    """...up to this, for as long as it takes."""
    db_busy_timeout_s: float = 5.0
    """How long a write waits for another process's lock (SQLite), or for a connection to
    the database (PostgreSQL, reconnecting), before a 503 / a retry."""
    ct_request_timeout_s: float = 15.0
    """A CT log request without progress for this long fails (the whole answer: 3 times)."""
    ct_backoff_initial_s: float = 1.0
    """Back-fill waits this long after a failed read of a log, doubling..."""
    ct_backoff_max_s: float = 300.0
    """...up to this (a log's ``Retry-After`` is honoured up to it too)."""
    ct_head_refresh_s: float = 30.0
    """A log's tree head is read again at most this often when live indexes reach it."""
    ct_positions_save_s: float = 5.0
    """How often the CT log positions are saved (a batch, never per message)."""
    ct_log_list_refresh_s: float = 86400.0
    """How often the CT log list is loaded again."""
    ct_log_list_retry_initial_s: float = 60.0
    """After a failed load, the log list is tried again after this long, doubling..."""
    ct_log_list_retry_s: float = 3600.0
    """...up to this."""


PRODUCTION_TIMING = Timing()
"""The timings certwatch runs with (tests pass shorter ones)."""


@attrs.frozen
class Settings:
    """Everything an operator can set, validated. Build it with :meth:`from_env`."""

    api_token: str = attrs.field(repr=False)
    certstream_url: str = "ws://localhost:8080/full-stream"
    db_path: Path = DEFAULT_DB_PATH
    database_url: str | None = attrs.field(default=None, repr=False)
    """PostgreSQL (replicas); ``None``: the SQLite file at ``db_path``."""
    api_host: str = "127.0.0.1"
    api_port: int = 8765
    webhook_url: str | None = None
    webhook_secret: str | None = attrs.field(default=None, repr=False)
    webhook_timeout_s: float = 10.0
    webhook_retry_period_s: float = 86400.0
    cleanup_interval_s: float = 3600.0
    cleanup_grace_s: float = 86400.0
    alert_retention_s: float = 2592000.0
    suspicious_grace_s: float = 60.0
    log_level: str = "INFO"
    ct_backfill: bool = True
    ct_log_list: str = DEFAULT_LOG_LIST
    ct_backfill_max_entries: int = 2_000_000
    ct_backfill_retry_period_s: float = 21600.0
    ca_identities_file: IdentitiesFile | None = None
    """CA identities laid over the built-in data (read at start)."""
    caa_check: bool = True
    caa_resolver: tuple[str, int] | None = None
    """A recursive resolver; ``None``: the system's."""
    caa_refresh_s: float = 3600.0
    caa_stable_s: float = 28800.0
    caa_timeout_s: float = 2.0
    timing: Timing = Timing()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raise :class:`ConfigError` on the first bad one.

        An empty value means "unset" for every optional variable. Surrounding whitespace is
        removed from every value, the token included (``echo tok | kubectl create secret``
        stores a trailing newline that no client sends).
        """
        env = os.environ if environ is None else environ
        token = env.get("API_TOKEN", "").strip()
        if not token:
            raise ConfigError("API_TOKEN", "required; set it to the bearer token clients use")
        if any(c.isspace() or not c.isprintable() for c in token):
            raise ConfigError(
                "API_TOKEN", "must not contain whitespace or control characters inside it"
            )

        return cls(api_token=token, **{name.lower(): read(name, env) for name in _PARSERS})


def names() -> list[str]:
    """Every environment variable certwatch reads."""
    return ["API_TOKEN", *_PARSERS]


def read(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One optional setting from the environment (the default when unset or empty), for
    commands that need no token (``certwatch replay``). Raises :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    raw = env.get(name, "").strip()
    if not raw:
        return attrs.fields_dict(Settings)[name.lower()].default
    return _PARSERS[name](name, raw)


def redact_url(url: str) -> str:
    """A URL fit to show and log: user, password and every query value become ``***``.

    ``wss://u:p@feed.example/full-stream?apikey=k`` ->
    ``wss://***@feed.example/full-stream?apikey=***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(
        f"{key}=***" if sep else key
        for key, sep, _ in (item.partition("=") for item in parts.query.split("&"))
    )
    fragment = "***" if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query if parts.query else "", fragment))


def _url(*schemes: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError as e:
            raise ConfigError(name, f"not a valid URL ({e})") from None
        if parts.scheme not in schemes:
            wanted = " or ".join(f"{s}://" for s in schemes)
            raise ConfigError(name, f"must start with {wanted}, got {raw!r}")
        if not parts.hostname:
            raise ConfigError(name, f"has no host: {raw!r}")
        if port == 0:
            raise ConfigError(name, f"port 0 is not a valid destination: {raw!r}")
        return raw

    return parse


def _database_url(name: str, raw: str) -> str:
    """A libpq URL: ``postgresql://user:password@host:port/database?options``. The host
    may be left out (a Unix socket: ``?host=/run/postgresql``)."""
    try:
        parts = urlsplit(raw)
        _ = parts.port
    except ValueError as e:
        raise ConfigError(name, f"not a valid URL ({e})") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(name, f"must start with postgresql://, got {redact_url(raw)!r}")
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise ConfigError(name, f"names no database: {redact_url(raw)!r}")
    return raw


def _path(name: str, raw: str) -> Path:
    if "\x00" in raw:
        raise ConfigError(name, "contains a NUL byte")
    return Path(raw)


def _host(name: str, raw: str) -> str:
    if any(c.isspace() for c in raw) or "/" in raw:
        raise ConfigError(name, f"not a host name or address: {raw!r}")
    return raw


def _port(name: str, raw: str) -> int:
    try:
        port = int(raw, 10)
    except ValueError:
        raise ConfigError(name, f"must be a whole number from 0 to 65535, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(name, f"must be from 0 to 65535, got {port}")
    return port


def _secret(name: str, raw: str) -> str:
    """A signing secret: ``whsec_`` and base64 (Standard Webhooks; at least 16 bytes), or
    any other text of at least 16 characters, used as its UTF-8 bytes."""
    if raw.startswith("whsec_"):
        try:
            key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                name, "starts with whsec_ but the rest is not base64 (Standard Webhooks' form)"
            ) from None
        if len(key) < 16:
            raise ConfigError(name, f"whsec_ must be followed by at least 16 bytes, got {len(key)}")
        return raw
    if len(raw) < 16:
        raise ConfigError(name, "must be at least 16 characters")
    return raw


def _seconds(*, positive: bool = False) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, f"must be a number of seconds, got {raw!r}") from None
        if not math.isfinite(value):
            raise ConfigError(name, f"must be a finite number of seconds, got {raw!r}")
        if value < 0 or (positive and value == 0):
            bound = "greater than 0" if positive else "0 or more"
            raise ConfigError(name, f"must be {bound}, got {raw!r}")
        return value

    return parse


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(name: str, raw: str) -> bool:
    value = raw.lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ConfigError(name, f"must be one of {', '.join(_ON + _OFF)}, got {raw!r}")


def _count(name: str, raw: str) -> int:
    """A whole number of 1 or more (to turn a feature off, each has its own switch)."""
    try:
        value = int(raw, 10)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(name, f"must be 1 or more, got {raw!r}")
    return value


def _path_or_url(name: str, raw: str) -> str:
    """An http(s) URL, or the path of a file that exists now (a URL may be down for a
    while; a path that does not exist is a mistake in the settings)."""
    if "://" in raw:
        return _url("http", "https")(name, raw)
    path = _path(name, raw)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise ConfigError(name, f"{raw!r} {what} (a path, or an http(s):// URL)")
    return str(path)


def _ca_identities_file(name: str, raw: str) -> IdentitiesFile:
    """A JSON file of CA identities, read and checked now: a mistake stops certwatch at
    start rather than leave a CA unknown."""
    path = _path(name, raw)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_IDENTITIES_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(name, f"{raw!r} cannot be read: {e.strerror or e}") from None
    if len(data) > MAX_IDENTITIES_FILE_BYTES:
        raise ConfigError(name, f"{raw!r} is larger than {MAX_IDENTITIES_FILE_BYTES:,} bytes")
    try:
        identities = decode_identities_file(data)
    except InvalidIdentities as e:
        raise ConfigError(name, f"{raw!r}: {e}") from None
    return IdentitiesFile(str(path), tuple(identities))


def _resolver(name: str, raw: str) -> tuple[str, int]:
    """``host:port`` of a recursive resolver, an IP address (IPv6 in brackets); the port
    defaults to 53."""
    host, port = raw, "53"
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(name, f"not [address]:port: {raw!r}")
            port = rest[1:]
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            name, f"must be an IP address with an optional port (IPv6 in brackets), got {raw!r}"
        ) from None
    number = _port(name, port)
    if number == 0:
        raise ConfigError(name, f"port 0 is not a valid destination: {raw!r}")
    return str(address), number


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(name: str, raw: str) -> str:
    """One of :data:`LOG_LEVELS`, any case (not logging's aliases WARN, FATAL, NOTSET)."""
    level = raw.upper()
    if level not in LOG_LEVELS:
        raise ConfigError(name, f"must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "CERTSTREAM_URL": _url("ws", "wss"),
    "DB_PATH": _path,
    "DATABASE_URL": _database_url,
    "API_HOST": _host,
    "API_PORT": _port,
    "WEBHOOK_URL": _url("http", "https"),
    "WEBHOOK_SECRET": _secret,
    "WEBHOOK_TIMEOUT_S": _seconds(positive=True),
    "WEBHOOK_RETRY_PERIOD_S": _seconds(),
    "CLEANUP_INTERVAL_S": _seconds(positive=True),
    "CLEANUP_GRACE_S": _seconds(),
    "ALERT_RETENTION_S": _seconds(positive=True),
    "SUSPICIOUS_GRACE_S": _seconds(),
    "LOG_LEVEL": _log_level,
    "CT_BACKFILL": _switch,
    "CT_LOG_LIST": _path_or_url,
    "CT_BACKFILL_MAX_ENTRIES": _count,
    "CT_BACKFILL_RETRY_PERIOD_S": _seconds(),
    "CA_IDENTITIES_FILE": _ca_identities_file,
    "CAA_CHECK": _switch,
    "CAA_RESOLVER": _resolver,
    "CAA_REFRESH_S": _seconds(positive=True),
    "CAA_STABLE_S": _seconds(),
    "CAA_TIMEOUT_S": _seconds(positive=True),
}
"""Every optional variable and how it is read; each is the Settings field of its name."""
