"""What a matched certificate means: the decision, the grace period, the follow-up.
Pure logic, no I/O.

:func:`decide` turns an observation that matched the watch list into what should happen:
a new alert to store (decided at once, or held for the grace period), or another copy of
an issuance already alerted. :class:`Holds` keeps the held alerts and the facts of every
copy seen during their hold, and says what each becomes. :func:`follow_up` is the
``resolved`` event owed to a suspicious alert that is recognised later.

The service's alerter does the I/O around these (storing, timers, delivery);
``certwatch replay`` calls the same functions on a capture, its clock being the messages'
``seen``, so it decides as the service would, grace period included.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs

from certwatch.core.alerts import Alert, Severity, decided, new_alert, resolved_follow_up
from certwatch.core.identity import CertFacts
from certwatch.core.names import Match
from certwatch.core.observation import Observation
from certwatch.core.recognition import Inventory, Recognition

__all__ = [
    "DEDUPE_CAPACITY",
    "MAX_COPIES",
    "DedupeCache",
    "Holds",
    "KnownIssuance",
    "NewIssuance",
    "decide",
    "follow_up",
]

MAX_COPIES = 64
"""Distinct copies of one held issuance kept for its verdict (a precert and a final
certificate in a few logs make a handful)."""
DEDUPE_CAPACITY = 200_000
"""Issuances remembered in memory; matched certificates are rare, so this is generous."""


@attrs.frozen
class NewIssuance:
    """An issuance not seen before: store its alert (held, or decided at once)."""

    alert: Alert


@attrs.frozen
class KnownIssuance:
    """Another copy of an issuance already alerted (another log, the final certificate)."""

    alert_id: int
    facts: CertFacts
    recognition: Recognition | None
    """What recognises this copy now, if anything."""


def decide(
    observation: Observation,
    match: Match,
    *,
    known: Callable[[str], int | None],
    inventory: Inventory,
    grace_s: float,
    observer: bool,
    now: float,
    event_id: str,
) -> NewIssuance | KnownIssuance:
    """What should happen with a certificate that matched the watch list.

    ``known`` looks an issuance key up among the issuances already alerted. A new issuance
    recognised by the inventory is ``info`` at once; an unrecognised one is held until
    ``now + grace_s`` (decided ``suspicious`` at once when ``grace_s`` is 0).
    """
    facts = observation.facts
    recognition = inventory.recognise(facts)
    existing = known(facts.issuance_key())
    if existing is not None:
        return KnownIssuance(existing, facts, recognition)
    alert = new_alert(observation, match, event_id=event_id, now=now)
    if recognition is not None or grace_s == 0:
        return NewIssuance(decided(alert, recognition, observer=observer, now=now))
    return NewIssuance(attrs.evolve(alert, decide_at=now + grace_s))


def follow_up(
    alert: Alert, recognition: Recognition | None, *, observer: bool, now: float, event_id: str
) -> Alert | None:
    """The ``resolved`` event owed to ``alert`` now that ``recognition`` recognises it, if any:
    only a suspicious alert, once."""
    if recognition is None or alert.severity is not Severity.SUSPICIOUS or alert.resolved_at:
        return None
    return resolved_follow_up(alert, recognition, event_id=event_id, observer=observer, now=now)


@attrs.define
class _Hold:
    alert: Alert
    facts: list[CertFacts]
    """Facts of the first copy and of every copy seen during the hold."""


class Holds:
    """Unrecognised alerts inside their grace period."""

    def __init__(self) -> None:
        self._holds: dict[int, _Hold] = {}
        self._deadlines: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self._holds)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._holds

    def ids(self) -> list[int]:
        return list(self._holds)

    def hold(self, alert: Alert, facts: Iterable[CertFacts] = ()) -> None:
        """Hold a stored alert (it has an id and a ``decide_at``) until its grace ends."""
        assert alert.id is not None
        assert alert.decide_at is not None
        self._holds[alert.id] = _Hold(alert, [alert.facts, *facts])
        heapq.heappush(self._deadlines, (alert.decide_at, alert.id))

    def add_copy(self, alert_id: int, facts: CertFacts, *, recognised: bool = False) -> bool:
        """Note another copy's facts; ``False`` when that alert is not held.

        A copy with the same facts as one already noted is the same to every check, and
        past :data:`MAX_COPIES` distinct ones only a copy that is ``recognised`` now is
        noted: 80,000 copies of one frame must not keep 80,000 certificates in memory."""
        hold = self._holds.get(alert_id)
        if hold is None:
            return False
        if facts in hold.facts or (len(hold.facts) >= MAX_COPIES and not recognised):
            return True
        hold.facts.append(facts)
        return True

    def next_deadline(self) -> float | None:
        """When the earliest hold ends (a hold released early may linger here: harmless)."""
        return self._deadlines[0][0] if self._deadlines else None

    def due(self, now: float) -> list[int]:
        """The held alerts whose grace has ended by ``now``, earliest first."""
        ended = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, alert_id = heapq.heappop(self._deadlines)
            if alert_id in self._holds:
                ended.append(alert_id)
        return ended

    def verdict(
        self,
        alert_id: int,
        inventory: Inventory,
        *,
        observer: bool,
        now: float,
        only_if_recognised: bool = False,
    ) -> Alert | None:
        """The decided alert for a held one, with everything known now: ``info`` if any
        copy is recognised, else ``suspicious``. With ``only_if_recognised``, ``None``
        unless some copy is recognised (the hold goes on). The hold stays until
        :meth:`release`."""
        hold = self._holds.get(alert_id)
        if hold is None:
            return None
        recognition = None
        for facts in hold.facts:
            recognition = inventory.recognise(facts)
            if recognition is not None:
                break
        if recognition is None and only_if_recognised:
            return None
        return decided(hold.alert, recognition, observer=observer, now=now)

    def release(self, alert_id: int) -> None:
        self._holds.pop(alert_id, None)


class DedupeCache:
    """Issuance key -> alert id, oldest first, bounded in size and age."""

    __slots__ = ("_capacity", "_entries")

    def __init__(self, capacity: int = DEDUPE_CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> int | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def add(self, key: str, alert_id: int, stored_at: float) -> None:
        self._entries[key] = (alert_id, stored_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def prune(self, stored_before: float) -> int:
        """Forget issuances whose alert was stored before ``stored_before``; return how many."""
        stale = [k for k, (_, stored) in self._entries.items() if stored < stored_before]
        for key in stale:
            del self._entries[key]
        return len(stale)
