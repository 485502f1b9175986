"""The organisation's rules, and the severity ladder that decides an issuance. Pure logic,
no I/O.

Severities climb ``info`` (ours) < ``expected`` (a vendor's, explained by an ``expect``
rule) < ``suspicious`` (unexplained) < ``critical`` (a strong sign of mis-issuance).
:func:`judge` is the ladder, in the contract's order:

1. recognised (inventory, registered key, acknowledgement) -> ``info``;
2. a matched SAN touches a ``protect`` rule's scope (whatever the CA) -> ``critical``;
3. a matched SAN touches a ``restrict`` rule's scope, the CA is known, and none of its CAA
   identifiers is among the rule's ``issuers`` -> ``critical``;
4. CAA forbids the CA for a matched SAN, stably -> ``critical`` (the CAA issue);
5. every matched SAN is explained by an ``expect`` rule sharing a CAA identifier with the
   CA (known) -> ``expected``;
6. otherwise ``suspicious``.

A CA certwatch cannot identify is never the ground for ``critical`` or ``expected``: a
``protect`` rule's ground is the name, not the CA. Rules past ``expires_at`` are ignored.

A scope covers itself and every name below it. A wildcard SAN ``*.x`` is *explained* by an
``expect`` scope when ``x`` is in it (everything the wildcard covers lies inside), and
*touches* a ``protect`` or ``restrict`` scope as it would match a watch entry: when ``x``
is in the scope, or the scope is exactly one label below ``x``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence

import attrs

from certwatch.core.cas import CAIdentity
from certwatch.core.names import WatchIndex

__all__ = [
    "Reason",
    "Rule",
    "RuleKind",
    "RuleRef",
    "Rules",
    "Severity",
    "Verdict",
    "judge",
]


class Severity(enum.StrEnum):
    """The verdict on a matched issuance, from the least to the most alarming."""

    INFO = "info"
    """Recognised as the organisation's own (also a heartbeat of the whole pipeline)."""
    EXPECTED = "expected"
    """Not ours, but explained by an ``expect`` rule: a vendor's certificate."""
    SUSPICIOUS = "suspicious"
    """Neither ours nor explained: a potential hijack."""
    CRITICAL = "critical"
    """A protected name, a forbidden CA, a CAA violation."""
    LOOKALIKE = "lookalike"
    """Not the organisation's names at all: a name imitating one of its brands (outside the
    ladder: decided at once)."""

    @property
    def rank(self) -> int:
        """The ladder's order (``lookalike`` is beside it, ranked with ``suspicious``)."""
        return _RANKS[self]


_RANKS = {
    Severity.INFO: 0,
    Severity.EXPECTED: 1,
    Severity.SUSPICIOUS: 2,
    Severity.CRITICAL: 3,
    Severity.LOOKALIKE: 2,
}


class Reason(enum.StrEnum):
    """Which rung of the ladder decided."""

    RECOGNISED = "recognised"
    PROTECT_RULE = "protect-rule"
    RESTRICT_RULE = "restrict-rule"
    CAA_FORBIDDEN = "caa-forbidden"
    EXPECT_RULE = "expect-rule"
    UNRECOGNISED = "unrecognised"
    LOOKALIKE = "lookalike"


class RuleKind(enum.StrEnum):
    EXPECT = "expect"
    """Issuances by these CAs under this scope are a vendor's: ``expected``."""
    RESTRICT = "restrict"
    """Only these CAs may issue under this scope: any other known CA is ``critical``."""
    PROTECT = "protect"
    """Nobody but the organisation issues under this scope: anything else is ``critical``."""


@attrs.frozen
class RuleRef:
    """A rule as an alert names it (``rule`` in the payload)."""

    id: int
    kind: RuleKind
    scope: str
    note: str

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind.value, "scope": self.scope, "note": self.note}


@attrs.frozen
class Rule:
    """One rule (a row of ``rules``)."""

    kind: RuleKind
    scope: str
    """A normalised watch-entry-like name: it covers itself and every name below it."""
    issuers: tuple[str, ...]
    """CAA identifiers, normalised and sorted; empty for ``protect``."""
    note: str
    created_at: float
    expires_at: float | None = None
    id: int | None = None

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def allows(self, ca: CAIdentity) -> bool:
        """One of the CA's CAA identifiers is among this rule's issuers."""
        return not set(self.issuers).isdisjoint(ca.caa_domains)

    def ref(self) -> RuleRef:
        assert self.id is not None, "only a stored rule decides"
        return RuleRef(self.id, self.kind, self.scope, self.note)


