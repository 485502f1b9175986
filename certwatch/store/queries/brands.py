"""The ``brands`` table: the brands the lookalike watch protects."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from certwatch.core.lookalikes import Brand
from certwatch.store.queries import Connection, Dialect, upsert
from certwatch.store.rows import brand_rows

__all__ = ["delete", "listed", "present", "upsert_brand"]


def listed(conn: Connection) -> list[Brand]:
    return [brand_rows().load(r) for r in conn.execute("SELECT * FROM brands ORDER BY domain")]


def present(conn: Connection, dialect: Dialect, domains: Sequence[str]) -> list[Brand]:
    """The brands of these domains that exist."""
    where, parameter = dialect.in_list("domain", domains)
    rows = conn.execute(f"SELECT * FROM brands WHERE {where}", (parameter,))  # noqa: S608
    return [brand_rows().load(r) for r in rows]


def upsert_brand(conn: Connection, brand: Brand) -> tuple[Brand, bool]:
    """Add a brand, or replace its note and allow list (keeping when it was added): the
    brand as stored, and ``True`` when it is new."""
    existing = conn.execute(
        "SELECT added_at FROM brands WHERE domain = ?", (brand.domain,)
    ).fetchone()
    if existing is not None:
        brand = attrs.evolve(brand, added_at=existing["added_at"])
    upsert(conn, "brands", "domain", brand_rows(), brand)
    return brand, existing is None


def delete(conn: Connection, domain: str) -> bool:
    return bool(conn.execute("DELETE FROM brands WHERE domain = ?", (domain,)).rowcount > 0)
