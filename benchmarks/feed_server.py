"""A fast certstream stand-in for benchmarks: pre-encoded frames, blasted or paced.

Run as its own process so it does not share a core with the client it feeds:

    uv run python benchmarks/feed_server.py --frames capture.jsonl --count 100000 [--rate 5000]

It prints ``port <n>`` once listening. Each connection gets ``--count`` frames (cycling
through the capture), at full speed or at ``--rate`` frames per second, and pings are
answered (wsproto does the protocol; the
frames are encoded once, up front). With ``--matched-every N``, every Nth frame is a fresh
certificate for ``--matched-domain`` whose ``seen`` is the moment it is sent, so a webhook
receiver can measure end-to-end latency.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request
from wsproto.frame_protocol import FrameProtocol


def encode_frames(texts: list[str]) -> list[bytes]:
    encoder = FrameProtocol(client=False, extensions=[])
    return [bytes(encoder.send_data(text, fin=True)) for text in texts]


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        texts = Path(args.frames).read_text().splitlines(keepends=True)
        self.frames = encode_frames(texts)
        self.matched = None
        if args.matched_every:
            from benchmarks.frames import RsaIssuer

            self.matched = RsaIssuer(seed=99)

    def frame(self, n: int) -> bytes:
        """Frame ``n`` of this connection: the capture, cycled (a repeated cert_index is
        neither a gap nor a new baseline for certwatch's coverage accounting)."""
        return self.frames[n % len(self.frames)]

    def matched_frame(self, n: int) -> bytes:
        assert self.matched is not None
        names = [f"bench{n}.{self.args.matched_domain}"]
        message = self.matched.message(names, index=n, log_url="https://bench-matched.example")
        message["data"]["seen"] = time.time()
        return encode_frames([json.dumps(message, separators=(",", ":")) + "\n"])[0]

    async def handle(self, stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        lock = trio.Lock()
        async with stream:
            while True:  # the opening handshake
                data = await stream.receive_some(65536)
                if not data:
                    return
                ws.receive_data(data)
                if any(isinstance(e, Request) for e in ws.events()):
                    await stream.send_all(ws.send(AcceptConnection()))
                    break
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.answer_pings, ws, stream, lock, nursery.cancel_scope)
                await self.send_frames(stream, lock)
                await trio.sleep_forever()

    async def answer_pings(
        self, ws: WSConnection, stream: trio.SocketStream, lock: trio.Lock, scope: trio.CancelScope
    ) -> None:
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                scope.cancel()
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Ping):
                    async with lock:
                        await stream.send_all(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    scope.cancel()
                    return

    async def send_frames(self, stream: trio.SocketStream, lock: trio.Lock) -> None:
        args = self.args
        batch = 64 if not args.rate else max(1, args.rate // 200)
        interval = batch / args.rate if args.rate else 0.0
        next_at = trio.current_time()
        sent = 0
        matched = itertools.count()
        while sent < args.count:
            chunk = []
            for _ in range(min(batch, args.count - sent)):
                if self.matched is not None and sent % args.matched_every == 0:
                    chunk.append(self.matched_frame(next(matched)))
                else:
                    chunk.append(self.frame(sent))
                sent += 1
            try:
                async with lock:
                    await stream.send_all(b"".join(chunk))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if interval:
                next_at += interval
                await trio.sleep_until(next_at)


async def main(args: argparse.Namespace) -> None:
    server = Server(args)
    listeners = await trio.open_tcp_listeners(args.port, host="127.0.0.1")
    print(f"port {listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(server.handle, listeners)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", required=True, help="a capture from benchmarks/frames.py")
    parser.add_argument("--count", type=int, default=100_000, help="frames per connection")
    parser.add_argument("--rate", type=int, default=0, help="frames per second; 0 = flat out")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--matched-every", type=int, default=0)
    parser.add_argument("--matched-domain", default="latency.example")
    return parser.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse())