class Rules:
    """Every rule, in memory, indexed by scope per kind: a lookup per matched SAN costs what
    a watch-list match costs, however many rules there are."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._by_id: dict[int, Rule] = {}
        self._scopes = {kind: WatchIndex() for kind in RuleKind}
        self._by_scope: dict[tuple[RuleKind, str], dict[int, Rule]] = {}
        for rule in rules:
            self.add(rule)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Rule]:
        return iter(sorted(self._by_id.values(), key=lambda r: r.id or 0))

    def get(self, rule_id: int) -> Rule | None:
        return self._by_id.get(rule_id)

    def counts(self) -> dict[RuleKind, int]:
        """Rules per kind (every kind, 0 when none)."""
        counts = dict.fromkeys(RuleKind, 0)
        for rule in self._by_id.values():
            counts[rule.kind] += 1
        return counts

    def add(self, rule: Rule) -> None:
        """Add a stored rule (it has an id), or replace the rule with its id."""
        assert rule.id is not None
        self.discard(rule.id)
        self._by_id[rule.id] = rule
        same_scope = self._by_scope.setdefault((rule.kind, rule.scope), {})
        same_scope[rule.id] = rule
        self._scopes[rule.kind].add(rule.scope)

    def discard(self, rule_id: int) -> None:
        rule = self._by_id.pop(rule_id, None)
        if rule is None:
            return
        key = (rule.kind, rule.scope)
        same_scope = self._by_scope[key]
        del same_scope[rule_id]
        if not same_scope:
            del self._by_scope[key]
            self._scopes[rule.kind].discard(rule.scope)

    def _rules(self, kind: RuleKind, scopes: Iterable[str], now: float) -> list[Rule]:
        found = [
            rule
            for scope in scopes
            for rule in self._by_scope.get((kind, scope), {}).values()
            if rule.active(now)
        ]
        return sorted(found, key=lambda r: r.id or 0)

    def touching(self, kind: RuleKind, san: str, now: float) -> list[Rule]:
        """Active ``protect`` or ``restrict`` rules whose scope ``san`` touches, by id."""
        return self._rules(kind, self._scopes[kind].entries_for(san), now)

    def explaining(self, san: str, now: float) -> list[Rule]:
        """Active ``expect`` rules whose scope holds everything ``san`` covers, by id."""
        name = san.removeprefix("*.")
        return self._rules(RuleKind.EXPECT, self._scopes[RuleKind.EXPECT].entries_for(name), now)


@attrs.frozen
class Verdict:
    """What the ladder decided, and why."""

    severity: Severity
    reason: Reason
    rule: RuleRef | None = None
    issuer_ca: CAIdentity | None = None


def judge(
    sans: Sequence[str],
    *,
    recognised: bool,
    rules: Rules,
    ca: CAIdentity | None,
    now: float,
    caa_forbidden: bool = False,
) -> Verdict:
    """The ladder (see the module docstring) for an issuance whose matched SANs are
    ``sans``, issued by ``ca`` (``None``: unknown)."""
    if recognised:
        return Verdict(Severity.INFO, Reason.RECOGNISED, issuer_ca=ca)
    for san in sans:
        protecting = rules.touching(RuleKind.PROTECT, san, now)
        if protecting:
            return Verdict(Severity.CRITICAL, Reason.PROTECT_RULE, protecting[0].ref(), ca)
    if ca is not None:
        for san in sans:
            for rule in rules.touching(RuleKind.RESTRICT, san, now):
                if not rule.allows(ca):
                    return Verdict(Severity.CRITICAL, Reason.RESTRICT_RULE, rule.ref(), ca)
    if caa_forbidden and ca is not None:
        return Verdict(Severity.CRITICAL, Reason.CAA_FORBIDDEN, issuer_ca=ca)
    if ca is not None and sans:
        explained_by = []
        for san in sans:
            fitting = [r for r in rules.explaining(san, now) if r.allows(ca)]
            if not fitting:
                break
            explained_by.append(fitting[0])
        else:
            return Verdict(Severity.EXPECTED, Reason.EXPECT_RULE, explained_by[0].ref(), ca)
    return Verdict(Severity.SUSPICIOUS, Reason.UNRECOGNISED, issuer_ca=ca)
