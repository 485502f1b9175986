"""Every error certwatch raises on purpose.

    CertwatchError
    ├── ConfigError             an environment variable is missing or invalid (exit status 2)
    ├── ListenError             the API cannot listen where it is told to (exit status 1 or 2)
    ├── InputError              a request or record fails validation (HTTP 4xx)
    │   ├── InvalidName         not a usable hostname or watch entry
    │   ├── InvalidCertificate  a PEM, DER, CSR or public key that does not parse
    │   ├── InvalidBody         a body that is not JSON, too deep, or of the wrong shape
    │   ├── UnsupportedMediaType  a body in a format the route does not take (HTTP 415)
    │   └── Conflict            a request the resource's state does not allow (HTTP 409)
    ├── MalformedMessage        a feed message that is counted and skipped
    ├── FeedConnectError        connecting to the feed failed (counted by reason, retried)
    ├── CTLogError              reading a CT log failed (counted by reason, retried)
    ├── InvalidLogList          a CT log list that does not parse
    ├── BodyError               an HTTP body over its limit, or in an encoding it cannot have
    └── StoreError              the SQLite database cannot be used
        └── StoreUnavailable    a transient fault (locked, read-only, disk full): HTTP 503

Each carries what the caller needs to report it: the variable, the field, the reason.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "BodyError",
    "CTLogError",
    "CTLogReason",
    "CertwatchError",
    "ConfigError",
    "Conflict",
    "FeedConnectError",
    "FeedConnectReason",
    "FieldProblem",
    "InputError",
    "InvalidBody",
    "InvalidCertificate",
    "InvalidLogList",
    "InvalidName",
    "ListenError",
    "MalformedMessage",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedMediaType",
    "leaves",
]

FieldProblem = tuple[str, str]
"""A validation finding: (field path such as ``sans[2]``, what is wrong with it)."""


class CertwatchError(Exception):
    """Base class of every error certwatch raises on purpose."""


class ConfigError(CertwatchError):
    """An environment variable is missing or does not parse."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class ListenError(CertwatchError):
    """The API cannot listen on ``API_HOST``:``API_PORT``.

    ``exit_status`` is 2 when the setting itself is wrong (a name that does not resolve),
    1 when the environment is (the port is taken, the address is not on this host).
    """

    def __init__(self, variable: str, problem: str, *, exit_status: int) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem
        self.exit_status = exit_status


class InputError(CertwatchError):
    """Input from a client or operator that fails validation.

    ``problems`` lists every offending field; ``status`` is the HTTP status to answer.
    """

    status: int = 422

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems: list[FieldProblem] = problems or []

    def in_field(self, field: str, message: str = "invalid request body") -> InputError:
        """A copy whose problems are reported under ``field``, with the request's error
        ``message`` (the one error shape: what kind of input was wrong, then each field)."""
        problems = self.problems or [("", self.message)]
        located = [(_join(field, sub), problem) for sub, problem in problems]
        return type(self)(message, located)


def _join(field: str, sub: str) -> str:
    if not sub:
        return field
    return f"{field}{sub}" if sub.startswith("[") else f"{field}.{sub}"


class InvalidName(InputError):
    """A name that is not a hostname, or not a usable watch entry."""


class InvalidCertificate(InputError):
    """A certificate, CSR or public key that does not parse."""


class InvalidBody(InputError):
    """A request body that is not a JSON object of the expected shape."""

    status = 400


class UnsupportedMediaType(InputError):
    """A request body in a format the route does not take."""

    status = 415


class Conflict(InputError):
    """A well-formed request that the resource's state does not allow (an alert
    acknowledged before, say)."""

    status = 409


class MalformedMessage(CertwatchError):
    """A feed message that cannot be used; ``reason`` is a bounded metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


FeedConnectReason = Literal["dns", "refused", "timeout", "tls", "rejected", "protocol", "network"]
"""Why a connection to the feed failed: a metric label, so a fixed few."""


class FeedConnectError(CertwatchError):
    """A connection to the feed that never became a WebSocket; ``reason`` is a metric label."""

    REASONS: tuple[FeedConnectReason, ...] = get_args(FeedConnectReason)

    def __init__(self, reason: FeedConnectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


CTLogReason = Literal[
    "unreachable",
    "timeout",
    "http",
    "rate_limited",
    "malformed",
    "bad_signature",
    "bad_proof",
    "unreadable_certificate",
    "inconsistent",
    "implausible_index",
    "unlisted",
]
"""Why a CT log request failed: a metric label, so a fixed few."""


class CTLogError(CertwatchError):
    """A CT log request or response that could not be used; ``reason`` is a metric label.

    ``transient`` errors (the log is down, slow, rate-limiting, or its answer was cut short)
    are retried with backoff; the others are not worth asking again.
    """

    REASONS: tuple[CTLogReason, ...] = get_args(CTLogReason)
    TRANSIENT: frozenset[CTLogReason] = frozenset(
        {"unreachable", "timeout", "http", "rate_limited", "malformed"}
    )
    """The reasons worth asking again for: the log was down, slow, busy, or cut short."""

    def __init__(
        self, reason: CTLogReason, detail: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        """Seconds the log asked us to wait (``Retry-After``), if it said."""

    @property
    def transient(self) -> bool:
        """Asking again may work (the log was down, slow, busy, or cut its answer short);
        a signature that does not verify, a failed proof or a log that lied will not."""
        return self.reason in self.TRANSIENT


class BodyError(CertwatchError):
    """An HTTP body that cannot be read within its bound; ``reason`` is ``too_large`` or
    ``bad_encoding``."""

    def __init__(self, reason: Literal["too_large", "bad_encoding"], detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class InvalidLogList(CertwatchError):
    """A CT log list (Chrome's v3 schema) that cannot be used at all."""


class StoreError(CertwatchError):
    """The database cannot be opened or used."""


class StoreUnavailable(StoreError):
    """A transient database fault; the operation changed nothing and may be retried."""


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside a (possibly nested) exception group, or the exception itself."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for sub in error.exceptions for leaf in leaves(sub)]
    return [error]
