"""The process boundary: `python -m certwatch` under signals and start-up faults.

Each test runs the real command in a subprocess, as a container or systemd runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
import trio

from certwatch.errors import ListenError
from certwatch.http.server import listen_error
from tests.support.certs import CA
from tests.support.servers import FeedServer
from tests.support.service import TOKEN, make_settings, run_certwatch


def environment(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "API_TOKEN": TOKEN,
        "API_PORT": "0",
        "DB_PATH": str(tmp_path / "cw.db"),
        "CERTSTREAM_URL": "ws://127.0.0.1:9/full-stream",
        **overrides,
    }


@contextmanager
def running(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """certwatch in a subprocess, returned once it logged that it is ready."""
    with subprocess.Popen(
        [sys.executable, "-m", "certwatch"], env=env, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "certwatch ready" in line:
                    break
            else:
                pytest.fail(f"certwatch never became ready (exit {proc.wait()})")
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def stopped(proc: subprocess.Popen[str], timeout: float = 10) -> tuple[int, str]:
    status = proc.wait(timeout=timeout)
    assert proc.stderr is not None
    return status, proc.stderr.read()


class TestSignals:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
    def test_a_stop_signal_exits_zero(self, tmp_path: Path, signum: signal.Signals) -> None:
        """SIGTERM, SIGINT and SIGHUP each stop certwatch cleanly with exit status 0."""
        with running(environment(tmp_path)) as proc:
            proc.send_signal(signum)
            status, rest = stopped(proc)
        assert status == 0, rest
        assert f"received {signum.name}: shutting down" in rest
        assert "stopped" in rest

    def test_repeated_signals_until_exit_still_exit_zero(self, tmp_path: Path) -> None:
        """A SIGTERM then more every millisecond: exit 0, five times."""
        # What `uv run` does: it forwards each SIGTERM, so `kill` of the process group sends two;
        # one in three of such exits used to end with status 143.
        for run in range(5):
            with running(environment(tmp_path)) as proc:
                proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 10
                while proc.poll() is None and time.monotonic() < deadline:
                    try:
                        proc.send_signal(signal.SIGTERM)
                    except ProcessLookupError:
                        break
                    time.sleep(0.001)
                status, rest = stopped(proc)
            assert status == 0, (run, rest[-2000:])


class TestStartupErrors:
    def test_a_busy_port_is_one_line_and_exit_1(self, tmp_path: Path) -> None:
        """The API port taken by another program: one line naming API_PORT, exit 1."""
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = other.getsockname()[1]
            result = run_certwatch(env=environment(tmp_path, API_PORT=str(port)))
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1] == (
            f"certwatch: API_PORT: 127.0.0.1:{port} is already in use "
            "(another certwatch, or another program)"
        )
        assert not list(tmp_path.glob("*.db"))  # checked before the database is made

    def test_an_address_not_on_this_host_is_one_line_and_exit_1(self, tmp_path: Path) -> None:
        """API_HOST set to an address this host does not have: one line naming it, exit 1."""
        result = run_certwatch(env=environment(tmp_path, API_HOST="192.0.2.1"))  # TEST-NET-1
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.splitlines()[-1] == (
            "certwatch: API_HOST: 192.0.2.1 is not an address of this host"
        )

    def test_a_name_that_does_not_resolve_is_a_setting_error(self, tmp_path: Path) -> None:
        """An API_HOST name that cannot be resolved is a bad setting: exit status 2."""
        settings = make_settings(tmp_path, api_host="certwatch.invalid")
        error = listen_error(settings, socket.gaierror(socket.EAI_NONAME, "Name does not resolve"))
        assert isinstance(error, ListenError)
        assert (error.variable, error.exit_status) == ("API_HOST", 2)
        assert str(error) == "API_HOST: cannot resolve 'certwatch.invalid'"


def test_a_crashing_task_stops_the_process_with_a_traceback(tmp_path: Path) -> None:
    """A bug in one task is logged with its traceback and exits 1, not a half-alive process."""
    program = (
        "import certwatch.sources.certstream as feed\n"
        "def broken(url, timing):\n"
        "    raise RuntimeError('injected bug in the feed consumer')\n"
        "feed._open = broken\n"
        "from certwatch.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, "API_TOKEN": TOKEN, "API_PORT": "0", "DB_PATH": str(tmp_path / "cw.db")}
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "certwatch crashed" in result.stderr
    assert "Traceback" in result.stderr
    assert "RuntimeError: injected bug in the feed consumer" in result.stderr


class Process:
    """certwatch in a subprocess under trio, its stderr collected as it comes."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.stderr = ""
        self.url = ""
        self._changed = trio.Event()

    async def read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.receive_some(65536):
            self.stderr += chunk.decode("utf-8", "replace")
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, text: str) -> None:
        with trio.fail_after(20):
            while text not in self.stderr:
                await self._changed.wait()


