"""The decisions: what a matched certificate means and when (a state machine, no I/O).

Each test drives :class:`Decisions` as the alerter and ``certwatch replay`` do: events go
in, store operations come out, and the answers of a store (a dict here) go back in.
"""

from __future__ import annotations

import itertools
import json

import attrs
import pytest

from certwatch.core.alerts import AckScope, Alert, Kind, Severity, Status
from certwatch.core.caa import CaaFinding, CaaVerdict
from certwatch.core.cas import CAIdentities, CAIdentity
from certwatch.core.certificates import parse_certificate
from certwatch.core.decision import (
    MAX_COPIES,
    Action,
    CheckCaa,
    Decisions,
    Fetch,
    Holds,
    Policy,
    StoreAlert,
    StoreFollowUp,
    StoreVerdict,
    follow_up,
)
from certwatch.core.messages import read_update
from certwatch.core.names import WatchIndex
from certwatch.core.observation import Observation
from certwatch.core.policy import Reason, Rule, RuleKind, Rules
from certwatch.core.recognition import Evidence, Inventory, InventoryCert, KnownKey
from certwatch.errors import Conflict, InputError
from tests.support.certs import CA, Issuance

NOW = 1_800_000_000.0
INDEX = WatchIndex(["example.org"])


def observe(message: dict[str, object]) -> Observation:
    return read_update(json.dumps(message))


def registered(*issuances: Issuance, keys: tuple[KnownKey, ...] = ()) -> Inventory:
    certs = [
        InventoryCert.from_certificate(parse_certificate(i.final_pem()), source="lb:a")
        for i in issuances
    ]
    return Inventory(certs, keys)


def stored_alert(actions: list[Action]) -> Alert:
    """The one alert ``actions`` asks to store."""
    [action] = actions
    assert isinstance(action, StoreAlert)
    return action.alert


