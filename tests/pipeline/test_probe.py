"""A probe reads for many askers, one read at a time, each asker waiting a bound (on
trio's virtual clock)."""

from __future__ import annotations

import trio
import trio.testing

from certwatch.errors import StoreUnavailable
from certwatch.pipeline.probe import Probe


class Slow:
    """A read that takes ``delay`` seconds, or fails, and counts its calls."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self.fail = False

    async def __call__(self) -> int:
        self.calls += 1
        await trio.sleep(self.delay)
        if self.fail:
            raise StoreUnavailable("database unavailable: gone")
        return self.calls


async def asked(probe: Probe[int], within: float) -> bool:
    ticket = probe.want()
    with trio.move_on_after(within):
        await probe.wait(ticket)
    return probe.answered(ticket)


async def test_an_asker_is_shown_a_read_that_started_after_it_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A read already under way when one asks is not the answer: the next one is."""
    read = Slow(1.0)
    probe = Probe(read, clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe.run)
        probe.want()
        await trio.sleep(0.5)  # the first read is half done
        assert await asked(probe, 10)
        nursery.cancel_scope.cancel()
    assert (read.calls, probe.value) == (2, 2)


async def test_askers_wait_their_bound_and_never_pile_reads_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A read that hangs: each asker gives up after its bound; one read at a time."""
    read = Slow(3600.0)
    probe = Probe(read, clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe.run)
        for _ in range(20):
            started = trio.current_time()
            assert not await asked(probe, 0.8)
            assert abs(trio.current_time() - started - 0.8) < 1e-9
        nursery.cancel_scope.cancel()
    assert read.calls == 1


async def test_a_failed_read_is_an_answer_with_its_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failing read answers with the error and keeps the last value."""
    read = Slow(0.1)
    probe = Probe(read, clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe.run)
        assert await asked(probe, 1)
        read.fail = True
        assert await asked(probe, 1)
        nursery.cancel_scope.cancel()
    assert probe.value == 1
    assert str(probe.error) == "database unavailable: gone"
