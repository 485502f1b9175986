"""CT log wire formats, Merkle proofs and tree head signatures (pure logic, no sockets).

The reference values come from the test log (tests/support/ctlog.py), which builds its
tree and encodings with its own code, not certwatch's.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import random

import hypothesis
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import strategies as st

from certwatch.core import ctlog
from certwatch.core.ctlog import EntryType, TreeHead
from certwatch.errors import CTLogError
from tests.support.certs import CA
from tests.support.ctlog import TestLog


def _h_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH over leaf hashes, by the recursive definition."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _h_node(reference_mth(leaves[:k]), reference_mth(leaves[k:]))


def reference_tiles(leaves: list[bytes]) -> dict[tuple[int, int], list[bytes]]:
    """Every hash tile (level, index) of a tree, full or partial, by the spec's formula."""
    tiles: dict[tuple[int, int], list[bytes]] = {}
    size = len(leaves)
    level = 0
    while size >> (8 * level):
        count = size >> (8 * level)
        span = 1 << (8 * level)
        hashes_ = [reference_mth(leaves[i * span : (i + 1) * span]) for i in range(count)]
        for n in range(0, count, 256):
            tiles[(level, n // 256)] = hashes_[n : n + 256]
        level += 1
    return tiles


@pytest.fixture(scope="module")
def rfc_log() -> TestLog:
    log = TestLog("rfc6962")
    ca = CA()
    for n in range(40):
        if n % 7 == 3:
            log.add_issuance(ca.issue([f"www{n}.example.org"]), "precert")
        else:
            log.add_issuance(ca.issue([f"www{n}.example.org"]), "final")
    return log


class TestMerkle:
    def test_audit_paths_from_subtrees_match_the_rfc_definition(self, rfc_log: TestLog) -> None:
        """The audit path from complete subtrees is RFC 6962's PATH and verifies, up to size 40."""
        for size in range(1, 41):
            root = rfc_log.root(size)
            for index in range(size):

                def node(n: tuple[int, int]) -> bytes:
                    level, k = n
                    return rfc_log._mth(k << level, (k + 1) << level)

                path = ctlog.audit_path(index, size, node)
                assert path == rfc_log._path(index, 0, size)
                leaf = ctlog.leaf_hash(rfc_log._leaves[index])
                assert ctlog.verify_inclusion(index, size, leaf, path, root)

    def test_a_wrong_leaf_index_or_path_does_not_verify(self, rfc_log: TestLog) -> None:
        """Inclusion fails for another leaf, another index, a cut path or a changed hash."""
        size, index = 37, 21
        path = rfc_log._path(index, 0, size)
        root = rfc_log.root(size)
        leaf = ctlog.leaf_hash(rfc_log._leaves[index])
        other = ctlog.leaf_hash(rfc_log._leaves[index + 1])
        assert ctlog.verify_inclusion(index, size, leaf, path, root)
        assert not ctlog.verify_inclusion(index, size, other, path, root)
        assert not ctlog.verify_inclusion(index + 1, size, leaf, path, root)
        assert not ctlog.verify_inclusion(index, size, leaf, path[:-1], root)
        assert not ctlog.verify_inclusion(index, size, leaf, [*path, root], root)
        assert not ctlog.verify_inclusion(size, size, leaf, path, root)
        bent = [bytes([path[0][0] ^ 1]) + path[0][1:], *path[1:]]
        assert not ctlog.verify_inclusion(index, size, leaf, bent, root)

    @pytest.mark.parametrize("size", [1, 255, 256, 257, 513, 70_000])
    def test_proofs_computed_from_hash_tiles_verify(self, size: int) -> None:
        """An audit path from hash tiles (full, partial, several levels) proves any entry."""
        # Entries near both ends and in the middle of a tree.
        rng = random.Random(size)
        leaves = [rng.randbytes(32) for _ in range(size)]
        tiles = reference_tiles(leaves)
        root = reference_mth(leaves)
        for index in {0, size // 2, size - 1, min(size - 1, 256)}:
            nodes = ctlog.inclusion_nodes(index, size)
            by_tile = ctlog.nodes_by_tile(nodes)
            values = {}
            for (level, n), wanted in by_tile.items():
                width = ctlog.tile_width(level, n, size)
                tile = tiles[(level, n)]
                assert len(tile) == width
                for node in wanted:
                    values[node] = ctlog.node_from_tile(node, tile)
            path = ctlog.audit_path(index, size, values.__getitem__)
            assert ctlog.verify_inclusion(index, size, leaves[index], path, root)

    def test_tile_widths_follow_the_spec_example(self) -> None:
        """A tree of 70,000 has 273 full level-0 tiles and one of 112, and so up the levels."""
        # Level 1: one full and one of 17; level 2: one of 1.
        size = 70_000
        assert ctlog.tile_width(0, 272, size) == 256
        assert ctlog.tile_width(0, 273, size) == 112
        assert ctlog.tile_width(0, 274, size) == 0
        assert ctlog.tile_width(1, 0, size) == 256
        assert ctlog.tile_width(1, 1, size) == 17
        assert ctlog.tile_width(2, 0, size) == 1
        assert ctlog.tile_width(3, 0, size) == 0


class TestConsistency:
    def test_proofs_from_subtrees_match_the_rfc_definition_and_verify(
        self, rfc_log: TestLog
    ) -> None:
        """Every consistency proof up to size 40 is RFC 6962's PROOF(m, D[n]) and verifies."""
        for second in range(1, 41):
            for first in range(1, second + 1):
                path = ctlog.consistency_path(
                    first, second, lambda n: rfc_log._mth(n[1] << n[0], (n[1] + 1) << n[0])
                )
                assert path == rfc_log._subproof(first, 0, second, True)
                assert ctlog.verify_consistency(
                    first, second, rfc_log.root(first), rfc_log.root(second), path
                )

    def test_a_fork_a_shrink_or_a_bent_proof_does_not_verify(self, rfc_log: TestLog) -> None:
        """Another old root, sizes swapped, a changed or cut proof: not consistent."""
        first, second = 13, 37
        proof = rfc_log._subproof(first, 0, second, True)
        old, new = rfc_log.root(first), rfc_log.root(second)
        assert ctlog.verify_consistency(first, second, old, new, proof)
        assert not ctlog.verify_consistency(first, second, rfc_log.root(12), new, proof)
        assert not ctlog.verify_consistency(first, second, old, rfc_log.root(36), proof)
        assert not ctlog.verify_consistency(second, first, new, old, proof)
        assert not ctlog.verify_consistency(first, second, old, new, proof[:-1])
        bent = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        assert not ctlog.verify_consistency(first, second, old, new, bent)
        assert not ctlog.verify_consistency(first, first, old, new, [])  # same size, two roots

    @pytest.mark.parametrize(("first", "second"), [(1, 300), (256, 70_000), (300, 513)])
    def test_proofs_computed_from_hash_tiles_verify(self, first: int, second: int) -> None:
        """A consistency proof from the larger tree's hash tiles proves the smaller a prefix."""
        rng = random.Random(second)
        leaves = [rng.randbytes(32) for _ in range(second)]
        tiles = reference_tiles(leaves)
        values = {}
        for (level, n), wanted in ctlog.nodes_by_tile(
            ctlog.consistency_nodes(first, second)
        ).items():
            for node in wanted:
                values[node] = ctlog.node_from_tile(node, tiles[(level, n)])
        path = ctlog.consistency_path(first, second, values.__getitem__)
        old, new = reference_mth(leaves[:first]), reference_mth(leaves)
        assert ctlog.verify_consistency(first, second, old, new, path)

    def test_a_saved_tree_head_round_trips_and_garbage_is_none(self) -> None:
        """tree_head_json and tree_head_from_json agree; anything else reads as None."""
        head = TreeHead(size=7, timestamp_ms=1_795_000_000_000, root_hash=bytes(range(32)),
                        signature=b"\x04\x03sig")  # fmt: skip
        assert ctlog.tree_head_from_json(json.loads(json.dumps(ctlog.tree_head_json(head)))) == head
        for garbage in (None, 5, {}, {"size": -1}, {**ctlog.tree_head_json(head), "size": 2**63}):
            assert ctlog.tree_head_from_json(garbage) is None


class TestTilePaths:
    def test_indexes_are_written_in_three_digit_groups(self) -> None:
        """Tile indexes are 3-digit groups, all but the last x-prefixed; partials get .p/<w>."""
        assert ctlog.data_tile_path(1234067) == "tile/data/x001/x234/067"
        assert ctlog.data_tile_path(5) == "tile/data/005"
        assert ctlog.data_tile_path(1000) == "tile/data/x001/000"
        assert ctlog.data_tile_path(7, 112) == "tile/data/007.p/112"
        assert ctlog.hash_tile_path(1, 0, 17) == "tile/1/000.p/17"
        assert ctlog.hash_tile_path(0, 272) == "tile/0/272"


class TestEntries:
    def test_get_entries_yield_certificates_chains_and_leaf_hashes(self, rfc_log: TestLog) -> None:
        """get-entries items give the logged certificate, its chain, its type and its leaf hash."""
        # For a precert, the logged certificate is the submitted precertificate.
        response = {"entries": [rfc_log.entry_json(i) for i in range(2, 6)]}
        entries = ctlog.parse_get_entries(response, 2)
        assert [e.index for e in entries] == [2, 3, 4, 5]
        for entry in entries:
            assert entry.leaf_hash == ctlog.leaf_hash(rfc_log._leaves[entry.index])
            cert = x509.load_der_x509_certificate(entry.certificate)
            assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert len(entry.chain) == 1
        assert entries[1].entry_type is EntryType.PRECERT
        precert = x509.load_der_x509_certificate(entries[1].certificate)
        assert precert.extensions.get_extension_for_class(x509.PrecertPoison)
        assert entries[0].entry_type is EntryType.X509

    def test_data_tiles_yield_entries_whose_hashes_are_the_level_0_tile(self) -> None:
        """A data tile's entries hash to its level-0 tile; precerts and chains are read right."""
        # Precerts carry the submitted precertificate; the chain comes as SHA-256 fingerprints.
        log = TestLog("tiled")
        ca = CA()
        for n in range(300):
            log.add_issuance(ca.issue([f"h{n}.example.org"]), "precert" if n % 2 else "final")
        for n, width in ((0, 256), (1, 44)):
            entries = ctlog.parse_data_tile(log.data_tile(n, width), n * 256, width)
            hashes_ = ctlog.parse_hash_tile(log.hash_tile(0, n, width), width)
            assert [e.leaf_hash for e in entries] == hashes_
        entry = entries[1]
        assert entry.index == 257
        assert entry.entry_type is EntryType.PRECERT
        assert entry.chain_fingerprints == (
            hashlib.sha256(ca.cert.public_bytes(serialization.Encoding.DER)).digest(),
        )

    def test_a_data_tile_with_fewer_or_more_entries_is_malformed(self) -> None:
        """A tile cut short, or with bytes after its entries, is malformed."""
        log = TestLog("tiled")
        log.add_filler(3)
        tile = log.data_tile(0, 3)
        with pytest.raises(CTLogError, match="truncated") as cut:
            ctlog.parse_data_tile(tile[:-5], 0, 3)
        assert cut.value.reason == "malformed"
        with pytest.raises(CTLogError, match="after its 2 entries"):
            ctlog.parse_data_tile(tile, 0, 2)

    def test_gzip_bodies_are_inflated_and_bombs_refused(self) -> None:
        """A gzip body is inflated; one that inflates past the limit, or is cut, is malformed."""
        log = TestLog("tiled")
        log.add_filler(2)
        tile = log.data_tile(0, 2)
        assert ctlog.gunzip(gzip.compress(tile), 4096) == tile
        assert ctlog.gunzip(tile, 4096) == tile
        bomb = gzip.compress(bytes(4097))
        with pytest.raises(CTLogError, match="over 4,096 bytes"):
            ctlog.gunzip(bomb, 4096)
        with pytest.raises(CTLogError, match="cut short"):
            ctlog.gunzip(gzip.compress(tile)[:-12], 4096)


class TestTreeHeads:
    @pytest.mark.parametrize("key", ["ecdsa", "rsa"])
    def test_a_signed_tree_head_verifies_with_the_logs_key(self, key: str) -> None:
        """An STH signed by the log verifies with its key (ECDSA P-256 and RSA)."""
        log = TestLog("rfc6962", key=key)
        log.add_filler(5)
        head = ctlog.parse_sth(log.sth())
        assert head.size == 5
        assert head.root_hash == log.root(5)
        public = log.key.public_key()
        assert ctlog.verify_tree_head(head, public)
        other = TestLog("rfc6962", key=key).key.public_key()
        assert not ctlog.verify_tree_head(head, other)

    def test_a_tampered_tree_head_does_not_verify(self) -> None:
        """Changing the size, the root or the signature breaks verification."""
        log = TestLog("rfc6962")
        log.add_filler(5)
        head = ctlog.parse_sth(log.sth())
        key = log.key.public_key()
        assert not ctlog.verify_tree_head(TreeHead(6, head.timestamp_ms, head.root_hash,
                                                   head.signature), key)  # fmt: skip
        assert not ctlog.verify_tree_head(TreeHead(5, head.timestamp_ms, bytes(32),
                                                   head.signature), key)  # fmt: skip
        log.bad_signature = True
        assert not ctlog.verify_tree_head(ctlog.parse_sth(log.sth()), key)
        assert not ctlog.verify_tree_head(TreeHead(5, 1, head.root_hash, b"\x04\x03\x00"), key)

    def test_a_checkpoint_is_read_from_the_logs_signature_line(self) -> None:
        """A checkpoint gives size, root and the log's own signature, which verifies."""
        # A witness's line is ignored.
        log = TestLog("tiled")
        log.port = 4321
        log.add_filler(300)
        head = ctlog.parse_checkpoint(log.checkpoint(), log.origin, log.log_id)
        assert (head.size, head.root_hash) == (300, log.root(300))
        assert ctlog.verify_tree_head(head, log.key.public_key())

    def test_a_checkpoint_of_another_origin_or_unsigned_is_told_apart(self) -> None:
        """Another origin is malformed; a missing log signature or log id reads unsigned."""
        log = TestLog("tiled")
        log.port = 4321
        log.add_filler(3)
        with pytest.raises(CTLogError, match="origin"):
            ctlog.parse_checkpoint(log.checkpoint(), "other.example/log", log.log_id)
        unsigned = ctlog.parse_checkpoint(log.checkpoint(), log.origin, bytes(32))
        assert unsigned.signature == b""
        assert ctlog.parse_checkpoint(log.checkpoint(), None, None).size == 3

    def test_malformed_tree_heads_are_malformed(self) -> None:
        """STHs with missing or mistyped fields and notes without signatures are malformed."""
        for sth in [[], {}, {"tree_size": "5"}, {"tree_size": -1, "timestamp": 1,
                    "sha256_root_hash": "", "tree_head_signature": ""}]:  # fmt: skip
            with pytest.raises(CTLogError) as e:
                ctlog.parse_sth(sth)
            assert e.value.reason == "malformed"
        for note in [b"", b"\xff\xfe", b"origin\n5\nAAAA\n", "o\nx\nAAAA\n\n\u2014 o A\n".encode()]:
            with pytest.raises(CTLogError):
                ctlog.parse_checkpoint(note, "o", None)


class TestHostileBytes:
    """Random bytes never make a parser raise anything but its own error."""

    @hypothesis.given(st.binary(max_size=2048), st.integers(0, 300))
    @hypothesis.settings(max_examples=300, deadline=None)
    def test_data_tiles(self, data: bytes, count: int) -> None:
        """parse_data_tile raises only CTLogError on any bytes."""
        with contextlib.suppress(CTLogError):
            ctlog.parse_data_tile(data, 0, count)

    @hypothesis.given(st.binary(max_size=1024))
    @hypothesis.settings(max_examples=300, deadline=None)
    def test_checkpoints_hash_tiles_and_gzip(self, data: bytes) -> None:
        """parse_checkpoint, parse_hash_tile and gunzip raise only CTLogError."""
        for parse in (
            lambda: ctlog.parse_checkpoint(data, "log.example/x", bytes(32)),
            lambda: ctlog.parse_checkpoint(data, None, None),
            lambda: ctlog.parse_hash_tile(data, 3),
            lambda: ctlog.gunzip(b"\x1f\x8b" + data, 1 << 20),
        ):
            with contextlib.suppress(CTLogError):
                parse()

    @hypothesis.given(st.binary(max_size=1024), st.binary(max_size=1024))
    @hypothesis.settings(max_examples=300, deadline=None)
    def test_get_entries_items(self, leaf: bytes, extra: bytes) -> None:
        """parse_get_entries raises only CTLogError on any leaf_input and extra_data."""
        item = {"leaf_input": base64.b64encode(leaf).decode(),
                "extra_data": base64.b64encode(extra).decode()}  # fmt: skip
        with contextlib.suppress(CTLogError):
            ctlog.parse_get_entries({"entries": [item]}, 7)

    @hypothesis.given(st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["tree_size", "timestamp", "sha256_root_hash", "entries",
                             "tree_head_signature", "leaf_index", "audit_path",
                             "leaf_input", "extra_data"]), inner, max_size=5),
        max_leaves=12,
    ))  # fmt: skip
    @hypothesis.settings(max_examples=300, deadline=None)
    def test_json_answers(self, value: object) -> None:
        """The JSON answers' parsers raise only CTLogError on any JSON value."""
        for parse in (
            lambda: ctlog.parse_sth(value),
            lambda: ctlog.parse_get_entries(value, 0),
            lambda: ctlog.parse_proof(value),
        ):
            with contextlib.suppress(CTLogError):
                parse()

    def test_the_json_strategy_covers_valid_answers(self) -> None:
        """A valid get-entries answer parses (the hostile tests start from real shapes)."""
        log = TestLog("rfc6962")
        log.add_filler(1)
        answer = json.loads(json.dumps({"entries": [log.entry_json(0)]}))
        assert len(ctlog.parse_get_entries(answer, 0)) == 1
