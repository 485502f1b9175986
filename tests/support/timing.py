"""The timings tests run with: the service's logic, with shorter waits where time is real.

stamina's idea of a testing mode: the code takes its timings as a value (``Timing``), and
tests pass one of these instead of monkeypatching constants.
"""

from __future__ import annotations

import attrs

from certwatch.settings import Timing

__all__ = ["BACKFILL", "FAST", "OUTBOX", "PRODUCTION", "QUICK"]

PRODUCTION = Timing()
"""The production timings, for tests on trio's virtual clock (``autojump_clock``), where
waiting an hour costs nothing and the schedule is checked exactly."""

FAST = Timing(
    ping_interval_s=5,
    ping_timeout_s=5,
    connect_timeout_s=5,
    disconnect_timeout_s=1,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    webhook_retry_delays_s=(0.05, 0.1),
    outbox_poll_s=0.1,
    shutdown_grace_s=1,
)
"""For tests on real sockets: quick reconnects and retries; pings rare enough not to matter."""

OUTBOX = attrs.evolve(FAST, webhook_backoff_s=0.2, webhook_backoff_max_s=0.4)
"""FAST, with the long delivery schedule shortened too: 0.05 s, 0.1 s, then 0.2 s
doubling to 0.4 s."""

QUICK = attrs.evolve(
    OUTBOX,
    ping_interval_s=0.3,
    ping_timeout_s=0.3,
    api_idle_timeout_s=0.5,
    api_body_timeout_s=0.5,
    db_busy_timeout_s=0.2,
)
"""For fault tests: dead peers, idle and slow clients and held locks are given up on in
well under a second."""

BACKFILL = attrs.evolve(
    FAST,
    ct_request_timeout_s=5,
    ct_backoff_initial_s=0.05,
    ct_backoff_max_s=0.2,
    ct_head_refresh_s=0.2,
    ct_positions_save_s=0.1,
)
"""FAST, with CT log reads retried within a fraction of a second and positions saved often."""
