"""The lookalike watch: each technique of the contract, what is never a lookalike, and
hostile names. Pure logic, no sockets."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import strategies as st

from certwatch.core.lookalikes import (
    MAX_DOMAINS_PER_CERTIFICATE,
    MAX_SUSPECTS_PER_CERTIFICATE,
    Brand,
    BrandIndex,
    Technique,
    brand_domain,
    fold,
    match_names,
)
from certwatch.core.names import Match, WatchIndex
from certwatch.errors import InvalidName

ETHEREUM = Brand("ethereum.org", "ethereum", allow=("ethereum.foundation",))
PAYPAL = Brand("paypal.com", "paypal")
APPLE = Brand("apple.com", "apple")
INTEL = Brand("intel.com", "intel")
HP = Brand("hp.com", "hp")


def index(*brands: Brand) -> BrandIndex:
    return BrandIndex(brands or (ETHEREUM, PAYPAL, APPLE, INTEL, HP))


def technique(name: str, brands: BrandIndex | None = None) -> Technique | None:
    hits = (brands or index()).check([name])
    return hits[0].technique if hits else None


class TestTechniques:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("\u0435thereum.org", Technique.HOMOGLYPH),  # Cyrillic ie for e
            ("xn--thereum-6gg.org", Technique.HOMOGLYPH),  # the same, as an A-label
            ("ethereurn.com", Technique.HOMOGLYPH),  # rn for m
            ("paypa1.com", Technique.HOMOGLYPH),  # 1 for l
            ("xn--80ak6aa92e.com", Technique.HOMOGLYPH),  # "apple" in Cyrillic, with a palochka
            ("ethereum.io", Technique.TLD_SWAP),
            ("ether-eum.com", Technique.HYPHENATION),
            ("ether.eum.com", Technique.HYPHENATION),
            ("ethereun.org", Technique.TYPO),  # substitution
            ("etheruem.org", Technique.TYPO),  # neighbours swapped
            ("ethereumm.net", Technique.TYPO),  # insertion
            ("ethereum.org.secure-login.com", Technique.EMBEDDING),
            ("ethereum-org.verify.net", Technique.EMBEDDING),
            ("ethereum.org-login.net", Technique.EMBEDDING),
            ("ethereum-wallet.net", Technique.COMBOSQUAT),
            ("myethereumwallet.com", Technique.COMBOSQUAT),
            ("ethereum2024.com", Technique.COMBOSQUAT),
            ("greenapple.com", Technique.COMBOSQUAT),  # words around a brand that is a word
            ("apple-pineapple.com", Technique.COMBOSQUAT),  # the brand whole, then a word
            ("ethereum.account-verify.com", Technique.SUBDOMAIN),
        ],
    )
    def test_each_technique(self, name: str, expected: Technique) -> None:
        """The contract's examples, each by the first technique of its table that applies."""
        assert technique(name) is expected

    def test_a_hit_says_what_and_where(self) -> None:
        """brand, technique, the name as on the certificate, decoded, its domain, a score."""
        [hit] = index().check(["login.xn--thereum-6gg.org"])
        assert hit.as_dict() == {
            "brand": "ethereum.org",
            "technique": "homoglyph",
            "name": "login.xn--thereum-6gg.org",
            "unicode_name": "login.\u0435thereum.org",
            "domain": "xn--thereum-6gg.org",
            "score": 100,
        }

    def test_hits_are_ordered_by_score(self) -> None:
        """A certificate's hits, best first: a homoglyph before a subdomain."""
        hits = index().check(["ethereum.account-verify.com", "\u0435thereum.org"])
        assert [h.technique for h in hits] == [Technique.HOMOGLYPH, Technique.SUBDOMAIN]
        assert hits[0].score > hits[1].score


