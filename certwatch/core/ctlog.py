"""Certificate Transparency logs on the wire: entries, tree heads, Merkle proofs, tiles.
Pure logic, no I/O.

Both read APIs carry the same RFC 6962 structures; only their encodings differ:

- RFC 6962: ``get-sth`` (JSON tree head), ``get-entries`` (``leaf_input`` = a
  ``MerkleTreeLeaf``, ``extra_data`` = the chain), ``get-proof-by-hash`` (an audit path).
- static-ct-api (tiled logs): ``checkpoint`` (a signed note whose signature is the
  RFC 6962 tree head signature), data tiles of 256 ``TileLeaf`` entries, hash tiles from
  which any inclusion proof is computed.

Every parser here reads bytes from a log, which may be broken or hostile: any way the bytes
fail to parse is a :class:`~certwatch.errors.CTLogError` with reason ``malformed`` (never
another exception), and a length is checked before anything is sliced by it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from certwatch.core.bodies import inflate
from certwatch.errors import BodyError, CTLogError

__all__ = [
    "HASH_SIZE",
    "TILE_WIDTH",
    "EntryType",
    "LogEntry",
    "Node",
    "TreeHead",
    "audit_path",
    "checkpoint_key_id",
    "consistency_nodes",
    "consistency_path",
    "data_tile_path",
    "gunzip",
    "hash_tile_path",
    "inclusion_nodes",
    "leaf_hash",
    "malformed",
    "node_from_tile",
    "node_tile",
    "nodes_by_tile",
    "parse_checkpoint",
    "parse_consistency",
    "parse_data_tile",
    "parse_get_entries",
    "parse_hash_tile",
    "parse_proof",
    "parse_sth",
    "tile_width",
    "tree_head_from_json",
    "tree_head_json",
    "tree_head_signed_data",
    "verify_consistency",
    "verify_inclusion",
    "verify_tree_head",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
"""Entries in a full data tile, hashes in a full hash tile."""
HASH_SIZE = 32
"""SHA-256."""
MAX_TREE_SIZE = 1 << 40
"""static-ct-api indexes are 40-bit; no real log is anywhere near. Every index and tree
size certwatch takes in, from a message, a log or its own database, is below it."""

_SHA256 = 4
_SIG_RSA = 1
_SIG_ECDSA = 3
_TREE_HASH = 1  # SignatureType.tree_hash
_NOTE_RFC6962 = 0x05  # signed-note signature type for RFC 6962 tree head signatures
_EM_DASH = "\u2014"


def malformed(detail: str) -> CTLogError:
    return CTLogError("malformed", detail)


class EntryType(enum.IntEnum):
    X509 = 0
    PRECERT = 1

    @property
    def update_type(self) -> str:
        """certstream's name for it."""
        return "X509LogEntry" if self is EntryType.X509 else "PrecertLogEntry"


@attrs.frozen
class TreeHead:
    """A signed tree head (RFC 6962 STH, or a static-ct-api checkpoint)."""

    size: int
    timestamp_ms: int
    root_hash: bytes
    signature: bytes = b""
    """The ``DigitallySigned`` tree head signature; empty when the log gave none we know."""


@attrs.frozen
class LogEntry:
    """One entry of a log: the certificate it logged, and what proves it is in the tree."""

    index: int
    timestamp_ms: int
    entry_type: EntryType
    certificate: bytes
    """DER of the X.509 certificate, or of the precertificate as submitted (with the poison)."""
    leaf: bytes = attrs.field(repr=False)
    """The ``MerkleTreeLeaf``: what the tree holds."""
    tbs: bytes | None = None
    """A precert's TBS certificate as logged: without the poison and, when a Precertificate
    Signing Certificate signed the precert, with the final issuer's name and key id (RFC
    6962 §3.2). Its hash is the final certificate's."""
    chain: tuple[bytes, ...] = ()
    """The issuers' DER (RFC 6962 ``extra_data``)..."""
    chain_fingerprints: tuple[bytes, ...] = ()
    """...or their SHA-256 (tiled logs serve them at ``issuer/<hex>``)."""

    @property
    def leaf_hash(self) -> bytes:
        """RFC 6962 leaf hash: what an inclusion proof proves (only a matched entry's is
        ever needed, so it is computed on demand)."""
        return leaf_hash(self.leaf)


