"""What ``/healthz`` and ``/metrics`` read from the database, within a bound.

The health check must answer within a second whatever the database does (the container's
check gives up at 4 s): the database's round trip and the outbox's depth are read by
:class:`~certwatch.pipeline.probe.Probe` tasks, one read at a time each, and a request
waits at most :data:`ANSWER_WITHIN_S` for reads that started after it asked. A database
that does not answer by then is reported as such (``ok: false``, and 503 on a shared
database), with the last outbox figures known.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

import attrs
import trio

from certwatch.delivery.webhook import WebhookSender
from certwatch.metrics import StoreMetrics
from certwatch.pipeline.probe import Probe
from certwatch.store import Store

__all__ = ["ANSWER_WITHIN_S", "DatabaseState", "HealthProbes"]

ANSWER_WITHIN_S = 0.8
"""How long a health request waits for the database, at most."""


@attrs.frozen
class DatabaseState:
    round_trip_s: float | None
    error: str | None
    """Why the database is not healthy; ``None`` when it answered."""

    @property
    def ok(self) -> bool:
        return self.error is None


class HealthProbes:
    """The database's round trip and the outbox's depth, read for health requests."""

    def __init__(
        self,
        store: Store,
        metrics: StoreMetrics,
        sender: WebhookSender | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self.ping = Probe(store.ping, clock=clock)
        self.outbox = None if sender is None else Probe(sender.refresh_stats, clock=clock)

    async def run(self) -> NoReturn:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.ping.run)
            if self.outbox is not None:
                nursery.start_soon(self.outbox.run)
            await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def check(self, within: float = ANSWER_WITHIN_S) -> DatabaseState:
        """Read both, waiting ``within`` seconds at most; the outbox figures stay as last
        read if that read does not end in time."""
        ping = self.ping.want()
        outbox = None if self.outbox is None else self.outbox.want()
        with trio.move_on_after(within):
            await self.ping.wait(ping)
            if self.outbox is not None and outbox is not None:
                await self.outbox.wait(outbox)
        if not self.ping.answered(ping):
            return DatabaseState(None, f"no answer within {within:g} s")
        if self.ping.error is not None:
            return DatabaseState(None, str(self.ping.error)[:300])
        seconds = self.ping.value
        assert seconds is not None
        self._metrics.round_trip.set(seconds)
        return DatabaseState(seconds, None)