class TestNeverALookalike:
    @pytest.mark.parametrize(
        "name",
        [
            "ethereum.org", "www.ethereum.org", "a.b.ethereum.org",  # the brand's own domain
            "docs.ethereum.foundation", "ethereum.foundation",  # its allow list
            "intelligence.com",  # a brand inside a longer word
            "pineapple.com",  # "apple" inside a longer word
            "pineapplejuice.com", "freshpineapple.net",  # inside a word among words
            "applets-online.com",  # "apple" inside "applets"
            "hpe.com", "hp-support.net",  # no typo/combosquat for brands under 5 characters
            "example.com", "www.google.com", "mail.yahoo.co.uk",
        ],
    )  # fmt: skip
    def test_names_that_are_not(self, name: str) -> None:
        """The brand's domain, its allow list, longer words, short brands' near-misses."""
        assert index().check([name]) == ()

    def test_a_watched_certificate_is_no_lookalike(self) -> None:
        """A watched name makes it the watch list's (lookalikes unreported); else a lookalike."""
        watched = WatchIndex(["shop.example.net"])
        names = ["ethereum.io", "shop.example.net"]
        assert match_names(watched, index(), names) == (
            Match(entries=("shop.example.net",), sans=("shop.example.net",)), ()
        )  # fmt: skip
        match, hits = match_names(watched, index(), ["ethereum.io", "www.example.com"])
        assert match == Match(entries=(), sans=("ethereum.io",))
        assert [(h.name, h.technique) for h in hits] == [("ethereum.io", Technique.TLD_SWAP)]

    def test_a_short_brand_still_gets_the_strong_techniques(self) -> None:
        """hp: no typo or combosquat, but a swapped suffix and a homoglyph still hit."""
        assert technique("hp.net") is Technique.TLD_SWAP
        assert technique("xn--h-5tb.com") is Technique.HOMOGLYPH  # h and a Cyrillic er

    def test_no_brands_no_work(self) -> None:
        """Without brands, nothing is a lookalike (and nothing is looked at)."""
        empty = BrandIndex()
        assert empty.check(["ethereum.io", "\u0435thereum.org"]) == ()


class TestHostileNames:
    @pytest.mark.parametrize(
        "name",
        [
            "xn--zz.com",  # punycode that does not decode
            "xn--" + "a" * 59 + ".com",
            ("a" * 64) + ".ethereum.io",  # a 64-character label
            ".".join(["ethereum"] * 40) + ".io",  # over 253 characters
            "ethereum\x00.io", "ethe\x1b[31mreum.io",  # control characters
            "\ufffdthereum.io",  # what invalid UTF-8 becomes
            "ethereum.io\n", "", ".", "*.", "..",
        ],
    )  # fmt: skip
    def test_never_a_crash(self, name: str) -> None:
        """Undecodable, oversized or garbled names are skipped (counted), never raise."""
        brands = index()
        brands.check([name, "ethereum-wallet.net"])
        assert sum(brands.hits.values()) == 1  # the good name still hits

    def test_mixed_scripts_are_folded(self) -> None:
        """Latin and Cyrillic mixed in one label fold to the brand: a homoglyph."""
        assert technique("\u0440\u0430\u0443\u0440\u0430l.com") is Technique.HOMOGLYPH

    def test_a_huge_certificate_is_looked_at_within_a_budget(self) -> None:
        """5,000 near-miss names: a budget of them looked at closely, the rest counted."""
        brands = index()
        names = [f"ethereum-{n}.com" for n in range(5000)]
        hits = brands.check(names)
        assert len(hits) == MAX_DOMAINS_PER_CERTIFICATE
        assert brands.skipped["budget"] == 5000 - MAX_DOMAINS_PER_CERTIFICATE

    def test_every_name_of_a_lookalike_domain_is_reported(self) -> None:
        """100 names under one lookalike domain: every one hits, none is skipped."""
        brands = index()
        names = [f"host{n}.ethereum-login.com" for n in range(100)]
        hits = brands.check(names)
        assert sorted(h.name for h in hits) == sorted(names)
        assert brands.skipped["budget"] == 0

    def test_names_that_are_not_strings_are_skipped(self) -> None:
        """A feed that sends a number where a name goes: skipped."""
        assert index().check([12, None, "ethereum.io"]) != ()  # type: ignore[list-item]

    def test_a_name_holding_a_newline_moves_no_other(self) -> None:
        """Names are looked at together, one a line: a newline inside one shifts nothing."""
        hits = index().check(["a\nb.example.com", "www.example.org", "ethereum.io"])
        assert [h.name for h in hits] == ["ethereum.io"]

    def test_too_many_suspects_are_counted_not_looked_at(self) -> None:
        """Names only close at a glance: a bound of them checked, the rest counted."""
        brands = index(Brand("myetherwallet.com", "myetherwallet"))
        names = [f"mye{n:010d}.com" for n in range(5000)]  # 13 characters, not one edit
        assert brands.check(names) == ()
        assert brands.skipped["budget"] == 5000 - MAX_SUSPECTS_PER_CERTIFICATE


