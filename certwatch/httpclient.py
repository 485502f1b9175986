"""How certwatch makes HTTP requests: one client recipe, and bodies read within a bound.

Every peer certwatch calls (CT logs, the log list's URL, the webhook receiver) gets the
same client: a User-Agent naming certwatch, no redirects followed, and only ``gzip`` or
``identity`` asked for. Bodies are read with :func:`read_bounded`, which decodes the
content encoding itself (:class:`~certwatch.core.bodies.BoundedBody`): httpx's own
decoding would inflate a ``gzip, gzip`` bomb before any limit is checked.
"""

from __future__ import annotations

import httpx
import trio

from certwatch.core.bodies import BoundedBody
from certwatch.errors import BodyError
from certwatch.version import USER_AGENT

__all__ = ["new_client", "read_bounded"]


def new_client(
    timeout_s: float,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    limits: httpx.Limits | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` as certwatch uses them (see the module docstring)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        transport=transport,
        headers={"user-agent": USER_AGENT, "accept-encoding": "gzip, identity"},
        limits=limits or httpx.Limits(),
    )


async def read_bounded(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed ``response``, decoded, at most ``limit`` bytes raw and at
    every decoding step. Raises :class:`~certwatch.errors.BodyError` beyond that."""
    if response.is_stream_consumed:  # built in memory (a MockTransport's), already decoded
        if len(response.content) > limit:
            raise BodyError("too_large", f"the answer is over {limit:,} bytes")
        return response.content
    body = BoundedBody(response.headers.get("content-encoding", ""), limit)
    refused: BodyError | None = None
    # On a refusal the read is cancelled rather than left: the cancellation ends httpx's and
    # httpcore's chain of body generators from the inside, closing the connection, where a
    # plain ``raise`` would leave them suspended for the garbage collector (encode/httpx#3686).
    with trio.CancelScope() as reading:
        async for chunk in response.aiter_raw():
            try:
                body.feed(chunk)
            except BodyError as e:
                refused = e
                reading.cancel()
    if refused is not None:
        raise refused
    return body.finish()
