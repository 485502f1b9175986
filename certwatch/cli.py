"""The ``certwatch`` command.

``certwatch`` (or ``certwatch serve``) runs the service. Exit status: 0 after a clean
shutdown (SIGINT, SIGTERM or SIGHUP; repeated signals during shutdown are ignored), 2 for a
bad setting (one line on stderr naming the variable), 1 for an environment that stops it
(the database cannot be used, the port is taken: one line too) or a task that crashed (the
traceback is logged: a half-alive process is worse than a restarted one).

``certwatch replay FILE`` runs the pipeline over a capture (see :mod:`certwatch.replay`);
``certwatch migrate-db`` copies a SQLite database into PostgreSQL (:mod:`certwatch.migrate`);
``certwatch ca-data FILE`` writes CA identities from CCADB (:mod:`certwatch.sources.ccadb`).
Each command imports what it needs when it runs: ``--help`` and ``replay`` do not load the
web stack or the database drivers they do not use.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import trio

from certwatch.errors import ConfigError, ListenError, StoreError, leaves
from certwatch.logs import configure_logging
from certwatch.settings import Settings
from certwatch.settings import read as read_setting
from certwatch.version import __version__

__all__ = ["main"]

log = logging.getLogger(__name__)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Each stops certwatch cleanly. SIGHUP too: certwatch has nothing to reload, and a closed
terminal (or a supervisor that sends it) means "stop"."""


