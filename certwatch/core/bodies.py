"""Decoding HTTP bodies with a bound on every byte held. Pure logic, no I/O.

Everything certwatch reads over HTTP (CT logs, the log list, a webhook receiver's error
body) comes from a peer that may be broken or hostile. A ``Content-Encoding: gzip, gzip``
answer of 6 KB inflates to 4 GiB in two steps; an HTTP client that decodes before the
caller counts bytes has already spent the memory. :class:`BoundedBody` decodes the
encoding stack itself, a chunk at a time, and refuses a body as soon as any stage (the
raw bytes, or the output of any decoding step) passes the limit.

Encodings decoded: ``gzip`` (``x-gzip``; concatenated members too) and ``deflate`` (zlib);
``identity`` is nothing. Any other is refused: certwatch asks for ``gzip, identity`` only.
"""

from __future__ import annotations

import zlib

from certwatch.errors import BodyError

__all__ = ["MAX_ENCODINGS", "BoundedBody", "inflate"]

MAX_ENCODINGS = 4
"""Content encodings applied one over another, at most (real servers apply one)."""
_STEP = 64 * 1024
"""The most output one decompression call produces: memory per step stays small."""
_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS


def _encodings(header: str) -> list[int]:
    """The decoders a ``Content-Encoding`` value needs, outermost (applied last) first."""
    names = [token.strip().lower() for token in header.split(",")]
    wbits = []
    for name in names:
        if name in ("", "identity"):
            continue
        if name in ("gzip", "x-gzip"):
            wbits.append(_GZIP)
        elif name == "deflate":
            wbits.append(_ZLIB)
        else:
            raise BodyError("bad_encoding", f"an unsupported content encoding {name[:40]!r}")
    if len(wbits) > MAX_ENCODINGS:
        raise BodyError("bad_encoding", f"{len(wbits)} content encodings, one over another")
    wbits.reverse()
    return wbits


class _Stage:
    """One decoding step: its decompressor, and how much it has put out."""

    __slots__ = ("inflater", "out", "wbits")

    def __init__(self, wbits: int) -> None:
        self.wbits = wbits
        self.inflater = zlib.decompressobj(wbits=wbits)
        self.out = 0


class BoundedBody:
    """A body decoded through ``content_encoding``, at most ``limit`` bytes at every stage.

    :meth:`feed` the raw chunks as they arrive, then :meth:`finish`. Raises
    :class:`~certwatch.errors.BodyError` (``too_large``, ``bad_encoding``) as soon as the
    body cannot be had within the limit.
    """

    def __init__(self, content_encoding: str, limit: int) -> None:
        self._limit = limit
        self._stages = [_Stage(wbits) for wbits in _encodings(content_encoding)]
        self._raw = 0
        self._body = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._raw += len(chunk)
        if self._raw > self._limit:
            raise self._too_large("the answer")
        self._push(0, chunk)

    def finish(self) -> bytes:
        if not self._raw:
            return b""  # an empty body is empty whatever its headers say
        for i, stage in enumerate(self._stages):
            self._drain(i)
            if not stage.inflater.eof:
                raise BodyError("bad_encoding", "a compressed body cut short")
        return bytes(self._body)

    def _too_large(self, what: str) -> BodyError:
        return BodyError("too_large", f"{what} is over {self._limit:,} bytes")

    def _push(self, i: int, data: bytes) -> None:
        if i == len(self._stages):
            if len(self._body) + len(data) > self._limit:
                raise self._too_large("the decoded answer")
            self._body += data
            return
        stage = self._stages[i]
        while data:
            if stage.inflater.eof:
                if stage.wbits != _GZIP:
                    raise BodyError("bad_encoding", "bytes after the end of a deflate stream")
                stage.inflater = zlib.decompressobj(wbits=_GZIP)  # another gzip member
            try:
                out = stage.inflater.decompress(data, _STEP)
            except zlib.error as e:
                raise BodyError("bad_encoding", f"a body that does not decode ({e})") from None
            data = stage.inflater.unconsumed_tail or stage.inflater.unused_data
            self._emit(i, out)

    def _drain(self, i: int) -> None:
        """What a stage still holds once its input has ended."""
        stage = self._stages[i]
        while not stage.inflater.eof:
            try:
                out = stage.inflater.decompress(b"", _STEP)
            except zlib.error as e:
                raise BodyError("bad_encoding", f"a body that does not decode ({e})") from None
            if not out:
                return
            self._emit(i, out)

    def _emit(self, i: int, out: bytes) -> None:
        stage = self._stages[i]
        stage.out += len(out)
        if stage.out > self._limit:
            raise self._too_large("the decoded answer")
        if out:
            self._push(i + 1, out)


def inflate(data: bytes, limit: int) -> bytes:
    """``data`` inflated from gzip, at most ``limit`` bytes (see :class:`BoundedBody`)."""
    body = BoundedBody("gzip", limit)
    body.feed(data)
    return body.finish()
