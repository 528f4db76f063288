"""The offline session image for tests, built once per test session.

Use the ``offline_image`` fixture (import it into a conftest) or call
:func:`ensure_offline_image` directly; both return the tag
``convocate-test:offline-<hash>``. The image is built from this host's busybox and tmux
(see :mod:`agent.image_build`) with the ``docker`` CLI, so no event loop is needed.
"""

from __future__ import annotations

import subprocess

import pytest

from agent.image_build import build_context, offline_image_tag
from tests.support.env import require_docker, require_tool

__all__ = ["TEST_REPOSITORY", "ensure_offline_image", "offline_image"]

TEST_REPOSITORY = "convocate-test"


def ensure_offline_image() -> str:
    """Build the offline image unless it exists; return its tag."""
    require_docker()
    require_tool("tmux")
    context = build_context()
    tag = offline_image_tag(context, TEST_REPOSITORY)
    exists = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=30, check=False)
    if exists.returncode != 0:
        built = subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=context,
                               capture_output=True, timeout=120, check=False)
        if built.returncode != 0:
            raise AssertionError(f"building {tag} failed: {built.stderr.decode(errors='replace')}")
    return tag


@pytest.fixture(scope="session")
def offline_image() -> str:
    """The tag of the offline session image (built on first use in the session)."""
    return ensure_offline_image()
