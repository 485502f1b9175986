"""Serving the API with Hypercorn inside certwatch's nursery.

Three things Hypercorn and Quart-Trio need from certwatch, all here:

- the configuration (timeouts, limits, no access log: query strings could carry secrets);
- a fix for their interplay: Quart-Trio cancels a request's nursery as soon as Hypercorn
  reports the stream closed, which it does from inside the response's last send, while it
  starts the keep-alive connection's idle task there. That start was cancelled every time,
  so idle connections were never closed (not after ``keep_alive_timeout``, not at
  shutdown) and a response's last bytes could be lost. :class:`App` shields that send;
- JSON for the errors Hypercorn answers itself (what h11 cannot parse), like every other.

:func:`serve_api` binds and serves until its trigger fires; a socket that cannot be bound
is a :class:`~certwatch.errors.ListenError` naming the variable to fix.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import msgspec
import trio
from hypercorn.config import Config
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio import serve
from hypercorn.typing import ASGISendCallable, ASGISendEvent
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection

from certwatch.errors import ListenError, leaves
from certwatch.settings import Settings

__all__ = [
    "App",
    "check_listen",
    "listen_error",
    "serve_api",
]


class _HTTPConnection(TrioASGIHTTPConnection):
    """Quart-Trio's request handling, with the last send of a response shielded."""

    async def handle_request(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Any, send: ASGISendCallable
    ) -> None:
        async def send_last_shielded(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await super().handle_request(nursery, request, send_last_shielded)


class App(QuartTrio):
    """The Quart-Trio application class certwatch serves (see the module docstring)."""

    asgi_http_class = _HTTPConnection


_PROTOCOL_ERRORS = {
    400: "malformed HTTP request: the request line or a header is not valid HTTP/1.1 "
    "(non-ASCII characters in a URL must be percent-encoded)",
    431: "request headers too large",
}


async def _json_protocol_error(self: H11Protocol, status_code: int) -> None:
    """Hypercorn's answer to a request h11 cannot parse, with certwatch's JSON error body."""
    message = _PROTOCOL_ERRORS.get(status_code, "malformed HTTP request")
    body = msgspec.json.encode({"error": message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *self.config.response_headers("h11"),
    ]
    await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


# Hypercorn answers what h11 rejects (a raw non-ASCII byte in a URL, a broken header) before
# any application sees it, with an empty body; every certwatch error is JSON. This is the one
# place Hypercorn lets that answer be changed.
H11Protocol._send_error_response = _json_protocol_error  # type: ignore[method-assign]


def _config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    config.bind = [f"{host}:{settings.api_port}"]
    config.graceful_timeout = settings.timing.shutdown_grace_s
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.keep_alive_timeout = settings.timing.api_idle_timeout_s
    config.read_timeout = math.ceil(settings.timing.api_read_timeout_s)  # hypercorn: whole s
    config.h11_max_incomplete_size = 16 * 1024
    return config


def listen_error(settings: Settings, error: BaseException) -> ListenError:
    """What a failure to bind the API's socket means, naming the variable to fix."""
    where = f"{settings.api_host}:{settings.api_port}"
    if isinstance(error, socket.gaierror):
        return ListenError("API_HOST", f"cannot resolve {settings.api_host!r}", exit_status=2)
    errno_ = error.errno if isinstance(error, OSError) else None
    if errno_ == errno.EADDRINUSE:
        problem = f"{where} is already in use (another certwatch, or another program)"
        return ListenError("API_PORT", problem, exit_status=1)
    if errno_ == errno.EADDRNOTAVAIL:
        problem = f"{settings.api_host} is not an address of this host"
        return ListenError("API_HOST", problem, exit_status=1)
    if errno_ == errno.EACCES:
        problem = f"no permission to listen on {where} (ports below 1024 need privileges)"
        return ListenError("API_PORT", problem, exit_status=1)
    return ListenError("API_HOST", f"cannot listen on {where}: {error}", exit_status=1)


async def check_listen(settings: Settings) -> None:
    """Raise the :class:`ListenError` that serving would meet (a name that does not
    resolve, a port in use, an address not on this host), before anything else starts: a
    mistyped port must not leave a database created and migrated behind it."""
    try:
        infos = await trio.socket.getaddrinfo(
            settings.api_host, settings.api_port, type=socket.SOCK_STREAM
        )
        for family, kind, proto, _, address in infos:
            with trio.socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                await probe.bind(address)
    except OSError as e:
        raise listen_error(settings, e) from None


async def serve_api(
    app: App,
    settings: Settings,
    stop: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``stop()`` returns; report the bound addresses once listening.

    Stopping lets the requests in flight finish (up to the shutdown grace) and closes idle
    connections at once.
    """
    try:
        await serve(app, _config(settings), shutdown_trigger=stop, task_status=task_status)
    except* OSError as group:  # binding the socket: per connection, Hypercorn copes
        raise listen_error(settings, leaves(group)[0]) from None
