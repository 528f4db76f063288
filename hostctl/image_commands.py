"""`convocate-host image ...`: thin typer wrappers over hostctl.image_transfer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from common.defaults import CURRENT_IMAGE_FILE
from hostctl.codecs import DEFAULT_CODEC, STAGING_DIR, CodecName

if TYPE_CHECKING:   # the command imports these when it runs: --help stays fast
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from hostctl.remote import Runner

__all__ = ["ProgressBar", "image_app"]

image_app = typer.Typer(help="Move session images between hosts.", no_args_is_help=True,
                        rich_markup_mode=None)

class ProgressBar:
    """A rich progress display of a push: one line per stage, bytes and rate while sending."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def stage(self, name: str, total: int | None) -> None:
        """Close the previous stage's line and open one for ``name``."""
        if self._task is not None:
            done = self._progress.tasks[self._task].completed
            self._progress.update(self._task, total=done or 1, completed=done or 1)
        if name != "done":
            self._task = self._progress.add_task(name, total=total)

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more image bytes went into the pipeline."""
        if self._task is not None:
            self._progress.advance(self._task, nbytes)


def progress_display(console: Console) -> Progress:
    """The columns of the push display: stage, bar, bytes, rate, elapsed time."""
    from rich.progress import (  # noqa: PLC0415 - lazy: only a push on a terminal needs rich
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )
    return Progress(TextColumn("{task.description:<6}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeElapsedColumn(), console=console, transient=False)


@image_app.command("push")
def push(
    tag: Annotated[str, typer.Argument(help="Local image to send, e.g. convocate:2.1.0.")],
    host: Annotated[str, typer.Option(help="Target host; 'local' loads into this machine's engine.")],
    port: Annotated[int, typer.Option(help="OpenSSH port of the target.")] = 22,
    user: Annotated[str, typer.Option(help="SSH user (root, or one with passwordless sudo).")] = "root",
    key: Annotated[Path | None, typer.Option(help="Private key for the target.")] = None,
    known_hosts: Annotated[Path | None, typer.Option(help="Known-hosts file pinning the target.")] = None,
    set_current: Annotated[str | None, typer.Option(
        help=f"Rewrite this current-image pointer on the target, e.g. {CURRENT_IMAGE_FILE}."
    )] = None,
    codec: Annotated[CodecName, typer.Option(
        help="zstd (multi-threaded; convocate hosts have it) or gzip (for hosts without zstd).",
    )] = DEFAULT_CODEC,
    level: Annotated[int | None, typer.Option(
        min=1, max=19, help="Compression level (default: zstd 1, gzip 1; gzip allows 1-9)."
    )] = None,
    staging_dir: Annotated[str, typer.Option(
        help="Directory on the target for the load step's FIFO and digest (a few bytes)."
    )] = STAGING_DIR,
    all_layers: Annotated[bool, typer.Option(
        "--all-layers", help="Send every layer, also those the target's engine already has."
    )] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """docker save | zstd/gzip | sha256 | ssh | docker load + sha256; tagged only if all matched.

    Layers the target's engine already has are left out of the stream (an update sends
    only its new layers)."""
    import asyncio  # noqa: PLC0415 - lazy imports keep --help fast

    from rich.console import Console  # noqa: PLC0415

    from hostctl.image_transfer import push_image, push_plan  # noqa: PLC0415
    from hostctl.remote import LocalRunner, SSHRunner, SSHTarget  # noqa: PLC0415

    if dry_run:
        steps = push_plan(tag, host, codec=codec, set_current=set_current, staging_dir=staging_dir)
        print(json.dumps({"steps": steps}) if as_json else "\n".join(f"- {s}" for s in steps))
        return
    console = Console(stderr=True)
    display = progress_display(console) if console.is_terminal and not as_json else None

    async def go() -> None:
        runner: Runner = (
            LocalRunner() if host == "local"
            else SSHRunner(SSHTarget(host, port, user, key, known_hosts))
        )
        try:
            if display is None:
                result = await push_image(tag, runner, codec=codec, level=level, set_current=set_current,
                                          staging_dir=staging_dir, all_layers=all_layers)
            else:
                with display:
                    result = await push_image(tag, runner, codec=codec, level=level,
                                              set_current=set_current, progress=ProgressBar(display),
                                              staging_dir=staging_dir, all_layers=all_layers)
        finally:
            await runner.close()
        if as_json:
            print(json.dumps(dataclasses.asdict(result)))
        else:
            print(f"pushed {result.tag} ({result.image_id[:19]}) to {host}: {result.tar_bytes} bytes, "
                  f"{result.compressed_bytes} with {result.codec} ({result.layers_sent} layers sent, "
                  f"{result.layers_skipped} already there), sha256={result.sha256}, "
                  f"{result.seconds:.1f} s")

    asyncio.run(go())
