"""A large static-ct-api (tiled) log for the back-fill benchmark, in its own process.

    uv run python benchmarks/ctlog_server.py --log-bits 20 --list /tmp/list.json

Serves a log of ``2**log_bits`` entries (a perfect tree: its root is the pairwise hash of
level after level) from the stdlib's threading HTTP server: checkpoint (signed with a
fresh ECDSA P-256 key), data tiles, hash tiles and issuers. Entries are precerts cycling
through a pool of real RSA-2048 certificates (cached in benchmarks/.cache) with their own
timestamp and leaf index; every ``--matched-every``-th entry is a certificate for
``--matched-domain`` instead. Writes a v3 log list naming the log to ``--list`` and prints
``port <n>`` once listening.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import pickle
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.common import CACHE
from benchmarks.frames import RsaIssuer

POOL = 2000


def _u(n: int, size: int) -> bytes:
    return n.to_bytes(size, "big")


def _vec(data: bytes, size: int) -> bytes:
    return _u(len(data), size) + data


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def pool(matched_domain: str) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], bytes]:
    """(precert DER, TBS) of the firehose pool and of the watched certificates, and the
    issuer's DER (cached: RSA signatures take a while)."""
    path = CACHE / f"ctlog-pool-{POOL}-{matched_domain}.pickle"
    if path.exists():
        return pickle.loads(path.read_bytes())  # type: ignore[no-any-return]
    issuer = RsaIssuer(seed=5)

    def precert(names: list[str]) -> tuple[bytes, bytes]:
        cert = issuer.precert(names)
        return cert.public_bytes(serialization.Encoding.DER), cert.tbs_certificate_bytes

    firehose = [precert(issuer.random_names()) for _ in range(POOL)]
    watched = [precert([f"bf{n}.{matched_domain}"]) for n in range(50)]
    result = (firehose, watched, issuer.cert.public_bytes(serialization.Encoding.DER))
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(result))
    return result


class Log:
    def __init__(self, args: argparse.Namespace) -> None:
        self.size = 1 << args.log_bits
        self.matched_every: int = args.matched_every
        firehose, watched, issuer = pool(args.matched_domain)
        self.issuer = issuer
        self.issuer_fp = hashlib.sha256(issuer).digest()
        self.issuer_key_hash = bytes(32)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.key_der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.log_id = hashlib.sha256(self.key_der).digest()

        def parts(item: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
            der, tbs = item
            return _u(1, 2) + self.issuer_key_hash + _vec(tbs, 3), _vec(der, 3)

        self.firehose = [parts(p) for p in firehose]
        self.watched = [parts(p) for p in watched]
        self.chain = _vec(self.issuer_fp, 2)
        self.start_ms = int(time.time() * 1000) - 3_600_000
        started = time.perf_counter()
        leaves = [
            hashlib.sha256(b"\x00\x00\x00" + self.timestamped(i)).digest() for i in range(self.size)
        ]
        self.levels = [leaves]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([_node(below[i], below[i + 1]) for i in range(0, len(below), 2)])
        self.root = self.levels[-1][0]
        print(f"tree of {self.size:,} built in {time.perf_counter() - started:.1f} s", flush=True)

    def entry(self, i: int) -> tuple[bytes, bytes]:
        if self.matched_every and i % self.matched_every == self.matched_every // 2:
            return self.watched[(i // self.matched_every) % len(self.watched)]
        return self.firehose[i % len(self.firehose)]

    def timestamped(self, i: int) -> bytes:
        middle, _ = self.entry(i)
        extensions = b"\x00" + _vec(_u(i, 5), 2)
        return _u(self.start_ms + i // 300, 8) + middle + _vec(extensions, 2)

    def data_tile(self, n: int, width: int) -> bytes:
        out = []
        for i in range(n * 256, n * 256 + width):
            out.append(self.timestamped(i))
            out.append(self.entry(i)[1])
            out.append(self.chain)
        return b"".join(out)

    def hash_tile(self, level: int, n: int, width: int) -> bytes:
        hashes_ = self.levels[8 * level]
        return b"".join(hashes_[n * 256 : n * 256 + width])

    def checkpoint(self, origin: str) -> bytes:
        timestamp = int(time.time() * 1000)
        signed = struct.pack(">BBQQ", 0, 1, timestamp, self.size) + self.root
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        blob = _u(timestamp, 8) + bytes([4, 3]) + _vec(signature, 2)
        key_id = hashlib.sha256(origin.encode() + b"\n\x05" + self.log_id).digest()[:4]
        body = f"{origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"
        return f"{body}\n\u2014 {origin} {base64.b64encode(key_id + blob).decode()}\n".encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-bits", type=int, default=20)
    parser.add_argument("--matched-every", type=int, default=50_000)
    parser.add_argument("--matched-domain", default="backfill.example")
    parser.add_argument("--list", type=Path, required=True)
    args = parser.parse_args()
    log = Log(args)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.removeprefix("/bench/")
            if path == "checkpoint":
                self.answer(log.checkpoint(origin))
            elif path.startswith("tile/"):
                self.tile(path.removeprefix("tile/"))
            elif path == f"issuer/{log.issuer_fp.hex()}":
                self.answer(log.issuer)
            else:
                self.answer(b"not found", 404)

        def tile(self, rest: str) -> None:
            parts = rest.split("/")
            width = 256
            if parts[-2].endswith(".p"):
                width = int(parts[-1])
                parts = [*parts[:-2], parts[-2].removesuffix(".p")]
            level, digits = parts[0], "".join(p.removeprefix("x") for p in parts[1:])
            n = int(digits)
            lvl = 0 if level == "data" else int(level)
            if min(256, (log.size >> (8 * lvl)) - n * 256) != width:
                self.answer(b"no such tile", 404)
            elif level == "data":
                self.answer(log.data_tile(n, width))
            else:
                self.answer(log.hash_tile(lvl, n, width))

        def answer(self, body: bytes, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    url = f"http://127.0.0.1:{port}/bench"
    origin = url.split("://", 1)[1]
    args.list.write_text(json.dumps({"operators": [{"name": "Bench", "tiled_logs": [{
        "description": "Bench log", "log_id": base64.b64encode(log.log_id).decode(),
        "key": base64.b64encode(log.key_der).decode(), "submission_url": url + "/",
        "monitoring_url": url + "/", "mmd": 60, "state": {"usable": {}},
    }]}]}))  # fmt: skip
    print(f"port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
