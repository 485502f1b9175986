"""Decoding HTTP bodies within a bound, whatever their content encoding says."""

from __future__ import annotations

import gzip
import zlib

import hypothesis
import pytest
from hypothesis import strategies as st

from certwatch.core.bodies import BoundedBody, inflate
from certwatch.errors import BodyError
from tests.support.servers import gzip_bomb

LIMIT = 64 * 1024


def decode(encoding: str, data: bytes, limit: int = LIMIT, chunk: int = 1000) -> bytes:
    body = BoundedBody(encoding, limit)
    for i in range(0, len(data), chunk):
        body.feed(data[i : i + chunk])
    return body.finish()


class TestBoundedBody:
    def test_identity_gzip_deflate_and_stacks_decode(self) -> None:
        """Each supported encoding, and a stack of them, decodes to the original bytes."""
        text = b"a CT log answer " * 500
        assert decode("", text) == text
        assert decode("identity", text) == text
        assert decode("gzip", gzip.compress(text)) == text
        assert decode("x-gzip", gzip.compress(text)) == text
        assert decode("deflate", zlib.compress(text)) == text
        assert decode("deflate, gzip", gzip.compress(zlib.compress(text))) == text
        assert decode("GZIP , gzip", gzip.compress(gzip.compress(text))) == text

    def test_concatenated_gzip_members_decode(self) -> None:
        """A gzip body of two members (RFC 1952 allows it) decodes to both."""
        assert decode("gzip", gzip.compress(b"one ") + gzip.compress(b"two")) == b"one two"

    def test_a_gzip_stack_bomb_is_refused_at_the_limit(self) -> None:
        """A few hundred bytes of gzip, gzip inflating to 64 MiB stop at 64 KiB decoded."""
        bomb = gzip_bomb(64 * 1024 * 1024)
        assert len(bomb) < 1024
        with pytest.raises(BodyError, match="decoded answer is over 65,536 bytes") as caught:
            decode("gzip, gzip", bomb)
        assert caught.value.reason == "too_large"

    def test_raw_bytes_over_the_limit_are_refused(self) -> None:
        """An identity body over the limit is refused as soon as it passes it."""
        body = BoundedBody("", 10)
        body.feed(b"0123456789")
        with pytest.raises(BodyError, match="answer is over 10 bytes"):
            body.feed(b"x")

    def test_a_body_at_the_limit_is_accepted(self) -> None:
        """Exactly ``limit`` decoded bytes is within the bound."""
        assert decode("gzip", gzip.compress(bytes(LIMIT))) == bytes(LIMIT)

    @pytest.mark.parametrize(
        ("encoding", "data", "problem"),
        [
            ("br", b"\x0b\x02\x80hello\x03", "unsupported content encoding 'br'"),
            ("gzip", gzip.compress(b"hello world")[:-6], "cut short"),
            ("gzip", b"not gzip at all", "does not decode"),
            ("deflate", zlib.compress(b"x") + b"tail", "after the end"),
            ("gzip, " * 5 + "gzip", gzip_bomb(10, 6), "6 content encodings"),
        ],
    )
    def test_undecodable_bodies_are_refused(self, encoding: str, data: bytes, problem: str) -> None:
        """Unsupported, truncated, corrupt, trailing and over-stacked bodies are bad_encoding."""
        with pytest.raises(BodyError, match=problem) as caught:
            decode(encoding, data)
        assert caught.value.reason == "bad_encoding"

    def test_an_empty_body_is_empty_whatever_its_encoding(self) -> None:
        """A body with no bytes at all (a 404 marked gzip) decodes to nothing."""
        assert BoundedBody("gzip", LIMIT).finish() == b""

    @hypothesis.given(st.binary(max_size=2048), st.sampled_from(["gzip", "deflate", "gzip, gzip"]))
    @hypothesis.settings(max_examples=300, deadline=None)
    def test_any_bytes_raise_only_body_error(self, data: bytes, encoding: str) -> None:
        """Whatever the bytes, decoding returns within the limit or raises BodyError."""
        try:
            out = decode(encoding, data, limit=4096, chunk=97)
        except BodyError:
            return
        assert len(out) <= 4096


def test_inflate_is_the_bounded_gzip_decoder() -> None:
    """inflate() decodes gzip and refuses what inflates past its limit."""
    assert inflate(gzip.compress(b"tile" * 100), 400) == b"tile" * 100
    with pytest.raises(BodyError, match="over 399 bytes"):
        inflate(gzip.compress(b"tile" * 100), 399)
