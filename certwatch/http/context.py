"""What the API's handlers work on: the running service's parts, built by the supervisor."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import attrs
import trio
from quart import current_app

from certwatch.delivery.webhook import WebhookSender
from certwatch.http.probes import HealthProbes
from certwatch.metrics import Metrics
from certwatch.pipeline.alerter import Alerter
from certwatch.pipeline.caa import CaaChecker
from certwatch.pipeline.matching import Matcher
from certwatch.sources.certstream import FeedConsumer
from certwatch.sources.loglist import LogListLoader
from certwatch.sources.lookups import Lookups
from certwatch.store import Store
from certwatch.store.leadership import Leadership
from certwatch.store.views import Views

__all__ = ["ApiContext", "context"]

T = TypeVar("T")

_KEY = "certwatch"


@attrs.define
class ApiContext:
    """The service's parts the handlers use."""

    token: str
    store: Store
    """For reads; changes to the watch list and inventory go through ``views``."""
    views: Views
    alerter: Alerter
    feed: FeedConsumer
    matcher: Matcher
    metrics: Metrics
    probes: HealthProbes
    sender: WebhookSender | None = None
    """``None`` in observer mode."""
    lookups: Lookups | None = None
    """``None`` with back-fill off (``CT_BACKFILL=0``)."""
    log_list: LogListLoader | None = None
    leadership: Leadership | None = None
    caa: CaaChecker | None = None
    """``None`` with CAA_CHECK=0."""
    clock: Callable[[], float] = time.time
    started_at: float = attrs.field(factory=time.time)
    _parsing: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(2))

    async def off_loop(self, parse: Callable[..., T], *args: Any) -> T:
        """Run ``parse(*args)`` in a worker thread: certificates and keys are parsed there
        (bounded, but still the costliest thing a request can ask for)."""
        call = functools.partial(parse, *args)
        return await trio.to_thread.run_sync(call, limiter=self._parsing)

    def install(self, app: Any) -> None:
        app.extensions[_KEY] = self


def context() -> ApiContext:
    """The context of the application handling the current request."""
    return cast(ApiContext, current_app.extensions[_KEY])