class World:
    """The machine and a store of alerts in a dict, doing what the alerter does."""

    def __init__(
        self,
        *,
        grace_s: float = 60,
        inventory: Inventory | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.ids = itertools.count(1)
        events = itertools.count(1)
        self.decisions = Decisions(
            grace_s=grace_s,
            observer=False,
            new_event_id=lambda: f"evt-{next(events)}",
            policy=policy,
        )
        self.inventory = inventory if inventory is not None else Inventory()
        self.store: dict[int, Alert] = {}
        self.sent: list[Alert] = []
        self.asked: list[Action] = []

    def see(self, seen: Observation, now: float = NOW) -> list[Action]:
        match = INDEX.match(seen.summary.all_sans)
        assert match is not None
        actions = self.decisions.match(seen, match, inventory=self.inventory, now=now)
        self.make(actions, now)
        return actions

    def make(self, actions: list[Action], now: float = NOW) -> None:
        for action in actions:
            self.asked.append(action)
            match action:
                case StoreAlert(alert):
                    stored = attrs.evolve(alert, id=next(self.ids))
                    self.store[stored.id or 0] = stored
                    more = self.decisions.stored(
                        alert, stored, inventory=self.inventory, now=now, hold=True
                    )
                    if stored.status is not Status.HELD:
                        self.sent.append(stored)
                    self.make(more, now)
                case StoreVerdict(verdict):
                    self.store[verdict.id or 0] = verdict
                    self.sent.append(verdict)
                case StoreFollowUp(event):
                    self.sent.append(event)
                case Fetch(alert_id, recognition):
                    fetched = self.decisions.fetched(self.store[alert_id], recognition, now=now)
                    self.make(fetched, now)


class TestMatch:
    def test_a_recognised_issuance_is_info_at_once(self, ca: CA) -> None:
        """An issuance the inventory knows is stored `info` at once, grace or not."""
        ours = ca.issue(["a.example.org"])
        world = World(inventory=registered(ours))
        alert = stored_alert(world.see(observe(ours.message("go-tiled"))))
        assert (alert.severity, alert.status) == (Severity.INFO, Status.PENDING)
        assert alert.recognised_by is not None
        assert alert.recognised_by.evidence is Evidence.ISSUANCE
        assert world.sent == [attrs.evolve(alert, id=1)]

    def test_an_unknown_issuance_is_held_for_the_grace_period(self, ca: CA) -> None:
        """Unrecognised: stored held until now + grace, no verdict yet, nothing sent."""
        world = World()
        alert = stored_alert(world.see(observe(ca.issue(["a.example.org"]).message())))
        assert (alert.status, alert.severity, alert.decide_at) == (Status.HELD, None, NOW + 60)
        assert world.sent == []
        assert world.decisions.held == 1

    def test_without_grace_it_is_suspicious_at_once(self, ca: CA) -> None:
        """With a grace of 0, an unrecognised issuance is `suspicious` at once."""
        world = World(grace_s=0)
        world.see(observe(ca.issue(["a.example.org"]).message()))
        assert [a.severity for a in world.sent] == [Severity.SUSPICIOUS]

    def test_copies_of_one_issuance_are_one_alert(self, ca: CA) -> None:
        """The precert and final of one issuance, in three logs, make one alert."""
        issuance = ca.issue(["a.example.org"])
        world = World(grace_s=0)
        for log in ("a", "b", "c"):
            for which in ("precert", "final"):
                world.see(observe(issuance.message("go-full", which=which, log_url=log)))
        assert len([a for a in world.asked if isinstance(a, StoreAlert)]) == 1
        assert len(world.sent) == 1

    def test_losing_the_race_to_another_replica_makes_this_a_copy(self, ca: CA) -> None:
        """When the store answers with another replica's alert, this one is a copy of it."""
        ours = ca.issue(["a.example.org"])
        world = World(inventory=registered(ours))
        match = INDEX.match(("a.example.org",))
        assert match is not None
        seen = observe(ours.message("go-full"))
        asked = stored_alert(world.decisions.match(seen, match, inventory=world.inventory, now=NOW))
        theirs = attrs.evolve(asked, id=41, event_id="their-event", status=Status.HELD,
                              severity=None, decide_at=NOW + 60)  # fmt: skip
        world.store[41] = theirs
        more = world.decisions.stored(asked, theirs, inventory=world.inventory, now=NOW, hold=True)
        assert [type(a) for a in more] == [Fetch]  # recognised: decide the held one, as info
        world.make(more)
        [verdict] = world.sent
        assert (verdict.id, verdict.severity) == (41, Severity.INFO)


class TestHolds:
    def test_holds_end_in_deadline_order(self, ca: CA) -> None:
        """due() decides the alerts whose grace has ended, earliest first, once."""
        world = World()
        for at in (NOW + 30, NOW + 10, NOW + 20):
            world.see(observe(ca.issue(["a.example.org"]).message()), now=at - 60)
        assert world.decisions.next_deadline() == NOW + 10
        world.make(world.decisions.due(NOW + 25, inventory=world.inventory))
        assert [a.decide_at for a in world.sent] == [None, None]
        assert len(world.sent) == 2
        assert world.decisions.due(NOW + 25, inventory=world.inventory) == []
        assert len(world.decisions.due(NOW + 99, inventory=world.inventory)) == 1

    def test_a_copy_during_the_hold_can_recognise_it(self, ca: CA) -> None:
        """A later copy's facts count: the DER of a full-stream copy shows a registered key."""
        ours = ca.issue(["a.example.org"])
        inventory = Inventory(keys=[KnownKey(ours.spki_sha256(), ("a.example.org",), "lb:a")])
        world = World(inventory=inventory)
        world.see(observe(ours.message("go-tiled")))
        assert world.sent == []
        world.see(observe(ours.message("go-full")))
        [verdict] = world.sent
        assert verdict.severity is Severity.INFO
        assert verdict.recognised_by is not None
        assert verdict.recognised_by.evidence is Evidence.KEY
        assert world.decisions.held == 0

    def test_at_the_end_of_the_hold_unrecognised_is_suspicious(self, ca: CA) -> None:
        """Nothing recognising it by the deadline means `suspicious`, queued."""
        world = World()
        world.see(observe(ca.issue(["a.example.org"]).message()))
        world.make(world.decisions.due(NOW + 60, inventory=world.inventory))
        [verdict] = world.sent
        assert (verdict.severity, verdict.status) == (Severity.SUSPICIOUS, Status.PENDING)

    def test_a_registration_during_the_hold_decides_it_info(self, ca: CA) -> None:
        """recheck() after the inventory learnt the certificate: `info` at once."""
        ours = ca.issue(["a.example.org"])
        world = World()
        world.see(observe(ours.message()))
        world.inventory = registered(ours)
        world.make(world.decisions.recheck(world.inventory, now=NOW + 5))
        [verdict] = world.sent
        assert verdict.severity is Severity.INFO

    def test_the_leader_takes_up_what_the_store_holds_and_lets_go(self, ca: CA) -> None:
        """take_up() holds exactly the stored held alerts; let_go() holds none."""
        world = World()
        world.see(observe(ca.issue(["a.example.org"]).message()))
        other = attrs.evolve(world.store[1], id=7)
        world.decisions.take_up([other])
        assert world.decisions.held == 1
        world.decisions.let_go()
        assert world.decisions.held == 0

    def test_a_held_issuance_keeps_its_distinct_copies_only_up_to_a_bound(self, ca: CA) -> None:
        """Repeated copies are noted once; past MAX_COPIES only a recognised copy is kept."""
        world = World()
        world.see(observe(ca.issue(["a.example.org"]).message()))
        holds = Holds()
        alert = world.store[1]
        holds.hold(alert)
        for _ in range(1000):
            assert holds.add_copy(1, alert.facts)
        assert holds.copies(1) == 1
        distinct = [attrs.evolve(alert.facts, sha1=f"{n:040x}") for n in range(2 * MAX_COPIES)]
        for facts in distinct:
            holds.add_copy(1, facts)
        assert holds.copies(1) == MAX_COPIES
        holds.add_copy(1, distinct[-1], recognised=True)
        assert holds.copies(1) == MAX_COPIES + 1


class TestFollowUp:
    def test_a_late_registration_sends_a_resolved_follow_up_once(self, ca: CA) -> None:
        """A suspicious alert recognised later gets one `resolved` event, then no more."""
        ours = ca.issue(["a.example.org"])
        world = World(grace_s=0)
        world.see(observe(ours.message()))
        world.inventory = registered(ours)
        suspicious = world.store[1]
        world.make(world.decisions.recheck_stored([suspicious], world.inventory, now=NOW + 9))
        [_, event] = world.sent
        assert (event.parent_id, event.severity, event.resolved_at) == (1, Severity.INFO, NOW + 9)
        resolved = attrs.evolve(suspicious, resolved_at=NOW + 9)
        assert world.decisions.recheck_stored([resolved], world.inventory, now=NOW + 10) == []

    def test_a_recognised_copy_of_a_sent_alert_follows_it_up(self, ca: CA) -> None:
        """A copy that a registration now recognises, of an alert sent suspicious: resolved."""
        ours = ca.issue(["a.example.org"])
        world = World(grace_s=0)
        world.see(observe(ours.message("go-full", log_url="a")))
        world.inventory = registered(ours)
        world.see(observe(ours.message("go-full", log_url="b")))
        assert [a.kind for a in world.sent] == ["alert", "resolved"]

    @pytest.mark.parametrize(
        ("severity", "resolved", "owed"),
        [
            (Severity.SUSPICIOUS, None, True),
            (Severity.CRITICAL, None, True),
            (Severity.SUSPICIOUS, NOW, False),
            (Severity.INFO, None, False),
            (Severity.EXPECTED, None, False),
        ],
    )
    def test_only_an_unresolved_suspicious_or_critical_alert_gets_one(
        self, ca: CA, severity: Severity, resolved: float | None, owed: bool
    ) -> None:
        """A `resolved` follow-up is owed once, only to a suspicious or critical alert."""
        ours = ca.issue(["a.example.org"])
        world = World(grace_s=0)
        world.see(observe(ours.message()))
        alert = attrs.evolve(world.store[1], id=9, severity=severity, resolved_at=resolved)
        recognition = registered(ours).recognise(observe(ours.message()).facts)
        event = follow_up(alert, recognition, observer=False, now=NOW, event_id="evt-2")
        assert (event is not None) is owed
        if event is not None:
            assert (event.parent_id, event.severity, event.resolved_by) == (
                9,
                Severity.INFO,
                recognition,
            )
        assert follow_up(alert, None, observer=False, now=NOW, event_id="evt-3") is None


def policy_for(ca: CA, *rules: Rule, owner: str = "Example Trust") -> Policy:
    """Rules, and ``ca`` known as ``owner`` with CAA identifier ``ets.example``."""
    known = CAIdentity(ca.key_id.hex(), owner, ("ets.example",))
    return Policy(Rules(rules), CAIdentities([known]))


def a_rule(kind: RuleKind, scope: str, *issuers: str, rule_id: int = 1) -> Rule:
    return Rule(kind, scope, issuers, "vendor", NOW - 1, None, rule_id)


class TestPolicy:
    def test_the_verdict_is_the_ladders_at_the_end_of_the_hold(self, ca: CA) -> None:
        """A vendor's certificate held for the grace is decided expected, with its rule."""
        rule = a_rule(RuleKind.EXPECT, "status.example.org", "ets.example")
        world = World(policy=policy_for(ca, rule))
        world.see(observe(ca.issue(["status.example.org"]).message()))
        world.make(world.decisions.due(NOW + 60, inventory=world.inventory), NOW + 60)
        [alert] = world.sent
        assert (alert.severity, alert.reason, alert.rule) == (
            Severity.EXPECTED, Reason.EXPECT_RULE, rule.ref(),
        )  # fmt: skip
        assert alert.issuer_ca is not None
        assert alert.issuer_ca.owner == "Example Trust"

    def test_a_rule_added_during_the_hold_decides_it(self, ca: CA) -> None:
        """Rules take effect for decisions after they are added, held alerts included."""
        policy = policy_for(ca)
        world = World(policy=policy)
        world.see(observe(ca.issue(["login.example.org"]).message()))
        policy.rules.add(a_rule(RuleKind.PROTECT, "login.example.org"))
        world.make(world.decisions.due(NOW + 60, inventory=world.inventory), NOW + 60)
        assert [(a.severity, a.reason) for a in world.sent] == [
            (Severity.CRITICAL, Reason.PROTECT_RULE)
        ]

    def test_an_unknown_ca_is_suspicious_under_an_expect_rule(self, ca: CA) -> None:
        """The CA is what an expect rule vouches for: unknown, it explains nothing."""
        rule = a_rule(RuleKind.EXPECT, "status.example.org", "ets.example")
        world = World(grace_s=0, policy=Policy(Rules([rule])))
        world.see(observe(ca.issue(["status.example.org"]).message()))
        [alert] = world.sent
        assert (alert.severity, alert.reason, alert.issuer_ca) == (
            Severity.SUSPICIOUS, Reason.UNRECOGNISED, None,
        )  # fmt: skip

    def test_a_recognised_copy_beats_a_protect_rule(self, ca: CA) -> None:
        """Our own certificate for a protected name is info (recognised first)."""
        ours = ca.issue(["login.example.org"])
        rule = a_rule(RuleKind.PROTECT, "login.example.org")
        world = World(inventory=registered(ours), policy=policy_for(ca, rule))
        world.see(observe(ours.message()))
        assert [(a.severity, a.reason) for a in world.sent] == [(Severity.INFO, Reason.RECOGNISED)]

    def test_a_critical_alert_is_resolved_by_a_late_registration(self, ca: CA) -> None:
        """A protected name pushed late: the critical alert gets its resolved follow-up."""
        ours = ca.issue(["login.example.org"])
        world = World(
            grace_s=0, policy=policy_for(ca, a_rule(RuleKind.PROTECT, "login.example.org"))
        )
        world.see(observe(ours.message(log_url="a")))
        world.inventory = registered(ours)
        world.see(observe(ours.message(log_url="b")))
        assert [(a.kind, a.severity, a.reason) for a in world.sent] == [
            (Kind.ALERT, Severity.CRITICAL, Reason.PROTECT_RULE),
            (Kind.RESOLVED, Severity.INFO, Reason.RECOGNISED),
        ]


class TestAcknowledgement:
    def held(self, ca: CA, names: list[str]) -> tuple[World, Alert]:
        world = World(policy=policy_for(ca))
        world.see(observe(ca.issue(names).message("go-full")))
        return world, world.store[1]

    @pytest.mark.parametrize(
        ("scope", "severity", "reason"),
        [
            (AckScope.CERTIFICATE, Severity.INFO, Reason.RECOGNISED),
            (AckScope.KEY, Severity.INFO, Reason.RECOGNISED),
            (AckScope.ISSUER, Severity.EXPECTED, Reason.EXPECT_RULE),
        ],
    )
    def test_a_held_alert_is_decided_at_once(
        self, ca: CA, scope: AckScope, severity: Severity, reason: Reason
    ) -> None:
        """Acknowledged while held: decided now, with the acknowledgement on it."""
        world, alert = self.held(ca, ["cdn.example.org", "*.cdn.example.org"])
        rules, key = world.decisions.effects(alert, scope, "vendor CDN", now=NOW + 5)
        stored = [attrs.evolve(r, id=i) for i, r in enumerate(rules, start=7)]
        outcome = world.decisions.acknowledgement(alert, scope, "vendor CDN", now=NOW + 5)
        decided = outcome(alert, stored)
        assert (decided.kind, decided.status, decided.severity, decided.reason) == (
            Kind.ALERT, Status.PENDING, severity, reason,
        )  # fmt: skip
        assert (decided.acknowledged_at, decided.acknowledged_scope) == (NOW + 5, scope)
        assert decided.acknowledged_note == "vendor CDN"
        assert decided.recognised_by is not None
        assert decided.recognised_by.as_dict() == {
            "evidence": "acknowledged", "source": "vendor CDN", "ref": scope.value,
        }  # fmt: skip
        if scope is AckScope.ISSUER:
            assert [(r.kind, r.scope, r.issuers) for r in rules] == [
                (RuleKind.EXPECT, "cdn.example.org", ("ets.example",))
            ]  # one rule: *.cdn.example.org and cdn.example.org share a scope
            assert decided.rule == stored[0].ref()
        else:
            assert rules == []
        if scope is AckScope.KEY:
            assert key is not None
            assert key.names == ("*.cdn.example.org", "cdn.example.org")
            assert key.spki_sha256 == alert.facts.spki_sha256
        world.decisions.acknowledged(alert.id or 0)
        assert world.decisions.held == 0

    def test_a_sent_alert_gets_its_resolved_follow_up(self, ca: CA) -> None:
        """Sent as suspicious, then acknowledged by issuer: a resolved event, expected."""
        world = World(grace_s=0, policy=policy_for(ca))
        world.see(observe(ca.issue(["cdn.example.org"]).message("go-full")))
        alert = world.store[1]
        rules, _ = world.decisions.effects(alert, AckScope.ISSUER, "", now=NOW)
        stored = [attrs.evolve(r, id=3) for r in rules]
        event = world.decisions.acknowledgement(alert, AckScope.ISSUER, "", now=NOW)(alert, stored)
        assert (event.kind, event.parent_id, event.severity, event.reason) == (
            Kind.RESOLVED, alert.id, Severity.EXPECTED, Reason.EXPECT_RULE,
        )  # fmt: skip
        assert event.resolved_by is not None
        assert event.resolved_by.evidence.value == "acknowledged"

    @pytest.mark.parametrize(
        ("change", "problem"),
        [
            ({"severity": Severity.INFO, "status": Status.PENDING}, "info already"),
            ({"severity": Severity.EXPECTED, "status": Status.PENDING}, "expected already"),
            ({"kind": Kind.RESOLVED}, "a follow-up"),
            ({"acknowledged_at": NOW}, "acknowledged before"),
            ({"severity": Severity.SUSPICIOUS, "status": Status.DELIVERED, "resolved_at": NOW},
             "resolved already"),
        ],
    )  # fmt: skip
    def test_what_cannot_be_acknowledged_is_a_conflict(
        self, ca: CA, change: dict[str, object], problem: str
    ) -> None:
        """info or expected already, a follow-up, acknowledged or resolved before: 409."""
        world, alert = self.held(ca, ["a.example.org"])
        alert = attrs.evolve(alert, **change)  # type: ignore[arg-type]
        with pytest.raises(Conflict, match=problem):
            world.decisions.acknowledgement(alert, AckScope.CERTIFICATE, "", now=NOW)

    def test_an_alert_that_changed_meanwhile_is_a_conflict(self, ca: CA) -> None:
        """The outcome checks the alert as the store holds it at the acknowledgement."""
        world, alert = self.held(ca, ["a.example.org"])
        outcome = world.decisions.acknowledgement(alert, AckScope.CERTIFICATE, "", now=NOW)
        meanwhile = attrs.evolve(alert, status=Status.PENDING, severity=Severity.INFO)
        with pytest.raises(Conflict):
            outcome(meanwhile, [])

    def test_key_needs_the_certificates_key(self, ca: CA) -> None:
        """A DER-less alert (no key seen) cannot be acknowledged by key: 422 on scope."""
        world = World(policy=policy_for(ca))
        world.see(observe(ca.issue(["a.example.org"]).message("go-tiled")))  # no DER
        alert = world.store[1]
        assert alert.facts.spki_sha256 is None
        with pytest.raises(InputError) as caught:
            world.decisions.effects(alert, AckScope.KEY, "", now=NOW)
        assert [field for field, _ in caught.value.problems] == ["scope"]

    def test_issuer_needs_a_known_ca(self, ca: CA) -> None:
        """An unknown CA cannot be named by a rule: 422 on scope."""
        world = World()
        world.see(observe(ca.issue(["a.example.org"]).message("go-full")))
        with pytest.raises(InputError, match="invalid request body") as caught:
            world.decisions.effects(world.store[1], AckScope.ISSUER, "", now=NOW)
        assert "unknown to certwatch" in caught.value.problems[0][1]


class TestCaa:
    def world(self, ca: CA, *, grace_s: float = 60, inventory: Inventory | None = None) -> World:
        policy = attrs.evolve(policy_for(ca), caa=True)
        return World(grace_s=grace_s, inventory=inventory, policy=policy)

    def checks(self, world: World) -> list[CheckCaa]:
        return [a for a in world.asked if isinstance(a, CheckCaa)]

    def test_an_unrecognised_issuance_is_checked_before_its_verdict(self, ca: CA) -> None:
        """At the end of the hold CAA is evaluated; a stable forbidding RRset: critical."""
        world = self.world(ca)
        world.see(observe(ca.issue(["www.example.org"]).message()))
        world.make(world.decisions.due(NOW + 60, inventory=world.inventory), NOW + 60)
        [check] = self.checks(world)
        assert world.sent == []
        assert check.ca is not None
        assert check.ca.caa_domains == ("ets.example",)
        finding = CaaFinding(CaaVerdict.FORBIDDEN, "www.example.org", "example.org",
                             ('0 issue "pki.goog"',), NOW - 86400)  # fmt: skip
        done = world.decisions.caa_checked(check.alert.id or 0, finding,
                                           inventory=world.inventory, now=NOW + 61)  # fmt: skip
        world.make(done, NOW + 61)
        [alert] = world.sent
        assert (alert.severity, alert.reason, alert.caa) == (
            Severity.CRITICAL, Reason.CAA_FORBIDDEN, finding,
        )  # fmt: skip
        assert world.decisions.held == 0

    @pytest.mark.parametrize("verdict", [CaaVerdict.CHANGED, CaaVerdict.UNKNOWN,
                                         CaaVerdict.PERMITTED, CaaVerdict.NONE])  # fmt: skip
    def test_other_verdicts_never_change_the_severity(self, ca: CA, verdict: CaaVerdict) -> None:
        """changed, unknown, permitted, none: suspicious as without CAA, the finding shown."""
        world = self.world(ca, grace_s=0)
        world.see(observe(ca.issue(["www.example.org"]).message()))
        [check] = self.checks(world)  # grace 0: stored held, and checked at once
        finding = CaaFinding(verdict, "www.example.org")
        world.make(world.decisions.caa_checked(check.alert.id or 0, finding,
                                               inventory=world.inventory, now=NOW))  # fmt: skip
        [alert] = world.sent
        assert (alert.severity, alert.caa) == (Severity.SUSPICIOUS, finding)

    def test_a_registration_during_the_check_decides_info_and_the_check_is_dropped(
        self, ca: CA
    ) -> None:
        """Recognised while CAA is looked up: info at once (no CAA), the late finding ignored."""
        ours = ca.issue(["www.example.org"])
        world = self.world(ca, grace_s=0)
        world.see(observe(ours.message()))
        [check] = self.checks(world)
        world.inventory = registered(ours)
        world.make(world.decisions.recheck(world.inventory, now=NOW + 1))
        late = world.decisions.caa_checked(check.alert.id or 0,
                                           CaaFinding(CaaVerdict.FORBIDDEN, "www.example.org"),
                                           inventory=world.inventory, now=NOW + 2)  # fmt: skip
        assert late == []
        [alert] = world.sent
        assert (alert.severity, alert.caa) == (Severity.INFO, None)

    def test_an_alert_is_checked_once(self, ca: CA) -> None:
        """A second settle while its check runs asks for no second check."""
        world = self.world(ca)
        world.see(observe(ca.issue(["www.example.org"]).message()))
        world.make(world.decisions.due(NOW + 60, inventory=world.inventory), NOW + 60)
        world.make(world.decisions.end_holds(NOW + 61, inventory=world.inventory), NOW + 61)
        assert len(self.checks(world)) == 1

    def test_a_recognised_issuance_is_never_checked(self, ca: CA) -> None:
        """Ours: info at once, no CAA lookup, caa null."""
        ours = ca.issue(["www.example.org"])
        world = self.world(ca, grace_s=0, inventory=registered(ours))
        world.see(observe(ours.message()))
        assert self.checks(world) == []
        assert [(a.severity, a.caa) for a in world.sent] == [(Severity.INFO, None)]
