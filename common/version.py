"""The running version of convocate (from the installed distribution's metadata)."""

from __future__ import annotations

from importlib import metadata

__all__ = ["VERSION"]

try:
    VERSION = metadata.version("convocate")
except metadata.PackageNotFoundError:  # running from a bare checkout
    VERSION = "0+unknown"