def tree_head_json(head: TreeHead) -> dict[str, Any]:
    """A tree head as JSON (saved, and shown as evidence): binary values in base64."""
    return {
        "size": head.size,
        "timestamp_ms": head.timestamp_ms,
        "root_hash": base64.b64encode(head.root_hash).decode(),
        "signature": base64.b64encode(head.signature).decode(),
    }


def tree_head_from_json(value: Any) -> TreeHead | None:
    """A tree head saved by :func:`tree_head_json`; ``None`` for anything else."""
    try:
        head = TreeHead(
            size=_int(value["size"], "size"),
            timestamp_ms=_int(value["timestamp_ms"], "timestamp_ms", upper=(1 << 63) - 1),
            root_hash=_b64(value["root_hash"], "root_hash"),
            signature=_b64(value["signature"], "signature"),
        )
    except (CTLogError, KeyError, TypeError):
        return None
    return head if len(head.root_hash) == HASH_SIZE else None


# --- TLS presentation-language reading ---------------------------------------------------


class _Reader:
    """Reads big-endian integers and length-prefixed vectors, checking every length."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes | memoryview, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def pos(self) -> int:
        return self._pos

    def done(self) -> bool:
        return self._pos >= self._end

    def take(self, n: int) -> bytes:
        start = self._pos
        end = start + n
        if end > self._end:
            raise malformed(f"truncated: wanted {n} bytes at offset {start}")
        self._pos = end
        return bytes(self._data[start:end])

    def uint(self, size: int) -> int:
        start = self._pos
        end = start + size
        if end > self._end:
            raise malformed(f"truncated: wanted a {size}-byte integer at offset {start}")
        self._pos = end
        return int.from_bytes(self._data[start:end], "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.uint(length_size))

    def skip_vector(self, length_size: int) -> None:
        n = self.uint(length_size)
        if self._pos + n > self._end:
            raise malformed(f"truncated: a {n}-byte field at offset {self._pos}")
        self._pos += n


def _timestamped_entry(r: _Reader) -> tuple[int, EntryType, bytes]:
    """Read a ``TimestampedEntry``: (timestamp, type, the X.509 DER, or for a precert the
    TBS certificate its ``signed_entry`` holds)."""
    timestamp = r.uint(8)
    kind = r.uint(2)
    if kind == EntryType.X509:
        signed = r.vector(3)
    elif kind == EntryType.PRECERT:
        r.take(HASH_SIZE)  # issuer_key_hash
        signed = r.vector(3)
    else:
        raise malformed(f"unknown entry type {kind}")
    r.skip_vector(2)  # CtExtensions
    return timestamp, EntryType(kind), signed


def _certificates(data: bytes) -> tuple[bytes, ...]:
    """A ``ASN.1Cert<1..2^24-1>`` list inside a 3-byte-length vector, as bytes."""
    r = _Reader(data)
    certs = []
    while not r.done():
        certs.append(r.vector(3))
    return tuple(certs)


def leaf_hash(merkle_tree_leaf: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + merkle_tree_leaf).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


# --- RFC 6962 JSON API ---------------------------------------------------------------------


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise malformed(f"{field} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise malformed(f"{field} is not valid base64") from None


def _int(value: Any, field: str, *, upper: int = MAX_TREE_SIZE) -> int:
    if type(value) is not int or not 0 <= value <= upper:
        raise malformed(f"{field} is not an integer from 0 to {upper}")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(f"{what} is not a JSON object")
    return value


def parse_sth(value: Any) -> TreeHead:
    """A ``get-sth`` response (decoded JSON)."""
    sth = _object(value, "the get-sth response")
    root = _b64(sth.get("sha256_root_hash"), "sha256_root_hash")
    if len(root) != HASH_SIZE:
        raise malformed("sha256_root_hash is not 32 bytes")
    return TreeHead(
        size=_int(sth.get("tree_size"), "tree_size"),
        timestamp_ms=_int(sth.get("timestamp"), "timestamp", upper=(1 << 63) - 1),
        root_hash=root,
        signature=_b64(sth.get("tree_head_signature"), "tree_head_signature"),
    )


def parse_get_entries(value: Any, start: int) -> list[LogEntry]:
    """A ``get-entries`` response for entries from ``start``: possibly fewer than asked."""
    response = _object(value, "the get-entries response")
    items = response.get("entries")
    if not isinstance(items, list):
        raise malformed("entries is not a list")
    entries = []
    for offset, item in enumerate(items):
        index = start + offset
        obj = _object(item, f"entry {index}")
        leaf = _b64(obj.get("leaf_input"), f"entry {index} leaf_input")
        extra = _b64(obj.get("extra_data"), f"entry {index} extra_data")
        entries.append(_rfc6962_entry(index, leaf, extra))
    return entries


def _rfc6962_entry(index: int, leaf: bytes, extra: bytes) -> LogEntry:
    r = _Reader(leaf)
    version, leaf_type = r.uint(1), r.uint(1)
    if version != 0 or leaf_type != 0:
        raise malformed(f"entry {index}: MerkleTreeLeaf version {version}, type {leaf_type}")
    timestamp, kind, signed = _timestamped_entry(r)
    if not r.done():
        raise malformed(f"entry {index}: bytes after the MerkleTreeLeaf")
    x = _Reader(extra)
    certificate, tbs = signed, None
    if kind is EntryType.PRECERT:
        certificate, tbs = x.vector(3), signed  # the submitted pre_certificate
    chain = _certificates(x.vector(3))
    if not x.done():
        raise malformed(f"entry {index}: bytes after extra_data")
    return LogEntry(index, timestamp, kind, certificate, leaf, tbs=tbs, chain=chain)


def parse_proof(value: Any) -> tuple[int, list[bytes]]:
    """A ``get-proof-by-hash`` response: (leaf index, audit path)."""
    proof = _object(value, "the get-proof-by-hash response")
    index = _int(proof.get("leaf_index"), "leaf_index")
    path = proof.get("audit_path")
    if not isinstance(path, list) or len(path) > 64:
        raise malformed("audit_path is not a list of at most 64 hashes")
    hashes_ = [_b64(item, "audit_path") for item in path]
    if any(len(h) != HASH_SIZE for h in hashes_):
        raise malformed("audit_path holds a hash that is not 32 bytes")
    return index, hashes_


# --- static-ct-api -------------------------------------------------------------------------


def checkpoint_key_id(origin: str, log_id: bytes) -> bytes:
    """static-ct-api: SHA-256(key name || 0x0A || 0x05 || log id)[:4]."""
    return hashlib.sha256(origin.encode() + b"\n" + bytes([_NOTE_RFC6962]) + log_id).digest()[:4]


def parse_checkpoint(data: bytes, origin: str | None, log_id: bytes | None) -> TreeHead:
    """A checkpoint (signed note) of the log ``origin``.

    The tree head signature is taken from the signature line named ``origin`` whose key id
    is the log's (other lines, witnesses' for instance, are ignored). Without a ``log_id``
    (a log not in the list) or such a line, the tree head comes back unsigned. ``origin``
    ``None`` accepts any origin (a log not in the list: its origin is not known).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("the checkpoint is not UTF-8") from None
    body, sep, signatures = text.rpartition("\n\n")
    if not sep:
        raise malformed("the checkpoint has no signature block")
    lines = body.split("\n")
    if len(lines) < 3:
        raise malformed("the checkpoint has fewer than three lines")
    if origin is None:
        origin = lines[0]
    elif lines[0] != origin:
        raise malformed(f"the checkpoint's origin is {lines[0][:100]!r}, not {origin!r}")
    if not lines[1].isascii() or not lines[1].isdigit() or len(lines[1]) > 20:
        raise malformed("the checkpoint's tree size is not a decimal number")
    size = int(lines[1])
    if size > MAX_TREE_SIZE:
        raise malformed("the checkpoint's tree size is out of range")
    root = _b64(lines[2], "the checkpoint's root hash")
    if len(root) != HASH_SIZE:
        raise malformed("the checkpoint's root hash is not 32 bytes")
    timestamp, signature = 0, b""
    wanted = checkpoint_key_id(origin, log_id) if log_id is not None else None
    for line in signatures.split("\n"):
        if not line:
            continue
        dash, _, rest = line.partition(" ")
        name, _, encoded = rest.partition(" ")
        if dash != _EM_DASH or not name or not encoded:
            raise malformed("a checkpoint signature line is not '— <name> <signature>'")
        if name != origin or wanted is None:
            continue
        blob = _b64(encoded, "a checkpoint signature")
        if blob[:4] != wanted or len(blob) < 4 + 8 + 4:
            continue
        timestamp = int.from_bytes(blob[4:12], "big")
        signature = blob[12:]
        break
    return TreeHead(size=size, timestamp_ms=timestamp, root_hash=root, signature=signature)


