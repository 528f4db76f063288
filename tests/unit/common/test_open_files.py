"""The open-files limit a console or a fleet-wide command raises for itself (scale: agents)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

LOW = 256


def _lowered() -> None:
    """In the child: a login session's low soft limit under the same hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, hard))


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    """From a low soft limit to the hard one, in a process of its own (this one is left alone)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= LOW:
        pytest.fail(f"this machine's hard RLIMIT_NOFILE ({hard}) cannot show a raise")
    code = ("import resource\nfrom common.open_files import raise_open_files_limit\n"
            "now = raise_open_files_limit()\n"
            "print(now, *resource.getrlimit(resource.RLIMIT_NOFILE))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          check=True, preexec_fn=_lowered)
    assert done.stdout.split() == [str(hard)] * 3


def test_a_limit_already_at_the_hard_limit_is_left_alone() -> None:
    """Soft = hard: nothing to raise, the same limit is reported."""
    from common.open_files import raise_open_files_limit  # noqa: PLC0415

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (before[1], before[1]))
    try:
        assert raise_open_files_limit() == before[1]
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (before[1], before[1])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
