"""Test support: real certificates, real network peers, a running service, timings.

A package (``tests.support``), so the benchmarks use the same peers and certificates.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONTRIB", "ROOT", "SAMPLES"]

ROOT = Path(__file__).parent.parent.parent
"""The checkout."""
SAMPLES = ROOT / "tests" / "data" / "samples"
"""The shared certstream samples (``../shared/samples``, copied)."""
CONTRIB = ROOT / "contrib"
