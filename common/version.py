"""The running version of convocate: the one place it is written.

The build reads it from here (pyproject: ``[tool.hatch.version]``), so the package's
metadata and this constant cannot differ; reading it back through importlib.metadata
would cost every command's start-up (issue 13).
"""

from __future__ import annotations

__all__ = ["VERSION"]

VERSION = "2.1.0.dev0"
