"""CAA lookups against a scripted DNS server: climbing, CNAMEs, and every fault as unknown."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio

from certwatch.core.caa import CaaVerdict, Lookup
from certwatch.core.cas import CAIdentity
from certwatch.metrics import Metrics
from certwatch.pipeline.caa import CaaChecker
from certwatch.sources.caa import CaaResolver
from certwatch.store import SQLiteStore
from tests.support.alerts import pending_alert
from tests.support.dns import (
    BadTag,
    Behaviour,
    Cname,
    DnsResponder,
    Fail,
    Garbage,
    Records,
    Silent,
    Truncated,
    WrongName,
)

ZONE: dict[str, Behaviour] = {
    "example.org": Records(('0 issue "letsencrypt.org"', '0 issuewild ";"')),
    "www.example.org": Records(()),
    "help.example.org": Cname("x.saas.example"),
    "x.saas.example": Records(('0 issue "pki.goog"',)),
    "empty.example.net": Records(()),
}
LE = CAIdentity("aa" * 20, "ISRG (Let's Encrypt)", ("letsencrypt.org",))


@attrs.define
class Dns:
    responder: DnsResponder
    resolver: CaaResolver
    metrics: Metrics

    def count(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "certwatch_caa_lookups_total", {"result": result}
        )
        return value or 0.0


@pytest.fixture
async def dns_(nursery: trio.Nursery) -> Dns:
    responder = await DnsResponder(ZONE).start(nursery)
    metrics = Metrics()
    return Dns(responder, CaaResolver([responder.address], metrics.caa), metrics)


class TestResolver:
    async def test_climbs_to_the_first_name_with_records(self, dns_: Dns) -> None:
        """a.b.example.org has none, nor b.example.org: example.org's RRset, queried in order."""
        found = await dns_.resolver.relevant("a.b.example.org")
        assert found is not None
        assert (found.owner, found.texts()) == (
            "example.org", ('0 issue "letsencrypt.org"', '0 issuewild ";"'),
        )  # fmt: skip
        assert [q for q, _ in dns_.responder.queries] == [
            "a.b.example.org", "b.example.org", "example.org",
        ]  # fmt: skip
        assert (dns_.count("empty"), dns_.count("records")) == (2, 1)

    async def test_a_cname_is_followed_to_its_targets_records(self, dns_: Dns) -> None:
        """help.example.org is a CNAME to a vendor: the vendor's CAA, owner the target."""
        found = await dns_.resolver.relevant("help.example.org")
        assert found == Lookup("x.saas.example", found.records if found else ())
        assert found is not None
        assert found.texts() == ('0 issue "pki.goog"',)

    async def test_no_caa_anywhere_is_none(self, dns_: Dns) -> None:
        """Nothing up to the top-level domain: an empty lookup, never the root asked."""
        found = await dns_.resolver.relevant("a.empty.example.net")
        assert found == Lookup(None)
        assert "" not in [q for q, _ in dns_.responder.queries]
        assert [q for q, _ in dns_.responder.queries][-1] == "net"

    async def test_a_truncated_answer_is_asked_again_over_tcp(self, dns_: Dns) -> None:
        """TC over UDP: dnspython asks again over TCP and gets the records."""
        dns_.responder.zone["big.example.org"] = Truncated(('0 issue "digicert.com"',))
        found = await dns_.resolver.relevant("big.example.org")
        assert found is not None
        assert found.texts() == ('0 issue "digicert.com"',)
        assert ("big.example.org", "tcp") in dns_.responder.queries

    @pytest.mark.parametrize(
        "behaviour",
        [Fail("SERVFAIL"), Fail("REFUSED"), WrongName(('0 issue "pki.goog"',))],
        ids=["servfail", "refused", "another name"],
    )
    async def test_a_failing_answer_is_unknown_never_none(
        self, dns_: Dns, behaviour: Behaviour
    ) -> None:
        """SERVFAIL, REFUSED, or records for another name: a failed lookup, counted."""
        dns_.responder.zone["a.example.org"] = behaviour
        assert await dns_.resolver.relevant("a.example.org") is None
        assert dns_.count("error") == 1

    @pytest.mark.parametrize("behaviour", [Silent(), Garbage(), BadTag()],
                             ids=["silent", "garbage", "unparseable tag"])  # fmt: skip
    async def test_an_answer_that_never_comes_is_bounded_by_the_caller(
        self, dns_: Dns, behaviour: Behaviour
    ) -> None:
        """No answer dnspython can use: the lookup ends when its caller's time is up."""
        dns_.responder.zone["a.example.org"] = behaviour
        with trio.move_on_after(0.5) as scope:
            await dns_.resolver.relevant("a.example.org")
        assert scope.cancelled_caught

    async def test_a_huge_rrset_is_refused(self, dns_: Dns) -> None:
        """1,000 records (over TCP): not evaluated, counted as an error."""
        many = tuple(f'0 issue "ca{i}.example"' for i in range(1000))
        dns_.responder.zone["huge.example.org"] = Truncated(many)
        assert await dns_.resolver.relevant("huge.example.org") is None
        assert dns_.count("error") == 1


