"""The hand-run smoke test's harness (tests/e2e_harness.py), as a newcomer runs it."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.support import ROOT
from tests.support.servers import free_port


def test_ctrl_c_stops_the_harness_with_one_line() -> None:
    """Ctrl-C (SIGINT) stops the harness cleanly: "stopped", no traceback."""
    with subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "e2e_harness.py"),
         "--feed-port", str(free_port()), "--hook-port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as harness:  # fmt: skip
        try:
            assert harness.stdout is not None
            first = harness.stdout.readline()
            assert first.startswith("feed:"), harness.communicate(timeout=30)[1]  # serving
            assert harness.stdout.readline().startswith("webhook:")
            harness.send_signal(signal.SIGINT)
            out, err = harness.communicate(timeout=30)
        finally:
            harness.kill()
    assert harness.returncode == 0, err
    assert "Traceback" not in err
    assert out.strip().splitlines() == ["stopped"]
