"""The ``alerts`` table: alerts, their decisions, and the outbox (claims and attempts)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from certwatch.core.alerts import Alert, Kind, Severity, Status
from certwatch.core.policy import Rule
from certwatch.core.recognition import KnownKey
from certwatch.errors import Conflict
from certwatch.store.interface import PRUNE_BATCH, Acknowledged, Claim, OutboxStats
from certwatch.store.queries import Connection, Dialect, Row, insert_sql, inventory, loads, rules
from certwatch.store.rows import alert_rows

__all__ = [
    "acknowledge",
    "claim",
    "claim_due",
    "decide",
    "get",
    "held",
    "insert",
    "listed",
    "next_due_at",
    "outbox_stats",
    "prune",
    "recent_issuances",
    "record_attempt",
    "release_claims",
    "requeue",
    "resolve",
    "unresolved_suspicious",
]


def _row(alert: Alert) -> dict[str, Any]:
    row = alert_rows().values(alert)
    row["fingerprint"] = alert.cert.fingerprint_sha1
    return row


def _load(row: Row) -> Alert:
    return alert_rows().load(row)


# --- decisions --------------------------------------------------------------------------------


def insert(conn: Connection, alert: Alert) -> Alert:
    """Store ``alert``, or find the alert its issuance already has (one per issuance)."""
    row = _row(alert)
    stored = conn.execute(
        insert_sql(
            "alerts",
            list(row),
            "ON CONFLICT (issuance) WHERE kind = 'alert' DO NOTHING RETURNING id",
        ),
        tuple(row.values()),
    ).fetchone()
    if stored is not None:
        return attrs.evolve(alert, id=stored["id"])
    existing = conn.execute(
        "SELECT * FROM alerts WHERE issuance = ? AND kind = 'alert'", (alert.issuance,)
    ).fetchone()
    return _load(existing)


def get(conn: Connection, alert_id: int) -> Alert | None:
    row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    return None if row is None else _load(row)


_VERDICT = (
    "severity", "reason", "rule", "issuer_ca", "caa", "status", "recognised_by",
    "next_attempt_at", "queued_at", "acknowledged_at", "acknowledged_scope",
    "acknowledged_note",
)  # fmt: skip
"""The columns a verdict on a held alert sets."""


def decide(conn: Connection, verdict: Alert) -> Alert | None:
    """Store the verdict on a held alert; ``None`` when it was not held any more."""
    assert verdict.id is not None
    columns = alert_rows().values(verdict)
    row = conn.execute(
        f"UPDATE alerts SET {', '.join(f'{name} = ?' for name in _VERDICT)} "  # noqa: S608
        "WHERE id = ? AND status = ? RETURNING *",
        (*(columns[name] for name in _VERDICT), verdict.id, Status.HELD.value),
    ).fetchone()
    return None if row is None else _load(row)


def resolve(conn: Connection, follow_up: Alert) -> Alert | None:
    """Mark the follow-up's parent resolved and store the follow-up; ``None`` when the parent
    was already resolved."""
    assert follow_up.parent_id is not None
    resolved_by = alert_rows().values(follow_up)["resolved_by"]
    cur = conn.execute(
        "UPDATE alerts SET resolved_at = ?, resolved_by = ? WHERE id = ? AND resolved_at IS NULL",
        (follow_up.created_at, resolved_by, follow_up.parent_id),
    )
    if not cur.rowcount:
        return None
    return insert(conn, follow_up)


def held(conn: Connection) -> list[Alert]:
    rows = conn.execute("SELECT * FROM alerts WHERE status = ? ORDER BY id", (Status.HELD.value,))
    return [_load(r) for r in rows]


def unresolved_suspicious(conn: Connection, since: float) -> list[Alert]:
    """Alerts sent as ``suspicious`` or ``critical`` and not resolved since."""
    rows = conn.execute(
        "SELECT * FROM alerts WHERE kind = 'alert' AND severity IN (?, ?) "
        "AND resolved_at IS NULL AND created_at >= ? ORDER BY id",
        (Severity.SUSPICIOUS.value, Severity.CRITICAL.value, since),
    )
    return [_load(r) for r in rows]


def recent_issuances(conn: Connection, since: float) -> list[tuple[str, int, float]]:
    rows = conn.execute(
        "SELECT issuance, id, created_at FROM alerts WHERE kind = 'alert' AND created_at >= ? "
        "ORDER BY created_at",
        (since,),
    )
    return [(r["issuance"], r["id"], r["created_at"]) for r in rows]


# --- the API ----------------------------------------------------------------------------------


def listed(
    conn: Connection,
    since: float | None,
    limit: int,
    severity: Severity | None,
    status: Status | None,
    delivered: bool | None,
) -> list[Alert]:
    """Newest first, filtered."""
    clauses: list[str] = []
    params: list[Any] = []
    if delivered is not None:
        clauses.append("status = ?" if delivered else "status != ?")
        params.append(Status.DELIVERED.value)
    if since is not None:
        clauses.append("seen_at >= ?")
        params.append(since)
    if severity is not None:
        clauses.append("severity = ?")
        params.append(severity.value)
    if status is not None:
        clauses.append("status = ?")
        params.append(status.value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT * FROM alerts {where} ORDER BY seen_at DESC, id DESC LIMIT ?",  # noqa: S608
        (*params, limit),
    )
    return [_load(r) for r in rows]


def requeue(conn: Connection, alert_id: int | None, now: float) -> int:
    """Queue one alert (or, with ``None``, every failed one) for delivery again."""
    if alert_id is None:
        cur = conn.execute(
            "UPDATE alerts SET status = ?, next_attempt_at = ?, queued_at = ?, "
            "claimed_by = NULL, claim_until = NULL WHERE status = ?",
            (Status.PENDING.value, now, now, Status.FAILED.value),
        )
    else:
        again = (Status.FAILED.value, Status.PENDING.value, Status.DELIVERED.value)
        cur = conn.execute(
            "UPDATE alerts SET status = ?, next_attempt_at = ?, queued_at = ?, "
            "claimed_by = NULL, claim_until = NULL WHERE id = ? AND status IN (?, ?, ?)",
            (Status.PENDING.value, now, now, alert_id, *again),
        )
    return int(cur.rowcount)


def prune(conn: Connection, created_before: float) -> int:
    """Delete at most ``PRUNE_BATCH`` settled alerts stored before ``created_before``."""
    cur = conn.execute(
        "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE created_at < ? "
        "AND status IN (?, ?) ORDER BY id LIMIT ?)",
        (created_before, Status.DELIVERED.value, Status.OBSERVED.value, PRUNE_BATCH),
    )
    return int(cur.rowcount)


# --- the outbox -------------------------------------------------------------------------------


def claim_due(
    conn: Connection, dialect: Dialect, now: float, limit: int, claimer: str, until: float
) -> list[Alert]:
    """Claim up to ``limit`` pending alerts that are due and not claimed by anyone else (or
    whose claim expired) for ``claimer`` until ``until``; oldest first."""
    sql = (  # the dialect's locking clause, no input
        "UPDATE alerts SET claimed_by = ?, claim_until = ? WHERE id IN ("  # noqa: S608
        "SELECT id FROM alerts WHERE status = ? AND next_attempt_at <= ? "
        "AND (claim_until IS NULL OR claim_until < ?) "
        f"ORDER BY next_attempt_at, id LIMIT ?{dialect.lock_rows}) RETURNING *"
    )
    rows = conn.execute(sql, (claimer, until, Status.PENDING.value, now, now, limit)).fetchall()
    return sorted((_load(r) for r in rows), key=lambda a: (a.next_attempt_at, a.id))


def claim(conn: Connection, alert_id: int, now: float, claimer: str, until: float) -> Claim:
    """Claim one pending alert (due or not) for ``claimer`` until ``until``, unless someone
    else holds an unexpired claim on it (then the claim is lost)."""
    row = conn.execute(
        "UPDATE alerts SET claimed_by = ?, claim_until = ? WHERE id = ? AND status = ? "
        "AND (claim_until IS NULL OR claim_until < ? OR claimed_by = ?) RETURNING *",
        (claimer, until, alert_id, Status.PENDING.value, now, claimer),
    ).fetchone()
    if row is not None:
        return Claim(_load(row))
    held = conn.execute(
        "SELECT 1 AS held FROM alerts WHERE id = ? AND status = ? AND claim_until >= ?",
        (alert_id, Status.PENDING.value, now),
    ).fetchone()
    return Claim(None, lost=held is not None)


def release_claims(conn: Connection) -> int:
    """Release every claim (one process owns the database: at its start, all were its own)."""
    cur = conn.execute(
        "UPDATE alerts SET claimed_by = NULL, claim_until = NULL WHERE claimed_by IS NOT NULL"
    )
    return int(cur.rowcount)


def next_due_at(conn: Connection) -> float | None:
    """When the next pending alert can be claimed (due, and any claim expired)."""
    row = conn.execute(
        "SELECT MIN(CASE WHEN claim_until > next_attempt_at THEN claim_until "
        "ELSE next_attempt_at END) AS due FROM alerts WHERE status = ?",
        (Status.PENDING.value,),
    ).fetchone()
    return None if row["due"] is None else float(row["due"])


def record_attempt(
    conn: Connection,
    alert_id: int,
    status: Status,
    error: str | None,
    now: float,
    next_attempt_at: float | None,
) -> None:
    """Record one attempt at a pending alert: its next ``status`` (``pending`` again, with
    ``next_attempt_at``; ``delivered``; or ``failed``), and release its claim."""
    assert status in (Status.PENDING, Status.DELIVERED, Status.FAILED), status
    conn.execute(
        "UPDATE alerts SET attempts = attempts + 1, status = ?, last_error = ?, "
        "next_attempt_at = ?, delivered_at = ?, claimed_by = NULL, claim_until = NULL "
        "WHERE id = ? AND status = ?",
        (
            status.value,
            error,
            next_attempt_at if status is Status.PENDING else None,
            now if status is Status.DELIVERED else None,
            alert_id,
            Status.PENDING.value,
        ),
    )


def outbox_stats(conn: Connection) -> OutboxStats:
    row = conn.execute(
        "SELECT COUNT(*) AS pending, MIN(queued_at) AS oldest FROM alerts WHERE status = ?",
        (Status.PENDING.value,),
    ).fetchone()
    failed = conn.execute(
        "SELECT COUNT(*) AS failed FROM alerts WHERE status = ?", (Status.FAILED.value,)
    ).fetchone()
    return OutboxStats(
        pending=int(row["pending"]), failed=int(failed["failed"]), oldest_pending_at=row["oldest"]
    )


# --- acknowledgements -------------------------------------------------------------------------


def acknowledge(
    conn: Connection,
    alert_id: int,
    outcome: Callable[[Alert, Sequence[Rule]], Alert],
    new_rules: Sequence[Rule],
    key: KnownKey | None,
) -> Acknowledged | None:
    """An analyst's acknowledgement, in one transaction: the rules and the key it creates,
    the acknowledgement on the alert, and ``outcome``'s verdict or follow-up (``outcome``
    raises :class:`~certwatch.errors.Conflict` for an alert it cannot decide: nothing is
    then stored). ``None`` when there is no such alert."""
    current = get(conn, alert_id)
    if current is None:
        return None
    stored_rules = [rules.insert(conn, rule) for rule in new_rules]
    if key is not None:
        registered = conn.execute(
            "SELECT names FROM keys WHERE spki_sha256 = ?", (key.spki_sha256,)
        ).fetchone()
        if registered is not None:  # the key is kept for the names it had too
            names = sorted({*loads(registered["names"]), *key.names})
            key = attrs.evolve(key, names=tuple(names))
        inventory.upsert_key(conn, key)
    result = outcome(current, stored_rules)
    marked = conn.execute(
        "UPDATE alerts SET acknowledged_at = ?, acknowledged_scope = ?, acknowledged_note = ? "
        "WHERE id = ? AND acknowledged_at IS NULL",
        (result.acknowledged_at, result.acknowledged_scope, result.acknowledged_note, alert_id),
    )
    stored = None
    if marked.rowcount:
        stored = decide(conn, result) if result.kind is Kind.ALERT else resolve(conn, result)
    if stored is None:  # another replica decided it between our read and our write
        raise Conflict("the alert changed while it was acknowledged: look at it again")
    return Acknowledged(stored, tuple(stored_rules), key)
