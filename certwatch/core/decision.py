"""What matched certificates mean, and when it is decided: one state machine, no I/O.

:class:`Decisions` is the one place that decides. The service's alerter and ``certwatch
replay`` both drive it the same way (sans-I/O, as h11 drives HTTP): each thing that
happens goes in (a match, the store's answer, the clock, a change of the inventory), and
what comes out is the list of store operations to make (:data:`Action`). The caller makes
them, against PostgreSQL, SQLite or a dict, and reports the answers back::

    match ──> StoreAlert ──stored──> decided at once ........................ (sent)
                                └──> held ──(grace over, or a copy or a registration
                                              recognises it)──> StoreVerdict ─ (sent)
                                          └─(grace over, CAA on)──> CheckCaa ──checked──>
                                              StoreVerdict (unless recognised meanwhile)
    a copy of a sent alert that a registration now recognises ──> Fetch ──fetched──>
        StoreFollowUp (the ``resolved`` event), or StoreVerdict if another replica holds it

An issuance is recognised by everything seen of it: every copy (another log, the final
certificate) noted during its hold counts. What it is then (``info``, ``expected``,
``suspicious``, ``critical``) is the ladder's verdict (:func:`certwatch.core.policy.judge`)
with the rules and CA identities of :class:`Policy` as they are at the decision. The store
keeps one alert per issuance and makes every verdict a conditional update, so what this
machine asks is safe whichever replica asks it. An analyst's acknowledgement decides an
issuance too (:meth:`Decisions.acknowledgement`).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import attrs

from certwatch.core.alerts import (
    ALARMING,
    AckScope,
    Alert,
    Kind,
    Status,
    decided,
    lookalike_alert,
    new_alert,
    resolved_follow_up,
)
from certwatch.core.caa import CaaFinding, CaaVerdict
from certwatch.core.cas import CAIdentities, CAIdentity
from certwatch.core.identity import CertFacts
from certwatch.core.lookalikes import LookalikeHit
from certwatch.core.names import Match
from certwatch.core.observation import Observation
from certwatch.core.policy import Reason, Rule, RuleKind, Rules, Severity, Verdict, judge
from certwatch.core.recognition import Evidence, Inventory, KnownKey, Recognition
from certwatch.errors import Conflict, InputError

__all__ = [
    "DEDUPE_CAPACITY",
    "MAX_COPIES",
    "Action",
    "CheckCaa",
    "Decisions",
    "DedupeCache",
    "Fetch",
    "Holds",
    "Policy",
    "StoreAlert",
    "StoreFollowUp",
    "StoreVerdict",
    "check_acknowledgeable",
    "follow_up",
]

MAX_COPIES = 64
"""Distinct copies of one held issuance kept for its verdict (a precert and a final
certificate in a few logs make a handful)."""
DEDUPE_CAPACITY = 200_000
"""Issuances remembered in memory; matched certificates are rare, so this is generous."""


# --- what the machine asks of its caller ----------------------------------------------------


@attrs.frozen
class StoreAlert:
    """Store this new alert (held, or decided at once); report the answer to
    :meth:`Decisions.stored`."""

    alert: Alert


@attrs.frozen
class StoreVerdict:
    """Store this verdict on a held alert (only if it is still held: a conditional update).
    The stored alert, if any, is to be sent."""

    verdict: Alert


@attrs.frozen
class StoreFollowUp:
    """Store this ``resolved`` event and mark its parent resolved (only if not already).
    The stored event, if any, is to be sent."""

    event: Alert


@attrs.frozen
class CheckCaa:
    """Evaluate CAA for this held alert, whose grace is over and which nothing recognises
    (CAA lookups are I/O, bounded by ``CAA_TIMEOUT_S``); report the finding to
    :meth:`Decisions.caa_checked`. The alert stays held meanwhile: a copy or a
    registration that recognises it still decides it ``info``."""

    alert: Alert
    ca: CAIdentity | None


@attrs.frozen
class Fetch:
    """Read the stored alert ``alert_id``, which ``recognition`` now recognises; report it
    to :meth:`Decisions.fetched`."""

    alert_id: int
    recognition: Recognition


Action = StoreAlert | StoreVerdict | StoreFollowUp | Fetch | CheckCaa


def follow_up(
    alert: Alert, recognition: Recognition | None, *, observer: bool, now: float, event_id: str
) -> Alert | None:
    """The ``resolved`` event owed to ``alert`` now that ``recognition`` recognises it, if any:
    only a suspicious or critical alert, once."""
    if recognition is None or alert.severity not in ALARMING or alert.resolved_at:
        return None
    return resolved_follow_up(alert, recognition, event_id=event_id, observer=observer, now=now)


@attrs.frozen
class Policy:
    """What the ladder decides with besides the inventory: the rules and the CAs known.
    Both are read as they are at each decision (the views change them in place)."""

    rules: Rules = attrs.field(factory=Rules)
    cas: CAIdentities = attrs.field(factory=CAIdentities)
    caa: bool = False
    """Evaluate CAA before deciding an unrecognised issuance (``CAA_CHECK``)."""

    def ca(self, alert: Alert) -> CAIdentity | None:
        return self.cas.find(alert.facts.authority_key_id)

    def verdict(
        self,
        alert: Alert,
        recognition: Recognition | None,
        now: float,
        caa: CaaFinding | None = None,
    ) -> Verdict:
        return judge(
            alert.matched_sans,
            recognised=recognition is not None,
            rules=self.rules,
            ca=self.ca(alert),
            now=now,
            caa_forbidden=caa is not None and caa.verdict is CaaVerdict.FORBIDDEN,
        )


# --- the machine ------------------------------------------------------------------------------


class Decisions:
    """Every decision about matched issuances (see the module docstring).

    ``observer``: no webhook (decided alerts are ``observed``, not queued). ``new_event_id``
    names each new event (a UUID in the service; a counter in a replay).
    """

    def __init__(
        self,
        *,
        grace_s: float,
        observer: bool,
        new_event_id: Callable[[], str],
        policy: Policy | None = None,
        dedupe_capacity: int = DEDUPE_CAPACITY,
    ) -> None:
        self._policy = policy or Policy()
        self._grace_s = grace_s
        self._observer = observer
        self._new_event_id = new_event_id
        self._dedupe = DedupeCache(dedupe_capacity)
        self._holds = Holds()

    # --- state -------------------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Alerts held in memory (this replica's, or all of them on the leader)."""
        return len(self._holds)

    @property
    def remembered(self) -> int:
        """Issuances remembered to suppress duplicates."""
        return len(self._dedupe)

    def remember(self, issuances: Iterable[tuple[str, int, float]]) -> None:
        """Issuances already alerted: (issuance, alert id, when it was stored)."""
        for issuance, alert_id, stored_at in issuances:
            self._dedupe.add(issuance, alert_id, stored_at)

    def forget_before(self, stored_before: float) -> int:
        """Forget issuances whose alert was stored before ``stored_before`` (cleanup)."""
        return self._dedupe.prune(stored_before)

    def take_up(self, held: Iterable[Alert]) -> None:
        """Hold exactly these stored held alerts: those not held yet from now on, and let go
        of those no longer held in the store (the leader, every second on a shared store)."""
        ids = set()
        for alert in held:
            assert alert.id is not None
            ids.add(alert.id)
            if alert.id not in self._holds:
                self._holds.hold(alert)
        for alert_id in self._holds.ids():
            if alert_id not in ids:
                self._holds.release(alert_id)

    def let_go(self) -> None:
        """Hold nothing (the leader role was lost: the new leader takes them up)."""
        for alert_id in self._holds.ids():
            self._holds.release(alert_id)

    def next_deadline(self) -> float | None:
        return self._holds.next_deadline()

    # --- events ------------------------------------------------------------------------------

    def lookalike(
        self, observation: Observation, hits: tuple[LookalikeHit, ...], *, now: float
    ) -> list[Action]:
        """A certificate whose names imitate brands (and none is watched): one ``lookalike``
        alert per issuance, decided at once."""
        if self._dedupe.get(observation.facts.issuance_key()) is not None:
            return []
        alert = lookalike_alert(
            observation, hits, event_id=self._new_event_id(), observer=self._observer, now=now
        )
        return [StoreAlert(alert)]

    def match(
        self, observation: Observation, match: Match, *, inventory: Inventory, now: float
    ) -> list[Action]:
        """A certificate matched the watch list."""
        facts = observation.facts
        recognition = inventory.recognise(facts)
        existing = self._dedupe.get(facts.issuance_key())
        if existing is not None:
            return self._copy(existing, facts, recognition, inventory=inventory, now=now)
        alert = new_alert(observation, match, event_id=self._new_event_id(), now=now)
        if recognition is not None or (self._grace_s == 0 and not self._policy.caa):
            alert = self._decided(alert, recognition, now)
        else:  # held: for the grace period, or (grace 0) only while CAA is evaluated
            alert = attrs.evolve(alert, decide_at=now + self._grace_s)
        return [StoreAlert(alert)]

    def stored(
        self, asked: Alert, stored: Alert, *, inventory: Inventory, now: float, hold: bool
    ) -> list[Action]:
        """The store answered :class:`StoreAlert` ``asked`` with ``stored``: the same alert
        with its id, or the alert another replica stored first for the issuance (then this
        one is another copy of it). ``hold``: this replica runs the hold timer."""
        assert stored.id is not None
        self._dedupe.add(stored.issuance, stored.id, stored.created_at)
        if stored.event_id != asked.event_id:
            recognition = inventory.recognise(asked.facts)
            return self._copy(stored.id, asked.facts, recognition, inventory=inventory, now=now)
        if stored.status is not Status.HELD:
            return []
        due_now = stored.decide_at is not None and stored.decide_at <= now
        if hold or due_now:  # a hold of no time is decided here, without the leader's timer
            self._holds.hold(stored)
        if due_now:
            return self._settle(stored.id, inventory=inventory, now=now)
        return []

    def caa_checked(
        self, alert_id: int, finding: CaaFinding | None, *, inventory: Inventory, now: float
    ) -> list[Action]:
        """:class:`CheckCaa` ended: decide the alert with ``finding`` (``None``: CAA could
        not be evaluated), unless it was decided meanwhile."""
        held = self._holds.get(alert_id)
        if held is None:
            return []
        recognition = self._holds.recognition(alert_id, inventory)
        self._holds.release(alert_id)
        return [StoreVerdict(self._decided(held, recognition, now, caa=finding))]

    def fetched(self, alert: Alert, recognition: Recognition, *, now: float) -> list[Action]:
        """The store answered :class:`Fetch` with the alert: decided ``info`` if it is held
        (by another replica's timer), or followed up if it was sent as suspicious."""
        if alert.status is Status.HELD:
            return [StoreVerdict(self._decided(alert, recognition, now))]
        event = follow_up(
            alert, recognition, observer=self._observer, now=now, event_id=self._new_event_id()
        )
        return [] if event is None else [StoreFollowUp(event)]

    def due(self, now: float, *, inventory: Inventory) -> list[Action]:
        """The clock: held alerts whose grace period has ended are decided."""
        actions: list[Action] = []
        for alert_id in self._holds.due(now):
            actions.extend(self._settle(alert_id, inventory=inventory, now=now))
        return actions

    def end_holds(self, now: float, *, inventory: Inventory) -> list[Action]:
        """Decide every held alert now, whatever its deadline (a replay's capture ended)."""
        actions: list[Action] = []
        for alert_id in self._holds.ids():
            actions.extend(self._settle(alert_id, inventory=inventory, now=now))
        return actions

    def recheck(self, inventory: Inventory, *, now: float) -> list[Action]:
        """The inventory changed: a held alert it now recognises is decided ``info`` at once."""
        actions: list[Action] = []
        for alert_id in self._holds.ids():
            actions.extend(self._settle(alert_id, inventory=inventory, now=now, recognised=True))
        return actions

    def recheck_stored(
        self, alerts: Iterable[Alert], inventory: Inventory, *, now: float
    ) -> list[Action]:
        """The inventory changed: of these stored alerts (held by another replica's timer,
        or sent as suspicious and not resolved), those it now recognises are decided or
        followed up."""
        actions: list[Action] = []
        for alert in alerts:
            if alert.id in self._holds:
                continue
            recognition = inventory.recognise(alert.facts)
            if recognition is not None:
                actions.extend(self.fetched(alert, recognition, now=now))
        return actions

    # --- the steps -----------------------------------------------------------------------------

    def _copy(
        self,
        alert_id: int,
        facts: CertFacts,
        recognition: Recognition | None,
        *,
        inventory: Inventory,
        now: float,
    ) -> list[Action]:
        """Another copy of an issuance already alerted: it may recognise a held alert now,
        or be owed a follow-up."""
        recognised = recognition is not None
        if self._holds.add_copy(alert_id, facts, recognised=recognised):
            if not recognised:
                return []
            return self._settle(alert_id, inventory=inventory, now=now, recognised=True)
        if recognition is None:
            return []
        return [Fetch(alert_id, recognition)]

    def _settle(
        self, alert_id: int, *, inventory: Inventory, now: float, recognised: bool = False
    ) -> list[Action]:
        """Decide a held alert with everything known now (only if something recognises it,
        with ``recognised``: the hold goes on otherwise)."""
        held = self._holds.get(alert_id)
        if held is None:
            return []
        recognition = self._holds.recognition(alert_id, inventory)
        if recognition is None and recognised:
            return []
        if recognition is None and self._policy.caa:
            if not self._holds.start_check(alert_id):
                return []  # its CAA is being evaluated already
            return [CheckCaa(held, self._policy.ca(held))]
        self._holds.release(alert_id)
        return [StoreVerdict(self._decided(held, recognition, now))]

    def _decided(
        self,
        alert: Alert,
        recognition: Recognition | None,
        now: float,
        caa: CaaFinding | None = None,
    ) -> Alert:
        verdict = self._policy.verdict(alert, recognition, now, caa)
        caa = None if recognition is not None else caa  # ours: not evaluated
        return decided(alert, verdict, recognition, observer=self._observer, now=now, caa=caa)

    # --- acknowledgements ----------------------------------------------------------------------

    def acknowledgement(
        self, alert: Alert, scope: AckScope, note: str, *, now: float
    ) -> Callable[[Alert, Sequence[Rule]], Alert]:
        """How an analyst's acknowledgement of ``alert`` decides it: a function of the alert
        as the store holds it (read in the acknowledgement's transaction) and the rules the
        acknowledgement stored, giving what to store: the verdict on a held alert (``info``;
        ``expected`` for ``issuer``), or the ``resolved`` follow-up of a sent one. Raises
        :class:`Conflict` for an alert it cannot decide."""
        check_acknowledgeable(alert)
        observer, event_id = self._observer, self._new_event_id()

        def outcome(current: Alert, rules: Sequence[Rule]) -> Alert:
            check_acknowledgeable(current)
            recognition = Recognition(Evidence.ACKNOWLEDGED, note, scope.value)
            if scope is AckScope.ISSUER:
                verdict = Verdict(
                    Severity.EXPECTED, Reason.EXPECT_RULE, rules[0].ref(), current.issuer_ca
                )
            else:
                verdict = Verdict(Severity.INFO, Reason.RECOGNISED, issuer_ca=current.issuer_ca)
            marked = attrs.evolve(
                current, acknowledged_at=now, acknowledged_scope=scope, acknowledged_note=note
            )
            if current.status is Status.HELD:
                ca = self._policy.cas.find(current.facts.authority_key_id)
                verdict = attrs.evolve(verdict, issuer_ca=ca)
                return decided(marked, verdict, recognition, observer=observer, now=now)
            return resolved_follow_up(
                marked, recognition, event_id=event_id, observer=observer, now=now, verdict=verdict
            )

        return outcome

    def effects(
        self, alert: Alert, scope: AckScope, note: str, *, now: float
    ) -> tuple[list[Rule], KnownKey | None]:
        """What acknowledging ``alert`` with ``scope`` creates: for ``key``, the certificate's
        public key registered for every name on the certificate; for ``issuer``, an
        ``expect`` rule per matched SAN (``*.x`` -> ``x``) naming the CA's CAA identifiers.
        :class:`InputError` (a 422 naming ``scope``) when the alert lacks what the scope
        needs: the key of a certificate seen without its DER, an unknown CA."""
        if scope is AckScope.KEY:
            if alert.facts.spki_sha256 is None:
                raise InputError(
                    "invalid request body",
                    [("scope", "certwatch never saw this certificate's key (it came without "
                               "its DER): acknowledge the certificate instead")],
                )  # fmt: skip
            names = tuple(sorted(alert.facts.names))
            return [], KnownKey(alert.facts.spki_sha256, names, note, now)
        if scope is AckScope.ISSUER:
            ca = self._policy.cas.find(alert.facts.authority_key_id)
            if ca is None:
                raise InputError(
                    "invalid request body",
                    [("scope", "the certificate's CA is unknown to certwatch (add it with "
                               "CA_IDENTITIES_FILE), so no rule can name it")],
                )  # fmt: skip
            scopes = sorted({san.removeprefix("*.") for san in alert.matched_sans})
            rules = [
                Rule(RuleKind.EXPECT, scope_, ca.caa_domains, note, created_at=now)
                for scope_ in scopes
            ]
            return rules, None
        return [], None

    def acknowledged(self, alert_id: int) -> None:
        """The acknowledgement of ``alert_id`` was stored: its hold, if any, is over."""
        self._holds.release(alert_id)


