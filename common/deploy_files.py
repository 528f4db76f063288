"""Where the shipped deployment files (systemd units, Dockerfile, demo) are.

In a checkout or an editable install they are the repository's ``deploy/``; a wheel
carries the same tree as ``common/_deploy`` (pyproject ``force-include``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["deploy_dir"]


def deploy_dir() -> Path:
    """The ``deploy`` directory of this installation."""
    packaged = Path(__file__).resolve().parent / "_deploy"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "deploy"
