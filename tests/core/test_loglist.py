"""The v3 CT log list: logs, URLs, keys (pure logic)."""

from __future__ import annotations

import base64
import json

import pytest

from certwatch.core.loglist import LogKind, normalise_log_url, parse_log_list, readable_log_url
from certwatch.errors import InvalidLogList
from tests.support.ctlog import TestLog, log_list


def parsed(document: object) -> object:
    return parse_log_list(json.dumps(document).encode())


class TestLogList:
    def test_both_kinds_of_log_are_read_with_their_keys(self) -> None:
        """RFC 6962 logs read at url, tiled logs at monitoring_url, each with its key and origin."""
        rfc, tiled = TestLog("rfc6962", key="rsa"), TestLog("tiled", name="willow")
        rfc.port = tiled.port = 8443
        logs = parse_log_list(json.dumps(log_list(rfc, tiled)).encode())
        assert len(logs) == 2
        a = logs.find(rfc.url)
        assert a is not None
        assert (a.kind, a.read_url, a.key is not None) == (LogKind.RFC6962, rfc.url, True)
        b = logs.find(tiled.submission_url + "/")
        assert b is not None
        assert (b.kind, b.read_url, b.origin) == (LogKind.TILED, tiled.url, tiled.origin)
        assert b.log_id == tiled.log_id
        assert logs.find("HTTP://127.0.0.1:8443/willow/") is b

    def test_entries_that_cannot_be_used_are_left_out_or_unverified(self) -> None:
        """A log without URL is left out, one with a bad key kept keyless; each is reported."""
        # A bad key: it does not parse, or the log_id is not its hash.
        good = TestLog("rfc6962", name="good")
        good.port = 1
        document = log_list(good)
        logs_ = document["operators"][0]["logs"]
        no_url = dict(logs_[0], url=None, description="no url")
        bad_key = dict(logs_[0], url="https://bad-key.example/", key="AAAA")
        wrong_id = dict(logs_[0], url="https://wrong-id.example/",
                        log_id=base64.b64encode(bytes(32)).decode())  # fmt: skip
        logs_.extend([no_url, bad_key, wrong_id, "not an object"])
        result = parse_log_list(json.dumps(document).encode())
        assert len(result) == 3
        bad = result.find("https://bad-key.example")
        assert bad is not None
        assert bad.key is None
        wrong = result.find("https://wrong-id.example")
        assert wrong is not None
        assert wrong.key is None
        assert wrong.log_id is None
        assert len(result.problems) == 4

    def test_a_document_that_is_not_a_log_list_is_refused(self) -> None:
        """Not JSON, or JSON without operators, is an InvalidLogList."""
        for data in (b"<html>", b"[]", b'{"logs": []}', b"\xff"):
            with pytest.raises(InvalidLogList):
                parse_log_list(data)

    def test_urls_compare_without_scheme_case_or_trailing_slash(self) -> None:
        """Scheme and host case and trailing slashes do not matter; the path's case does."""
        assert (
            normalise_log_url("HTTPS://CT.Example.net/Log2026/") == "https://ct.example.net/Log2026"
        )
        assert normalise_log_url(" https://ct.example.net// ") == "https://ct.example.net"


@pytest.mark.parametrize(
    ("url", "readable"),
    [
        ("https://ct.example/2026h2", True),
        ("http://127.0.0.1:8080/log", True),
        ("https://user:secret@ct.example/log", False),
        ("https://ct.example/log?token=x", False),
        ("https://ct.example/log#part", False),
        ("ftp://ct.example/log", False),
        ("file:///etc/passwd", False),
        ("https://ct.example:99999/log", False),
        ("https:///nohost", False),
    ],
)
def test_a_log_not_in_the_list_is_read_only_at_a_plain_http_url(url: str, readable: bool) -> None:
    """No credentials, query, fragment or other scheme: only what CT logs' URLs are."""
    assert readable_log_url(url) is readable
