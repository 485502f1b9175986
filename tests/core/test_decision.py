"""The decision: what a matched certificate means (pure logic, no I/O)."""

from __future__ import annotations

import json

import attrs
import pytest

from certwatch.core.alerts import Severity, Status
from certwatch.core.certificates import parse_certificate
from certwatch.core.decision import (
    MAX_COPIES,
    Holds,
    KnownIssuance,
    NewIssuance,
    decide,
    follow_up,
)
from certwatch.core.messages import read_update
from certwatch.core.names import WatchIndex
from certwatch.core.observation import Observation
from certwatch.core.recognition import Evidence, Inventory, InventoryCert, KnownKey
from tests.support.certs import CA

NOW = 1_800_000_000.0
INDEX = WatchIndex(["example.org"])


def observe(message: dict[str, object]) -> Observation:
    return read_update(json.dumps(message))


def registered(*issuances: object, keys: tuple[KnownKey, ...] = ()) -> Inventory:
    certs = [
        InventoryCert.from_certificate(parse_certificate(i.final_pem()), source="lb:a")  # type: ignore[attr-defined]
        for i in issuances
    ]
    return Inventory(certs, keys)


def decision(
    seen: Observation,
    inventory: Inventory,
    *,
    grace_s: float = 60,
    known: dict[str, int] | None = None,
) -> NewIssuance | KnownIssuance:
    match = INDEX.match(seen.summary.all_sans)
    assert match is not None
    return decide(
        seen,
        match,
        known=(known or {}).get,
        inventory=inventory,
        grace_s=grace_s,
        observer=False,
        now=NOW,
        event_id="evt-1",
    )


class TestDecide:
    def test_a_recognised_issuance_is_info_at_once(self, ca: CA) -> None:
        """An issuance the inventory knows is decided `info` at once, grace or not."""
        ours = ca.issue(["a.example.org"])
        result = decision(observe(ours.message("go-tiled")), registered(ours))
        assert isinstance(result, NewIssuance)
        assert (result.alert.severity, result.alert.status) == (Severity.INFO, Status.PENDING)
        assert result.alert.recognised_by is not None
        assert result.alert.recognised_by.evidence is Evidence.ISSUANCE

    def test_an_unknown_issuance_is_held_for_the_grace_period(self, ca: CA) -> None:
        """Unrecognised: held until now + grace, no verdict yet."""
        result = decision(observe(ca.issue(["a.example.org"]).message()), Inventory())
        assert isinstance(result, NewIssuance)
        assert result.alert.status is Status.HELD
        assert result.alert.severity is None
        assert result.alert.decide_at == NOW + 60

    def test_without_grace_it_is_suspicious_at_once(self, ca: CA) -> None:
        """With a grace of 0, an unrecognised issuance is `suspicious` at once."""
        result = decision(observe(ca.issue(["a.example.org"]).message()), Inventory(), grace_s=0)
        assert isinstance(result, NewIssuance)
        assert result.alert.severity is Severity.SUSPICIOUS

    def test_a_known_issuance_is_a_copy_with_what_recognises_it(self, ca: CA) -> None:
        """Another copy of an alerted issuance is no new alert; its recognition comes along."""
        ours = ca.issue(["a.example.org"])
        seen = observe(ours.message("go-full"))
        known = {seen.facts.issuance_key(): 7}
        result = decision(seen, registered(ours), known=known)
        assert isinstance(result, KnownIssuance)
        assert result.alert_id == 7
        assert result.recognition is not None


class TestHolds:
    def test_holds_end_in_deadline_order(self, ca: CA) -> None:
        """due() gives the alerts whose grace has ended, earliest first, once."""
        holds = Holds()
        for alert_id, at in [(1, NOW + 30), (2, NOW + 10), (3, NOW + 20)]:
            result = decision(observe(ca.issue(["a.example.org"]).message()), Inventory())
            assert isinstance(result, NewIssuance)
            holds.hold(attrs.evolve(result.alert, id=alert_id, decide_at=at))
        assert holds.next_deadline() == NOW + 10
        assert holds.due(NOW + 25) == [2, 3]
        assert holds.due(NOW + 25) == []
        assert holds.due(NOW + 99) == [1]

    def test_a_copy_during_the_hold_can_recognise_it(self, ca: CA) -> None:
        """A later copy's facts count: the DER of a full-stream copy shows a registered key."""
        ours = ca.issue(["a.example.org"])
        inventory = Inventory(keys=[KnownKey(ours.spki_sha256(), ("a.example.org",), "lb:a")])
        tiled = decision(observe(ours.message("go-tiled")), inventory)
        assert isinstance(tiled, NewIssuance)
        holds = Holds()
        holds.hold(attrs.evolve(tiled.alert, id=1))
        assert holds.verdict(1, inventory, observer=False, now=NOW, only_if_recognised=True) is None
        assert holds.add_copy(1, observe(ours.message("go-full")).facts)
        verdict = holds.verdict(1, inventory, observer=False, now=NOW, only_if_recognised=True)
        assert verdict is not None
        assert verdict.severity is Severity.INFO
        assert 1 in holds
        holds.release(1)
        assert 1 not in holds
        assert not holds.add_copy(1, observe(ours.message("go-full")).facts)

    def test_at_the_end_of_the_hold_unrecognised_is_suspicious(self, ca: CA) -> None:
        """Without `only_if_recognised`, nothing recognising it means `suspicious`."""
        result = decision(observe(ca.issue(["a.example.org"]).message()), Inventory())
        assert isinstance(result, NewIssuance)
        holds = Holds()
        holds.hold(attrs.evolve(result.alert, id=1))
        verdict = holds.verdict(1, Inventory(), observer=True, now=NOW + 60)
        assert verdict is not None
        assert (verdict.severity, verdict.status) == (Severity.SUSPICIOUS, Status.OBSERVED)


class TestFollowUp:
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
        result = decision(observe(ours.message()), Inventory(), grace_s=0)
        assert isinstance(result, NewIssuance)
        alert = attrs.evolve(result.alert, id=9, severity=severity, resolved_at=resolved)
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


def test_a_held_issuance_keeps_its_distinct_copies_only_up_to_a_bound(ca: CA) -> None:
    """Repeated copies are noted once; past MAX_COPIES only a recognised copy is kept."""
    holds = Holds()
    result = decision(observe(ca.issue(["a.example.org"]).message()), Inventory())
    assert isinstance(result, NewIssuance)
    alert = attrs.evolve(result.alert, id=1)
    holds.hold(alert)
    for _ in range(1000):
        assert holds.add_copy(1, alert.facts)
    distinct = [attrs.evolve(alert.facts, sha1=f"{n:040x}") for n in range(2 * MAX_COPIES)]
    for facts in distinct:
        holds.add_copy(1, facts)
    assert len(holds._holds[1].facts) == MAX_COPIES
    holds.add_copy(1, distinct[-1], recognised=True)
    assert holds._holds[1].facts[-1] == distinct[-1]
