"""Realistic certstream full-stream frames for benchmarks (and a JSON-lines capture).

Full-stream messages are 4-12 KB: a leaf with its DER and a chain of CA certificates, in
certstream-server-go's format. The frames here use RSA-2048 certificates (as most of the
real stream does) for random names under random registrable domains, so a watch list
matches only what the benchmark plants.

    uv run python benchmarks/frames.py capture.jsonl 20000   # write a capture for replay
"""

from __future__ import annotations

import datetime
import json
import random
import string
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

import benchmarks  # noqa: F401  (the checkout's tests package first: see benchmarks/__init__.py)
from tests.support.certs import build_leaf, leaf_message

TLDS = ["com", "net", "org", "io", "de", "fr", "co.uk", "dev", "app", "info"]


def _name(cn: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COUNTRY_NAME, "US")]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(parts)


class RsaIssuer:
    """An RSA-2048 root and intermediate, issuing leaves with one shared RSA-2048 key."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        root_name = _name("Bench Root X1", "Bench Trust")
        self.root = self._ca(root_name, root_name, self.root_key, self.root_key, now)
        self.name = _name("Bench R3", "Bench Trust")
        self.cert = self._ca(self.name, root_name, self.key, self.root_key, now)

    @staticmethod
    def _ca(subject: x509.Name, issuer: x509.Name, key: Any, signer: Any, now: Any) -> Any:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(signer, hashes.SHA256())
        )

    def random_names(self) -> list[str]:
        rng = self.rng
        base = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 12)))
        domain = f"{base}.{rng.choice(TLDS)}"
        count = rng.choices([1, 2, 3, 5, 10, 40], weights=[30, 30, 15, 10, 10, 5])[0]
        names = [domain]
        for _ in range(count - 1):
            label = "".join(
                rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(3, 10))
            )
            names.append(f"{label}.{domain}" if rng.random() < 0.8 else f"*.{label}.{domain}")
        return names

    def precert(self, names: list[str]) -> x509.Certificate:
        """A precert for ``names``, valid from now for 90 days."""
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        return build_leaf(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]),
            issuer=self.name,
            issuer_key=self.key,
            public_key=self.leaf_key.public_key(),
            serial=x509.random_serial_number(),
            names=names,
            not_before=now,
            not_after=now + datetime.timedelta(days=90),
            extra=x509.PrecertPoison(),
            critical=True,
        )

    def message(self, names: list[str], *, index: int, log_url: str) -> dict[str, Any]:
        cert = self.precert(names)
        return leaf_message(
            cert,
            variant="go-full",
            update_type="PrecertLogEntry",
            chain=[self.cert, self.root],
            log="Bench log",
            log_url=log_url,
            index=index,
            seen=cert.not_valid_before_utc.timestamp(),
        )


def build_frames(count: int, *, seed: int = 1, logs: int = 4) -> list[str]:
    """``count`` distinct frames; ``cert_index`` rises by one per log, round robin."""
    issuer = RsaIssuer(seed)
    frames = []
    for i in range(count):
        log = i % logs
        message = issuer.message(
            issuer.random_names(), index=i // logs, log_url=f"https://bench-log-{log}.example"
        )
        frames.append(json.dumps(message, separators=(",", ":")) + "\n")
    return frames


def main() -> None:
    path, count = Path(sys.argv[1]), int(sys.argv[2])
    frames = build_frames(count)
    path.write_text("".join(frames))
    sizes = sorted(len(f) for f in frames)
    print(
        f"wrote {count} frames to {path}: median {sizes[len(sizes) // 2]} B, "
        f"p5 {sizes[len(sizes) // 20]} B, p95 {sizes[len(sizes) * 19 // 20]} B"
    )


if __name__ == "__main__":
    main()
