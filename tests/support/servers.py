"""Real network peers on loopback: a certstream-like feed and a webhook receiver."""

from __future__ import annotations

import contextlib
import functools
import gzip
import itertools
import json
import random
import socket
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping
from wsproto.events import Request as WsRequest
from wsproto.events import TextMessage as WsMessage


class FeedServer:
    """A certstream-server stand-in: accepts WebSocket clients and sends them frames.

    Frames go to every connected client. ``connected`` fires for each new connection.
    """

    def __init__(self) -> None:
        self.port = 0
        self.connections: list[WebSocketConnection] = []
        self.accepted = 0
        self._changed = trio.Event()
        self.reject_status: int | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/full-stream"

    async def start(self, nursery: trio.Nursery, *, port: int = 0) -> FeedServer:
        server = await nursery.start(serve_websocket, self._handler, "127.0.0.1", port, None)
        self.port = server.port
        return self

    async def _handler(self, req: WebSocketRequest) -> None:
        if self.reject_status is not None:
            await req.reject(self.reject_status, body=b"unavailable")
            return
        conn = await req.accept()
        self.accepted += 1
        self.connections.append(conn)
        self._notify()
        try:
            while True:
                await conn.get_message()  # pings are answered by the library
        except ConnectionClosed:
            pass
        finally:
            if conn in self.connections:
                self.connections.remove(conn)
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_connections(self, accepted: int) -> None:
        """Wait until ``accepted`` connections have been accepted in total and one is open."""
        while self.accepted < accepted or not self.connections:
            await self._changed.wait()

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        """Send one frame to every open connection (waiting for one if there is none)."""
        await self.wait_for_connections(max(self.accepted, 1))
        frame = json.dumps(message) + "\n" if isinstance(message, dict) else message
        for conn in list(self.connections):
            with contextlib.suppress(ConnectionClosed):  # the client may close it meanwhile
                await conn.send_message(frame)

    async def drop(self) -> None:
        """Close every connection from the server side."""
        for conn in list(self.connections):
            await conn.aclose(code=1001, reason="going away")


_PORTS = range(20_000, 32_000)
"""Where ``free_port`` looks: below Linux's ephemeral range (32768-60999 by default), so
no connection the kernel opens meanwhile can take the port before its server binds it."""
_next_port = itertools.count(random.randrange(len(_PORTS)))


def free_port() -> int:
    """A loopback port free now for both TCP and UDP, for a server that binds it later
    (often in another process). A port the kernel picks (``bind(0)``) comes from the
    ephemeral range, where any outgoing connection may take it before the server binds;
    ports here are handed out in turn, never twice in a run until the range wraps."""
    for _ in range(len(_PORTS)):
        port = _PORTS[next(_next_port) % len(_PORTS)]
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise OSError("no free loopback port in 20000-31999")


@attrs.define
class Delivery:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def serial(self) -> str:
        """The payload's serial as lower-case hex without leading zeros (``f"{n:x}"``)."""
        return str(self.json()["serial"]).lower().lstrip("0")


