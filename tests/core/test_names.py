"""Watch entries, SAN normalisation and the match index (pure logic, no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certwatch.core.names import Match, WatchIndex, normalise_entry, normalise_san
from certwatch.errors import InvalidName


class TestNormaliseEntry:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("example.org", "example.org"),
            ("  Example.ORG.  ", "example.org"),
            ("*.example.org", "example.org"),
            ("foo.example.org.", "foo.example.org"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("BÜCHER.example", "xn--bcher-kva.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("a-b.example.org", "a-b.example.org"),
        ],
    )
    def test_accepts_and_normalises(self, raw: str, expected: str) -> None:
        """Trims, lowercases, strips one trailing dot and a leading `*.`, IDNA-encodes."""
        assert normalise_entry(raw) == expected

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("*.", "wildcard"),
            ("org", "two labels"),
            ("example..org", "empty label"),
            (".example.org", "empty label"),
            ("example.org..", "empty label"),
            ("*.*.example.org", "wildcard"),
            ("foo.*.example.org", "wildcard"),
            ("f*o.example.org", "wildcard"),
            ("exa mple.org", "not allowed"),
            ("exa_mple.org", "not allowed"),
            ("example.org/x", "not allowed"),
            ("-example.org", "not allowed"),
            ("example-.org", "not allowed"),
            ("a" * 64 + ".org", "longer than 63"),
            (".".join(["a" * 60] * 5), "longer than 253"),
            ("example.123", "must start with a letter"),
            ("1.2.3.4", "must start with a letter"),
            ("xn--zz.example", "punycode"),
            ("ex\x00ample.org", "not allowed"),
        ],
    )
    def test_rejects_what_is_not_a_hostname(self, raw: str, problem: str) -> None:
        """Empty names, single labels, empty labels, inner wildcards, bad characters, overlong."""
        with pytest.raises(InvalidName, match=problem):
            normalise_entry(raw)


class TestNormaliseSan:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("API.Example.NET", "api.example.net"),
            ("*.Example.net.", "*.example.net"),
            ("_dmarc.example.net", "_dmarc.example.net"),
            ("*.bücher.example", "*.xn--bcher-kva.example"),
            ("Example Trust Services", None),
            ("1.2.3.4", None),
            ("", None),
            ("*", None),
            ("w*.example.net", None),
            ("localhost", None),
            ("a..b.example", None),
        ],
    )
    def test_normalises_or_ignores(self, raw: str, expected: str | None) -> None:
        """Feed names are lowercased and IDNA-encoded; non-hostnames (CNs, IPs) are ignored."""
        assert normalise_san(raw) == expected


def brute_force(entries: set[str], san: str) -> set[str]:
    """The contract's match semantics, written the slow obvious way."""
    if san.startswith("*."):
        base = san[2:]
        return {
            e
            for e in entries
            if base == e
            or base.endswith("." + e)
            or (e.endswith("." + base) and e.count(".") == base.count(".") + 1)
        }
    return {e for e in entries if san == e or san.endswith("." + e)}


