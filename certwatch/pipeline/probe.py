"""Reading something slow for many askers, one read at a time, each asker waiting a bound.

``/healthz`` and ``/metrics`` show the database's round trip and the outbox's depth. Read
per request, a database that hangs (PostgreSQL down, a table locked) held the health check
for 7 to 23 s, past the container's 4 s timeout, and every request took a connection of
the pool to wait with. A :class:`Probe` makes one read at a time, in its own task; a caller
asks for a read that *starts after* it asked (so what it is shown is never older than its
question) and waits for it at most a bound, then goes on with what is known.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, NoReturn, TypeVar

import trio

from certwatch.errors import StoreError

__all__ = ["Probe"]

T = TypeVar("T")


class Probe(Generic[T]):
    """One reader of ``read`` (see the module docstring). Run :meth:`run` as a task."""

    def __init__(self, read: Callable[[], Awaitable[T]], *, clock: Callable[[], float] = time.time):
        self._read = read
        self._clock = clock
        self._asked = 0
        self._started = 0
        self._done = 0
        self._wake = trio.Event()
        self._changed = trio.Event()
        self.value: T | None = None
        """The last value read (kept through failures)."""
        self.error: StoreError | None = None
        """Why the last read failed; ``None`` when it worked."""
        self.read_at: float | None = None
        """When the last read ended."""

    def want(self) -> int:
        """Ask for a read that starts from now on; the ticket to :meth:`wait` for."""
        ticket = self._started + 1
        self._asked = max(self._asked, ticket)
        self._wake.set()
        return ticket

    async def wait(self, ticket: int) -> None:
        """Wait until the read of ``ticket`` (or a later one) has ended."""
        while self._done < ticket:
            await self._changed.wait()

    def answered(self, ticket: int) -> bool:
        return self._done >= ticket

    async def run(self) -> NoReturn:
        while True:
            while self._asked <= self._started:
                await self._wake.wait()
                self._wake = trio.Event()
            self._started += 1
            ticket = self._started
            try:
                self.value = await self._read()
                self.error = None
            except StoreError as e:
                self.error = e
            self.read_at = self._clock()
            self._done = ticket
            self._changed.set()
            self._changed = trio.Event()
