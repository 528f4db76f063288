"""`python -m tests.support.fake_agent --config FILE`: the real agent server on the fake runtime.

Everything but the containers is the production agent (:func:`agent.server.serve`: SSH
server, Sessions and Attach, store, events, status emitter); sessions "run" in
:class:`tests.fakes.fake_runtime.FakeRuntime`. Shell-side tests start it through
:class:`tests.support.agent_proc.AgentProcess` (``runtime="fake"``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from agent.config import load_agent_config
from agent.server import serve
from common.logging import configure_logging
from tests.fakes.fake_runtime import FakeRuntime

__all__ = ["main"]


async def _run(config_file: Path) -> None:
    runtime = FakeRuntime()
    try:
        # No shell runs in a fake session: a viewer started ahead would never say it is ready.
        await serve(load_agent_config(config_file, viewer_prime_ttl=0), runtime)
    finally:
        await runtime.close()


def main() -> None:
    """Serve until SIGTERM/SIGINT, logging JSON lines like ``convocate-agent serve``."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_agent")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args()
    configure_logging("service", level=os.environ.get("CONVOCATE_LOG_LEVEL", "INFO"))
    asyncio.run(_run(args.config))


if __name__ == "__main__":
    main()
