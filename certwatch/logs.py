"""Log output: one line per record, whatever the values in it.

Log messages carry values from outside: names and issuers from the feed, error bodies and
headers from a receiver, paths and sources from API clients. A newline or an ANSI escape
in one of them could forge a log line (a fake CRITICAL) or rewrite the terminal, so the
formatter escapes every control character in the message (``\\n`` becomes ``\\\\n``, ESC
``\\\\x1b``). Tracebacks, which certwatch writes itself, stay as they are.
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["SafeFormatter", "configure_logging", "escape"]

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls, DEL, line and paragraph separators, bidirectional formatting marks."""
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with every control character written as an escape sequence."""
    return _UNSAFE.sub(_escaped, text)


class SafeFormatter(logging.Formatter):
    """A formatter whose message part is always one line of printable text."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


def configure_logging(level: str) -> None:
    """certwatch's logging: one escaped line per record on stderr, at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; a webhook URL can carry a secret path.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpcore").setLevel(logging.WARNING)