class TestChecker:
    now = 0.0
    """The checker's wall clock: the history is written at this time."""

    async def checker(self, tmp_path: Path, dns_: Dns, *, timeout_s: float = 2.0) -> CaaChecker:
        store = await SQLiteStore.open(tmp_path / "cw.db")
        self.store = store
        return CaaChecker(dns_.resolver.relevant, store, timeout_s=timeout_s, stable_s=3600,
                          refresh_s=3600, clock=lambda: self.now)  # fmt: skip

    async def test_a_stable_forbidding_rrset_is_forbidden(self, tmp_path: Path, dns_: Dns) -> None:
        """Seen long before the issuance (the refresh), forbidding now: forbidden."""
        dns_.responder.zone["example.org"] = Records(('0 issue "pki.goog"',))
        checker = await self.checker(tmp_path, dns_)
        try:
            await checker.look("example.org")  # the history starts before the issuance
            self.now = 10 * 3600.0
            alert = attrs.evolve(pending_alert(1, 0.0), matched_sans=("www.example.org",),
                                 created_at=10 * 3600.0)  # fmt: skip
            found = await checker.check(alert, LE)
        finally:
            self.store.close()
        assert (found.verdict, found.name, found.owner, found.records) == (
            CaaVerdict.FORBIDDEN, "www.example.org", "example.org", ('0 issue "pki.goog"',),
        )  # fmt: skip

    async def test_a_forbidding_rrset_first_seen_at_the_decision_is_changed(
        self, tmp_path: Path, dns_: Dns
    ) -> None:
        """Never seen before the issuance: CAA may have changed around it: changed."""
        dns_.responder.zone["example.org"] = Records(('0 issue "pki.goog"',))
        checker = await self.checker(tmp_path, dns_)
        self.now = 5.0  # the decision, just after the issuance: the first sight of the RRset
        try:
            alert = attrs.evolve(pending_alert(1, 0.0), matched_sans=("www.example.org",))
            found = await checker.check(alert, LE)
        finally:
            self.store.close()
        assert found.verdict is CaaVerdict.CHANGED

    async def test_the_worst_san_and_a_wildcard(self, tmp_path: Path, dns_: Dns) -> None:
        """*.example.org meets issuewild ";" (forbidden for wildcards); www is permitted."""
        checker = await self.checker(tmp_path, dns_)
        try:
            await checker.look("example.org")
            self.now = 10 * 3600.0
            alert = attrs.evolve(pending_alert(1, 0.0), created_at=10 * 3600.0,
                                 matched_sans=("*.example.org", "www.example.org"))  # fmt: skip
            found = await checker.check(alert, LE)
        finally:
            self.store.close()
        assert (found.verdict, found.name) == (CaaVerdict.FORBIDDEN, "*.example.org")

    async def test_a_silent_resolver_is_unknown_within_the_timeout(
        self, tmp_path: Path, dns_: Dns
    ) -> None:
        """Nothing answers: unknown after CAA_TIMEOUT_S, not later, never none."""
        dns_.responder.zone["www.example.org"] = Silent()
        checker = await self.checker(tmp_path, dns_, timeout_s=0.3)
        try:
            alert = attrs.evolve(pending_alert(1, 0.0), matched_sans=("www.example.org",))
            with trio.fail_after(5):
                found = await checker.check(alert, LE)
        finally:
            self.store.close()
        assert (found.verdict, found.name) == (CaaVerdict.UNKNOWN, "www.example.org")
