"""Reading a few requests ahead while the answers are processed in order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

import trio

from certwatch.errors import CTLogError

__all__ = ["in_order"]

R = TypeVar("R")
A = TypeVar("A")


class _Slot(Generic[A]):
    """One read in flight, its answer awaited in order."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._answer: A | None = None
        self._error: CTLogError | None = None

    async def run(self, read: Callable[[], Awaitable[A]]) -> None:
        try:
            self._answer = await read()
        except CTLogError as e:
            self._error = e
        finally:
            self._done.set()

    async def answer(self) -> A:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._answer is not None
        return self._answer


async def in_order(
    requests: Iterator[R],
    read: Callable[[R], Awaitable[A]],
    consume: Callable[[A], Awaitable[bool]],
    *,
    ahead: int,
) -> None:
    """``read`` each of ``requests``, up to ``ahead`` ahead of the one being consumed, and
    ``consume`` the answers in order until it says stop (``False``). A read that fails
    cancels those ahead of it and raises its :class:`CTLogError`. At most ``ahead + 1``
    answers are held at a time."""
    send, receive = trio.open_memory_channel[_Slot[A]](ahead - 1)
    failed: CTLogError | None = None
    async with trio.open_nursery() as nursery:

        async def produce() -> None:
            async with send:
                for request in requests:
                    slot: _Slot[A] = _Slot()
                    nursery.start_soon(slot.run, lambda r=request: read(r))
                    await send.send(slot)

        nursery.start_soon(produce)
        async with receive:
            async for slot in receive:
                try:
                    answer = await slot.answer()
                except CTLogError as e:
                    failed = e
                    nursery.cancel_scope.cancel()
                    break
                if not await consume(answer):
                    nursery.cancel_scope.cancel()
                    break
    if failed is not None:
        raise failed
