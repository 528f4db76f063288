"""A real OpenSSH sshd on loopback: the provisioning target of convocate-host."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sshd import Sshd, start_sshd


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    """A real sshd on loopback that accepts our key for the current user."""
    with tempfile.TemporaryDirectory(prefix="cvsshd-") as d:
        server = start_sshd(Path(d))
        try:
            yield server
        finally:
            server.stop()