ORDINARY = ["www.example.com", "mail.shop.example.net", "*.cdn.example.org", "api.test.co.uk",
            "x.y.z.example.de"]  # fmt: skip
NEAR_MISSES = ["grapple.example.com", "pineapple-juice.net", "ethereal.org"]
"""Names a certificate-wide pass cannot tell from imitations: each takes a close look."""
IMITATIONS = ["ethereum.io", "paypa1.com", "\u0435thereum.org", "xn--thereum-6gg.org",
              "ethereun.org", "appple.com", "ether-eum.com", "ethereum-wallet.net",
              "ethereum.org.secure-login.com", "ethereum.account-verify.com",
              "mynetherwallet.io", "login.paypal-secure.com"]  # fmt: skip


class TestACertificateAtOnce:
    """The names of a certificate are looked at together (one pass over all of them): each
    name's verdict is still its own, wherever it sits among the others."""

    @pytest.mark.parametrize("where", [0, 1, 2_500, 4_999])
    @pytest.mark.parametrize("name", IMITATIONS)
    def test_an_imitation_among_thousands_of_ordinary_names(self, name: str, where: int) -> None:
        """An imitation anywhere among 5,000 names is found as it is found alone."""
        alone = index(ETHEREUM, PAYPAL, APPLE, Brand("myetherwallet.com", "myetherwallet"))
        among = index(ETHEREUM, PAYPAL, APPLE, Brand("myetherwallet.com", "myetherwallet"))
        names = [f"host{n}.{ORDINARY[n % len(ORDINARY)]}" for n in range(4_999)]
        names.insert(where, name)
        assert alone.check([name]) != ()
        assert among.check(names) == alone.check([name])

    @hypothesis.given(
        st.lists(
            st.sampled_from(ORDINARY + NEAR_MISSES + IMITATIONS),
            max_size=MAX_DOMAINS_PER_CERTIFICATE,  # within the budget of close looks
        )
    )
    @hypothesis.settings(max_examples=200, deadline=None)
    def test_a_certificate_is_its_names(self, names: list[str]) -> None:
        """The hits of a certificate are the hits of each of its names alone."""
        brands = index(ETHEREUM, PAYPAL, APPLE, Brand("myetherwallet.com", "myetherwallet"))
        one_by_one = [
            hit
            for name in names
            for hit in index(
                ETHEREUM, PAYPAL, APPLE, Brand("myetherwallet.com", "myetherwallet")
            ).check([name])
        ]
        key = lambda h: (-h.score, h.name, h.brand)  # noqa: E731
        assert list(brands.check(names)) == sorted(one_by_one, key=key)


class TestBrands:
    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("co.uk", "public suffix"),
            ("com", "at least two labels"),
            ("www.ethereum.org", "subdomain"),
            ("", "empty"),
            ("not a.domain", "characters not allowed"),
        ],
    )
    def test_a_brand_is_a_registrable_domain(self, value: str, problem: str) -> None:
        """Public suffixes, subdomains, empty or invalid names are refused."""
        with pytest.raises(InvalidName, match=problem):
            brand_domain(value)

    def test_a_brand_is_normalised(self) -> None:
        """Case, a trailing dot and Unicode: the A-label domain and its label."""
        assert brand_domain("Ethereum.ORG.") == ("ethereum.org", "ethereum", "org")
        assert brand_domain("bücher.de") == ("xn--bcher-kva.de", "xn--bcher-kva", "de")
        assert brand_domain("tenant.azurewebsites.net")[1] == "tenant"  # private section

    def test_replacing_and_removing_a_brand(self) -> None:
        """A re-added brand's allow list applies; a removed brand hits nothing."""
        brands = index(ETHEREUM)
        assert brands.check(["ethereum.io"])
        brands.install(brands.rebuilt(put=[Brand("ethereum.org", "ethereum",
                                                 allow=("ethereum.io",))]))  # fmt: skip
        assert brands.check(["ethereum.io"]) == ()
        brands.install(brands.rebuilt(remove=["ethereum.org"]))
        assert brands.check(["ethereum-wallet.net"]) == ()
        assert len(brands) == 0


def test_folding() -> None:
    """Skeleton, marks, case, ASCII look-alikes: each folds to the plain label."""
    assert fold("Éthereum") == "ethereum"
    assert fold("\u0435thereum") == "ethereum"
    assert fold("ethereurn") == "ethereum"
    assert fold("PAYPA1") == "paypal"
    assert fold("g00gle") == "google"
