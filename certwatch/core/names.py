"""Watch entries, SAN normalisation and the watch-list index. Pure logic, no I/O.

Match semantics (the interface contract): an entry ``E`` covers ``E`` and every name below
it. A plain SAN ``S`` matches ``E`` when ``S == E`` or ``S`` ends with ``.E``. A wildcard
SAN ``*.X`` stands for every name one label below ``X``; it matches ``E`` when ``X`` is
covered by ``E`` or when ``E`` is exactly one label below ``X``.

:class:`WatchIndex` answers that with hash lookups on the suffixes of each SAN, so the
cost per SAN grows with its number of labels, never with the number of entries.
"""

from __future__ import annotations

import enum
import functools
import re
import sys
from collections.abc import Iterable, Iterator

import attrs
import idna
from publicsuffixlist import PublicSuffixList

from certwatch.errors import InvalidName

__all__ = [
    "Match",
    "SuffixKind",
    "WatchIndex",
    "normalise_entry",
    "normalise_names",
    "normalise_san",
    "public_suffix_kind",
    "public_suffix_list",
    "self_and_parents",
]

_MAX_NAME = 253
_MAX_LABEL = 63
# One label of a hostname: letters, digits and inner hyphens. Certificates in CT still carry
# underscores (``_dmarc.example.org``), so SANs may; watch entries may not.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SAN_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# The last label (the TLD) must start with a letter: "1.2.3.4" is an address, not a name.
_TLD = r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
# A plain name has at least two labels; a wildcard may stand on a single label ("*.org").
_SAN_RE = re.compile(rf"\*\.(?:{_SAN_LABEL}\.)*{_TLD}|(?:{_SAN_LABEL}\.)+{_TLD}")
_ENTRY_LABEL_RE = re.compile(_LABEL)
_TLD_RE = re.compile(_TLD)


def _to_ascii(name: str) -> str:
    """IDNA-encode a Unicode name (UTS 46 mapping, IDNA 2008); ASCII passes through."""
    if name.isascii():
        return name
    return idna.encode(name, uts46=True, transitional=False).decode("ascii")


def normalise_entry(value: str) -> str:
    """Return the canonical form of a watch entry, or raise :class:`InvalidName`.

    Trim, lowercase, strip one trailing dot and a leading ``*.``, IDNA-encode; then require a
    hostname of at least two labels within DNS length limits.
    """
    name = value.strip().lower()
    name = name.removesuffix(".").removeprefix("*.")
    if not name:
        raise InvalidName("must not be empty")
    if "*" in name:
        raise InvalidName("a wildcard is only allowed as a leading '*.'")
    try:
        name = _to_ascii(name)
    except (idna.IDNAError, UnicodeError) as e:
        raise InvalidName(f"not a valid internationalised name ({e})") from None
    labels = name.split(".")
    if any(not label for label in labels):
        raise InvalidName("has an empty label")
    if len(labels) < 2:
        raise InvalidName("needs at least two labels (a single label would match too much)")
    if len(name) > _MAX_NAME:
        raise InvalidName(f"is longer than {_MAX_NAME} characters")
    for label in labels:
        if len(label) > _MAX_LABEL:
            raise InvalidName(f"label {label[:20]!r}... is longer than {_MAX_LABEL} characters")
        if not _ENTRY_LABEL_RE.fullmatch(label):
            raise InvalidName(
                f"label {label!r} has characters not allowed in a hostname "
                "(letters, digits and inner hyphens only)"
            )
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                raise InvalidName(f"label {label!r} is not valid punycode") from None
    if not _TLD_RE.fullmatch(labels[-1]):
        raise InvalidName(f"the last label {labels[-1]!r} must start with a letter")
    return name


class SuffixKind(enum.StrEnum):
    """Where a name stands in the Public Suffix List, when it is itself a public suffix."""

    ICANN = "icann"
    """A registry's suffix (``co.uk``): every domain registered under it would match."""
    PRIVATE = "private"
    """A company's suffix for its customers (``github.io``): every customer's site would match."""


@functools.cache
def _suffix_lists() -> tuple[PublicSuffixList, PublicSuffixList]:
    """The Public Suffix List as the ``publicsuffixlist`` package ships it (~60 ms to load)."""
    return PublicSuffixList(only_icann=True), PublicSuffixList()


def public_suffix_list() -> PublicSuffixList:
    """The whole list, the private section included (a tenant's domain is its own)."""
    return _suffix_lists()[1]


def public_suffix_kind(entry: str) -> SuffixKind | None:
    """Whether a normalised entry is itself a public suffix, and of which section."""
    icann, everything = _suffix_lists()
    if icann.is_public(entry):
        return SuffixKind.ICANN
    if everything.is_public(entry):
        return SuffixKind.PRIVATE
    return None


def normalise_san(name: str) -> str | None:
    """Normalise a name from a certificate; ``None`` when it is not a hostname.

    Lowercase, strip one trailing dot, IDNA-encode Unicode; a leading ``*.`` is kept. Subject
    CNs such as ``"Example Ltd"`` and IP addresses come back as ``None``.
    """
    n = name.lower().removesuffix(".")
    if not n.isascii():
        wildcard = n.startswith("*.")
        try:
            n = _to_ascii(n[2:] if wildcard else n)
        except (idna.IDNAError, UnicodeError):
            return None
        if wildcard:
            n = "*." + n
    if len(n) > _MAX_NAME or _SAN_RE.fullmatch(n) is None:
        return None
    return n


