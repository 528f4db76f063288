"""A real OpenSSH sshd on loopback: the provisioning target of convocate-host."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostctl import bundle as bundles
from tests.support.images import offline_image  # noqa: F401 - the session fixture, re-exported
from tests.support.sshd import Sshd, start_sshd

# Bundles are built once per source content and kept between runs (a cache, keyed by content).
BUNDLE_CACHE = Path(tempfile.gettempdir()) / "convocate-test-bundles"


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    """A real sshd on loopback that accepts our key for the current user."""
    with tempfile.TemporaryDirectory(prefix="cvsshd-") as d:
        server = start_sshd(Path(d))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def release_bundle() -> bundles.Bundle:
    """This checkout's release bundle (wheelhouse)."""
    source = bundles.source_root()
    assert source is not None
    return bundles.build_bundle(source, BUNDLE_CACHE)
