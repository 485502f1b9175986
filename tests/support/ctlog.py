"""A real CT log for tests: a Merkle tree, signed tree heads and both read APIs on loopback.

:class:`TestLog` holds entries (real certificates), computes its tree with its own code
(the recursive definitions of RFC 6962 §2.1, independent of certwatch's), signs tree heads
with a real key (ECDSA P-256 or RSA) and serves, from a real Hypercorn on a loopback port:

- RFC 6962: ``ct/v1/get-sth``, ``ct/v1/get-entries``, ``ct/v1/get-proof-by-hash``,
  ``ct/v1/get-sth-consistency``;
- static-ct-api: ``checkpoint``, ``tile/data/...``, ``tile/<L>/...`` (full and partial),
  ``issuer/<sha256>``.

Faults are switched on per test: ``max_entries`` (a cap per get-entries), ``rate_limit``
(the next N requests answer 429), ``truncate`` (the next N data tiles or get-entries
answers are cut short), :meth:`TestLog.serve_instead` (another certificate at an index than
the tree holds),
``bad_signature``, ``gzip`` (``"header"``: Content-Encoding; ``"raw"``: a gzip body
without it), :meth:`TestLog.down`, and a log that lies: :meth:`TestLog.fork` (another
certificate at an index already in the tree: the same size, another root) and
:meth:`TestLog.shrink` (a newer tree head of a smaller tree).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypercorn.config import Config
from hypercorn.trio import serve
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_modules import rfc5280
from quart import Response, request
from quart_trio import QuartTrio

from certwatch.settings import Settings
from tests.support.certs import CA, Issuance
from tests.support.service import make_settings
from tests.support.timing import BACKFILL

__all__ = ["TestLog", "backfill_settings", "log_list", "message_for"]


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _u(n: int, size: int) -> bytes:
    return n.to_bytes(size, "big")


def _vec(data: bytes, size: int) -> bytes:
    return _u(len(data), size) + data


def _h_leaf(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _h_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n``."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


_PRECERT_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")
_POISON = x509.oid.ExtensionOID.PRECERT_POISON.dotted_string
_AKI = x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string


def _signs_precerts(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return _PRECERT_SIGNING in usage


def _logged_tbs(precert: x509.Certificate, chain: list[x509.Certificate]) -> bytes:
    """The TBS a log puts in a precert entry (RFC 6962 §3.2): without the poison and, when a
    Precertificate Signing Certificate signed it, with the final issuer's name and key id."""
    tbs, _ = der_decoder.decode(precert.tbs_certificate_bytes, asn1Spec=rfc5280.TBSCertificate())
    signer = chain[0] if chain and _signs_precerts(chain[0]) else None
    extensions = tbs["extensions"]
    kept = extensions.clone()
    for ext in extensions:
        oid = str(ext["extnID"])
        if oid == _POISON:
            continue
        if signer is not None and oid == _AKI:
            aki = signer.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
            ext["extnValue"] = aki.public_bytes()
        kept.append(ext)
    tbs["extensions"] = kept
    if signer is not None:
        issuer, _ = der_decoder.decode(signer.issuer.public_bytes(), asn1Spec=rfc5280.Name())
        tbs["issuer"] = issuer
    return bytes(der_encoder.encode(tbs))


class _Entry:
    def __init__(
        self, cert: x509.Certificate, precert: bool, chain: list[x509.Certificate], ts: int
    ) -> None:
        self.cert_der = _der(cert)
        self.precert = precert
        self.chain = [_der(c) for c in chain]
        if precert:
            final_issuer = chain[1] if _signs_precerts(chain[0]) else chain[0]
            issuer_spki = final_issuer.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            signed = hashlib.sha256(issuer_spki).digest() + _vec(_logged_tbs(cert, chain), 3)
        else:
            signed = _vec(self.cert_der, 3)
        self.timestamp = ts
        self.signed = signed

    def timestamped(self, index: int, tiled: bool) -> bytes:
        # static-ct-api logs put the leaf_index extension in every entry.
        extensions = b"\x00" + _vec(_u(index, 5), 2) if tiled else b""
        return (
            _u(self.timestamp, 8) + _u(1 if self.precert else 0, 2) + self.signed
            + _vec(extensions, 2)
        )  # fmt: skip