def normalise_names(names: Iterable[str]) -> frozenset[str]:
    """The set of hostnames among ``names``, normalised; non-hostnames are dropped."""
    out = set()
    for name in names:
        n = normalise_san(name)
        if n is not None:
            out.add(n)
    return frozenset(out)


def self_and_parents(name: str) -> Iterator[str]:
    """``a.b.c`` yields ``a.b.c``, ``b.c``, ``c``."""
    yield name
    i = name.find(".")
    while i != -1:
        yield name[i + 1 :]
        i = name.find(".", i + 1)


def _parent(entry: str) -> str:
    return entry.partition(".")[2]


@attrs.frozen
class Match:
    """What a certificate matched: sorted watch entries and sorted (normalised) SANs."""

    entries: tuple[str, ...]
    sans: tuple[str, ...]


def _zone(name: str) -> str:
    """The last two labels (``a.b.example.org`` -> ``example.org``)."""
    last = name.rfind(".")
    return name[name.rfind(".", 0, last) + 1 :]


class WatchIndex:
    """The watch list, indexed for matching.

    Entries live in a set (for "is this suffix an entry?") and in a map from parent name to
    entries (for wildcards that reach one label below). Every entry has at least two
    labels, so every name it matches shares its last two labels: a count of entries per
    "zone" rejects almost every SAN of the firehose with one slice and one lookup, before
    any validation. All updates are O(1), so the API can change entries between two feed
    messages without rebuilding anything.
    """

    __slots__ = ("_by_parent", "_entries", "_zones")

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._entries: set[str] = set()
        self._by_parent: dict[str, str | tuple[str, ...]] = {}
        """Parent name -> its entries one label below: one string, or a tuple of several."""
        self._zones: dict[str, int] = {}
        for entry in entries:
            self.add(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry: object) -> bool:
        return entry in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def add(self, entry: str) -> None:
        """Add a normalised entry (see :func:`normalise_entry`)."""
        if entry in self._entries:
            return
        self._entries.add(entry)
        # One string object serves as parent and zone where they coincide (a.example.org),
        # and TLDs are interned: 100,000 entries cost little more than their own strings.
        parent = _parent(entry)
        dots = parent.count(".")
        if dots == 0:
            parent = sys.intern(parent)
        zone = entry if dots == 0 else (parent if dots == 1 else _zone(entry))
        siblings = self._by_parent.get(parent)
        if siblings is None:
            self._by_parent[parent] = entry
        elif isinstance(siblings, str):
            self._by_parent[parent] = (siblings, entry)
        else:
            self._by_parent[parent] = (*siblings, entry)
        self._zones[zone] = self._zones.get(zone, 0) + 1

    def discard(self, entry: str) -> None:
        """Remove an entry if present."""
        if entry not in self._entries:
            return
        self._entries.discard(entry)
        parent = _parent(entry)
        siblings = self._by_parent[parent]
        rest = () if isinstance(siblings, str) else tuple(s for s in siblings if s != entry)
        if not rest:
            del self._by_parent[parent]
        else:
            self._by_parent[parent] = rest[0] if len(rest) == 1 else rest
        zone = _zone(entry)
        self._zones[zone] -= 1
        if not self._zones[zone]:
            del self._zones[zone]

    def entries_for(self, san: str) -> list[str]:
        """Entries matched by one normalised SAN."""
        entries = self._entries
        if san.startswith("*."):
            base = san[2:]
            found = [s for s in self_and_parents(base) if s in entries]
            below = self._by_parent.get(base)
            if isinstance(below, str):
                found.append(below)
            elif below:
                found.extend(below)
            return found
        return [s for s in self_and_parents(san) if s in entries]

    def match(self, names: Iterable[str]) -> Match | None:
        """Match a certificate's names as the feed gives them; ``None`` when nothing matches.

        First the cheap test, inline because it runs for every name of the firehose: the
        name's last two labels (lowercased only there) against the zone counts. Only a name
        that passes is normalised, validated and looked up suffix by suffix.
        """
        entries: set[str] = set()
        sans: set[str] = set()
        zones, by_parent = self._zones, self._by_parent
        for name in names:
            if name.isascii():  # an IDN in Unicode (rare) skips the cheap test
                last = name.rfind(".")
                if last == len(name) - 1:  # a trailing dot
                    name = name[:-1]
                    last = name.rfind(".")
                zone = name[name.rfind(".", 0, last) + 1 :].lower()
                # "*.org" reaches entries one label below "org", which share no zone with it.
                if zone not in zones and not (zone[:2] == "*." and zone[2:] in by_parent):
                    continue
            san = normalise_san(name)
            if san is None:
                continue
            found = self.entries_for(san)
            if found:
                entries.update(found)
                sans.add(san)
        if not entries:
            return None
        return Match(entries=tuple(sorted(entries)), sans=tuple(sorted(sans)))
