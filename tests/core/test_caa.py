"""CAA evaluation (RFC 8659) and the verdicts of the contract: pure logic, no sockets."""

from __future__ import annotations

import pytest

from certwatch.core.caa import (
    MAX_RECORDS,
    CaaFinding,
    CaaRecord,
    CaaVerdict,
    Lookup,
    climb,
    finding_for,
    permits,
    worst,
)

LE = ("letsencrypt.org",)
ISSUED = 1_800_000_000.0
STABLE = 8 * 3600.0


def records(*texts: str) -> tuple[CaaRecord, ...]:
    out = []
    for text in texts:
        flags, tag, value = text.split(" ", 2)
        out.append(CaaRecord(int(flags), tag, value.strip('"')))
    return tuple(out)


class TestPermits:
    @pytest.mark.parametrize(
        ("rrset", "wildcard", "allowed"),
        [
            (['0 issue "letsencrypt.org"'], False, True),
            (['0 issue "LetsEncrypt.org."'], False, True),  # case and a trailing dot
            (['0 issue "letsencrypt.org; validationmethods=dns-01"'], False, True),
            (['0 issue "pki.goog"'], False, False),
            (['0 issue "pki.goog"', '0 issue "letsencrypt.org"'], False, True),
            (['0 issue ";"'], False, False),
            (['0 issue ""'], False, False),
            (['0 issue "not a domain!"'], False, False),
            (['0 iodef "mailto:sec@example.org"'], False, True),  # no issue property applies
            (['0 issue "pki.goog"', '0 issuewild "letsencrypt.org"'], True, True),
            (['0 issue "letsencrypt.org"', '0 issuewild ";"'], True, False),
            (['0 issue "letsencrypt.org"', '0 issuewild ";"'], False, True),
            (['0 issue "letsencrypt.org"'], True, True),  # no issuewild: issue applies
            (['128 tbs "Unknown"', '0 issue "letsencrypt.org"'], False, False),
            (['0 tbs "Unknown"', '0 issue "letsencrypt.org"'], False, True),  # not critical
            (['128 issue "letsencrypt.org"'], False, True),  # a critical known tag
        ],
    )
    def test_rfc_8659(self, rrset: list[str], wildcard: bool, allowed: bool) -> None:
        """issue/issuewild, parameters ignored, ';' and malformed values, critical tags."""
        assert permits(records(*rrset), LE, wildcard=wildcard) is allowed


class TestClimb:
    def test_climbs_to_the_tld_never_the_root(self) -> None:
        """a.b.example.org asks itself, b.example.org, example.org, org; never '.'."""
        assert climb("a.b.example.org") == [
            "a.b.example.org",
            "b.example.org",
            "example.org",
            "org",
        ]

    def test_a_wildcard_climbs_from_its_base(self) -> None:
        """*.shop.example.org is looked up at shop.example.org."""
        assert climb("*.shop.example.org")[0] == "shop.example.org"


class TestVerdicts:
    def lookup(self, *texts: str) -> Lookup:
        return Lookup("example.org", records(*texts))

    def test_forbidden_by_a_stable_rrset(self) -> None:
        """Seen unchanged since before issuance - CAA_STABLE_S: forbidden, with the evidence."""
        forbidding = self.lookup('0 issue "pki.goog"')
        found = finding_for(
            "www.example.org", forbidding, LE,
            first_seen=ISSUED - STABLE, issued_at=ISSUED, stable_s=STABLE,
        )  # fmt: skip
        assert found == CaaFinding(
            CaaVerdict.FORBIDDEN, "www.example.org", "example.org", ('0 issue "pki.goog"',),
            ISSUED - STABLE,
        )  # fmt: skip

    def test_changed_when_first_seen_too_recently(self) -> None:
        """Forbidding, but first seen within CAA_STABLE_S of the issuance: changed."""
        forbidding = self.lookup('0 issue "pki.goog"')
        found = finding_for(
            "www.example.org", forbidding, LE,
            first_seen=ISSUED - STABLE + 1, issued_at=ISSUED, stable_s=STABLE,
        )  # fmt: skip
        assert found.verdict is CaaVerdict.CHANGED

    def test_permitted_none_and_unknown(self) -> None:
        """Permitted; no CAA anywhere; a failed lookup; an unknown CA: never forbidden."""
        common = {"first_seen": 0.0, "issued_at": ISSUED, "stable_s": STABLE}
        ok = finding_for("a.example.org", self.lookup('0 issue "letsencrypt.org"'), LE, **common)
        none = finding_for("a.example.org", Lookup(None), LE, **common)
        failed = finding_for("a.example.org", None, LE, **common)
        unknown_ca = finding_for("a.example.org", self.lookup('0 issue "pki.goog"'), None, **common)
        assert [f.verdict for f in (ok, none, failed, unknown_ca)] == [
            CaaVerdict.PERMITTED, CaaVerdict.NONE, CaaVerdict.UNKNOWN, CaaVerdict.UNKNOWN,
        ]  # fmt: skip
        assert unknown_ca.records == ('0 issue "pki.goog"',)  # the evidence is still shown

    def test_a_huge_rrset_is_not_evaluated(self) -> None:
        """More records than MAX_RECORDS: unknown, whatever they say."""
        many = Lookup("example.org", records(*['0 issue "pki.goog"'] * (MAX_RECORDS + 1)))
        found = finding_for("a.example.org", many, LE, first_seen=0.0, issued_at=ISSUED,
                            stable_s=STABLE)  # fmt: skip
        assert found.verdict is CaaVerdict.UNKNOWN

    def test_the_worst_san_gives_the_alerts_verdict(self) -> None:
        """forbidden > changed > unknown > permitted > none."""
        order = [CaaVerdict.NONE, CaaVerdict.PERMITTED, CaaVerdict.UNKNOWN, CaaVerdict.CHANGED,
                 CaaVerdict.FORBIDDEN]  # fmt: skip
        for i, verdict in enumerate(order):
            findings = [CaaFinding(v, f"{v}.example.org") for v in order[: i + 1]]
            found = worst(reversed(findings))
            assert found is not None
            assert found.verdict is verdict
        assert worst([]) is None

    def test_records_are_shown_in_presentation_form(self) -> None:
        """Quotes and backslashes in a value are escaped as dig shows them."""
        assert CaaRecord(0, "issue", 'a"b\\c').text() == '0 issue "a\\"b\\\\c"'
