"""The certwatch command: each subcommand loads only what it uses."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(code: str) -> set[str]:
    """The modules of interest loaded by a fresh interpreter after running ``code``."""
    probe = (
        f"import sys\n{code}\n"
        "print(' '.join(m for m in ('quart', 'hypercorn', 'psycopg', 'certwatch.service', "
        "'certwatch.replay', 'certwatch.migrate') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_the_command_module_loads_no_service_web_stack_or_driver() -> None:
    """Importing the command (and so --help) loads neither the service nor its web stack."""
    assert loaded_after("import certwatch.cli; certwatch.cli._parser()") == set()


def test_a_replay_loads_no_web_stack_or_postgresql_driver() -> None:
    """certwatch replay needs the pipeline, not Quart, Hypercorn or psycopg."""
    assert loaded_after("import certwatch.replay") == {"certwatch.replay"}
