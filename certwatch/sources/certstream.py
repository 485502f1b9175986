"""The certstream consumer: one WebSocket, kept alive, read by a task that only reads.

The reader hands each frame to a bounded memory channel and goes straight back to the
socket; parsing and matching happen in the pipeline task. trio-websocket stops answering
pings while its own queue is full, so a reader that did any work would get the connection
dropped by the server. If the pipeline ever falls behind and the channel is full, the
frame is dropped and counted (``certwatch_ct_dropped_total``) instead of stalling the
socket.

Every connection gets a keepalive task: a ping every ``ping_interval_s`` whose pong must
arrive within ``ping_timeout_s``, and a check that some message arrived within
``idle_timeout_s``. Failures reconnect forever with capped, jittered exponential backoff,
reset once a connection has delivered messages.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import NoReturn
from urllib.parse import urlsplit

import attrs
import h11
import trio
import wsproto.utilities
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from certwatch.core.backoff import Backoff
from certwatch.core.messages import NEW_CONNECTION, FeedItem
from certwatch.errors import FeedConnectError, FeedConnectReason, leaves
from certwatch.metrics import FeedMetrics
from certwatch.settings import Timing, redact_url

__all__ = [
    "MAX_MESSAGE_SIZE",
    "Connector",
    "FeedConsumer",
    "FeedStatistics",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 16 * 1024 * 1024
"""Certificates with thousands of SANs make multi-megabyte messages; the default is 1 MiB."""
LIBRARY_QUEUE = 16


Connector = Callable[[str], AbstractAsyncContextManager[WebSocketConnection]]


@attrs.frozen
class _Target:
    host: str
    port: int
    resource: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        tls = parts.scheme == "wss"
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.hostname or "", parts.port or (443 if tls else 80), resource, tls)

    @property
    def host_header(self) -> str:
        return self.host if self.port in (80, 443) else f"{self.host}:{self.port}"


async def _connect_tcp(target: _Target, timing: Timing) -> trio.abc.Stream:
    """The TCP (and TLS) stream to the feed, or :class:`FeedConnectError`."""
    try:
        with trio.fail_after(timing.connect_timeout_s):
            if target.tls:
                return await trio.open_ssl_over_tcp_stream(
                    target.host, target.port, https_compatible=True
                )
            return await trio.open_tcp_stream(target.host, target.port)
    except trio.TooSlowError:
        raise FeedConnectError(
            "timeout", f"no connection within {timing.connect_timeout_s:g} s"
        ) from None
    except socket.gaierror as e:
        raise FeedConnectError("dns", f"cannot resolve {target.host}: {e.strerror}") from None
    except OSError as e:
        refused = isinstance(e.__cause__, BaseExceptionGroup) and all(
            isinstance(leaf, ConnectionRefusedError) for leaf in leaves(e.__cause__)
        )
        reason: FeedConnectReason = (
            "refused" if refused or isinstance(e, ConnectionRefusedError) else "network"
        )
        raise FeedConnectError(reason, str(e) or type(e).__name__) from None


# What a server that is no WebSocket server makes the handshake raise; anything else that
# escapes the handshake is a bug and crashes, as bugs should.
_HANDSHAKE_FAILURES = (
    trio.TooSlowError,
    HandshakeError,
    ConnectionClosed,
    h11.ProtocolError,
    wsproto.utilities.ProtocolError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


def _handshake_failure(error: BaseException, timing: Timing) -> FeedConnectError | None:
    """The failure an exception (group) from the WebSocket upgrade means, or ``None``."""
    found = leaves(error)
    if not all(isinstance(leaf, _HANDSHAKE_FAILURES) for leaf in found):
        return None  # cancelled (shutting down), or a bug
    first = found[0]
    if isinstance(first, trio.TooSlowError):
        return FeedConnectError(
            "timeout", f"no WebSocket upgrade within {timing.connect_timeout_s:g} s"
        )
    if isinstance(first, ConnectionRejected):
        return FeedConnectError("rejected", f"rejected with HTTP {first.status_code}")
    if isinstance(first, trio.BrokenResourceError) and isinstance(first.__cause__, ssl.SSLError):
        return FeedConnectError("tls", f"TLS handshake failed: {first.__cause__.reason}")
    if isinstance(first, h11.ProtocolError | wsproto.utilities.ProtocolError | HandshakeError):
        return FeedConnectError("protocol", f"not a WebSocket server ({first})")
    return FeedConnectError("network", f"connection lost during the upgrade ({_describe(first)})")


@asynccontextmanager
async def _open(url: str, timing: Timing) -> AsyncIterator[WebSocketConnection]:
    """A client connection whose socket certwatch owns and always closes.

    trio-websocket 0.12.2 leaves the socket open when the server refuses the upgrade and
    when the server closes first; wrapping a stream opened here avoids both leaks. Every
    way the connection can fail before it is a WebSocket raises :class:`FeedConnectError`
    (trio-websocket 0.12.2 itself raises h11's ``LocalProtocolError`` for a bad upgrade
    answer); after that, failures surface as exception groups (the library's reader task
    runs in a nursery).
    """
    target = _Target.parse(url)
    stream = await _connect_tcp(target, timing)
    upgraded = False
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(timing.connect_timeout_s):
                ws = await wrap_client_stream(
                    nursery,
                    stream,  # type: ignore[arg-type]
                    target.host_header,
                    target.resource,
                    max_message_size=MAX_MESSAGE_SIZE,
                    message_queue_size=LIBRARY_QUEUE,
                    receive_buffer_size=None,
                )
            upgraded = True
            try:
                yield ws
            except BaseException:
                # Cancelled (shutting down) or failed: no close handshake to wait for.
                nursery.cancel_scope.cancel()
                raise
            with trio.move_on_after(timing.disconnect_timeout_s):
                await ws.aclose()
            nursery.cancel_scope.cancel()
    except BaseException as e:
        failure = None if upgraded else _handshake_failure(e, timing)
        if failure is None:
            raise
        raise failure from None
    finally:
        await trio.aclose_forcefully(stream)


@attrs.frozen
class FeedStatistics:
    """A snapshot of the consumer's state (for ``/healthz``)."""

    url: str
    connected: bool
    connections: int
    reconnects: int
    messages: int
    dropped: int
    disconnected_seconds: float
    last_error: str | None


