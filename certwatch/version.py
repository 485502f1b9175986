"""certwatch's version: written once, in pyproject.toml, and read from the installed
distribution's metadata."""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["__version__"]

__version__ = version("certwatch")
