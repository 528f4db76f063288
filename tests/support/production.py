"""The production session image (the real Claude CLI) for the image tests and the benchmarks.

:func:`ensure_production_image` builds it from the Debian archive and npm, or reuses it
(both steps are cached by content: seconds when built before). :func:`lay_out_cli_home`
lays out an agent's home skeleton as ``convocate-agent install`` and an operator's first
start of the CLI leave it, so a session's CLI opens on its welcome screen.
"""

from __future__ import annotations

from pathlib import Path

from agent.install import SKEL_README
from agent.production_image import BuiltImage, ProductionOptions, build_production_image
from tests.support.env import require_docker, require_tool

__all__ = ["CLI_STATE", "LOGO", "REPOSITORY", "SHARED_SETTINGS", "ensure_production_image",
           "lay_out_cli_home"]

REPOSITORY = "convocate-prodtest"          # never the operator's `convocate` tags
CLI_STATE = '{"hasCompletedOnboarding": true, "bypassPermissionsModeAccepted": true}\n'
SHARED_SETTINGS = '{"theme": "dark", "convocateTest": "shared-settings"}\n'
LOGO = "▐▛███▜▌"                 # the CLI's header: logo, "Claude Code v<version>", model, cwd


def ensure_production_image() -> BuiltImage:
    """The production image, built from the Debian archive and npm (or reused from the cache)."""
    require_docker()
    require_tool("debootstrap")
    built = build_production_image(ProductionOptions(repository=REPOSITORY), print)
    print(f"production image: {built.summary()}")
    return built


def lay_out_cli_home(agent_root: Path) -> Path:
    """``agent_root/home`` as the agent expects it, readable by uid 1337 (the agent may run as root).

    The skeleton holds the CLAUDE.md ``install`` writes and the CLI's own state as after an
    operator's first start: onboarding done (its first run checks the network and exits here)
    and the bypass-mode warning accepted; the shared settings are read-only in each session.

    Returns:
        The home directory.
    """
    home = agent_root / "home"
    (home / ".skel").mkdir(parents=True, mode=0o755)
    (home / ".skel" / "CLAUDE.md").write_text(SKEL_README)
    (home / ".skel" / ".claude.json").write_text(CLI_STATE)
    shared = home / ".claude"
    shared.mkdir(mode=0o755)
    (shared / "settings.json").write_text(SHARED_SETTINGS)
    return home
