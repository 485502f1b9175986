"""The feed consumer's connection policy, on in-memory WebSockets and a virtual clock."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing
from trio_websocket import (
    ConnectionRejected,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)

from certwatch.core.backoff import Backoff
from certwatch.core.messages import NEW_CONNECTION, FeedItem
from certwatch.metrics import Metrics
from certwatch.settings import Timing
from certwatch.sources.certstream import FeedConsumer
from tests.support.timing import PRODUCTION

TIMING = PRODUCTION  # on the virtual clock: pings every 20 s, backoff 1 s to 60 s


class MemoryFeed:
    """A connector whose server side lives in the test, over ``memory_stream_pair``.

    ``refuse`` makes the next connects fail as a 503 would; ``answer_pings`` off makes the
    server go silent at the protocol level (its reader stops, so no pong is ever sent).
    """

    def __init__(self) -> None:
        self.attempts: list[float] = []
        self.refuse = 0
        self.answer_pings = True
        self.server: WebSocketConnection | None = None
        self._server_scope: trio.CancelScope | None = None
        self.connected = trio.Event()

    @asynccontextmanager
    async def connect(self, url: str) -> AsyncIterator[WebSocketConnection]:
        self.attempts.append(trio.current_time())
        if self.refuse:
            self.refuse -= 1
            raise ConnectionRejected(503, (), b"unavailable")
        client_stream, server_stream = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            server_ready = trio.Event()

            async def serve() -> None:
                with trio.CancelScope() as scope:
                    self._server_scope = scope
                    async with trio.open_nursery() as server_nursery:
                        request = await wrap_server_stream(server_nursery, server_stream)
                        self.server = await request.accept()
                        server_ready.set()
                        if not self.answer_pings:
                            scope.cancel()  # stop the server's reader: pings go unanswered
                        await trio.sleep_forever()

            nursery.start_soon(serve)
            ws = await wrap_client_stream(
                nursery,
                client_stream,  # type: ignore[arg-type]  # a memory stream is Stream enough
                "feed.test",
                "/full-stream",
            )
            await server_ready.wait()
            self.connected.set()
            try:
                yield ws
            finally:
                nursery.cancel_scope.cancel()

    async def send(self, text: str) -> None:
        assert self.server is not None
        await self.server.send_message(text)

    async def close(self) -> None:
        assert self.server is not None
        await self.server.aclose(1001)

    async def reconnected(self) -> None:
        self.connected = trio.Event()
        await self.connected.wait()


@attrs.define
class Running:
    consumer: FeedConsumer
    receive: trio.MemoryReceiveChannel[FeedItem]
    metrics: Metrics


@asynccontextmanager
async def consumer(
    memory: MemoryFeed, *, capacity: int = 100, timing: Timing = TIMING
) -> AsyncIterator[Running]:
    metrics = Metrics()
    feed = FeedConsumer(
        "ws://feed.test/full-stream", timing, metrics.feed, connect=memory.connect, rng=lambda: 1.0
    )
    send, receive = trio.open_memory_channel[FeedItem](capacity)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.run, send)
        yield Running(feed, receive, metrics)
        nursery.cancel_scope.cancel()


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


class TestBackoff:
    def test_grows_doubling_up_to_the_cap(self) -> None:
        """Delays double from the initial one and stop at the cap."""
        backoff = Backoff(1, 60, rng=lambda: 1.0)
        assert [backoff.next() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]

    def test_jitter_stays_in_the_upper_half(self) -> None:
        """Each delay is drawn between half and all of its ceiling."""
        low, high = Backoff(1, 60, rng=lambda: 0.0), Backoff(1, 60, rng=lambda: 0.999)
        assert [low.next() for _ in range(4)] == [0.5, 1, 2, 4]
        assert all(
            a < b for a, b in zip([0.5, 1, 2, 4], [high.next() for _ in range(4)], strict=True)
        )

    def test_reset(self) -> None:
        """After a reset the next delay is the initial one again."""
        backoff = Backoff(1, 60, rng=lambda: 1.0)
        for _ in range(5):
            backoff.next()
        backoff.reset()
        assert backoff.next() == 1


class TestConnectionPolicy:
    async def test_retries_with_backoff_until_the_feed_appears(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A refused feed is retried after 1, 2, 4, 8, 16 s until it accepts."""
        memory = MemoryFeed()
        memory.refuse = 5
        async with consumer(memory) as running:
            await memory.connected.wait()
            assert gaps(memory.attempts) == [1, 2, 4, 8, 16]
            assert running.consumer.connected
            assert await running.receive.receive() is NEW_CONNECTION
            stats = running.consumer.statistics()
            assert stats.reconnects == 5
            assert stats.last_error == "connect failed: rejected with HTTP 503"

    async def test_backoff_resets_after_a_healthy_connection(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A connection that delivered messages resets the backoff: the next retry is quick."""
        memory = MemoryFeed()
        memory.refuse = 4  # backoff has grown to 16 s
        async with consumer(memory) as running:
            await memory.connected.wait()
            await memory.send('{"message_type": "heartbeat"}')
            assert await running.receive.receive() is NEW_CONNECTION
            assert await running.receive.receive() == '{"message_type": "heartbeat"}'
            await memory.close()
            await memory.reconnected()
            assert gaps(memory.attempts)[-1] == 1

    async def test_missing_pong_means_a_dead_connection(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A server that stops answering pings is dropped after interval + timeout, then retried."""
        memory = MemoryFeed()
        memory.answer_pings = False
        async with consumer(memory) as running:
            await memory.connected.wait()
            connected_at = trio.current_time()
            memory.answer_pings = True
            await memory.reconnected()
            assert memory.attempts[-1] - connected_at == pytest.approx(20 + 10 + 1)
            assert "no pong within 10 s" in (running.consumer.statistics().last_error or "")

    async def test_pongs_keep_a_quiet_connection_until_the_idle_timeout(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Answered pings keep the connection, but no message for 300 s means a stuck feed."""
        memory = MemoryFeed()
        async with consumer(memory) as running:
            await memory.connected.wait()
            connected_at = trio.current_time()
            await memory.reconnected()
            silent_for = memory.attempts[-1] - connected_at
            assert 300 < silent_for <= 320 + 1
            assert "no message for" in (running.consumer.statistics().last_error or "")
            assert running.consumer.statistics().connections == 2

    async def test_a_full_channel_drops_and_counts_instead_of_blocking_the_socket(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """When processing lags, frames beyond the buffer are dropped and counted; pings go on."""
        memory = MemoryFeed()
        async with consumer(memory, capacity=3) as running:
            await memory.connected.wait()
            for i in range(10):
                await memory.send(f"frame {i}")
            await trio.testing.wait_all_tasks_blocked()
            stats = running.consumer.statistics()
            assert stats.messages == 10
            assert stats.dropped == 8  # the marker and two frames fit
            registry = running.metrics.registry
            assert registry.get_sample_value("certwatch_ct_dropped_total") == 8
            await trio.sleep(100)  # several ping rounds: the connection stays up
            assert running.consumer.statistics().connections == 1
            assert running.consumer.connected

    async def test_connected_gauge_and_disconnected_time(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The connected gauge is 1 exactly while connected; disconnected time accumulates."""
        memory = MemoryFeed()
        memory.refuse = 1
        async with consumer(memory) as running:
            registry = running.metrics.registry
            gauge = functools.partial(registry.get_sample_value, "certwatch_ws_connected")
            assert gauge() == 0
            await memory.connected.wait()
            assert gauge() == 1
            await memory.close()
            await trio.testing.wait_all_tasks_blocked()
            assert gauge() == 0
            await memory.reconnected()
            assert gauge() == 1
            assert running.consumer.statistics().reconnects == 2
            assert math.isfinite(running.consumer.disconnected_seconds())
