"""CAA lookups: the one DNS resolver certwatch uses, and the relevant RRset of a name.

dnspython's async resolver on the Trio backend, given explicitly (never sniffed), asking
``CAA_RESOLVER`` or the system's resolvers. Every answer is hostile input: a failure of any
kind (SERVFAIL, refused, a timeout, an answer dnspython cannot parse, which it reports as a
timeout, an answer for another name, which it drops) is ``None``, "unknown", never "no
records"; an RRset of more than :data:`~certwatch.core.caa.MAX_RECORDS` records is refused
the same way, and so are CAA records for another name than asked. A truncated UDP answer
is asked again over TCP by dnspython. Each query is
counted in ``certwatch_caa_lookups_total{result}``; lookups run a few at a time.
"""

from __future__ import annotations

import logging

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import trio

from certwatch.core.caa import MAX_RECORDS, MAX_VALUE, CaaRecord, Lookup, climb
from certwatch.metrics import CaaMetrics

__all__ = ["CONCURRENT_QUERIES", "CaaResolver"]

log = logging.getLogger(__name__)

CONCURRENT_QUERIES = 16
"""DNS queries in flight at once, whoever asks (decisions, the refresher, new entries)."""

_FAILURES = (dns.exception.DNSException, OSError, ValueError, EOFError, UnicodeError)


class CaaResolver:
    """Owns the DNS resolver. ``nameservers``: ``(address, port)`` pairs; ``None`` reads
    the system's resolver configuration (``/etc/resolv.conf``)."""

    def __init__(self, nameservers: list[tuple[str, int]] | None, metrics: CaaMetrics) -> None:
        self._metrics = metrics
        self._backend = dns.asyncbackend.get_backend("trio")
        self._nameservers = nameservers
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._limiter = trio.CapacityLimiter(CONCURRENT_QUERIES)

    def _get(self) -> dns.asyncresolver.Resolver:
        """The resolver, made on first use (so a certwatch that never looks up CAA never
        reads the system's configuration)."""
        if self._resolver is None:
            if self._nameservers is None:
                resolver = dns.asyncresolver.Resolver()
            else:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(address, port)
                    for address, port in self._nameservers
                ]
            resolver.cache = None  # the recursive resolver caches; certwatch wants its answer
            resolver.retry_servfail = False
            self._resolver = resolver
        return self._resolver

    async def relevant(self, name: str) -> Lookup | None:
        """The relevant CAA RRset of ``name`` (RFC 8659: climbing from it towards the root,
        never the root; CNAMEs followed by the resolver), or ``None`` when a lookup failed.
        Bound it with a cancel scope: a cancelled lookup is abandoned cleanly."""
        for candidate in climb(name):
            found = await self._query(candidate)
            if found is None:
                return None
            if found.records:
                return found
        return Lookup(None)

    async def _query(self, name: str) -> Lookup | None:
        """One query: the RRset at ``name`` (empty when it has none), ``None`` on failure."""
        async with self._limiter:
            try:
                answer = await self._get().resolve(
                    name, dns.rdatatype.CAA, backend=self._backend, lifetime=30.0
                )
            except dns.resolver.NoAnswer as e:
                response = e.kwargs.get("response")
                if response is not None and any(
                    r.rdtype == dns.rdatatype.CAA for r in response.answer
                ):  # CAA records, but for another name than asked: not an answer
                    self._metrics.lookups.labels("error").inc()
                    log.info("CAA lookup of %s answered for another name", name)
                    return None
                self._metrics.lookups.labels("empty").inc()  # (a CNAME to no CAA: none)
                return Lookup(None)
            except dns.resolver.NXDOMAIN:
                self._metrics.lookups.labels("empty").inc()
                return Lookup(None)
            except _FAILURES as e:
                self._metrics.lookups.labels("error").inc()
                log.info("CAA lookup of %s failed: %s", name, type(e).__name__)
                return None
        rrset = answer.rrset
        if rrset is None or len(rrset) > MAX_RECORDS:
            self._metrics.lookups.labels("error").inc()
            log.info("CAA lookup of %s: %d records, more than certwatch evaluates", name,
                     0 if rrset is None else len(rrset))  # fmt: skip
            return None
        self._metrics.lookups.labels("records").inc()
        records = tuple(
            CaaRecord(
                int(r.flags),
                bytes(r.tag).decode("ascii", "replace"),
                bytes(r.value).decode("utf-8", "replace")[:MAX_VALUE],
            )
            for r in rrset
        )
        owner = answer.canonical_name.to_text(omit_final_dot=True).lower()
        return Lookup(owner, records)
