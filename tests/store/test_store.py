"""What every store does, on both databases: SQLite files and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import attrs
import pytest
import trio

from certwatch.core.alerts import AckScope, Alert, Kind, Severity, Status
from certwatch.core.identity import CertFacts
from certwatch.core.lookalikes import Brand
from certwatch.core.policy import Rule, RuleKind
from certwatch.core.recognition import Evidence, InventoryCert, KnownKey, Recognition
from certwatch.errors import Conflict
from certwatch.store import Claim, SavedPosition, SQLiteStore, Store
from tests.support.alerts import pending_alert

Opener = Callable[[], Awaitable[Store]]
Outcome = Callable[[Alert, Sequence[Rule]], Alert]


def cert(n: int, not_after: int = 2_000_000_000) -> InventoryCert:
    return InventoryCert(
        fingerprint_sha1=f"{n:040x}", sans=("a.example.org",), not_before=1, not_after=not_after
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a store on a fresh database of each kind (the same one on every call)."""
    if request.param == "sqlite":
        return lambda: SQLiteStore.open(tmp_path / "cw.db")
    url = request.getfixturevalue("pg_url")
    from certwatch.store.postgres import PostgresStore

    return lambda: PostgresStore.open(url)


@pytest.fixture
async def store(opener: Opener) -> AsyncIterator[Store]:
    s = await opener()
    yield s
    s.close()


class TestInventory:
    async def test_upsert_returns_the_replaced_row(self, store: Store) -> None:
        """Replacing a cert returns the previous row, so memory can drop its old keys."""
        assert await store.upsert_cert(cert(1)) is None
        replaced = await store.upsert_cert(cert(1, not_after=2_100_000_000))
        assert replaced == cert(1)
        assert await store.certs_in([f"{1:040x}", f"{2:040x}"]) == [
            cert(1, not_after=2_100_000_000)
        ]

    async def test_prune_returns_deleted_rows_in_bounded_batches(self, store: Store) -> None:
        """prune_certs deletes at most one batch per call and returns what it deleted."""
        for n in range(600):
            await store.upsert_cert(cert(n, not_after=100))
        await store.upsert_cert(cert(9999))
        first = await store.prune_certs(1000)
        second = await store.prune_certs(1000)
        assert (len(first), len(second)) == (500, 100)
        assert [c.fingerprint_sha1 for c in await store.list_certs(1000, 0)] == [f"{9999:040x}"]

    async def test_domains_and_keys_round_trip(self, store: Store) -> None:
        """Entries and keys are stored, listed, found by value, and deleted."""
        assert await store.upsert_domain("example.org", "prod", 1.0) is True
        assert await store.upsert_domain("example.org", "note", 2.0) is False
        assert await store.domains_in(["example.org", "example.net"]) == ["example.org"]
        key = KnownKey("ab" * 32, ("a.example.org",), "lb", 3.0)
        assert await store.upsert_key(key) is True
        assert await store.keys_in(["ab" * 32]) == [key]
        assert await store.delete_key("ab" * 32) is True
        assert await store.delete_domain("example.org") is True
        assert await store.list_domains() == []


