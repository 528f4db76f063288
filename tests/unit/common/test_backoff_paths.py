"""Backoff growth and jitter, socket path limits and atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from common.backoff import Backoff
from common.errors import InvalidArgumentError
from common.paths import atomic_write, check_socket_path


def test_backoff_grows_caps_jitters_and_resets() -> None:
    """Delays double up to the cap, stay within the jitter band, and reset to the start."""
    b = Backoff(initial=1.0, maximum=8.0, factor=2.0, jitter=0.5)
    delays = [b.next_delay() for _ in range(8)]
    bases = [1, 2, 4, 8, 8, 8, 8, 8]
    for d, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= d <= base
    b.reset()
    assert b.next_delay() <= 1.0


def test_backoff_stays_short_for_the_recovery_window_after_a_lost_connection() -> None:
    """After lost(), delays stay at or under recovery_max for the window, then grow again."""
    now = [100.0]
    b = Backoff(initial=0.2, maximum=30.0, jitter=0.0, recovery=60.0, recovery_max=0.5, clock=lambda: now[0])
    assert [b.next_delay() for _ in range(4)] == pytest.approx([0.2, 0.4, 0.8, 1.6])  # never connected
    b.reset()
    b.lost()
    assert [b.next_delay() for _ in range(10)] == pytest.approx([0.2, 0.4] + [0.5] * 8)
    now[0] += 61
    assert b.next_delay() == pytest.approx(30.0)   # 0.2 * 2**10, capped: the window is over
    b.lost()
    assert b.next_delay() == pytest.approx(0.2)    # a new drop starts a new window
    b.reset()
    assert [b.next_delay() for _ in range(4)] == pytest.approx([0.2, 0.4, 0.8, 1.6])


def test_socket_path_limit() -> None:
    """A socket path over 107 bytes is refused with the reason."""
    assert check_socket_path("/run/x/agent.sock") == Path("/run/x/agent.sock")
    with pytest.raises(InvalidArgumentError, match="at most 107"):
        check_socket_path("/" + "a" * 107)


def test_atomic_write_replaces_and_sets_mode(tmp_path: Path) -> None:
    """atomic_write replaces the content whole, with the mode asked, and leaves no temp file."""
    p = tmp_path / "f.json"
    atomic_write(p, "old")
    atomic_write(p, b"new", mode=0o644)
    assert p.read_text() == "new"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["f.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the rename fails (a crash before it), the old file is intact and no temp file is left."""
    p = tmp_path / "f.json"
    atomic_write(p, "old")

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write(p, "new")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]