# --- its parts --------------------------------------------------------------------------------


@attrs.define
class _Hold:
    alert: Alert
    facts: list[CertFacts]
    """Facts of the first copy and of every distinct copy seen during the hold."""
    checking: bool = False
    """Its grace is over and its CAA is being evaluated."""


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

    def copies(self, alert_id: int) -> int:
        """How many distinct copies of the held alert are noted (the first included)."""
        return len(self._holds[alert_id].facts)

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

    def start_check(self, alert_id: int) -> bool:
        """Mark the held alert's CAA as being evaluated; ``False`` if it already was."""
        hold = self._holds[alert_id]
        if hold.checking:
            return False
        hold.checking = True
        return True

    def get(self, alert_id: int) -> Alert | None:
        """The held alert, as stored when it was held."""
        hold = self._holds.get(alert_id)
        return None if hold is None else hold.alert

    def recognition(self, alert_id: int, inventory: Inventory) -> Recognition | None:
        """What recognises the held issuance now, by any of its copies; ``None`` if nothing
        does (or it is not held)."""
        hold = self._holds.get(alert_id)
        if hold is None:
            return None
        for facts in hold.facts:
            recognition = inventory.recognise(facts)
            if recognition is not None:
                return recognition
        return None

    def release(self, alert_id: int) -> None:
        self._holds.pop(alert_id, None)


def check_acknowledgeable(alert: Alert) -> None:
    """Raise :class:`Conflict` unless an acknowledgement can decide ``alert``: an
    issuance's alert, not acknowledged before, held or sent as suspicious or critical and
    not resolved since."""
    if alert.kind is not Kind.ALERT:
        raise Conflict("a follow-up event: acknowledge the alert it follows up")
    if alert.acknowledged_at is not None:
        raise Conflict(f"acknowledged before ({alert.acknowledged_scope})")
    if alert.status is Status.HELD:
        return
    if alert.severity not in ALARMING:
        raise Conflict(f"the alert is {alert.severity} already")
    if alert.resolved_at is not None:
        raise Conflict("resolved already (recognised since it was sent)")


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
