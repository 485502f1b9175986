"""The rules and the severity ladder: pure logic, tested without sockets."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from certwatch.core.cas import CAIdentity
from certwatch.core.policy import Reason, Rule, RuleKind, Rules, Severity, judge

LE = CAIdentity("aa" * 20, "ISRG (Let's Encrypt)", ("letsencrypt.org",))
GTS = CAIdentity("bb" * 20, "Google Trust Services", ("pki.goog",))
NOW = 1_800_000_000.0
_ids = itertools.count(1)


def rule(
    kind: RuleKind, scope: str, *issuers: str, expires_at: float | None = None, note: str = ""
) -> Rule:
    return Rule(kind, scope, tuple(issuers), note, NOW - 10, expires_at, next(_ids))


def expect(scope: str, *issuers: str, expires_at: float | None = None, note: str = "") -> Rule:
    return rule(RuleKind.EXPECT, scope, *issuers, expires_at=expires_at, note=note)


class TestScopes:
    def test_a_scope_covers_itself_and_every_name_below_it(self) -> None:
        """status.example.org covers itself and a.status.example.org, not example.org."""
        r = expect("status.example.org", "letsencrypt.org")
        rules = Rules([r])
        assert rules.explaining("status.example.org", NOW) == [r]
        assert rules.explaining("a.b.status.example.org", NOW) == [r]
        assert rules.explaining("example.org", NOW) == []
        assert rules.explaining("xstatus.example.org", NOW) == []

    def test_a_wildcard_is_explained_only_when_all_it_covers_is_inside(self) -> None:
        """*.status.example.org is inside status.example.org; *.example.org is not."""
        r = expect("status.example.org", "letsencrypt.org")
        rules = Rules([r])
        assert rules.explaining("*.status.example.org", NOW) == [r]
        assert rules.explaining("*.example.org", NOW) == []

    def test_a_wildcard_touches_a_scope_one_label_below_it(self) -> None:
        """*.corp.example touches login.corp.example (it would cover it), as a watch entry."""
        protect = rule(RuleKind.PROTECT, "login.corp.example")
        rules = Rules([protect])
        assert rules.touching(RuleKind.PROTECT, "*.corp.example", NOW) == [protect]
        assert rules.touching(RuleKind.PROTECT, "*.example", NOW) == []
        assert rules.touching(RuleKind.PROTECT, "a.login.corp.example", NOW) == [protect]
        assert rules.touching(RuleKind.PROTECT, "corp.example", NOW) == []

    def test_expired_rules_are_ignored(self) -> None:
        """A rule past expires_at explains and touches nothing."""
        old = expect("status.example.org", "letsencrypt.org", expires_at=NOW)
        assert Rules([old]).explaining("status.example.org", NOW) == []
        assert Rules([old]).explaining("status.example.org", NOW - 1) == [old]

    def test_rules_are_counted_by_kind_and_removed(self) -> None:
        """Counts cover every kind; a removed rule explains nothing any more."""
        a, b = expect("a.example.org", "pki.goog"), expect("a.example.org", "letsencrypt.org")
        rules = Rules([a, b, rule(RuleKind.PROTECT, "login.example.org")])
        assert rules.counts() == {RuleKind.EXPECT: 2, RuleKind.RESTRICT: 0, RuleKind.PROTECT: 1}
        assert a.id is not None
        rules.discard(a.id)
        assert rules.explaining("a.example.org", NOW) == [b]
        assert b.id is not None
        rules.discard(b.id)
        assert rules.explaining("a.example.org", NOW) == []


class TestLadder:
    def test_recognised_is_info_whatever_the_rules(self) -> None:
        """Ours beats a protect rule: the organisation issues its own protected names."""
        rules = Rules([rule(RuleKind.PROTECT, "login.example.org")])
        verdict = judge(["login.example.org"], recognised=True, rules=rules, ca=LE, now=NOW)
        assert (verdict.severity, verdict.reason, verdict.rule) == (
            Severity.INFO, Reason.RECOGNISED, None,
        )  # fmt: skip
        assert verdict.issuer_ca == LE

    def test_protect_is_critical_whatever_the_ca(self) -> None:
        """A protected name is critical with a known CA, an unknown one, or an expect rule."""
        protect = rule(RuleKind.PROTECT, "pay.example.org", note="payments")
        rules = Rules([protect, expect("example.org", "letsencrypt.org")])
        for ca in (LE, None):
            verdict = judge(["pay.example.org"], recognised=False, rules=rules, ca=ca, now=NOW)
            assert (verdict.severity, verdict.reason) == (Severity.CRITICAL, Reason.PROTECT_RULE)
            assert verdict.rule == protect.ref()

    def test_restrict_is_critical_for_another_known_ca(self) -> None:
        """Only Let's Encrypt may issue under example.org: Google's certificate is critical."""
        restrict = rule(RuleKind.RESTRICT, "example.org", "letsencrypt.org")
        rules = Rules([restrict])
        google = judge(["www.example.org"], recognised=False, rules=rules, ca=GTS, now=NOW)
        assert (google.severity, google.reason, google.rule) == (
            Severity.CRITICAL, Reason.RESTRICT_RULE, restrict.ref(),
        )  # fmt: skip
        allowed = judge(["www.example.org"], recognised=False, rules=rules, ca=LE, now=NOW)
        assert (allowed.severity, allowed.reason) == (Severity.SUSPICIOUS, Reason.UNRECOGNISED)

    def test_restrict_never_condemns_an_unknown_ca(self) -> None:
        """An unknown CA under a restrict rule stays suspicious: certwatch cannot tell."""
        rules = Rules([rule(RuleKind.RESTRICT, "example.org", "letsencrypt.org")])
        verdict = judge(["www.example.org"], recognised=False, rules=rules, ca=None, now=NOW)
        assert (verdict.severity, verdict.issuer_ca) == (Severity.SUSPICIOUS, None)

    def test_caa_forbidden_is_critical_for_a_known_ca(self) -> None:
        """A stable CAA record forbidding the CA is critical (the CAA issue feeds this)."""
        verdict = judge(
            ["www.example.org"], recognised=False, rules=Rules(), ca=LE, now=NOW, caa_forbidden=True
        )
        assert (verdict.severity, verdict.reason) == (Severity.CRITICAL, Reason.CAA_FORBIDDEN)

    def test_expected_needs_every_matched_san_explained_for_this_ca(self) -> None:
        """One SAN outside the vendor's scope, or another CA: suspicious."""
        status = expect("status.example.org", "letsencrypt.org", note="Statuspage")
        rules = Rules([status])
        one = judge(["status.example.org"], recognised=False, rules=rules, ca=LE, now=NOW)
        assert (one.severity, one.reason, one.rule) == (
            Severity.EXPECTED, Reason.EXPECT_RULE, status.ref(),
        )  # fmt: skip
        both = ["status.example.org", "www.example.org"]
        assert judge(both, recognised=False, rules=rules, ca=LE, now=NOW).severity is (
            Severity.SUSPICIOUS
        )
        other_ca = judge(["status.example.org"], recognised=False, rules=rules, ca=GTS, now=NOW)
        assert other_ca.severity is Severity.SUSPICIOUS

    def test_two_rules_may_explain_two_sans(self) -> None:
        """Cloudflare's certificate for the apex and www: each SAN explained by its rule."""
        rules = Rules([expect("example.org", "pki.goog"), expect("cdn.example.net", "pki.goog")])
        sans = ["cdn.example.net", "example.org"]
        verdict = judge(sans, recognised=False, rules=rules, ca=GTS, now=NOW)
        assert verdict.severity is Severity.EXPECTED

    def test_protect_outranks_expect_and_restrict(self) -> None:
        """The ladder's order: protect before restrict before expect."""
        rules = Rules(
            [
                expect("example.org", "letsencrypt.org"),
                rule(RuleKind.RESTRICT, "example.org", "pki.goog"),
            ]
        )
        restricted = judge(["www.example.org"], recognised=False, rules=rules, ca=LE, now=NOW)
        assert restricted.reason is Reason.RESTRICT_RULE
        rules.add(rule(RuleKind.PROTECT, "www.example.org"))
        protected = judge(["www.example.org"], recognised=False, rules=rules, ca=LE, now=NOW)
        assert protected.reason is Reason.PROTECT_RULE

    def test_severities_climb_in_the_contracts_order(self) -> None:
        """info < expected < suspicious < critical; lookalike beside them, as suspicious."""
        ladder = [Severity.INFO, Severity.EXPECTED, Severity.SUSPICIOUS, Severity.CRITICAL]
        assert [s.rank for s in ladder] == [0, 1, 2, 3]
        assert list(Severity) == ["info", "expected", "suspicious", "critical", "lookalike"]
        assert Severity.LOOKALIKE.rank == Severity.SUSPICIOUS.rank