class TestLog:
    """One CT log (``kind`` ``rfc6962`` or ``tiled``) served on loopback."""

    __test__ = False  # not a pytest class

    def __init__(self, kind: str = "rfc6962", *, key: str = "ecdsa", name: str = "alpha") -> None:
        assert kind in ("rfc6962", "tiled")
        self.kind = kind
        self.name = name
        if key == "rsa":
            self.key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
        self.key_der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.log_id = hashlib.sha256(self.key_der).digest()
        self._entries: list[_Entry] = []
        self._leaves: list[bytes] = []
        self._by_hash: dict[bytes, int] = {}
        self._hashes: dict[tuple[int, int], bytes] = {}
        """Memoised subtree hashes: a range's hash never changes as the log grows."""
        self.published: int | None = None
        """The tree size tree heads show (``None``: every entry)."""
        self._timestamp = 1_795_821_669_000
        self.filler_ca = CA("Filler CA", "Filler Org")
        self._filler = self.filler_ca.issue(["www.filler-example.com"])
        # faults
        self.max_entries = 1000
        self.rate_limit = 0
        self.retry_after = "0"
        self.truncate = 0
        self._substitutes: dict[int, _Entry] = {}
        self.bad_signature = False
        self.lie_size: int | None = None
        """Tree heads claim this size (their signature, over the real one, then fails)."""
        self.gzip: str | None = None
        self.unavailable = False
        """Answer 503 to everything."""
        # what was asked
        self.requests: list[str] = []
        self.answered: list[tuple[int, int]] = []
        """The entries each get-entries or data tile answer held (first, last)."""
        self.user_agents: set[str] = set()
        self.port = 0
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self.app = QuartTrio(f"ctlog-{name}")
        self.app.add_url_rule("/<path:path>", "any", self._route, methods=["GET"])

    # --- entries and the tree ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return len(self._entries) if self.published is None else self.published

    def add(self, cert: x509.Certificate, *, precert: bool, chain: list[x509.Certificate]) -> int:
        """Log a certificate; its index."""
        index = len(self._entries)
        self._timestamp += 1
        entry = _Entry(cert, precert, chain, self._timestamp)
        self._entries.append(entry)
        leaf = b"\x00\x00" + entry.timestamped(index, self.kind == "tiled")
        self._leaves.append(leaf)
        self._by_hash[_h_leaf(leaf)] = index
        return index

    def add_issuance(self, issuance: Issuance, which: str = "precert") -> int:
        cert = issuance.precert if which == "precert" else issuance.final
        return self.add(cert, precert=which == "precert", chain=[issuance.ca.cert])

    def serve_instead(self, index: int, issuance: Issuance, which: str = "precert") -> None:
        """Serve ``issuance``'s certificate at ``index``, which the tree does not hold."""
        cert = issuance.precert if which == "precert" else issuance.final
        self._substitutes[index] = _Entry(cert, which == "precert", [issuance.ca.cert], 1)

    def fork(self, index: int, issuance: Issuance) -> None:
        """Put another certificate at ``index`` in the tree itself: every tree head from
        now on has another root than those signed before (a split view)."""
        entry = _Entry(issuance.final, False, [issuance.ca.cert], self._entries[index].timestamp)
        self._entries[index] = entry
        leaf = b"\x00\x00" + entry.timestamped(index, self.kind == "tiled")
        del self._by_hash[_h_leaf(self._leaves[index])]
        self._leaves[index] = leaf
        self._by_hash[_h_leaf(leaf)] = index
        self._hashes.clear()

    def shrink(self, size: int) -> None:
        """Sign tree heads of ``size`` entries from now on, newer than any before."""
        self.published = size
        self._timestamp += 1000

    def add_filler(self, count: int) -> int:
        """Log ``count`` certificates nobody watches; the index of the last."""
        for _ in range(count):
            self.add(self._filler.final, precert=False, chain=[self.filler_ca.cert])
        return len(self._entries) - 1

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) by RFC 6962's recursive definition (memoised)."""
        known = self._hashes.get((lo, hi))
        if known is not None:
            return known
        if hi - lo == 1:
            value = _h_leaf(self._leaves[lo])
        else:
            k = _split(hi - lo)
            value = _h_node(self._mth(lo, lo + k), self._mth(lo + k, hi))
        self._hashes[(lo, hi)] = value
        return value

    def root(self, size: int) -> bytes:
        return self._mth(0, size) if size else hashlib.sha256(b"").digest()

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        if hi - lo == 1:
            return []
        k = _split(hi - lo)
        if m < lo + k:
            return [*self._path(m, lo, lo + k), self._mth(lo + k, hi)]
        return [*self._path(m, lo + k, hi), self._mth(lo, lo + k)]

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
            algorithm = 1
        else:
            signature = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
            algorithm = 3
        if self.bad_signature:
            signature = signature[:-1] + bytes([signature[-1] ^ 1])
        return bytes([4, algorithm]) + _vec(signature, 2)

    def _tree_head(self) -> tuple[int, int, bytes, bytes]:
        size = self.size
        timestamp = self._timestamp + 1
        root = self.root(size)
        signed = struct.pack(">BBQQ", 0, 1, timestamp, size) + root
        return self.lie_size or size, timestamp, root, self._sign(signed)

    # --- serving ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The read URL (``url`` of an RFC 6962 log, ``monitoring_url`` of a tiled one)."""
        return f"http://127.0.0.1:{self.port}/{self.name}"

    @property
    def submission_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/submit/{self.name}"

    @property
    def source_url(self) -> str:
        """What certstream-server-go sends as ``source.url``."""
        return self.submission_url if self.kind == "tiled" else self.url

    @property
    def origin(self) -> str:
        return self.submission_url.split("://", 1)[1]

    def list_entry(self) -> dict[str, Any]:
        """This log's entry in a v3 log list."""
        entry: dict[str, Any] = {
            "description": f"Test '{self.name}' log",
            "log_id": base64.b64encode(self.log_id).decode(),
            "key": base64.b64encode(self.key_der).decode(),
            "mmd": 86400 if self.kind == "rfc6962" else 60,
            "state": {"usable": {"timestamp": "2026-01-01T00:00:00Z"}},
        }
        if self.kind == "rfc6962":
            entry["url"] = self.url + "/"
        else:
            entry["submission_url"] = self.submission_url + "/"
            entry["monitoring_url"] = self.url + "/"
        return entry

    async def start(self, nursery: trio.Nursery, *, port: int = 0) -> TestLog:
        self._stop, self._stopped = trio.Event(), trio.Event()
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.graceful_timeout = 0.5

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve(self.app, config, shutdown_trigger=self._stop.wait,
                            task_status=task_status)  # fmt: skip
            finally:
                self._stopped.set()

        binds = await nursery.start(run)
        self.port = int(binds[0].rsplit(":", 1)[1])
        return self

    async def down(self) -> None:
        """Stop serving: connections are refused."""
        self._stop.set()
        await self._stopped.wait()

    def _answer(self, body: bytes | dict[str, Any] | list[Any], status: int = 200) -> Response:
        if isinstance(body, dict | list):
            return Response(json.dumps(body), status=status, content_type="application/json")
        return Response(body, status=status, content_type="application/octet-stream")

    async def _route(self, path: str) -> Response:
        self.requests.append(path)
        self.user_agents.add(request.headers.get("User-Agent", ""))
        if self.unavailable:
            return Response("down", status=503)
        if self.rate_limit:
            self.rate_limit -= 1
            return Response("slow down", status=429, headers={"Retry-After": self.retry_after})
        prefix = f"{self.name}/"
        if not path.startswith(prefix):
            return Response("no such log", status=404)
        rest = path.removeprefix(prefix)
        if self.kind == "rfc6962":
            if rest == "ct/v1/get-sth":
                return self._get_sth()
            if rest == "ct/v1/get-entries":
                return self._get_entries()
            if rest == "ct/v1/get-proof-by-hash":
                return self._get_proof()
            if rest == "ct/v1/get-sth-consistency":
                return self._get_consistency()
        else:
            if rest == "checkpoint":
                return self._checkpoint()
            if rest.startswith("tile/"):
                return self._tile(rest.removeprefix("tile/"))
            if rest.startswith("issuer/"):
                return self._issuer(rest.removeprefix("issuer/"))
        return Response("not found", status=404)

    # RFC 6962

    def sth(self) -> dict[str, Any]:
        """The ``get-sth`` answer."""
        size, timestamp, root, signature = self._tree_head()
        return {
            "tree_size": size,
            "timestamp": timestamp,
            "sha256_root_hash": base64.b64encode(root).decode(),
            "tree_head_signature": base64.b64encode(signature).decode(),
        }

    def _get_sth(self) -> Response:
        return self._answer(self.sth())

    def _served(self, index: int) -> _Entry:
        return self._substitutes.get(index) or self._entries[index]

    def entry_json(self, index: int) -> dict[str, str]:
        """One item of a ``get-entries`` answer."""
        entry = self._served(index)
        leaf = b"\x00\x00" + entry.timestamped(index, tiled=False)
        chain = b"".join(_vec(c, 3) for c in entry.chain)
        extra = (_vec(entry.cert_der, 3) + _vec(chain, 3)) if entry.precert else _vec(chain, 3)
        return {
            "leaf_input": base64.b64encode(leaf).decode(),
            "extra_data": base64.b64encode(extra).decode(),
        }

    def _get_entries(self) -> Response:
        try:
            start = int(request.args["start"])
            end = int(request.args["end"])
        except (KeyError, ValueError):
            return Response("bad range", status=400)
        if start < 0 or end < start or start >= self.size:
            return Response("bad range", status=400)
        end = min(end, self.size - 1, start + self.max_entries - 1)
        entries = [self.entry_json(i) for i in range(start, end + 1)]
        self.answered.append((start, end))
        if self.truncate:
            self.truncate -= 1
            body = json.dumps({"entries": entries}).encode()
            return self._answer(body[: len(body) // 2])
        return self._answer({"entries": entries})

    def _get_proof(self) -> Response:
        try:
            wanted = base64.b64decode(request.args["hash"])
            size = int(request.args["tree_size"])
        except (KeyError, ValueError):
            return Response("bad request", status=400)
        index = self._by_hash.get(wanted)
        if index is None or index >= size or size > len(self._entries):
            return Response("hash not found", status=404)
        path = self._path(index, 0, size)
        return self._answer({
            "leaf_index": index,
            "audit_path": [base64.b64encode(p).decode() for p in path],
        })  # fmt: skip

    def _subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        """RFC 6962 §2.1.2 SUBPROOF(m, D[lo:hi], b), by its recursive definition."""
        if m == hi - lo:
            return [] if whole else [self._mth(lo, hi)]
        k = _split(hi - lo)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, whole), self._mth(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self._mth(lo, lo + k)]

    def _get_consistency(self) -> Response:
        try:
            first = int(request.args["first"])
            second = int(request.args["second"])
        except (KeyError, ValueError):
            return Response("bad request", status=400)
        if not 0 < first <= second <= len(self._entries):
            return Response("bad range", status=400)
        proof = self._subproof(first, 0, second, True)
        return self._answer({"consistency": [base64.b64encode(p).decode() for p in proof]})

    # static-ct-api

    def checkpoint(self) -> bytes:
        """The signed note served at ``checkpoint`` (with a witness's line too)."""
        size, timestamp, root, signature = self._tree_head()
        body = f"{self.origin}\n{size}\n{base64.b64encode(root).decode()}\n"
        key_id = hashlib.sha256(self.origin.encode() + b"\n\x05" + self.log_id).digest()[:4]
        blob = base64.b64encode(key_id + _u(timestamp, 8) + signature).decode()
        witness = base64.b64encode(b"\x01\x02\x03\x04" + bytes(64)).decode()
        text = f"{body}\n\u2014 witness.example/w1 {witness}\n\u2014 {self.origin} {blob}\n"
        return text.encode()

    def _checkpoint(self) -> Response:
        return Response(self.checkpoint(), content_type="text/plain; charset=utf-8")

    def _tile(self, rest: str) -> Response:
        parts = rest.split("/")
        level = parts[0]
        width = 256
        if len(parts) >= 3 and parts[-2].endswith(".p"):
            width = int(parts[-1])
            parts = [*parts[1:-2], parts[-2].removesuffix(".p")]
        else:
            parts = parts[1:]
        digits = "".join(p.removeprefix("x") for p in parts)
        n = int(digits)
        size = self.size
        # A tile exists full, or partial at the width of the published tree size (a partial
        # tile of another width is gone, as on real logs once the tile grew).
        lvl = 0 if level == "data" else int(level)
        available = min(256, (size >> (8 * lvl)) - n * 256)
        if available <= 0 or width != available:
            return Response("no such tile", status=404)
        if level == "data":
            return self._data_tile(n, width)
        return self._answer(self.hash_tile(lvl, n, width))

    def hash_tile(self, level: int, n: int, width: int) -> bytes:
        return b"".join(
            self._mth((n * 256 + i) << (8 * level), (n * 256 + i + 1) << (8 * level))
            for i in range(width)
        )

    def data_tile(self, n: int, width: int) -> bytes:
        out = bytearray()
        for index in range(n * 256, n * 256 + width):
            entry = self._served(index)
            out += entry.timestamped(index, tiled=True)
            if entry.precert:
                out += _vec(entry.cert_der, 3)
            out += _vec(b"".join(hashlib.sha256(c).digest() for c in entry.chain), 2)
        return bytes(out)

    def _data_tile(self, n: int, width: int) -> Response:
        body = self.data_tile(n, width)
        self.answered.append((n * 256, n * 256 + width - 1))
        if self.truncate:
            self.truncate -= 1
            body = body[: len(body) - 7]
        if self.gzip == "header":
            return Response(
                gzip.compress(body),
                content_type="application/octet-stream",
                headers={"Content-Encoding": "gzip"},
            )
        if self.gzip == "raw":
            body = gzip.compress(body)
        return self._answer(body)

    def _issuer(self, fingerprint: str) -> Response:
        for entry in self._entries:
            for cert in entry.chain:
                if hashlib.sha256(cert).hexdigest() == fingerprint:
                    return Response(cert, content_type="application/pkix-cert")
        return Response("no such issuer", status=404)


def log_list(*logs: TestLog) -> dict[str, Any]:
    """A v3 log list holding ``logs`` (one operator)."""
    return {
        "version": "test",
        "log_list_timestamp": "2026-12-01T00:00:00Z",
        "operators": [{
            "name": "Test Operator",
            "email": ["ct@example.org"],
            "logs": [log.list_entry() for log in logs if log.kind == "rfc6962"],
            "tiled_logs": [log.list_entry() for log in logs if log.kind == "tiled"],
        }],
    }  # fmt: skip


def message_for(
    log: TestLog,
    index: int,
    issuance: Issuance | None = None,
    *,
    which: str = "precert",
    variant: str | None = None,
) -> dict[str, Any]:
    """The certstream message for entry ``index`` of ``log``, as certstream-server-go sends
    it (a tiled log's precert without DER); a filler certificate without ``issuance``."""
    if issuance is None:
        issuance, which = log._filler, "final"
    variant = variant or ("go-tiled" if log.kind == "tiled" and which == "precert" else "go-full")
    message = issuance.message(variant, which=which, log_url=log.source_url, index=index)
    message["data"]["source"]["type"] = log.kind
    message["data"]["source"]["name"] = f"Test '{log.name}' log"
    if log.kind == "tiled":
        message["data"]["cert_link"] = ""
    return message


def backfill_settings(
    tmp_path: Path, feed: Any, receiver: Any, *logs: TestLog, **overrides: Any
) -> Settings:
    """Settings for a service with back-fill on, whose log list holds ``logs``."""
    path = tmp_path / "log_list.json"
    path.write_text(json.dumps(log_list(*logs)))
    values: dict[str, Any] = {
        "certstream_url": feed.url,
        "webhook_url": receiver.url,
        "ct_backfill": True,
        "ct_log_list": str(path),
        "ct_backfill_retry_period_s": 1.0,
        "timing": BACKFILL,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)
