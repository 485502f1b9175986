"""Log lines: one per record, whatever the values in them (pure logic, no sockets)."""

from __future__ import annotations

import logging

from certwatch.logs import SafeFormatter, escape


def formatted(message: str, *args: object) -> str:
    record = logging.LogRecord("certwatch.alerts", logging.WARNING, "x.py", 1, message, args, None)
    return SafeFormatter("%(levelname)s %(name)s: %(message)s").format(record)


class TestEscape:
    def test_a_forged_line_stays_inside_its_record(self) -> None:
        """A newline and ANSI escapes in a value cannot start a fake CRITICAL line."""
        issuer = "ETS R1\n2026-12-02 10:00:00 CRITICAL certwatch: \x1b[31mall clear\x1b[0m"
        line = formatted("alert suspicious: a.example.org (issuer %s)", issuer)
        assert "\n" not in line
        assert "\x1b" not in line
        assert line == (
            "WARNING certwatch.alerts: alert suspicious: a.example.org (issuer ETS R1\\n"
            "2026-12-02 10:00:00 CRITICAL certwatch: \\x1b[31mall clear\\x1b[0m)"
        )

    def test_other_controls_and_direction_marks_are_escaped(self) -> None:
        """C0/C1 controls, DEL, line separators and bidi overrides are written as escapes."""
        assert escape("a\rb\tc\x00d\x7fe\x85f\u2028g\u202eh") == (
            "a\\rb\\tc\\x00d\\x7fe\\x85f\\u2028g\\u202eh"
        )

    def test_printable_text_is_untouched(self) -> None:
        """Ordinary text, Unicode names included, passes as it is."""
        assert escape("bücher.example — ok") == "bücher.example — ok"

    def test_a_traceback_keeps_its_lines(self) -> None:
        """Only the message is escaped: an exception's traceback stays readable."""
        try:
            raise ValueError("boom")
        except ValueError as e:
            record = logging.LogRecord(
                "x", logging.ERROR, "x.py", 1, "failed", (), (type(e), e, None)
            )
        text = SafeFormatter("%(message)s").format(record)
        assert text.splitlines()[0] == "failed"
        assert text.splitlines()[-1] == "ValueError: boom"