class Receiver:
    """A webhook receiver (Quart-Trio on Hypercorn) that records what it is sent.

    ``responses`` is a script of status codes answered in order (then 200); ``delay`` makes
    every answer slow.
    """

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.log: list[tuple[int, Delivery]] = []
        """Every attempt: (status answered, what was sent)."""
        self.attempts = 0
        self.responses: list[int | tuple[int, dict[str, str]]] = []
        self.delay = 0.0
        self.huge_body = 0
        """Answer errors with a body this large (bytes)."""
        self.url = ""
        self._changed = trio.Event()
        self._stop = trio.Event()
        self.app = QuartTrio("receiver")
        self.app.add_url_rule("/hook", "hook", self._hook, methods=["POST"])

    async def _hook(self) -> Response:
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)
        self.attempts += 1
        self._changed.set()  # an attempt arrived (wait_for(attempts=...) may be waiting)
        self._changed = trio.Event()
        if self.delay:
            await trio.sleep(self.delay)
        status: int = 200
        headers: dict[str, str] = {}
        if self.responses:
            scripted = self.responses.pop(0)
            status, headers = scripted if isinstance(scripted, tuple) else (scripted, {})
        delivery = Delivery({k.lower(): v for k, v in request.headers.items()}, body)
        self.log.append((status, delivery))
        if 200 <= status < 300:
            self.deliveries.append(delivery)
        self._changed.set()
        self._changed = trio.Event()
        body = "ok" if status < 300 else ("x" * self.huge_body if self.huge_body else "nope")
        return Response(body, status=status, headers=headers)

    async def start(self, nursery: trio.Nursery, *, port: int = 0) -> Receiver:
        """Serve (again, after :meth:`stop`, on the same ``port`` if given)."""
        self._stop = trio.Event()
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.graceful_timeout = 0.5
        self._stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve(
                    self.app, config, shutdown_trigger=self._stop.wait, task_status=task_status
                )
            finally:
                self._stopped.set()

        binds = await nursery.start(run)
        self.url = binds[0].replace("0.0.0.0", "127.0.0.1") + "/hook"
        self.port = int(binds[0].rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        self._stop.set()

    async def down(self) -> None:
        """Stop serving and wait until the port refuses connections."""
        self._stop.set()
        await self._stopped.wait()

    async def wait_for(self, deliveries: int = 1, *, attempts: int = 0) -> list[Delivery]:
        """Wait until at least ``deliveries`` were accepted and ``attempts`` were made."""
        while len(self.deliveries) < deliveries or self.attempts < attempts:
            await self._changed.wait()
        return self.deliveries


class RawFeed:
    """A WebSocket feed written with wsproto, for faults trio-websocket would not commit.

    Each new connection takes the next behaviour from ``script``: ``silent`` completes the
    handshake and then never reads again (so pings go unanswered), ``mid-frame`` sends half
    a frame and closes the TCP connection, ``serve`` (also once the script is spent) sends
    ``frames`` and then answers pings until the client leaves.

    Handshake faults (before any upgrade): ``no-upgrade`` reads the request and never
    answers, ``ssh`` greets with an SSH banner as an SSH server does, ``garbage`` answers
    the request with binary junk, ``http-200`` with a plain web page, and ``bad-accept``
    with a ``101`` whose ``Sec-WebSocket-Accept`` is not the one the key asks for.
    """

    HANDSHAKE_FAULTS = ("no-upgrade", "ssh", "garbage", "http-200", "bad-accept")
    _ANSWERS = {
        "garbage": bytes(range(256)) * 4,
        "http-200": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello",
        "bad-accept": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXkhISE=\r\n\r\n",
    }

    def __init__(self, script: list[str], frames: list[str]) -> None:
        self.script = list(script)
        self.frames = frames
        self.accepted = 0
        """Connections upgraded to WebSocket."""
        self.connections = 0
        """TCP connections accepted, whatever happened next."""
        self.port = 0
        self._changed = trio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/full-stream"

    async def start(self, nursery: trio.Nursery) -> RawFeed:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
        )
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def wait_for_connections(self, accepted: int) -> None:
        while self.accepted < accepted:
            await self._changed.wait()

    async def _handle(self, stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        behaviour = self.script.pop(0) if self.script else "serve"
        self.connections += 1
        async with stream:
            if behaviour == "ssh":
                await stream.send_all(b"SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n")
                await _until_closed(stream)
                return
            while not any(isinstance(e, WsRequest) for e in ws.events()):
                data = await stream.receive_some(65536)
                if not data:
                    return
                ws.receive_data(data)
            if behaviour in self.HANDSHAKE_FAULTS:
                await stream.send_all(self._ANSWERS.get(behaviour, b""))
                await _until_closed(stream)
                return
            await stream.send_all(ws.send(AcceptConnection()))
            self.accepted += 1
            self._changed.set()
            self._changed = trio.Event()
            if behaviour == "silent":
                await trio.sleep_forever()
            frame = ws.send(WsMessage(data=self.frames[0] if self.frames else "{}"))
            if behaviour == "mid-frame":
                await stream.send_all(frame[: len(frame) // 2])
                return
            for text in self.frames:
                await stream.send_all(ws.send(WsMessage(data=text)))
            while data := await stream.receive_some(65536):
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Ping):
                        await stream.send_all(ws.send(event.response()))


async def _until_closed(stream: trio.SocketStream) -> None:
    """Read and discard until the peer closes (or resets) the connection."""
    with contextlib.suppress(trio.BrokenResourceError):
        while await stream.receive_some(65536):
            pass


def gzip_bomb(size: int, layers: int = 2) -> bytes:
    """``size`` zero bytes gzip-compressed ``layers`` times over: a few hundred bytes that
    a client decoding ``Content-Encoding: gzip, gzip`` inflates to ``size``."""
    data = bytes(size)
    for _ in range(layers):
        data = gzip.compress(data, compresslevel=9)
    return data


class HttpPeer:
    """A scripted HTTP server on loopback (Quart-Trio on Hypercorn): each path (or path with
    its query) answers the status, headers and body set in ``routes`` (404 otherwise), byte
    for byte as set, so a test can serve what a hostile or broken peer would. Requests are
    recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        """(method, path with query, headers) of every request."""
        self.port = 0
        self._stop = trio.Event()
        self._changed = trio.Event()
        self.app = QuartTrio("peer")
        self.app.add_url_rule("/<path:path>", "any", self._route, methods=["GET", "POST"])

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _route(self, path: str) -> Response:
        await request.get_data(as_text=False)
        full = request.full_path.rstrip("?")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append((request.method, full, headers))
        self._changed.set()
        self._changed = trio.Event()
        route = self.routes.get(full.removeprefix("/")) or self.routes.get(path)
        status, answer_headers, body = route or (404, {}, b"not found")
        response = Response(body, status=status, headers=answer_headers)
        # Hypercorn must send the body as given: no re-encoding, the length as it is.
        response.headers["Content-Length"] = str(len(body))
        return response

    async def wait_for(self, requests: int) -> None:
        """Wait until ``requests`` requests have arrived in total."""
        while len(self.requests) < requests:
            await self._changed.wait()

    async def start(self, nursery: trio.Nursery) -> HttpPeer:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 0.5
        binds = await nursery.start(
            functools.partial(serve, self.app, config, shutdown_trigger=self._stop.wait)
        )
        self.port = int(binds[0].rsplit(":", 1)[1])
        return self


class DripServer:
    """An HTTP server that answers 200 and then sends its body one byte every ``every_s``
    seconds, for ever: each read is quick, the answer never ends."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/log_list.json"

    async def start(self, nursery: trio.Nursery) -> DripServer:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
        )
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def _handle(self, stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.receive_some(65536)
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n"
            )
            while True:
                await stream.send_all(b" ")
                await trio.sleep(self.every_s)


class SilentServer:
    """A TCP server that accepts connections, reads what is sent, and never answers: a
    peer that holds every request until the client gives up."""

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def start(self, nursery: trio.Nursery) -> SilentServer:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
        )
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        async with stream:
            await _until_closed(stream)
