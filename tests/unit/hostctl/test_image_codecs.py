"""The pure parts of image push: codec argv, levels, the plan, the progress display."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from common.errors import ConvocateError, FailedPreconditionError, InvalidArgumentError
from hostctl.image_commands import ProgressBar, progress_display
from hostctl.image_transfer import CODECS, DEFAULT_CODEC, RECEIVER_PACKAGES, _check_finish, push_plan
from hostctl.remote import CommandResult


def test_zstd_is_the_multithreaded_default() -> None:
    assert DEFAULT_CODEC == "zstd"
    assert CODECS["zstd"].compress(None) == ["zstd", "-q", "-T0", "-3", "-c"]
    assert CODECS["gzip"].compress(6) == ["gzip", "-n", "-6", "-c"]
    assert set(RECEIVER_PACKAGES) == {"zstd", "gzip"}


@pytest.mark.parametrize(("codec", "level"), [("gzip", 10), ("zstd", 20), ("zstd", 0)])
def test_out_of_range_levels_are_refused(codec: str, level: int) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{codec} level must be 1"):
        CODECS[codec].compress(level)


def test_plan_names_the_codec_and_sets_the_pointer_last() -> None:
    steps = push_plan("convocate:1", "agent-1", codec="gzip", set_current="/etc/p")
    assert steps[0] == "docker save convocate:1 | gzip -n -1 -c | sha256 (here)"
    assert "gzip -d -c FILE | docker load" in steps[3]
    assert steps[-1].startswith("write /etc/p = convocate:1")
    assert "only if all matched" in steps[-1]
    with pytest.raises(InvalidArgumentError, match="unknown codec 'lz4'"):
        push_plan("convocate:1", "agent-1", codec="lz4", set_current=None)


def test_progress_bar_draws_each_stage_with_bytes() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    display = progress_display(console)
    bar = ProgressBar(display)
    with display:
        bar.stage("send", 4_000_000)
        bar.advance(2_000_000)
        bar.stage("verify", None)
        bar.stage("load", None)
        bar.stage("done", None)
    text = out.getvalue()
    for word in ("send", "verify", "load", "2.0/2.0 MB"):
        assert word in text
    assert all(t.finished for t in display.tasks)


def test_finish_step_exit_codes_become_clear_errors() -> None:
    """The target's last step reports by exit status; each becomes one message."""
    _check_finish(CommandResult(0, b"", b""), "h", "t:1", "sha256:a", None)
    with pytest.raises(FailedPreconditionError, match="loaded t:1 as sha256:b, expected sha256:a"):
        _check_finish(CommandResult(12, b"sha256:b\n", b""), "h", "t:1", "sha256:a", None)
    with pytest.raises(ConvocateError, match=r"docker load on h failed \(exit 10\): unexpected EOF"):
        _check_finish(CommandResult(10, b"", b"unexpected EOF\n"), "h", "t:1", "sha256:a", None)
    with pytest.raises(ConvocateError, match="writing /p on h failed"):
        _check_finish(CommandResult(13, b"", b""), "h", "t:1", "sha256:a", "/p")