class TestAlerts:
    async def test_an_alert_comes_back_as_it_was_stored(self, store: Store) -> None:
        """Every field of an alert, typed values included, survives the database."""
        recognition = Recognition(Evidence.TBS, "lb:a", "ab" * 20)
        alert = attrs.evolve(
            pending_alert(7, 1_800_000_000.0),
            facts=CertFacts(
                names=frozenset({"a.example.org", "*.example.org"}),
                subject_cn="a.example.org",
                sha1="cd" * 20,
                authority_key_id="ef" * 20,
                serial=2**159 + 5,
                issuer="/C=US/CN=ETS R1",
                tbs_sha256="01" * 32,
            ),
            recognised_by=recognition,
            resolved_by=recognition,
            resolved_at=1_800_000_100.0,
            last_error="HTTP 503",
        )
        stored = await store.insert_alert(alert)
        loaded = await store.get_alert(stored.id or 0)
        assert loaded == stored
        assert loaded is not None
        assert loaded.severity is Severity.SUSPICIOUS
        assert loaded.facts.serial == 2**159 + 5

    async def test_an_issuance_has_one_alert(self, store: Store) -> None:
        """A second alert of one issuance gets the stored one back; a follow-up is stored beside."""
        # Another replica won the race.
        first = await store.insert_alert(pending_alert(1, 1.0))
        rival = attrs.evolve(pending_alert(1, 2.0), event_id="rival")
        again = await store.insert_alert(rival)
        assert (again.id, again.event_id) == (first.id, first.event_id)
        follow_up = attrs.evolve(
            rival, kind=Kind.RESOLVED, event_id="follow-up", parent_id=first.id
        )
        stored = await store.resolve(follow_up)
        assert stored is not None
        assert stored.id != first.id
        assert await store.resolve(attrs.evolve(follow_up, event_id="again")) is None

    async def test_claims_give_an_alert_to_one_replica_at_a_time(self, store: Store) -> None:
        """A claimed alert is not claimed again until it expires or the attempt is recorded."""
        # The claimer may renew its own claim.
        stored = await store.insert_alert(pending_alert(1, 100.0))
        assert stored.id is not None
        [mine] = await store.claim_due(100.0, 10, claimer="a", until=130.0)
        assert mine.id == stored.id
        assert await store.claim_due(101.0, 10, claimer="b", until=131.0) == []
        assert await store.claim(stored.id, 101.0, claimer="b", until=131.0) == Claim(
            None, lost=True
        )
        renewed = await store.claim(stored.id, 101.0, claimer="a", until=140.0)
        assert renewed.alert is not None
        assert await store.next_due_at() == 140.0
        [taken] = await store.claim_due(141.0, 10, claimer="b", until=170.0)  # a's expired
        assert taken.id == stored.id
        await store.record_attempt(stored.id, status=Status.PENDING, error="HTTP 500", now=150.0,
                                   next_attempt_at=151.0)  # fmt: skip
        [again] = await store.claim_due(151.0, 10, claimer="a", until=180.0)  # released
        assert again.attempts == 1
        await store.record_attempt(stored.id, status=Status.DELIVERED, error=None, now=160.0)
        assert await store.claim(stored.id, 161.0, claimer="b", until=190.0) == Claim(None)

    async def test_concurrent_claims_never_share_an_alert(self, store: Store) -> None:
        """Claimers racing for 40 due alerts take each exactly once."""
        for n in range(40):
            await store.insert_alert(pending_alert(n, 10.0))
        taken: dict[str, list[int]] = {}

        async def claimer(name: str) -> None:
            while batch := await store.claim_due(20.0, 3, claimer=name, until=99.0):
                taken.setdefault(name, []).extend(a.id or 0 for a in batch)

        async with trio.open_nursery() as nursery:
            for name in "abcd":
                nursery.start_soon(claimer, name)
        ids = [i for batch in taken.values() for i in batch]
        assert sorted(ids) == sorted(set(ids))
        assert len(ids) == 40

    async def test_held_alerts_are_decided_once(self, store: Store) -> None:
        """decide() stores a verdict on a held alert once; a second verdict finds none."""
        held = attrs.evolve(pending_alert(1, 1.0), status=Status.HELD, severity=None,
                            decide_at=61.0)  # fmt: skip
        stored = await store.insert_alert(held)
        assert [a.id for a in await store.held_alerts()] == [stored.id]
        verdict = attrs.evolve(stored, status=Status.PENDING, severity=Severity.INFO)
        assert await store.decide(verdict) is not None
        assert await store.decide(verdict) is None
        assert await store.held_alerts() == []


class TestChanges:
    async def test_every_change_to_the_views_tables_is_logged(self, store: Store) -> None:
        """Changes to entries, certs and keys are logged in order, with the row as it was before."""
        start = await store.last_change()
        await store.upsert_domain("example.org", "", 1.0)
        await store.upsert_cert(cert(1))
        await store.upsert_cert(cert(1, not_after=2_100_000_000))
        await store.delete_cert(f"{1:040x}")
        await store.upsert_key(KnownKey("ab" * 32, ("a.example.org",)))
        changes = await store.changes_since(start)
        assert [(c.kind, c.key) for c in changes] == [
            ("domain", "example.org"),
            ("cert", f"{1:040x}"),
            ("cert", f"{1:040x}"),
            ("cert", f"{1:040x}"),
            ("key", "ab" * 32),
        ]
        assert changes[1].old is None
        assert changes[2].old is not None
        assert changes[2].old["not_after"] == 2_000_000_000
        assert changes[3].old is not None
        assert changes[3].old["not_after"] == 2_100_000_000
        assert [c.id for c in changes] == sorted(c.id for c in changes)
        assert await store.last_change() == changes[-1].id
        assert await store.changes_since(changes[-1].id) == []

    async def test_positions_are_saved_and_replaced(self, store: Store) -> None:
        """CT log positions round-trip, a later save replacing the earlier."""
        one = SavedPosition("https://log.example", "tiled", 10, 20, ((11, 19),), 1.0)
        await store.save_log_positions([one])
        await store.save_log_positions([attrs.evolve(one, position=20, gaps=())])
        assert await store.log_positions() == [attrs.evolve(one, position=20, gaps=())]


