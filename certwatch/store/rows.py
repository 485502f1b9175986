"""Rows: how the attrs values of the core are written to and read from the database.

The mapping is derived from each class's attrs fields with one cattrs converter, so a
field is declared once (in the class) and the tables' columns follow it. A field whose
value is a scalar (text, number, enum) is a column of its own; anything else (a tuple of
names, the certificate summary, the facts, a recognition) is a JSON text column. The
JSON is the format existing databases hold: a serial as hex text, a set of names as a
sorted list, a recognition as ``{"evidence", "source", "ref"}``.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

import attrs
import cattrs
import msgspec
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from certwatch.core.alerts import Alert
from certwatch.core.identity import CertFacts
from certwatch.core.lookalikes import Brand
from certwatch.core.policy import Rule
from certwatch.core.recognition import InventoryCert, KnownKey, Recognition

__all__ = ["RowMapping", "alert_rows", "brand_rows", "cert_rows", "key_rows", "rule_rows"]

T = TypeVar("T")


class _Row(typing.Protocol):
    """A database row: a mapping from column names (``sqlite3.Row`` is one)."""

    def keys(self) -> Iterable[str]: ...

    def __getitem__(self, key: str) -> Any: ...


_SCALARS = (str, int, float, bool, types.NoneType)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_unstructure_hook(frozenset, sorted)
    facts_out = make_dict_unstructure_fn(CertFacts, converter, der=override(omit=True))
    facts_in = make_dict_structure_fn(CertFacts, converter, der=override(omit=True))

    def unstructure_facts(facts: CertFacts) -> dict[str, Any]:
        data = facts_out(facts)
        data["serial"] = None if facts.serial is None else f"{facts.serial:x}"
        return data

    def structure_facts(data: dict[str, Any], _: Any) -> CertFacts:
        serial = data.get("serial")
        return facts_in({**data, "serial": None if serial is None else int(serial, 16)}, CertFacts)

    converter.register_unstructure_hook(CertFacts, unstructure_facts)
    converter.register_structure_hook(CertFacts, structure_facts)
    ref = override(rename="ref")
    converter.register_unstructure_hook(
        Recognition, make_dict_unstructure_fn(Recognition, converter, reference=ref)
    )
    converter.register_structure_hook(
        Recognition, make_dict_structure_fn(Recognition, converter, reference=ref)
    )
    return converter


_converter = _make_converter()
_encode = msgspec.json.encode


def _is_scalar(kind: Any) -> bool:
    """A type stored as a column of its own: a scalar, an enum, or an optional one."""
    if kind in _SCALARS or (isinstance(kind, type) and issubclass(kind, enum.Enum)):
        return True
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return all(_is_scalar(arg) for arg in typing.get_args(kind))
    return False


@attrs.frozen
class RowMapping(Generic[T]):
    """One attrs class as one table's rows."""

    cls: type[T]
    key: str | None
    """A field the database assigns (``id``), left out when inserting."""
    columns: tuple[str, ...]
    """The columns written on insert, in order."""
    json_columns: frozenset[str]
    defaulted: frozenset[str] = frozenset()
    """Fields with a default other than ``None``: a NULL in their column (a row from
    before the column existed) loads as the default."""

    @classmethod
    def of(cls, kind: type[T], *, key: str | None = None) -> RowMapping[T]:
        resolved = typing.get_type_hints(kind)
        every = attrs.fields(kind)  # type: ignore[arg-type]
        fields = [f.name for f in every if f.name != key]
        json_columns = frozenset(name for name in fields if not _is_scalar(resolved[name]))
        defaulted = frozenset(
            f.name for f in every if f.default is not attrs.NOTHING and f.default is not None
        )
        return cls(kind, key, tuple(fields), json_columns, defaulted)

    def values(self, item: T) -> dict[str, Any]:
        """The row for ``item``: column -> value, JSON columns encoded."""
        data = _converter.unstructure(item)
        return {
            name: (_encode(data[name]).decode() if name in self.json_columns and data[name]
                   is not None else data[name])
            for name in self.columns
        }  # fmt: skip

    def load(self, row: _Row) -> T:
        """The item a row holds (columns it does not have take the field's default)."""
        names = self.columns if self.key is None else (self.key, *self.columns)
        present = set(row.keys())
        data = {}
        for name in names:
            if name not in present:
                continue
            value = row[name]
            if value is None and name in self.defaulted:
                continue
            if name in self.json_columns and value is not None:
                value = msgspec.json.decode(value)
            data[name] = value
        return _converter.structure(data, self.cls)


@functools.cache
def _mappings() -> tuple[
    RowMapping[Alert],
    RowMapping[InventoryCert],
    RowMapping[KnownKey],
    RowMapping[Rule],
    RowMapping[Brand],
]:
    return (
        RowMapping.of(Alert, key="id"),
        RowMapping.of(InventoryCert),
        RowMapping.of(KnownKey),
        RowMapping.of(Rule, key="id"),
        RowMapping.of(Brand),
    )


def alert_rows() -> RowMapping[Alert]:
    return _mappings()[0]


def cert_rows() -> RowMapping[InventoryCert]:
    return _mappings()[1]


def key_rows() -> RowMapping[KnownKey]:
    return _mappings()[2]


def rule_rows() -> RowMapping[Rule]:
    return _mappings()[3]


def brand_rows() -> RowMapping[Brand]:
    return _mappings()[4]
