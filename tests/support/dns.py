"""A scripted DNS server in this trio run (dnspython builds and parses the messages), for
the unit tests of CAA lookups: it answers as a recursive resolver would (CNAMEs chased),
and fails in each way a real one can (SERVFAIL, REFUSED, silence, garbage, an answer for
another name, a truncated UDP answer, a record dnspython cannot parse, a huge RRset).

The end-to-end tests use real servers instead (:mod:`tests.support.dnsservers`).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import attrs
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trio

from tests.support.servers import free_port

__all__ = [
    "BadTag",
    "Cname",
    "DnsResponder",
    "Fail",
    "Garbage",
    "Records",
    "Silent",
    "Truncated",
    "WrongName",
]


@attrs.frozen
class Records:
    """CAA records in presentation form (``0 issue "letsencrypt.org"``); none: NOERROR,
    no answer."""

    texts: tuple[str, ...] = ()


@attrs.frozen
class Cname:
    target: str


@attrs.frozen
class Fail:
    rcode: str
    """``SERVFAIL`` or ``REFUSED``."""


@attrs.frozen
class Silent:
    """Never answers."""


@attrs.frozen
class Garbage:
    """Answers bytes that are no DNS message."""


@attrs.frozen
class WrongName:
    """Answers with records for another name."""

    texts: tuple[str, ...]


@attrs.frozen
class Truncated:
    """Over UDP: an empty answer with the TC flag; over TCP: the records."""

    texts: tuple[str, ...]


@attrs.frozen
class BadTag:
    """A CAA record whose tag has a '-' on the wire: dnspython cannot parse the message."""


Behaviour = Records | Cname | Fail | Silent | Garbage | WrongName | Truncated | BadTag


def _caa(name: dns.name.Name, texts: tuple[str, ...]) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(name, 60, "IN", "CAA", list(texts))


class DnsResponder:
    """Answers CAA queries from ``zone`` (name -> behaviour); names not in it are NXDOMAIN.
    ``queries`` records (name, "udp"/"tcp") of every query."""

    def __init__(self, zone: dict[str, Behaviour] | None = None, *, delay_s: float = 0.0) -> None:
        self.zone: dict[str, Behaviour] = dict(zone or {})
        self.queries: list[tuple[str, str]] = []
        self.port = 0
        self.delay_s = delay_s
        """Every answer is sent this long after its query (a slow resolver)."""

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self, nursery: trio.Nursery) -> DnsResponder:
        udp, listeners = await self._bind()
        nursery.start_soon(self._serve_udp, udp)
        nursery.start_soon(trio.serve_listeners, self._serve_tcp, listeners)
        return self

    async def _bind(self) -> tuple[trio.socket.SocketType, list[trio.SocketListener]]:
        """A UDP socket and a TCP listener on one port. ``free_port`` checked both, but
        anything may bind it before we do: then another port."""
        for _ in range(20):
            self.port = free_port()
            udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                await udp.bind(self.address)
                return udp, await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            except OSError as exc:
                udp.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP")

    async def _serve_udp(self, udp: trio.socket.SocketType) -> None:
        with udp:
            async with trio.open_nursery() as replies:
                while True:
                    data, peer = await udp.recvfrom(65535)
                    replies.start_soon(self._reply, udp, data, peer)

    async def _reply(self, udp: trio.socket.SocketType, data: bytes, peer: Any) -> None:
        answer = self.answer(data, tcp=False)
        if self.delay_s:
            await trio.sleep(self.delay_s)
        if answer is not None:
            await udp.sendto(answer, peer)

    async def _serve_tcp(self, stream: trio.SocketStream) -> None:
        async with stream:
            buffer = b""
            while True:
                chunk = await stream.receive_some(65535)
                if not chunk:
                    return
                buffer += chunk
                while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
                    size = int.from_bytes(buffer[:2], "big")
                    query, buffer = buffer[2 : 2 + size], buffer[2 + size :]
                    answer = self.answer(query, tcp=True)
                    if answer is not None:
                        await stream.send_all(len(answer).to_bytes(2, "big") + answer)

    def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append((name, "tcp" if tcp else "udp"))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        behaviour = self.zone.get(name)
        match behaviour:
            case None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            case Records(texts):
                if texts:
                    response.answer.append(_caa(question.name, texts))
            case Cname(target):
                target_name = dns.name.from_text(target)
                response.answer.append(
                    dns.rrset.from_text(question.name, 60, "IN", "CNAME", target_name.to_text())
                )
                chased = self.zone.get(target.rstrip(".").lower())
                if isinstance(chased, Records) and chased.texts:
                    response.answer.append(_caa(target_name, chased.texts))
            case Fail(rcode):
                response.set_rcode(dns.rcode.from_text(rcode))
            case Silent():
                return None
            case Garbage():
                return wire[:2] + b"\x81\x80garbage, not a DNS message" * 3
            case WrongName(texts):
                response.answer.append(_caa(dns.name.from_text("elsewhere.example"), texts))
            case Truncated(texts):
                if tcp:
                    response.answer.append(_caa(question.name, texts))
                else:
                    response.flags |= dns.flags.TC
            case BadTag():
                rdata: Any = dns.rdata.GenericRdata(
                    dns.rdataclass.IN, dns.rdatatype.CAA, b"\x00\x06is-sue" + b"letsencrypt.org"
                )
                rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.CAA)
                rrset.add(rdata, 60)
                response.answer.append(rrset)
        return response.to_wire()
