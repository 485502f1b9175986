"""From a CT log entry to an observation (pure logic)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certwatch.core import certificates
from certwatch.core.certificates import parse_certificate
from certwatch.core.ctlog import parse_get_entries
from certwatch.core.logentry import entry_names, entry_observation
from certwatch.core.loglist import LogInfo, LogKind
from tests.support.certs import CA
from tests.support.ctlog import TestLog


def test_a_logged_precerts_tbs_is_hashed_as_it_is_and_is_the_final_certificates(
    ca: CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logged TBS hash equals the final certificate's, and needs no ASN.1 decoding."""
    log = TestLog("rfc6962")
    issuance = ca.issue(["www.example.org"])
    log.add_issuance(issuance, "precert")
    [entry] = parse_get_entries({"entries": [log.entry_json(0)]}, 0)
    final_tbs = parse_certificate(issuance.final.public_bytes(Encoding.DER)).tbs_sha256

    def forbidden(tbs_der: bytes) -> str:
        raise AssertionError("a logged TBS was decoded with pyasn1")

    monkeypatch.setattr(certificates, "precert_tbs_sha256", forbidden)
    info = LogInfo("https://log.example", LogKind.RFC6962)
    seen = entry_observation(entry, entry_names(entry), info, verified=False, seen=1.0)
    assert entry.tbs is not None
    assert seen.facts.tbs_sha256 == hashlib.sha256(entry.tbs).hexdigest() == final_tbs