class FeedConsumer:
    """Connects to certstream and puts every frame on a channel."""

    def __init__(
        self,
        url: str,
        timing: Timing,
        metrics: FeedMetrics,
        *,
        connect: Connector | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        """The URL as logs and ``/healthz`` show it: no user, password or query values."""
        self._timing = timing
        self._metrics = metrics
        self._connect: Connector = connect or (lambda u: _open(u, timing))
        self._backoff = Backoff(timing.backoff_initial_s, timing.backoff_max_s, rng)
        self.connected = False
        self._connections = 0
        self._reconnects = 0
        self._messages = 0
        self._dropped = 0
        self._last_error: str | None = None
        self._disconnected_total = 0.0
        self._disconnected_since: float | None = time.monotonic()
        metrics.ws_connected.set_function(lambda: float(self.connected))
        metrics.disconnected_seconds.set_function(self.disconnected_seconds)

    def disconnected_seconds(self) -> float:
        total = self._disconnected_total
        if self._disconnected_since is not None:
            total += time.monotonic() - self._disconnected_since
        return total

    def statistics(self) -> FeedStatistics:
        return FeedStatistics(
            url=self.shown_url,
            connected=self.connected,
            connections=self._connections,
            reconnects=self._reconnects,
            messages=self._messages,
            dropped=self._dropped,
            disconnected_seconds=round(self.disconnected_seconds(), 3),
            last_error=self._last_error,
        )

    async def run(self, send: trio.MemorySendChannel[FeedItem]) -> NoReturn:
        """Consume the feed forever. Only a bug escapes from here."""
        while True:
            delivered = await self._connect_once(send)
            if delivered:
                self._backoff.reset()
            delay = self._backoff.next()
            log.warning(
                "feed %s: %s; reconnecting in %.1f s", self.shown_url, self._last_error, delay
            )
            await trio.sleep(delay)

    async def _connect_once(self, send: trio.MemorySendChannel[FeedItem]) -> bool:
        """One connection, from connect to close; ``True`` when it delivered messages."""
        received_before = self._messages
        ended: str | None = None
        try:
            async with self._connect(self.url) as ws:
                self._set_connected(connected=True)
                self._connections += 1
                log.info("feed %s: connected", self.shown_url)
                await send.send(NEW_CONNECTION)
                ended = await self._session(ws, send)
        # A session's own reason, when there was one, beats what closing it then raised.
        except* FeedConnectError as group:
            failure = _first(group)
            assert isinstance(failure, FeedConnectError)
            self._metrics.connect_failures.labels(failure.reason).inc()
            ended = f"connect failed: {failure.detail}"
        except* HandshakeError as group:
            ended = ended or f"connect failed: {_describe(_first(group))}"
        except* ConnectionClosed as group:
            ended = ended or f"connection closed: {_describe(_first(group))}"
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as group:
            ended = ended or f"network error: {_describe(_first(group))}"
        finally:
            self._set_connected(connected=False)
        self._last_error = ended
        self._reconnects += 1
        self._metrics.reconnects.inc()
        return self._messages > received_before

    def _set_connected(self, *, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        now = time.monotonic()
        if connected and self._disconnected_since is not None:
            self._disconnected_total += now - self._disconnected_since
            self._disconnected_since = None
        elif not connected:
            self._disconnected_since = now

    async def _session(
        self, ws: WebSocketConnection, send: trio.MemorySendChannel[FeedItem]
    ) -> str:
        """Read until the connection ends; return why it ended."""
        ended = ["connection closed"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keepalive, ws, nursery.cancel_scope, ended)
            await self._read(ws, send, ended)
            nursery.cancel_scope.cancel()
        return ended[0]

    async def _read(
        self, ws: WebSocketConnection, send: trio.MemorySendChannel[FeedItem], ended: list[str]
    ) -> None:
        get_message = ws.get_message
        send_nowait = send.send_nowait
        try:
            while True:
                message = await get_message()
                self._messages += 1
                try:
                    send_nowait(message)
                except trio.WouldBlock:
                    self._dropped += 1
                    self._metrics.dropped.inc()
        except ConnectionClosed as e:
            ended[0] = f"closed by peer: {_describe(e)}"

    async def _keepalive(
        self, ws: WebSocketConnection, scope: trio.CancelScope, ended: list[str]
    ) -> None:
        timing = self._timing
        # Silence is measured at each ping, from the message count: the reader itself does
        # nothing per message but count.
        seen, last_rx = self._messages, trio.current_time()
        while True:
            await trio.sleep(timing.ping_interval_s)
            now = trio.current_time()
            if self._messages != seen:
                seen, last_rx = self._messages, now
            silent = now - last_rx
            if silent > timing.idle_timeout_s:
                ended[0] = f"no message for {silent:.0f} s"
                break
            try:
                with trio.move_on_after(timing.ping_timeout_s):
                    await ws.ping()
                    continue
            except ConnectionClosed as e:
                ended[0] = f"closed by peer: {_describe(e)}"
                break
            ended[0] = f"no pong within {timing.ping_timeout_s:g} s"
            break
        scope.cancel()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of a (possibly nested) exception group."""
    return leaves(group)[0]


def _describe(e: BaseException) -> str:
    if isinstance(e, ConnectionRejected):
        return f"rejected with HTTP {e.status_code}"
    if isinstance(e, ConnectionClosed) and e.reason is not None:
        reason = e.reason
        return f"code {reason.code} ({reason.name}){': ' + reason.reason if reason.reason else ''}"
    cause = e.__cause__ or e.__context__
    text = str(e) or type(e).__name__
    if cause is not None and not str(e):
        text = f"{type(e).__name__}: {cause}"
    return text
