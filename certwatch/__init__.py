"""certwatch: watch Certificate Transparency for certificates your load balancers did not obtain.

The layers, each importing only from those below it (checked by import-linter in CI)::

    cli, replay         the commands
    service             the supervisor: one nursery, the tasks, the channels between them
    http                the API (Quart-Trio on Hypercorn)
    sources | delivery  the certstream consumer | the webhook sender (edges, one resource each)
    pipeline            frames to matches to stored, decided alerts; cleanup
    store               the database
    metrics, settings, logs
    core                pure logic: names, certificates, decoding, recognition, alerts
    errors, version

``core`` imports no I/O library (no trio, httpx, sqlite3, Quart, Hypercorn).
"""

from __future__ import annotations

from certwatch.errors import CertwatchError as CertwatchError
from certwatch.settings import Settings as Settings
from certwatch.settings import Timing as Timing
from certwatch.version import __version__ as __version__

__all__ = ["CertwatchError", "Settings", "Timing", "__version__"]
