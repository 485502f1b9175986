"""Text from outside made fit to store (pure logic)."""

from __future__ import annotations

from certwatch.core.text import storable, storable_names, storable_or_none


def test_storable_text_replaces_nul_only() -> None:
    """NUL becomes U+FFFD; every other character, control ones included, stays."""
    assert storable("a\x00b\x1bc") == "a\ufffdb\x1bc"
    assert storable_names(("x\x00", "y")) == ("x\ufffd", "y")
    assert storable_or_none(None) is None
    assert storable_or_none("ok") == "ok"
