"""A real, throwaway PostgreSQL cluster for tests (never a mock).

Debian's ``postgresql`` package puts the server in ``/usr/lib/postgresql/<major>/bin``.
``initdb`` and ``postgres`` refuse to run as root, and CI runs as root: then the cluster
runs as the ``postgres`` user the package creates, in a temporary directory that user
owns. It listens on a Unix socket in that directory only (nothing on the network), with
``fsync`` off (a test cluster need not survive a power cut).

Each test gets a database of its own, owned by an ordinary role (certwatch needs no
superuser). Where PostgreSQL is not installed, the tests that need it skip, saying why;
``.ci/run`` installs it and sets ``CERTWATCH_REQUIRE_POSTGRES=1``, which turns that skip
into a failure.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

__all__ = ["PostgresCluster", "find_binaries"]

ROLE = "certwatch"
PASSWORD = "test-password-42"
_numbers = itertools.count()


def find_binaries() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


NOT_INSTALLED = "PostgreSQL is not installed (Debian: apt-get install postgresql)"


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory; a database per test."""

    def __init__(self, binaries: Path) -> None:
        self.bin = binaries
        self.dir = Path(tempfile.mkdtemp(prefix="certwatch-pg-"))
        self.data = self.dir / "data"
        self.socket = self.dir
        self.port = 5432
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as postgres
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresCluster:
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                      "-U", "postgres", "--no-sync", "-E", "UTF8")  # fmt: skip
        options = (
            f"-k {self.socket} -c listen_addresses='' -c port={self.port} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.dir / "server.log"), "-w", "-t", "60", "start")  # fmt: skip
        with self.admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
            if not exists:
                conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop the server (closing every connection) and start it again."""
        self.stop("fast")
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=str(self.socket), port=self.port, user="postgres", dbname="postgres",
            autocommit=True,
        )  # fmt: skip

    def url(self, database: str) -> str:
        """A ``DATABASE_URL`` for ``database`` as the ordinary role, over the socket."""
        return f"postgresql://{ROLE}:{PASSWORD}@/{database}?host={self.socket}&port={self.port}"

    def new_database(self) -> str:
        """A fresh database owned by the ordinary role; its URL."""
        name = f"certwatch_test_{os.getpid()}_{next(_numbers)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url(name)


@contextlib.contextmanager
def running_cluster(binaries: Path) -> Iterator[PostgresCluster]:
    """A cluster started with ``binaries``, destroyed (with its directory) at the end."""
    cluster = PostgresCluster(binaries)
    try:
        yield cluster.start()
    finally:
        cluster.destroy()


@contextlib.contextmanager
def cluster_or_skip() -> Iterator[PostgresCluster]:
    """A running cluster for the session, or a skip saying why there is none."""
    binaries = find_binaries()
    if binaries is None:
        reason = f"{NOT_INSTALLED}; .ci/run installs it"
        if os.environ.get("CERTWATCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"CERTWATCH_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    with running_cluster(binaries) as cluster:
        yield cluster