def _index_path(n: int) -> str:
    """1234067 -> ``x001/x234/067``: 3-digit groups, all but the last prefixed ``x``."""
    if not 0 <= n < MAX_TREE_SIZE:
        raise ValueError(f"not a tile index: {n}")  # a negative one would never end
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def _tile_suffix(width: int) -> str:
    assert 1 <= width <= TILE_WIDTH, width
    return "" if width == TILE_WIDTH else f".p/{width}"


def data_tile_path(n: int, width: int = TILE_WIDTH) -> str:
    """``tile/data/<N>[.p/<W>]``"""
    return f"tile/data/{_index_path(n)}{_tile_suffix(width)}"


def hash_tile_path(level: int, n: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``"""
    return f"tile/{level}/{_index_path(n)}{_tile_suffix(width)}"


def tile_width(level: int, n: int, tree_size: int) -> int:
    """Hashes (or, at level 0, entries) in tile ``n`` of ``level`` for a tree of
    ``tree_size``: 256 for a full tile, fewer for the partial right-most one, 0 if none."""
    count = tree_size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, count - n * TILE_WIDTH))


def gunzip(data: bytes, limit: int) -> bytes:
    """``data`` inflated if it is gzip (logs may compress tiles without being asked), to at
    most ``limit`` bytes; otherwise ``data`` as it is.

    A tile entry starts with a 64-bit millisecond timestamp, whose first byte is 0 for the
    next few million years, so the gzip magic ``1f 8b`` cannot begin an uncompressed tile.
    """
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return inflate(data, limit)
    except BodyError as e:
        raise malformed(f"a gzip tile: {e}") from None


_HEAD = struct.Struct(">QH")  # TimestampedEntry: timestamp, entry type
_U16 = struct.Struct(">H")


def parse_data_tile(data: bytes, first_index: int, count: int) -> list[LogEntry]:
    """Exactly ``count`` ``TileLeaf`` entries from ``first_index`` (a data tile's width).

    The hot path of back-fill (a million entries a minute): written out with ``struct``
    rather than through :class:`_Reader`, every length checked against the end.
    """
    end = len(data)
    pos = 0
    entries = []
    from_bytes = int.from_bytes
    for index in range(first_index, first_index + count):
        start = pos
        if pos + 10 > end:
            raise malformed(f"entry {index}: truncated")
        timestamp, kind = _HEAD.unpack_from(data, pos)
        pos += 10
        if kind == 1:
            pos += HASH_SIZE  # issuer_key_hash
        elif kind != 0:
            raise malformed(f"entry {index}: unknown entry type {kind}")
        size = from_bytes(data[pos : pos + 3], "big")
        signed_at = pos + 3
        pos = signed_at + size
        if pos + 2 > end:
            raise malformed(f"entry {index}: truncated")
        pos += 2 + _U16.unpack_from(data, pos)[0]  # CtExtensions
        entry_end = pos
        signed = data[signed_at : signed_at + size]
        if kind == 1:
            if pos + 3 > end:
                raise malformed(f"entry {index}: truncated")
            size = from_bytes(data[pos : pos + 3], "big")
            certificate, tbs = data[pos + 3 : pos + 3 + size], signed
            pos += 3 + size
        else:
            certificate, tbs = signed, None
        if pos + 2 > end:
            raise malformed(f"entry {index}: truncated")
        size = _U16.unpack_from(data, pos)[0]
        chain = data[pos + 2 : pos + 2 + size]
        pos += 2 + size
        if pos > end or entry_end > end or len(chain) % HASH_SIZE:
            raise malformed(f"entry {index}: truncated, or a chain not of whole hashes")
        entries.append(
            LogEntry(
                index,
                timestamp,
                EntryType(kind),
                certificate,
                b"\x00\x00" + data[start:entry_end],
                tbs=tbs,
                chain_fingerprints=tuple(
                    chain[i : i + HASH_SIZE] for i in range(0, size, HASH_SIZE)
                ),
            )
        )
    if pos != end:
        raise malformed(f"the data tile has bytes after its {count} entries")
    return entries


def parse_hash_tile(data: bytes, width: int) -> list[bytes]:
    if len(data) != width * HASH_SIZE:
        raise malformed(f"a hash tile of {len(data)} bytes, not {width} hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


# --- Merkle trees (RFC 9162 §2.1) ----------------------------------------------------------

Node = tuple[int, int]
"""A complete subtree: (level, index). Level ``l`` index ``k`` covers leaves
``[k * 2**l, (k + 1) * 2**l)``."""


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_nodes(lo: int, hi: int) -> list[Node]:
    """The complete subtrees whose hashes make up MTH(D[lo:hi]), left to right."""
    nodes = []
    while lo < hi:
        size = hi - lo
        # The largest complete, aligned subtree starting at lo that fits.
        level = (
            (size.bit_length() - 1)
            if lo == 0
            else min((lo & -lo).bit_length() - 1, size.bit_length() - 1)
        )
        nodes.append((level, lo >> level))
        lo += 1 << level
    return nodes


def _path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 6962 PATH(m, D[n]) as the leaf ranges whose MTH each element is, leaf first."""
    ranges = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def inclusion_nodes(index: int, size: int) -> list[Node]:
    """Every complete subtree whose hash the audit path of ``index`` in a tree of ``size``
    needs (what to read from hash tiles)."""
    nodes: list[Node] = []
    for lo, hi in _path_ranges(index, size):
        nodes.extend(_subtree_nodes(lo, hi))
    return nodes


def _mth_from_nodes(nodes: Sequence[bytes]) -> bytes:
    """MTH of a range from its complete subtrees (decreasing sizes, left to right): RFC
    6962 splits at the largest power of two, which is always the left-most subtree."""
    acc = nodes[-1]
    for left in reversed(nodes[:-1]):
        acc = _node_hash(left, acc)
    return acc


def audit_path(index: int, size: int, node: Callable[[Node], bytes]) -> list[bytes]:
    """The audit path of ``index`` in a tree of ``size``, from complete-subtree hashes."""
    return [
        _mth_from_nodes([node(n) for n in _subtree_nodes(lo, hi)])
        for lo, hi in _path_ranges(index, size)
    ]


def _consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """RFC 6962 §2.1.2 PROOF(m, D[n]) as the leaf ranges whose MTH each element is, in
    order (SUBPROOF written as a loop)."""
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, second, first, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def consistency_nodes(first: int, second: int) -> list[Node]:
    """Every complete subtree whose hash the consistency proof from ``first`` to
    ``second`` needs (what to read from a tiled log's hash tiles)."""
    nodes: list[Node] = []
    for lo, hi in _consistency_ranges(first, second):
        nodes.extend(_subtree_nodes(lo, hi))
    return nodes


def consistency_path(first: int, second: int, node: Callable[[Node], bytes]) -> list[bytes]:
    """The consistency proof from a tree of ``first`` to one of ``second`` entries, from
    complete-subtree hashes of the larger tree."""
    return [
        _mth_from_nodes([node(n) for n in _subtree_nodes(lo, hi)])
        for lo, hi in _consistency_ranges(first, second)
    ]


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the tree of ``first`` entries with root
    ``first_root`` is a prefix of the tree of ``second`` with root ``second_root``?"""
    if first > second or len(proof) > 128:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof  # the empty tree is a prefix of every tree
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is the proof's first node
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node_hash(c, fr)
            sr = _node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def parse_consistency(value: Any) -> list[bytes]:
    """A ``get-sth-consistency`` response: the proof's hashes."""
    proof = _object(value, "the get-sth-consistency response")
    items = proof.get("consistency")
    if not isinstance(items, list) or len(items) > 128:
        raise malformed("consistency is not a list of at most 128 hashes")
    hashes_ = [_b64(item, "consistency") for item in items]
    if any(len(h) != HASH_SIZE for h in hashes_):
        raise malformed("consistency holds a hash that is not 32 bytes")
    return hashes_


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` under ``root``?"""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def node_tile(node: Node) -> tuple[int, int, int, int]:
    """Where a complete subtree's hash comes from: (tile level, tile index, first hash in
    the tile, number of hashes to combine)."""
    level, k = node
    tile_level, rest = divmod(level, TILE_HEIGHT)
    first = k << rest
    n, offset = divmod(first, TILE_WIDTH)
    return tile_level, n, offset, 1 << rest


def node_from_tile(node: Node, tile: Sequence[bytes]) -> bytes:
    """A complete subtree's hash from the hash tile :func:`node_tile` names."""
    _, _, offset, count = node_tile(node)
    if offset + count > len(tile):
        raise malformed("a hash tile narrower than the tree it was served for")
    layer = list(tile[offset : offset + count])
    while len(layer) > 1:
        layer = [_node_hash(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


# --- tree head signatures ------------------------------------------------------------------


def tree_head_signed_data(head: TreeHead) -> bytes:
    """What a log signs for a tree head (RFC 6962 §3.5 ``TreeHeadSignature``)."""
    return struct.pack(">BBQQ", 0, _TREE_HASH, head.timestamp_ms, head.size) + head.root_hash


def verify_tree_head(head: TreeHead, key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bool:
    """Whether the tree head's ``DigitallySigned`` signature verifies with the log's key."""
    r = _Reader(head.signature)
    try:
        hash_alg, sig_alg = r.uint(1), r.uint(1)
        signature = r.vector(2)
    except CTLogError:
        return False
    if hash_alg != _SHA256 or not r.done():
        return False
    data = tree_head_signed_data(head)
    try:
        if sig_alg == _SIG_ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif sig_alg == _SIG_RSA and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    except Exception:  # noqa: BLE001 - a signature that is not even DER is a bad signature
        return False
    return True


def nodes_by_tile(nodes: Iterable[Node]) -> Mapping[tuple[int, int], list[Node]]:
    """Group nodes by the hash tile (level, index) they are read from."""
    grouped: dict[tuple[int, int], list[Node]] = {}
    for node in nodes:
        tile_level, n, _, _ = node_tile(node)
        grouped.setdefault((tile_level, n), []).append(node)
    return grouped
