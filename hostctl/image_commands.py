"""`convocate-host image ...`: thin typer wrappers over hostctl.image_transfer."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from hostctl.image_transfer import push_image, push_plan
from hostctl.remote import LocalRunner, Runner, SSHRunner, SSHTarget

__all__ = ["image_app"]

image_app = typer.Typer(help="Move session images between hosts.", no_args_is_help=True,
                        rich_markup_mode=None)


@image_app.command("push")
def push(
    tag: Annotated[str, typer.Argument(help="Local image to send, e.g. convocate:2.1.0.")],
    host: Annotated[str, typer.Option(help="Target host; 'local' loads into this machine's engine.")],
    port: Annotated[int, typer.Option(help="OpenSSH port of the target.")] = 22,
    user: Annotated[str, typer.Option(help="SSH user (root, or one with passwordless sudo).")] = "root",
    key: Annotated[Path | None, typer.Option(help="Private key for the target.")] = None,
    known_hosts: Annotated[Path | None, typer.Option(help="Known-hosts file pinning the target.")] = None,
    set_current: Annotated[str | None, typer.Option(
        help="Rewrite this current-image pointer on the target, e.g. /etc/convocate-agent/current-image."
    )] = None,
    level: Annotated[int, typer.Option(min=1, max=9, help="gzip level.")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """docker save | gzip | sha256 | ssh | docker load, verified on both ends."""
    if dry_run:
        steps = push_plan(tag, host, set_current=set_current)
        print(json.dumps({"steps": steps}) if as_json else "\n".join(f"- {s}" for s in steps))
        return

    async def go() -> None:
        runner: Runner = (
            LocalRunner() if host == "local"
            else SSHRunner(SSHTarget(host, port, user, key, known_hosts))
        )
        try:
            result = await push_image(tag, runner, level=level, set_current=set_current)
        finally:
            await runner.close()
        if as_json:
            print(json.dumps(dataclasses.asdict(result)))
        else:
            print(f"pushed {result.tag} ({result.image_id[:19]}) to {host}: {result.tar_bytes} bytes, "
                  f"{result.gz_bytes} gzipped, sha256={result.sha256}, {result.seconds:.1f} s")

    asyncio.run(go())