NAMES = st.sampled_from(
    ["example.org", "www.example.org", "*.example.org", "login.example.org",
     "status.example.org", "*.status.example.org", "a.b.example.org", "cdn.example.net"]
)  # fmt: skip
SCOPES = st.sampled_from(
    ["example.org", "login.example.org", "status.example.org", "b.example.org", "example.net"]
)
ISSUERS = st.sampled_from(["letsencrypt.org", "pki.goog", "digicert.com"])


@st.composite
def some_rules(draw: st.DrawFn) -> Rules:
    rules = Rules()
    for n in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(list(RuleKind)))
        issuers = () if kind is RuleKind.PROTECT else tuple(draw(st.sets(ISSUERS, min_size=1)))
        expires = draw(st.one_of(st.none(), st.floats(NOW - 100, NOW + 100)))
        rules.add(Rule(kind, draw(SCOPES), tuple(sorted(issuers)), "", NOW - 200, expires, n + 1))
    return rules


class TestLadderProperties:
    @given(st.lists(NAMES, min_size=1, max_size=4, unique=True), some_rules(),
           st.sampled_from([LE, GTS, None]))  # fmt: skip
    def test_recognised_is_always_info(
        self, sans: list[str], rules: Rules, ca: CAIdentity | None
    ) -> None:
        """Whatever the rules and the CA, a recognised issuance is info."""
        assert judge(sans, recognised=True, rules=rules, ca=ca, now=NOW).severity is Severity.INFO

    @given(st.lists(NAMES, min_size=1, max_size=4, unique=True), some_rules(), st.booleans())
    def test_an_unknown_ca_is_never_expected_and_critical_only_by_protect(
        self, sans: list[str], rules: Rules, caa_forbidden: bool
    ) -> None:
        """Without a known CA: never expected; critical only by a protect rule."""
        verdict = judge(
            sans, recognised=False, rules=rules, ca=None, now=NOW, caa_forbidden=caa_forbidden
        )
        assert verdict.severity is not Severity.EXPECTED
        if verdict.severity is Severity.CRITICAL:
            assert verdict.reason is Reason.PROTECT_RULE
            assert any(rules.touching(RuleKind.PROTECT, san, NOW) for san in sans)

    @given(st.lists(NAMES, min_size=1, max_size=4, unique=True), some_rules(),
           st.sampled_from([LE, GTS]))  # fmt: skip
    def test_a_decision_names_an_active_rule_of_its_kind(
        self, sans: list[str], rules: Rules, ca: CAIdentity
    ) -> None:
        """A rule-based verdict names a rule that exists, is active, and is of that kind."""
        verdict = judge(sans, recognised=False, rules=rules, ca=ca, now=NOW)
        kinds = {
            Reason.PROTECT_RULE: RuleKind.PROTECT,
            Reason.RESTRICT_RULE: RuleKind.RESTRICT,
            Reason.EXPECT_RULE: RuleKind.EXPECT,
        }
        if verdict.reason in kinds:
            assert verdict.rule is not None
            found = rules.get(verdict.rule.id)
            assert found is not None
            assert found.kind is kinds[verdict.reason]
            assert found.active(NOW)
        else:
            assert verdict.rule is None