class _StopRequests:
    """A plain Python handler for the stop signals, in place outside ``trio.run``.

    Installed before ``trio.run`` starts, it notes a signal that arrives before trio's own
    receiver is open; trio puts it back when ``trio.run`` ends, so a signal during the last
    moments of shutdown (``uv run`` forwards each SIGTERM, so a ``kill`` of the process group
    delivers two) is noted and ignored instead of killing the process with status 143.
    """

    def __init__(self) -> None:
        self.received: list[int] = []

    def note(self, signum: int, frame: object) -> None:
        self.received.append(signum)

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.note)

    @staticmethod
    def ignore_from_now_on() -> None:
        """Once ``trio.run`` is over, ignore them for good: interpreter shutdown resets every
        Python handler to the default (which kills) but leaves ``SIG_IGN`` alone."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


async def _run_until_signal(settings: Settings, early: _StopRequests) -> None:
    from certwatch.service import serve  # the service's imports only when it runs

    shutdown = trio.Event()

    def stop(signum: int) -> None:
        if shutdown.is_set():
            log.info("received %s while shutting down; ignored", signal.Signals(signum).name)
            return
        log.info("received %s: shutting down", signal.Signals(signum).name)
        shutdown.set()

    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        for signum in early.received:
            stop(signum)
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    stop(signum)

            nursery.start_soon(watch_signals)
            await serve(settings, shutdown)
            nursery.cancel_scope.cancel()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="certwatch",
        description="Watch Certificate Transparency for certificates your LBs did not obtain. "
        "Configured by environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"certwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run the service (the default)")
    replay = commands.add_parser(
        "replay",
        help="run the pipeline over a capture, printing what would alert; sends nothing",
        description="Decode, match and classify a capture of certstream messages (JSON "
        "lines) against the watch list and inventory in DB_PATH. Prints each would-be "
        "webhook payload as a JSON line on stdout and a summary on stderr.",
    )
    replay.add_argument("file", help="the capture, one message per line; - for stdin")
    commands.add_parser(
        "migrate-db",
        help="copy the SQLite database at DB_PATH into the PostgreSQL at DATABASE_URL",
        description="Copy watch entries, inventory, keys, alerts (with their delivery state) "
        "and CT log positions from the SQLite file at DB_PATH into the PostgreSQL database at "
        "DATABASE_URL. Rows already there are left alone: running it again is harmless. "
        "Stop certwatch first.",
    )
    ca_data = commands.add_parser(
        "ca-data",
        help="write a CA_IDENTITIES_FILE from CCADB's live reports (fresher CA data)",
        description="Read CCADB's All Certificate PEMs report (every year), find each CA "
        "key's owner by the root it chains to, and write the keys of the owners certwatch "
        "knows, with their CAA identifiers, as a CA_IDENTITIES_FILE. Point "
        "CA_IDENTITIES_FILE at it: it is laid over the data built into certwatch.",
    )
    ca_data.add_argument("output", type=Path, help="the file to write (replaced whole)")
    ca_data.add_argument(
        "--from",
        dest="source",
        metavar="URL_OR_DIR",
        help="CCADB's report URL (the default) or a directory of its per-year downloads "
        "(AllCertificatePEMsCSVFormat_NotBeforeYear_YYYY)",
    )
    ca_data.add_argument(
        "--builtin",
        action="store_true",
        help="write the compact form built into certwatch instead (for maintainers)",
    )
    replay.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        help="the grace period to simulate (default: SUSPICIOUS_GRACE_S, or 60)",
    )
    return parser


def _replay(file: str, grace_s: float | None) -> NoReturn:
    from certwatch.core.decision import Policy
    from certwatch.replay import load_views, replay  # no web stack for a replay
    from certwatch.sources.ccadb import load as load_cas

    try:
        db_path = read_setting("DB_PATH")
        grace = read_setting("SUSPICIOUS_GRACE_S") if grace_s is None else grace_s
        cas_file = read_setting("CA_IDENTITIES_FILE")
        views = load_views(db_path, read_setting("DATABASE_URL"))
    except (ConfigError, StoreError) as e:
        print(f"certwatch: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ConfigError) else 1)
    policy = Policy(views.rules, load_cas(cas_file.identities if cas_file else ()))
    try:
        if file == "-":
            report = replay(
                sys.stdin, views.index, views.inventory, sys.stdout,
                grace_s=grace, policy=policy, brands=views.brands,
            )  # fmt: skip
        else:
            with Path(file).open(encoding="utf-8", errors="replace") as lines:
                report = replay(
                    lines, views.index, views.inventory, sys.stdout,
                    grace_s=grace, policy=policy, brands=views.brands,
                )  # fmt: skip
    except OSError as e:
        print(f"certwatch: cannot read {file}: {e.strerror or e}", file=sys.stderr)
        sys.exit(1)
    print(report.summary(), file=sys.stderr)
    sys.exit(0)


def _migrate_db() -> NoReturn:
    from certwatch.migrate import migrate_db

    try:
        db_path: Path = read_setting("DB_PATH")
        database_url: str | None = read_setting("DATABASE_URL")
    except ConfigError as e:
        print(f"certwatch: {e}", file=sys.stderr)
        sys.exit(2)
    if database_url is None:
        print("certwatch: DATABASE_URL: required, the PostgreSQL database to copy into",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    if not db_path.exists():
        print(f"certwatch: no database at {str(db_path)!r} (set DB_PATH)", file=sys.stderr)
        sys.exit(1)
    configure_logging("WARNING")
    try:
        trio.run(migrate_db, db_path, database_url, sys.stdout)
    except StoreError as e:
        print(f"certwatch: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


def _ca_data(output: Path, source: str | None, builtin: bool) -> NoReturn:
    from certwatch.core.cas import InvalidIdentities
    from certwatch.sources.ccadb import CCADB_REPORT_URL, generate

    try:
        generate(source or CCADB_REPORT_URL, output, builtin=builtin)
    except (InvalidIdentities, OSError) as e:
        print(f"certwatch: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = _parser().parse_args(argv)
    if args.command == "ca-data":
        _ca_data(args.output, args.source, args.builtin)
    if args.command == "replay":
        _replay(args.file, args.grace)
    if args.command == "migrate-db":
        _migrate_db()
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        print(f"certwatch: {e}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level)
    early = _StopRequests()
    early.install()
    try:
        try:
            trio.run(_run_until_signal, settings, early)
        finally:
            early.ignore_from_now_on()
    except BaseException as e:  # the process boundary: report, then exit
        found = leaves(e)
        if all(isinstance(leaf, ListenError) for leaf in found):
            print(f"certwatch: {found[0]}", file=sys.stderr)
            sys.exit(max(leaf.exit_status for leaf in found if isinstance(leaf, ListenError)))
        if all(isinstance(leaf, StoreError) for leaf in found):
            print(f"certwatch: {found[0]}", file=sys.stderr)
        elif all(isinstance(leaf, KeyboardInterrupt) for leaf in found):
            sys.exit(130)
        else:
            log.critical("certwatch crashed", exc_info=e)
        sys.exit(1)
    sys.exit(0)