class TestMatching:
    def test_contract_examples(self) -> None:
        """`*.example.org` matches entries `example.org` and `foo.example.org`, not deeper ones."""
        for entry, matches in [
            ("example.org", True),
            ("foo.example.org", True),
            ("a.b.example.org", False),
        ]:
            assert (WatchIndex([entry]).match(["*.example.org"]) is not None) is matches

    def test_suffix_is_label_aligned(self) -> None:
        """`ethereum.foundation` never matches `ethereum.foundation-scam.com`."""
        index = WatchIndex(["ethereum.foundation"])
        assert index.match(["ethereum.foundation-scam.com"]) is None
        assert index.match(["xethereum.foundation"]) is None
        assert index.match(["www.ethereum.foundation"]) is not None

    def test_entry_covers_itself_and_every_depth_below(self) -> None:
        """An entry matches itself and names any number of labels below it."""
        index = WatchIndex(["example.org"])
        for name in ["example.org", "a.example.org", "a.b.c.example.org", "*.a.b.example.org"]:
            assert index.match([name]) is not None, name
        assert index.match(["example.com", "org", "*.org.example"]) is None

    def test_wildcard_one_label_above_an_entry(self) -> None:
        """`*.org` reaches `example.org` (one label below) but not `a.example.org`."""
        assert WatchIndex(["example.org"]).match(["*.org"]) is not None
        assert WatchIndex(["a.example.org"]).match(["*.org"]) is None

    def test_reports_sorted_entries_and_sans(self) -> None:
        """A match lists every matched entry and SAN, sorted and normalised."""
        index = WatchIndex(["example.org", "api.example.org", "example.net"])
        match = index.match(["WWW.Example.net", "api.example.org", "Example Org Ltd", "x.test"])
        assert match == Match(
            entries=("api.example.org", "example.net", "example.org"),
            sans=("api.example.org", "www.example.net"),
        )

    def test_feed_names_are_normalised_before_matching(self) -> None:
        """Case, a trailing dot and Unicode in feed names do not hide a match."""
        index = WatchIndex([normalise_entry("bücher.example")])
        assert index.match(["WWW.BÜCHER.EXAMPLE."]) is not None
        assert index.match(["www.xn--bcher-kva.example"]) is not None

    def test_updates_take_effect_at_once(self) -> None:
        """Added entries match on the next call; discarded ones stop matching."""
        index = WatchIndex()
        assert index.match(["a.example.org"]) is None
        index.add("example.org")
        assert index.match(["a.example.org"]) is not None
        index.discard("example.org")
        assert index.match(["a.example.org"]) is None
        assert index.match(["*.org"]) is None
        assert len(index) == 0

    def test_cost_does_not_grow_with_the_watch_list(self) -> None:
        """Lookups per SAN depend on its labels: 100,000 entries cost the same set probes as 10."""

        class CountingSet(set[str]):
            probes = 0

            def __contains__(self, item: object) -> bool:
                CountingSet.probes += 1
                return super().__contains__(item)

        def probes(size: int) -> int:
            index = WatchIndex(f"host{i}.example{i % 97}.org" for i in range(size))
            index._entries = CountingSet(index._entries)
            CountingSet.probes = 0
            index.match(["a.b.c.unrelated.example.com", "*.x.example5.org"])
            return CountingSet.probes

        assert probes(10) == probes(100_000)


labels = st.sampled_from(["a", "b", "c", "xn--bcher-kva", "example", "org", "net"])
names = st.lists(labels, min_size=1, max_size=5).map(".".join)
entries_st = st.lists(labels, min_size=2, max_size=4).map(".".join)
sans_st = st.one_of(names, names.map(lambda n: "*." + n))


class TestIndexAgreesWithBruteForce:
    @settings(max_examples=400, deadline=None)
    @given(entries=st.sets(entries_st, max_size=12), sans=st.lists(sans_st, max_size=6))
    def test_property(self, entries: set[str], sans: list[str]) -> None:
        """On random names, wildcards and entries the index finds what brute force finds."""
        index = WatchIndex(entries)
        expected_entries: set[str] = set()
        expected_sans: set[str] = set()
        for san in sans:
            found = brute_force(entries, san)
            if found:
                expected_entries |= found
                expected_sans.add(san)
        match = index.match(sans)
        if not expected_entries:
            assert match is None
        else:
            assert match is not None
            assert set(match.entries) == expected_entries
            assert set(match.sans) == expected_sans

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=80))
    def test_normalisers_never_crash(self, text: str) -> None:
        """Any string is either normalised or rejected with InvalidName / None."""
        try:
            entry = normalise_entry(text)
        except InvalidName:
            pass
        else:
            assert entry == normalise_entry(entry)
        san = normalise_san(text)
        assert san is None or san == san.lower()
