from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.certs import CA
from tests.support.postgres import PostgresCluster, cluster_or_skip
from tests.support.servers import FeedServer, Receiver

ROOT = Path(__file__).parent.parent
_CHECKOUT = pytest.StashKey[str | None]()


def _checkout_state() -> str | None:
    """``git status`` of the checkout (``None`` outside a git checkout), without reading
    any host configuration."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(ROOT),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_CHECKOUT] = _checkout_state()
    # certwatch started as a process by a test inherits this: no test reads the CT logs or
    # the published log list on the internet (tests that back-fill serve their own logs and
    # list, and say CT_BACKFILL=1).
    os.environ["CT_BACKFILL"] = "0"
    # Nor the system's DNS resolvers (/etc/resolv.conf): tests of CAA run their own
    # servers and say CAA_CHECK=1 and CAA_RESOLVER.
    os.environ["CAA_CHECK"] = "0"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test states the behaviour it checks in a one-line docstring."""
    undocumented = sorted(
        {
            item.nodeid.split("[")[0]
            for item in items
            if isinstance(item, pytest.Function)
            and (not item.function.__doc__ or "\n" in item.function.__doc__.strip())
        }
    )
    if undocumented:
        raise pytest.UsageError(
            "tests without a one-line docstring:\n  " + "\n  ".join(undocumented)
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite leaves the checkout as it found it: nothing written, nothing changed."""
    before, after = session.config.stash.get(_CHECKOUT, None), _checkout_state()
    if before is None or after is None or before == after:
        return
    changed = sorted(set(after.splitlines()) ^ set(before.splitlines()))
    print("\nthe test session changed the checkout:\n  " + "\n  ".join(changed))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def ca() -> CA:
    return CA()


@pytest.fixture
async def feed(nursery: trio.Nursery) -> FeedServer:
    return await FeedServer().start(nursery)


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> AsyncIterator[Receiver]:
    r = await Receiver().start(nursery)
    yield r
    r.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session (or a skip saying why there is none)."""
    with cluster_or_skip() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for each database backend in turn: SQLite's file, or a fresh PostgreSQL
    database of the session's cluster."""
    if request.param == "sqlite":
        return {}
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return {"database_url": cluster.new_database()}


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> str:
    """A fresh database of its own for one test: its DATABASE_URL."""
    return postgres.new_database()
