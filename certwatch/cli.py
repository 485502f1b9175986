"""The ``certwatch`` command.

``certwatch`` (or ``certwatch serve``) runs the service. Exit status: 0 after a clean
shutdown (SIGINT/SIGTERM), 2 for a bad environment variable (one line on stderr naming it),
1 when the database cannot be used or a task crashed (the traceback is logged: a half-alive
process is worse than a restarted one).

``certwatch replay FILE`` runs the pipeline over a capture (see :mod:`certwatch.replay`).
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

from certwatch import __version__
from certwatch.errors import ConfigError, StoreError
from certwatch.replay import load_views, replay
from certwatch.service import serve
from certwatch.settings import Settings, db_path_from_env

__all__ = ["main"]

log = logging.getLogger("certwatch")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request URL at INFO; a webhook URL can carry a secret path.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("httpcore").setLevel(logging.WARNING)


async def _run_until_signal(settings: Settings) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    if not shutdown.is_set():
                        log.info("received %s", signal.Signals(signum).name)
                        shutdown.set()
                    else:
                        log.warning("second signal: stopping without waiting")
                        nursery.cancel_scope.cancel()

        nursery.start_soon(watch_signals)
        await serve(settings, shutdown)
        nursery.cancel_scope.cancel()


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for sub in error.exceptions for leaf in _leaves(sub)]
    return [error]


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
    return parser


def _replay(file: str) -> NoReturn:
    try:
        index, inventory = load_views(db_path_from_env())
    except (ConfigError, StoreError) as e:
        print(f"certwatch: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ConfigError) else 1)
    try:
        if file == "-":
            report = replay(sys.stdin, index, inventory, sys.stdout)
        else:
            with Path(file).open(encoding="utf-8", errors="replace") as lines:
                report = replay(lines, index, inventory, sys.stdout)
    except OSError as e:
        print(f"certwatch: cannot read {file}: {e.strerror or e}", file=sys.stderr)
        sys.exit(1)
    print(report.summary(), file=sys.stderr)
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = _parser().parse_args(argv)
    if args.command == "replay":
        _replay(args.file)
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        print(f"certwatch: {e}", file=sys.stderr)
        sys.exit(2)
    _configure_logging(settings.log_level)
    try:
        trio.run(_run_until_signal, settings)
    except BaseException as e:  # the process boundary: report, then exit
        leaves = _leaves(e)
        if all(isinstance(leaf, StoreError) for leaf in leaves):
            print(f"certwatch: {leaves[0]}", file=sys.stderr)
        elif all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            sys.exit(130)
        else:
            log.critical("certwatch crashed", exc_info=e)
        sys.exit(1)
    sys.exit(0)
