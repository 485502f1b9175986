"""Reading CT logs over HTTP: RFC 6962 and static-ct-api (tiled) logs.

One :class:`CTLogReader` owns one httpx client for every log. Each log gets a fixed, small
number of requests in flight (:data:`PER_LOG_CONCURRENCY`), every request a User-Agent
naming certwatch and its version, a deadline for the whole answer and a cap on its size.
A ``429`` or ``503`` is :class:`CTLogError` ``rate_limited`` carrying the log's
``Retry-After``; every other failure is an error of a fixed reason, counted per log in
``certwatch_ct_log_errors_total``. The reader does not retry: back-fill decides when to
ask again. Parsing is :mod:`certwatch.core.ctlog`'s.

Verification: a tree head counts as verified only when its signature verifies with the key
the log list gives; an entry, only when an inclusion proof (from ``get-proof-by-hash``, or
computed from hash tiles) leads to a verified tree head's root.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import msgspec
import trio

from certwatch.core import ctlog
from certwatch.core.ctlog import LogEntry, TreeHead
from certwatch.core.loglist import LogInfo, LogKind
from certwatch.core.schedule import parse_retry_after
from certwatch.errors import BodyError, CTLogError
from certwatch.httpclient import new_client, read_bounded
from certwatch.metrics import CoverageMetrics

__all__ = ["MAX_ANSWER_BYTES", "PER_LOG_CONCURRENCY", "CTLogReader", "VerifiedHead"]

log = logging.getLogger(__name__)

PER_LOG_CONCURRENCY = 2
"""Requests in flight to one log at most: logs rate-limit readers that ask for more."""
MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""An answer over this, raw or decoded at any step, is refused. A full data tile of real
entries is about 1.5 MB and a get-entries answer of 256 about 2 MB: a log's back-fill holds
at most three answers (:data:`~certwatch.sources.backfill.PREFETCH` + 1) at a time."""
MAX_ISSUER_BYTES = 64 * 1024
"""An issuer certificate over this is refused (real CA certificates are 1-2 KB)."""
GET_ENTRIES_BATCH = 256
"""Entries asked per ``get-entries`` (logs cap it, often at 256, and say so by answering
fewer)."""
ISSUER_CACHE = 256
"""Issuer certificates remembered (immutable; there are a few hundred CAs)."""


@attrs.frozen
class VerifiedHead:
    """A tree head, and whether its signature verified with the log's listed key."""

    head: TreeHead
    verified: bool