def a_rule(scope: str = "status.example.org", kind: RuleKind = RuleKind.EXPECT) -> Rule:
    issuers = () if kind is RuleKind.PROTECT else ("letsencrypt.org", "pki.goog")
    return Rule(kind, scope, issuers, "Statuspage", 10.0, 2_000_000_000.0)


class TestRules:
    async def test_rules_round_trip_with_their_ids(self, store: Store) -> None:
        """A rule is stored with every field, gets an id, and is listed, found and deleted."""
        first = await store.insert_rule(a_rule())
        second = await store.insert_rule(a_rule("login.example.org", RuleKind.PROTECT))
        assert first.id is not None
        assert second.id is not None
        assert second.id > first.id
        assert first == attrs.evolve(a_rule(), id=first.id)
        assert await store.list_rules() == [first, second]
        assert await store.rules_in([second.id, 999]) == [second]
        assert await store.delete_rule(first.id)
        assert not await store.delete_rule(first.id)
        assert await store.list_rules() == [second]

    async def test_rule_changes_are_logged_for_the_other_replicas(self, store: Store) -> None:
        """Adding and deleting a rule each write a change the views follow, by id."""
        start = await store.last_change()
        rule = await store.insert_rule(a_rule())
        assert rule.id is not None
        await store.delete_rule(rule.id)
        changes = await store.changes_since(start)
        assert [(c.kind, c.key) for c in changes] == [("rule", str(rule.id))] * 2
        assert changes[0].old is None
        assert changes[1].old is not None


def acknowledging(note: str, scope: AckScope = AckScope.CERTIFICATE) -> Outcome:
    """An outcome as the decision machine makes them: a verdict on the alert."""

    def outcome(current: Alert, rules: Sequence[Rule]) -> Alert:
        if current.acknowledged_at is not None:
            raise Conflict("acknowledged before")
        return attrs.evolve(
            current, severity=Severity.EXPECTED, status=Status.PENDING,
            rule=rules[0].ref() if rules else None,
            acknowledged_at=50.0, acknowledged_scope=scope, acknowledged_note=note,
        )  # fmt: skip

    return outcome


class TestAcknowledge:
    async def held(self, store: Store) -> Alert:
        alert = attrs.evolve(pending_alert(1, 10.0), status=Status.HELD, severity=None,
                             decide_at=70.0)  # fmt: skip
        return await store.insert_alert(alert)

    async def test_rules_key_and_verdict_are_stored_together(self, store: Store) -> None:
        """One transaction: the rule, the key (its names merged), the decided alert."""
        alert = await self.held(store)
        assert alert.id is not None
        await store.upsert_key(KnownKey("cd" * 32, ("old.example.org",), "lb", 1.0))
        key = KnownKey("cd" * 32, ("b1.example.org",), "ack", 50.0)
        done = await store.acknowledge(alert.id, acknowledging("ok", AckScope.ISSUER),
                                       [a_rule()], key)  # fmt: skip
        assert done is not None
        [rule] = done.rules
        assert rule.id is not None
        assert (done.alert.status, done.alert.severity) == (Status.PENDING, Severity.EXPECTED)
        assert done.alert.rule == rule.ref()
        assert done.key == KnownKey("cd" * 32, ("b1.example.org", "old.example.org"), "ack", 50.0)
        stored = await store.get_alert(alert.id)
        assert stored == done.alert
        assert (stored.acknowledged_scope, stored.acknowledged_note) == (AckScope.ISSUER, "ok")
        assert await store.list_rules() == [rule]
        assert await store.keys_in(["cd" * 32]) == [done.key]

    async def test_a_conflict_stores_nothing(self, store: Store) -> None:
        """A second acknowledgement is refused, and its rule and key are not stored."""
        alert = await self.held(store)
        assert alert.id is not None
        assert await store.acknowledge(alert.id, acknowledging("first"), [], None) is not None
        with pytest.raises(Conflict):
            await store.acknowledge(alert.id, acknowledging("second"), [a_rule()],
                                    KnownKey("ef" * 32, ("b1.example.org",)))  # fmt: skip
        assert await store.list_rules() == []
        assert await store.keys_in(["ef" * 32]) == []
        stored = await store.get_alert(alert.id)
        assert stored is not None
        assert stored.acknowledged_note == "first"

    async def test_a_sent_alert_is_resolved_by_its_follow_up(self, store: Store) -> None:
        """Acknowledging a sent alert stores the follow-up and marks the alert resolved."""
        alert = await store.insert_alert(pending_alert(2, 10.0))
        assert alert.id is not None

        def follow(current: Alert, rules: Sequence[Rule]) -> Alert:
            return attrs.evolve(
                current, id=None, event_id="ack-1", kind=Kind.RESOLVED, parent_id=current.id,
                severity=Severity.INFO, created_at=50.0, resolved_at=50.0, acknowledged_at=50.0,
                acknowledged_scope=AckScope.CERTIFICATE, acknowledged_note="",
                resolved_by=Recognition(Evidence.ACKNOWLEDGED, "", "certificate"),
            )  # fmt: skip

        done = await store.acknowledge(alert.id, follow, [], None)
        assert done is not None
        assert (done.alert.kind, done.alert.parent_id) == (Kind.RESOLVED, alert.id)
        parent = await store.get_alert(alert.id)
        assert parent is not None
        assert parent.resolved_at == 50.0
        assert parent.acknowledged_scope is AckScope.CERTIFICATE

    async def test_an_unknown_alert_is_none(self, store: Store) -> None:
        """No such alert: nothing stored, None (a 404)."""
        assert await store.acknowledge(404, acknowledging(""), [a_rule()], None) is None
        assert await store.list_rules() == []


