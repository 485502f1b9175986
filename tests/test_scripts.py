"""The scripts people run by path (benchmarks, the smoke-test harness) import as scripts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

# Run as ``python benchmarks/x.py``: the script's folder first on the path, not the checkout.
# Its module body runs (every import), its ``__main__`` block does not.
_AS_A_SCRIPT = """
import runpy, sys
sys.path[0] = sys.argv[1]
runpy.run_path(sys.argv[2], run_name="imported_as_a_script")
"""


def test_every_script_imports_when_run_by_its_path(tmp_path: Path) -> None:
    """Each benchmark and the harness find this checkout's packages when run by path."""
    # A dependency (confusables 1.2.0) installs a stray top-level ``tests`` package into
    # site-packages; a script that imports ``tests.support`` before anything puts the
    # checkout first gets that one and fails.
    candidates = [*sorted((ROOT / "benchmarks").glob("*.py")), ROOT / "tests" / "e2e_harness.py"]
    scripts = [s for s in candidates if 'if __name__ == "__main__":' in s.read_text()]
    running = {
        script.name: subprocess.Popen(
            [sys.executable, "-c", _AS_A_SCRIPT, str(script.parent), str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for script in scripts
    }
    failed = {}
    for name, proc in running.items():
        with proc:
            _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failed[name] = err.strip().splitlines()[-1:]
    assert len(running) >= 15
    assert failed == {}