class CTLogReader:
    """HTTP reads from CT logs (see the module docstring). Use as an async context manager."""

    def __init__(
        self,
        metrics: CoverageMetrics,
        *,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        label: Callable[[LogInfo], str] = lambda info: info.read_url,
    ) -> None:
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._clock = clock
        self._label = label
        self._client = new_client(
            timeout_s,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._limiters: dict[str, trio.CapacityLimiter] = {}
        self._issuers: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()

    async def __aenter__(self) -> CTLogReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    # --- one request ------------------------------------------------------------------------

    def _limiter(self, info: LogInfo) -> trio.CapacityLimiter:
        limiter = self._limiters.get(info.read_url)
        if limiter is None:
            limiter = self._limiters[info.read_url] = trio.CapacityLimiter(PER_LOG_CONCURRENCY)
        return limiter

    def fail(self, info: LogInfo, error: CTLogError) -> CTLogError:
        """Count ``error`` against the log (and hand it back to be raised).

        A log the list does not hold is one a feed named: its failures to answer are all
        counted as ``unlisted``, whatever they were, so that anonymous ``/metrics`` does
        not tell a hostile feed which hosts and ports refuse, time out or speak HTTP."""
        counted = error
        if not info.listed and error.reason in CTLogError.TRANSIENT:
            counted = CTLogError("unlisted", error.detail)
        self._metrics.count_log_error(self._label(info), counted)
        return error

    async def _get(
        self, info: LogInfo, path: str, params: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        """GET ``<read_url>/<path>``: (status, body) for 200 and 404; anything else raises."""
        url = f"{info.read_url}/{path}"
        async with self._limiter(info):
            try:
                with trio.fail_after(self._timeout_s * 3):
                    return await self._fetch(url, params)
            except CTLogError as e:
                raise self.fail(info, e) from None
            except trio.TooSlowError:
                raise self.fail(info, CTLogError("timeout", f"{url}: no answer in time")) from None

    async def _fetch(self, url: str, params: dict[str, Any] | None) -> tuple[int, bytes]:
        try:
            async with self._client.stream("GET", url, params=params) as response:
                status = response.status_code
                if status in (429, 503):
                    retry_after = parse_retry_after(
                        response.headers.get("retry-after"), self._clock()
                    )
                    raise CTLogError(
                        "rate_limited", f"{url}: HTTP {status}", retry_after=retry_after
                    )
                if status not in (200, 404):
                    raise CTLogError("http", f"{url}: HTTP {status}")
                try:
                    return status, await read_bounded(response, MAX_ANSWER_BYTES)
                except BodyError as e:
                    raise CTLogError("malformed", f"{url}: {e}") from None
        except httpx.TimeoutException:
            raise CTLogError("timeout", f"{url}: timed out") from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise CTLogError("unreachable", f"{url}: cannot connect ({e})") from None
        except (httpx.TransportError, httpx.InvalidURL) as e:
            # A connection cut mid-answer, a protocol error: the answer was cut short.
            raise CTLogError("unreachable", f"{url}: {type(e).__name__} ({e})") from None

    async def _json(
        self, info: LogInfo, path: str, params: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        status, body = await self._get(info, path, params)
        if status != 200:
            return status, None
        try:
            return status, msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            raise self.fail(info, ctlog.malformed(f"{path}: an answer that is not JSON")) from None

    def _parsed(self, info: LogInfo, parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except CTLogError as e:
            raise self.fail(info, e) from None

    # --- tree heads -------------------------------------------------------------------------

    async def tree_head(self, info: LogInfo) -> VerifiedHead:
        """The log's latest tree head, verified with its listed key if it has one.

        A signature that does not verify is counted (``bad_signature``) and logged; the
        tree head is still returned (unverified) so that back-fill goes on.
        """
        if info.kind is LogKind.TILED:
            status, body = await self._get(info, "checkpoint")
            if status != 200:
                raise self.fail(info, CTLogError("http", f"{info.read_url}/checkpoint: 404"))
            origin = info.origin if info.listed else None
            head = self._parsed(info, lambda: ctlog.parse_checkpoint(body, origin, info.log_id))
        else:
            status, value = await self._json(info, "ct/v1/get-sth")
            if status != 200:
                raise self.fail(info, CTLogError("http", f"{info.read_url}/ct/v1/get-sth: 404"))
            head = self._parsed(info, lambda: ctlog.parse_sth(value))
        if info.key is None:
            return VerifiedHead(head, verified=False)
        if ctlog.verify_tree_head(head, info.key):
            return VerifiedHead(head, verified=True)
        self.fail(info, CTLogError("bad_signature", "tree head signature does not verify"))
        log.error(
            "%s: the tree head of size %d does not verify with the log's key: entries read "
            "against it are reported unverified",
            info.read_url, head.size,
        )  # fmt: skip
        return VerifiedHead(head, verified=False)

    # --- entries ----------------------------------------------------------------------------

    async def get_entries(self, info: LogInfo, start: int, end: int) -> list[LogEntry]:
        """RFC 6962: entries from ``start`` (at most to ``end``); logs may answer fewer."""
        status, value = await self._json(info, "ct/v1/get-entries", {"start": start, "end": end})
        if status != 200:
            raise self.fail(info, CTLogError("http", f"get-entries {start}-{end}: 404"))
        entries: list[LogEntry] = self._parsed(info, lambda: ctlog.parse_get_entries(value, start))
        if not entries or len(entries) > end - start + 1:
            raise self.fail(
                info, ctlog.malformed(f"get-entries {start}-{end}: {len(entries)} entries")
            )
        return entries

    async def data_tile(self, info: LogInfo, n: int, width: int) -> list[LogEntry]:
        """static-ct-api: the first ``width`` entries of data tile ``n`` (its partial tile of
        that width, or the full tile when the partial one is gone)."""
        body, served = await self._tile(info, ctlog.data_tile_path, n, width)
        first = n * ctlog.TILE_WIDTH
        entries = self._parsed(
            info, lambda: ctlog.parse_data_tile(ctlog.gunzip(body, MAX_ANSWER_BYTES), first, served)
        )
        return entries[:width]  # type: ignore[no-any-return]

    async def _hash_tile(self, info: LogInfo, level: int, n: int, width: int) -> list[bytes]:
        def path(k: int, w: int) -> str:
            return ctlog.hash_tile_path(level, k, w)

        body, served = await self._tile(info, path, n, width)
        hashes: list[bytes] = self._parsed(info, lambda: ctlog.parse_hash_tile(body, served))
        return hashes[:width]

    async def _tile(
        self, info: LogInfo, path: Callable[[int, int], str], n: int, width: int
    ) -> tuple[bytes, int]:
        """A tile's body and its width as served."""
        status, body = await self._get(info, path(n, width))
        if status == 404 and width < ctlog.TILE_WIDTH:
            # The partial tile is gone once the tile is full: the full one starts the same.
            width = ctlog.TILE_WIDTH
            status, body = await self._get(info, path(n, width))
        if status != 200:
            raise self.fail(info, CTLogError("http", f"{info.read_url}/{path(n, width)}: 404"))
        return body, width

    async def issuer(self, info: LogInfo, fingerprint: bytes) -> bytes:
        """static-ct-api: the issuer certificate of this SHA-256 (checked, and cached)."""
        cached = self._issuers.get(fingerprint)
        if cached is not None:
            self._issuers.move_to_end(fingerprint)
            return cached
        status, body = await self._get(info, f"issuer/{fingerprint.hex()}")
        if status == 200 and len(body) > MAX_ISSUER_BYTES:
            raise self.fail(info, ctlog.malformed(f"an issuer over {MAX_ISSUER_BYTES:,} bytes"))
        if status != 200:
            raise self.fail(info, CTLogError("http", f"issuer/{fingerprint.hex()}: 404"))
        if hashlib.sha256(body).digest() != fingerprint:
            raise self.fail(info, ctlog.malformed("an issuer that does not hash to its name"))
        self._issuers[fingerprint] = body
        while len(self._issuers) > ISSUER_CACHE:
            self._issuers.popitem(last=False)
        return body

    # --- inclusion --------------------------------------------------------------------------

    async def prove(self, info: LogInfo, entry: LogEntry, head: TreeHead) -> bool:
        """Whether the log proves ``entry`` is in the tree ``head``; a failed proof is
        counted (``bad_proof``) and logged. Raises :class:`CTLogError` when the log cannot
        be asked."""
        if info.kind is LogKind.TILED:
            path = await self._tiled_path(info, entry.index, head.size)
            index = entry.index
        else:
            status, value = await self._json(
                info,
                "ct/v1/get-proof-by-hash",
                {"hash": base64.b64encode(entry.leaf_hash).decode(), "tree_size": head.size},
            )
            if status != 200:
                return self._bad_proof(info, entry, "the log does not know the entry's hash")
            index, path = self._parsed(info, lambda: ctlog.parse_proof(value))
            if index != entry.index:
                return self._bad_proof(info, entry, f"the log proves it at index {index}")
        if ctlog.verify_inclusion(index, head.size, entry.leaf_hash, path, head.root_hash):
            return True
        return self._bad_proof(info, entry, "the audit path does not lead to the tree's root")

    def _bad_proof(self, info: LogInfo, entry: LogEntry, why: str) -> bool:
        self.fail(info, CTLogError("bad_proof", why))
        log.error("%s: entry %d is not proven in the log: %s", info.read_url, entry.index, why)
        return False

    async def _tiled_path(self, info: LogInfo, index: int, size: int) -> list[bytes]:
        """The audit path of ``index`` in the tree of ``size``, from the log's hash tiles."""
        nodes = await self._tile_nodes(info, ctlog.inclusion_nodes(index, size), size)
        return ctlog.audit_path(index, size, nodes.__getitem__)

    async def _tile_nodes(
        self, info: LogInfo, wanted: list[ctlog.Node], size: int
    ) -> dict[ctlog.Node, bytes]:
        """The hashes of complete subtrees of the tree of ``size``, from its hash tiles."""
        values: dict[ctlog.Node, bytes] = {}
        for (level, n), nodes in ctlog.nodes_by_tile(wanted).items():
            tile = await self._hash_tile(info, level, n, ctlog.tile_width(level, n, size))
            try:
                for node in nodes:
                    values[node] = ctlog.node_from_tile(node, tile)
            except CTLogError as e:
                raise self.fail(info, e) from None
        return values

    # --- consistency ------------------------------------------------------------------------

    async def consistency(self, info: LogInfo, first: int, second: int) -> list[bytes]:
        """The proof that the tree of ``first`` entries is a prefix of the tree of
        ``second`` (``get-sth-consistency``, or computed from a tiled log's hash tiles of
        the larger tree). Raises :class:`CTLogError` when the log cannot be asked."""
        if info.kind is LogKind.TILED:
            nodes = await self._tile_nodes(info, ctlog.consistency_nodes(first, second), second)
            return ctlog.consistency_path(first, second, nodes.__getitem__)
        status, value = await self._json(
            info, "ct/v1/get-sth-consistency", {"first": first, "second": second}
        )
        if status != 200:
            raise self.fail(info, CTLogError("http", f"get-sth-consistency {first}-{second}: 404"))
        proof: list[bytes] = self._parsed(info, lambda: ctlog.parse_consistency(value))
        return proof
