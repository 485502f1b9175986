"""certwatch: watch Certificate Transparency for certificates your load balancers did not obtain.

Layers, from the inside out:

- pure logic, no I/O: :mod:`~certwatch.domains` (entries, matching), :mod:`~certwatch.messages`
  (feed decoding), :mod:`~certwatch.identity`, :mod:`~certwatch.certificates`,
  :mod:`~certwatch.classify` (recognition) and :mod:`~certwatch.events` (alerts, payload);
- I/O edges, each owning one resource: :mod:`~certwatch.feed` (the WebSocket),
  :mod:`~certwatch.store` (the SQLite file), :mod:`~certwatch.webhook` (the HTTP client),
  :mod:`~certwatch.api` (the HTTP server);
- the work between them: :mod:`~certwatch.pipeline` and :mod:`~certwatch.alerter`;
- :mod:`~certwatch.service`, the supervisor, and :mod:`~certwatch.cli`, the entry point.
"""

from __future__ import annotations

from certwatch.errors import CertwatchError as CertwatchError
from certwatch.settings import Settings as Settings
from certwatch.settings import Timing as Timing
from certwatch.version import __version__ as __version__

__all__ = ["CertwatchError", "Settings", "Timing", "__version__"]
