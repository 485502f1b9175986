"""certwatch's version: written once, in pyproject.toml, and read from the installed
distribution's metadata."""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["USER_AGENT", "__version__"]

__version__ = version("certwatch")

USER_AGENT = f"certwatch/{__version__}"
"""How certwatch introduces itself to the webhook receiver and to CT logs."""
