"""The decisions: what a matched certificate means and when (a state machine, no I/O).

Each test drives :class:`Decisions` as the alerter and ``certwatch replay`` do: events go
in, store operations come out, and the answers of a store (a dict here) go back in.
"""

from __future__ import annotations

import itertools
import json

import attrs
import pytest

from certwatch.core.alerts import Alert, Severity, Status
from certwatch.core.certificates import parse_certificate
from certwatch.core.decision import (
    MAX_COPIES,
    Action,
    Decisions,
    Fetch,
    Holds,
    StoreAlert,
    StoreFollowUp,
    StoreVerdict,
    follow_up,
)
from certwatch.core.messages import read_update
from certwatch.core.names import WatchIndex
from certwatch.core.observation import Observation
from certwatch.core.recognition import Evidence, Inventory, InventoryCert, KnownKey
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

    def __init__(self, *, grace_s: float = 60, inventory: Inventory | None = None) -> None:
        self.ids = itertools.count(1)
        events = itertools.count(1)
        self.decisions = Decisions(
            grace_s=grace_s, observer=False, new_event_id=lambda: f"evt-{next(events)}"
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
            (Severity.SUSPICIOUS, NOW, False),
            (Severity.INFO, None, False),
        ],
    )
    def test_only_an_unresolved_suspicious_alert_gets_one(
        self, ca: CA, severity: Severity, resolved: float | None, owed: bool
    ) -> None:
        """A `resolved` follow-up is owed once, and only to a suspicious alert."""
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
