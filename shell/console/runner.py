"""Run the console against the real fleet: open the router, show the table, close it all."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from shell.console.app import build_console, run_console
from shell.console.config import ShellConfig
from shell.fleet.router import Router, RouterConfig

__all__ = ["router_config", "run_console_for", "settings_lines"]


def settings_lines(config: ShellConfig) -> list[str]:
    """The paths the Settings dialog shows."""
    return [
        f"Agent registry: {config.registry_dir}",
        f"Status socket:  {config.status_socket}",
        f"Console log:    {config.console_log}",
    ]


def router_config(config: ShellConfig, runtime_dir: Path) -> RouterConfig:
    """The router's configuration for this console (``runtime_dir`` is private to it)."""
    return RouterConfig(
        registry_dir=config.registry_dir,
        runtime_dir=runtime_dir,
        orphans_root=config.orphans_root if config.orphans_root.is_dir() else None,
        dnsmasq_hosts=config.dnsmasq_hosts,
        dnsmasq_pidfile=config.dnsmasq_pidfile,
        dns_zone=config.dns_zone,
        status_socket=config.status_socket,
    )


async def run_console_for(config: ShellConfig) -> None:
    """Open the router for ``config``, run the console until the operator quits, close.

    Each console gets its own directory of tunnel sockets, so two operators logged in
    as the same user never share one.

    Args:
        config: the shell configuration (registry, status socket, log file).
    """
    base = config.runtime_base
    base.mkdir(parents=True, exist_ok=True)
    runtime_dir = Path(tempfile.mkdtemp(prefix="cvc-", dir=base))
    try:
        async with Router(router_config(config, runtime_dir)) as router:
            await run_console(build_console(router, settings_lines=settings_lines(config), bell=config.bell))
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
