"""The pure parts of image push: codec argv, levels, the plan, the progress display."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from common.errors import ConvocateError, InvalidArgumentError
from hostctl.image_commands import ProgressBar, progress_display
from hostctl.image_receiver import layers_to_skip, parse_inventory, parse_load, raise_for_commit
from hostctl.image_transfer import CODECS, DEFAULT_CODEC, RECEIVER_PACKAGES, push_plan
from hostctl.remote import CommandResult


def test_zstd_is_the_multithreaded_default() -> None:
    assert DEFAULT_CODEC == "zstd"
    assert CODECS["zstd"].compress(None) == ["zstd", "-q", "-T0", "-1", "-c"]
    assert CODECS["zstd"].compress(3) == ["zstd", "-q", "-T0", "-3", "-c"]
    assert CODECS["gzip"].compress(6) == ["gzip", "-n", "-6", "-c"]
    assert set(RECEIVER_PACKAGES) == {"zstd", "gzip"}


@pytest.mark.parametrize(("codec", "level"), [("gzip", 10), ("zstd", 20), ("zstd", 0)])
def test_out_of_range_levels_are_refused(codec: str, level: int) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{codec} level must be 1"):
        CODECS[codec].compress(level)


def test_plan_names_the_codec_and_sets_the_pointer_last() -> None:
    steps = push_plan("convocate:1", "agent-1", codec="gzip", set_current="/etc/p")
    assert steps[1].startswith("docker save convocate:1 | untag")
    assert "| gzip -n -1 -c | sha256 (here)" in steps[1]
    assert "gzip -d -c | docker load" in steps[2]
    assert steps[-1].startswith("write /etc/p = convocate:1")
    assert "only if all matched" in steps[-1]
    with pytest.raises(InvalidArgumentError, match="unknown codec 'lz4'"):
        push_plan("convocate:1", "agent-1", codec="lz4", set_current=None)


def test_the_layers_a_target_has_are_the_longest_shared_prefix() -> None:
    """Only a prefix shared with one target image has its chain ids there; a diff id that
    also sits above that prefix is sent (tar members cannot be told apart by position)."""
    inventory = parse_inventory("sha256:i1 a b c \nsha256:i2 a x\nsha256:i3\n")
    assert inventory == {"sha256:i1": ["a", "b", "c"], "sha256:i2": ["a", "x"], "sha256:i3": []}
    assert layers_to_skip(["a", "b", "d"], inventory) == {"a", "b"}
    assert layers_to_skip(["a", "x", "b"], inventory) == {"a", "x"}
    assert layers_to_skip(["b", "c"], inventory) == set()  # same layers, another chain
    assert layers_to_skip(["a", "b", "a"], inventory) == {"b"}
    assert layers_to_skip(["a"], {}) == set()


def test_the_load_step_reports_its_digest_and_image() -> None:
    out = b"sha256 abc\nloaded sha256:42\n"
    assert parse_load(CommandResult(0, out, b"")) == ("abc", "sha256:42")
    assert parse_load(CommandResult(1, b"sha256 \n", b"")) == ("", "")


def test_progress_bar_draws_each_stage_with_bytes() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    display = progress_display(console)
    bar = ProgressBar(display)
    with display:
        bar.stage("send", 4_000_000)
        bar.advance(2_000_000)
        bar.stage("verify", None)
        bar.stage("done", None)
    text = out.getvalue()
    for word in ("send", "verify", "2.0/2.0 MB"):
        assert word in text
    assert all(t.finished for t in display.tasks)


def test_commit_step_exit_codes_become_clear_errors() -> None:
    """The target's last step reports by exit status; each becomes one message."""
    raise_for_commit(CommandResult(0, b"", b""), "h", "t:1", "sha256:a", None)
    with pytest.raises(ConvocateError, match=r"docker tag sha256:a t:1 on h failed \(exit 11\): no such"):
        raise_for_commit(CommandResult(11, b"", b"no such image\n"), "h", "t:1", "sha256:a", None)
    with pytest.raises(ConvocateError, match="writing /p on h failed"):
        raise_for_commit(CommandResult(13, b"", b""), "h", "t:1", "sha256:a", "/p")
