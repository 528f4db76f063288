"""Run the console against the real fleet: open the router, show the table, close it all."""

from __future__ import annotations

import importlib
from typing import Any

from shell.app import build_console, run_console
from shell.console_config import ShellConfig

__all__ = ["run_console_for", "settings_lines"]


def settings_lines(config: ShellConfig) -> list[str]:
    """The paths the Settings dialog shows."""
    return [
        f"Agent registry: {config.registry_dir}",
        f"Status socket:  {config.status_socket}",
        f"Console log:    {config.console_log}",
    ]


def _router_for(config: ShellConfig) -> Any:
    # Imported by name: the router is its own module with its own dependencies.
    return importlib.import_module("shell.router").Router(config)


async def run_console_for(config: ShellConfig) -> None:
    """Open the router for ``config``, run the console until the operator quits, close.

    Args:
        config: the shell configuration (registry, status socket, log file).
    """
    async with _router_for(config) as router:
        await run_console(build_console(router, settings_lines=settings_lines(config)))
