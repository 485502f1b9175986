"""Text from outside, made fit to store. Pure logic, no I/O.

Names, issuers and URLs from the feed or a CT log, and error bodies from a receiver, are
stored as they came, with one exception: a NUL character, which PostgreSQL cannot hold in
a text column (SQLite can). It becomes U+FFFD, the replacement character, on every backend
alike, so a hostile value is stored and shown the same way whatever the database.
"""

from __future__ import annotations

__all__ = ["storable", "storable_names", "storable_or_none"]


def storable(text: str) -> str:
    """``text`` with every NUL replaced by U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def storable_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """:func:`storable` for each of ``names``."""
    return tuple(storable(name) for name in names)


def storable_or_none(text: str | None) -> str | None:
    """:func:`storable`, passing ``None`` through."""
    return None if text is None else storable(text)
