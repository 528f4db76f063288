"""Fixtures of the throwaway-hosts suite (``nox -s e2e-hosts``) and its closing summary.

This directory runs only when ``CONVOCATE_E2E_HOSTS=1`` (the ``e2e-hosts`` session sets
it): it boots Debian machines, downloads packages from the Debian archive and takes
minutes, so the default ``nox -s tests`` run leaves it out.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosts import rootfs
from tests.hosts.agent_host import build_wheelhouse
from tests.hosts.machines import HostFleet, sweep
from tests.hosts.steps import RUN_LOG
from tests.support.env import require_docker, require_tool
from tests.support.images import ensure_offline_image

ENABLED = os.environ.get("CONVOCATE_E2E_HOSTS", "") == "1"
collect_ignore_glob = [] if ENABLED else ["test_*.py"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ENABLED:
        return
    terminalreporter.section("throwaway hosts")
    for line in RUN_LOG.summary_lines():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def host_image() -> str:
    """The cached Debian host image (built on the first run of a recipe); leftovers swept."""
    require_docker()
    require_tool("debootstrap")
    require_tool("ssh")
    with RUN_LOG.step("sweep leftovers of earlier runs"):
        sweep()
    recipe = rootfs.recipe_from_apt()
    with RUN_LOG.step("host image") as step:
        tag, built = rootfs.ensure_host_image(recipe)
        step.text = f"host image ({'built' if built else 'cached'}: {tag})"
    for stale in rootfs.stale_base_images(tag):
        subprocess.run(["docker", "image", "rm", stale], capture_output=True, timeout=120, check=False)
    return tag


@pytest.fixture(scope="session")
def operator_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's SSH key pair (``<path>`` and ``<path>.pub``), made with ssh-keygen."""
    key = tmp_path_factory.mktemp("operator") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator@e2e", "-f", str(key)],
                   check=True, capture_output=True, timeout=30)
    return key


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout and its dependencies as wheels (built once per run)."""
    with RUN_LOG.step("wheelhouse of this checkout"):
        return build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


@pytest.fixture(scope="session")
def session_image() -> str:
    """The offline session image of this checkout (built once, cached by content)."""
    with RUN_LOG.step("offline session image"):
        return ensure_offline_image()


@pytest.fixture(scope="module")
def fleet(host_image: str, operator_key: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFleet]:
    """A fleet for this module's hosts; everything it made is removed afterwards."""
    hosts = HostFleet(host_image, tmp_path_factory.mktemp("fleet"), operator_key)
    try:
        yield hosts
    finally:
        with RUN_LOG.step("remove hosts, volumes and network"):
            hosts.close()
