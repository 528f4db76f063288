"""The ``convocate-agent`` command: serve, install, units, build-image, prune-images, version.

Heavy modules (gRPC, asyncssh, aiodocker) are imported inside the commands that need
them, so ``version`` and ``--help`` answer at once.

``main()`` is the error boundary: a known error prints one line ``error: ...`` and exits
1; a traceback appears only with ``CONVOCATE_DEBUG=1``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from agent.config import AgentConfig, load_agent_config
from common.cli_boundary import run_with_error_boundary
from common.errors import ConvocateError, InvalidArgumentError
from common.logging import configure_logging
from common.version import VERSION

__all__ = ["app", "main"]

app = typer.Typer(
    name="convocate-agent",
    help="Run one host's convocate sessions on the local Docker Engine, served over SSH.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts print as written: "[agent]" is not markup
)

ConfigOption = Annotated[Path | None, typer.Option("--config", help="TOML file with an [agent] table.")]


@app.command()
def version() -> None:
    """Print the version."""
    print(f"convocate-agent version {VERSION}")


@app.command()
def serve(
    config: ConfigOption = None,
    listen_host: Annotated[str | None, typer.Option(help="Address of the SSH server.")] = None,
    listen_port: Annotated[int | None, typer.Option(help="Port of the SSH server (222).")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING...")] = None,
) -> None:
    """Serve Sessions and Attach on the UNIX socket, behind the SSH server (run by systemd)."""
    from agent.docker_runtime import DockerRuntime  # noqa: PLC0415 - see the module docstring
    from agent.server import serve as serve_agent  # noqa: PLC0415

    configure_logging("service", level=log_level)
    cfg = load_agent_config(config, listen_host=listen_host, listen_port=listen_port)

    async def run() -> None:
        async with DockerRuntime(cfg.docker_url or None) as runtime:
            await serve_agent(cfg, runtime)

    asyncio.run(run())


@app.command()
def install(
    config: ConfigOption = None,
    root: Annotated[Path, typer.Option(help="Install under this prefix (tests, images).")] = Path("/"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")] = False,
    units_dir: Annotated[Path | None, typer.Option(help="Where the unit templates are.")] = None,
    binary: Annotated[str, typer.Option(help="Path of convocate-agent in the units.")] = (
        "/usr/local/bin/convocate-agent"
    ),
    no_systemctl: Annotated[bool, typer.Option("--no-systemctl", help="Do not enable or start.")] = False,
) -> None:
    """Create the state layout, render the slice, install the units, report adopted sessions."""
    from agent.install import InstallOptions, install_agent  # noqa: PLC0415 - see the module docstring

    cfg = load_agent_config(config)
    opts = InstallOptions(root=root, dry_run=dry_run, binary=binary, systemctl=not no_systemctl)
    if units_dir is not None:
        opts = replace(opts, units_dir=units_dir)
    install_agent(cfg, opts, print)


@app.command()
def units(
    config: ConfigOption = None,
    root: Annotated[Path, typer.Option(help="The host's files are under this prefix (tests).")] = Path("/"),
    units_dir: Annotated[Path | None, typer.Option(help="Where the unit templates are (default: as "
                                                   "installed).")] = None,
    binary: Annotated[str | None, typer.Option(help="Path of convocate-agent in the units (default: as "
                                               "installed).")] = None,
) -> None:
    """Print the systemd files install writes, rendered for this host as it was installed, as JSON.

    The options install took come from its record (install-options.json in the agent's
    config directory), or for a host installed before it from the installed unit; given
    here, they win. Exit 3 when neither tells. Names are relative to /etc/systemd/system;
    convocate-host update writes the ones that differ when it rolls this release out.
    """
    from agent.install import (  # noqa: PLC0415 - see the module docstring
        ENABLE,
        START,
        UnitOptions,
        host_slice_values,
        installed_unit_options,
        render_units,
    )
    from common.deploy_files import deploy_dir  # noqa: PLC0415
    from common.errors import FailedPreconditionError  # noqa: PLC0415
    from common.install_options import OPTIONS_UNKNOWN, units_document  # noqa: PLC0415

    def under(path: Path) -> Path:
        return root / path.relative_to("/") if path.is_absolute() else path

    if binary is None:
        try:
            installed = installed_unit_options(under(load_agent_config(config).config_dir),
                                               under(Path("/etc/systemd/system")))
        except FailedPreconditionError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(OPTIONS_UNKNOWN) from None
    else:
        installed = UnitOptions(binary)
    templates = units_dir or installed.units_dir or deploy_dir() / "systemd"
    print(units_document(render_units(templates, installed.binary, *host_slice_values()), ENABLE, START))


@app.command("build-image")
def build_image(
    repository: Annotated[str, typer.Option(help="Image repository for the tag.")] = "convocate",
    set_current: Annotated[bool, typer.Option("--set-current", help="Point current-image at it.")] = False,
    production: Annotated[bool, typer.Option(
        "--production", help="The production image (Debian toolset + Claude CLI) instead of the offline one."
    )] = False,
    base: Annotated[str, typer.Option(
        help="--production: build on this image instead of a debootstrap'ed Debian base.")] = "",
    cli_version: Annotated[str, typer.Option(
        help="--production: the Claude CLI version from npm (default: the pinned one).")] = "",
    mirror: Annotated[str, typer.Option(
        help="--production: the Debian archive to bootstrap from (default: the one apt uses).")] = "",
    no_local_ca: Annotated[bool, typer.Option(
        "--no-local-ca", help="--production: leave out this host's /usr/local/share/ca-certificates.",
    )] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="--production: show the build output.")] = False,
    config: ConfigOption = None,
) -> None:
    """Build a session image and print its tag: the offline one (busybox, tmux, a CLI stand-in).

    --production: the production image (Debian toolset, Claude CLI) from the Debian archive and npm alone; progress, size and build time go to stderr.
    """  # noqa: E501 - typer shows the paragraph as written
    configure_logging("cli", level=os.environ.get("CONVOCATE_LOG_LEVEL", "WARNING"))
    cfg = load_agent_config(config)
    if production:
        from agent.production_image import ProductionOptions, build_production_image  # noqa: PLC0415

        def say(line: str) -> None:
            typer.echo(line, err=True)

        opts = ProductionOptions(repository=repository, base=base, cli_version=cli_version, mirror=mirror)
        if no_local_ca:
            opts = replace(opts, local_ca_dir=None)
        built = build_production_image(opts, say, verbose=verbose)
        say(built.summary())
        tag = built.tags[0]
    else:
        if base or cli_version or mirror:
            raise InvalidArgumentError("--base, --cli-version and --mirror need --production")
        from agent.docker_runtime import DockerRuntime  # noqa: PLC0415 - see the module docstring
        from agent.image_build import build_offline_image  # noqa: PLC0415

        async def run() -> str:
            async with DockerRuntime(cfg.docker_url or None) as runtime:
                return await build_offline_image(runtime, repository)

        tag = asyncio.run(run())
    if set_current:
        from common.paths import atomic_write  # noqa: PLC0415

        atomic_write(cfg.current_image_path, tag + "\n", mode=0o644)
    print(tag)


async def _prune(cfg: AgentConfig, dry_run: bool) -> list[str]:
    from agent.container_spec import read_current_image  # noqa: PLC0415 - see the module docstring
    from agent.docker_runtime import DockerRuntime  # noqa: PLC0415
    from agent.images import images_to_prune  # noqa: PLC0415

    async with DockerRuntime(cfg.docker_url or None) as runtime:
        repository = cfg.image.rsplit(":", 1)[0] or "convocate"
        doomed = images_to_prune(await runtime.image_tags(repository), await runtime.container_images(),
                                 read_current_image(cfg))
        for tag in doomed:
            print(f"convocate-image-prune: removing {tag}")
            if not dry_run:
                try:
                    await runtime.remove_image(tag)
                except ConvocateError as e:  # tolerated, as in v2.0.0
                    print(f"convocate-image-prune: could not remove {tag}: {e}")
        return doomed


@app.command("prune-images")
def prune_images(
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List only.")] = False,
) -> None:
    """Remove convocate images no container references, keeping the current-image pointer."""
    configure_logging("cli", level=os.environ.get("CONVOCATE_LOG_LEVEL", "WARNING"))
    asyncio.run(_prune(load_agent_config(config), dry_run))


def main() -> None:
    """Entry point: known errors become one line on stderr and exit 1."""
    run_with_error_boundary(app)