@asynccontextmanager
async def process(env: dict[str, str]) -> AsyncIterator[Process]:
    """``python -m certwatch`` with ``env``, ready (its API URL known); stopped on exit."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "certwatch"], env=env, stderr=subprocess.PIPE
    )
    running = Process(proc)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(running.read_stderr)
            await running.wait_for("certwatch ready: API on ")
            running.url = running.stderr.split("certwatch ready: API on ")[1].split(",")[0]
            yield running
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class TestWhatTheProcessShows:
    async def test_feed_values_cannot_forge_log_lines(
        self, tmp_path: Path, feed: FeedServer, ca: CA
    ) -> None:
        """An issuer CN with a newline and ANSI escapes stays inside one escaped log line."""
        forged = "ETS R1\n2026-12-02 10:00:00,000 CRITICAL certwatch: \x1b[32mall clear\x1b[0m"
        message = ca.issue(["evil.example.org"]).message()
        message["data"]["leaf_cert"]["issuer"]["CN"] = forged
        env = environment(tmp_path, CERTSTREAM_URL=feed.url, SUSPICIOUS_GRACE_S="0")
        async with process(env) as certwatch:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as api:
                added = await api.post(certwatch.url + "/domains", json={"value": "example.org"})
                assert added.status_code == 201
            await feed.send(message)
            await certwatch.wait_for("alert suspicious: evil.example.org")
        assert "\x1b" not in certwatch.stderr
        lines = certwatch.stderr.splitlines()
        assert not any(line.startswith("2026-12-02 10:00:00,000") for line in lines)
        assert "(issuer ETS R1\\n2026-12-02 10:00:00,000 CRITICAL" in certwatch.stderr

    async def test_credentials_in_the_feed_url_are_never_shown(self, tmp_path: Path) -> None:
        """A user, password and API key in CERTSTREAM_URL appear in neither logs nor /healthz."""
        secret_url = "ws://feeduser:hunter2@127.0.0.1:9/full-stream?apikey=s3cr3t-k3y"
        env = environment(tmp_path, CERTSTREAM_URL=secret_url)
        async with process(env) as certwatch:
            await certwatch.wait_for("reconnecting in")
            async with httpx.AsyncClient() as anonymous:
                health = (await anonymous.get(certwatch.url + "/healthz")).json()
        shown = health["feed"]["url"] + certwatch.stderr
        for secret in ("feeduser", "hunter2", "s3cr3t-k3y"):
            assert secret not in shown
        assert health["feed"]["url"] == "ws://***@127.0.0.1:9/full-stream?apikey=***"

    async def test_a_token_with_a_trailing_newline_works(self, tmp_path: Path) -> None:
        """API_TOKEN="tok\\n" (from `echo tok | kubectl create secret`): "Bearer tok" is let in."""
        env = environment(tmp_path, API_TOKEN=TOKEN + "\n")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with process(env) as certwatch, httpx.AsyncClient(headers=headers) as api:
            response = await api.get(certwatch.url + "/domains")
        assert response.status_code == 200