class TestCaaHistory:
    async def test_an_rrset_is_dated_from_when_it_was_first_seen_unchanged(
        self, store: Store
    ) -> None:
        """Seen again: its first sighting; changed: from the change; back: from its return."""
        a, b = ['0 issue "letsencrypt.org"'], ['0 issue "pki.goog"']
        assert await store.observe_caa("example.org", a, 10.0) == 10.0
        assert await store.observe_caa("example.org", a, 20.0) == 10.0
        assert await store.observe_caa("example.org", b, 30.0) == 30.0
        assert await store.observe_caa("example.org", b, 40.0) == 30.0
        assert await store.observe_caa("example.org", a, 50.0) == 50.0  # not 10: it changed
        assert await store.observe_caa("other.example", b, 60.0) == 60.0  # per owner

    async def test_old_rrsets_are_pruned(self, store: Store) -> None:
        """RRsets last seen before the cut-off are deleted; the rest keep their dates."""
        await store.observe_caa("old.example", ['0 issue ";"'], 10.0)
        await store.observe_caa("new.example", ['0 issue ";"'], 10.0)
        await store.observe_caa("new.example", ['0 issue ";"'], 100.0)
        assert await store.prune_caa(50.0) == 1
        assert await store.observe_caa("new.example", ['0 issue ";"'], 110.0) == 10.0
        assert await store.observe_caa("old.example", ['0 issue ";"'], 120.0) == 120.0

    async def test_inventory_names_are_distinct_and_bounded(self, store: Store) -> None:
        """The names on the inventory's certificates, wildcards as their base, at most N."""
        await store.upsert_cert(
            InventoryCert(f"{1:040x}", ("*.a.example.org", "a.example.org"), 1, 2)
        )
        await store.upsert_cert(InventoryCert(f"{2:040x}", ("b.example.org",), 1, 2))
        assert sorted(await store.inventory_names(10)) == ["a.example.org", "b.example.org"]
        assert len(await store.inventory_names(1)) == 1


class TestBrands:
    async def test_brands_round_trip_keep_their_date_and_are_logged(self, store: Store) -> None:
        """Added, updated (keeping when it was added), listed, deleted; each change logged."""
        start = await store.last_change()
        first, created = await store.upsert_brand(Brand("ethereum.org", "ethereum", "", (), 1.0))
        again, updated = await store.upsert_brand(
            Brand("ethereum.org", "ethereum", "ours", ("ethereum.foundation",), 9.0)
        )
        assert (created, updated) == (True, False)
        assert again == Brand("ethereum.org", "ethereum", "ours", ("ethereum.foundation",), 1.0)
        assert await store.list_brands() == [again]
        assert await store.brands_in(["ethereum.org", "other.org"]) == [again]
        assert await store.delete_brand("ethereum.org")
        assert not await store.delete_brand("ethereum.org")
        changes = await store.changes_since(start)
        assert [(c.kind, c.key) for c in changes] == [("brand", "ethereum.org")] * 3
        assert first.added_at == 1.0
