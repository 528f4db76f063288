"""What each command loads before it does anything (issue 13: start-up time and memory).

Each case runs in a fresh interpreter and names the modules it must not have loaded, so a
module-level import that brings back gRPC, SSH, rich or pydantic fails here, whatever
the machine's speed (nothing is timed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from common.version import VERSION

# Modules whose absence is the budget: each costs tens of milliseconds to import.
TRANSPORT = ("grpc", "asyncssh", "cryptography", "google.protobuf", "convocate.v1")
PRETTY = ("rich", "pygments", "pydantic", "importlib.metadata")  # never needed at run time
DOCKER = ("aiohttp", "aiodocker")
RARE = ("agent.image_build", "agent.production_image", "agent.install")  # run by their own commands


def _run_main(module: str, *argv: str) -> str:
    """Code that runs ``module.main()`` with ``argv`` as a command line, ignoring its exit."""
    return (f"sys.argv = ['cmd', *{list(argv)!r}]\n"
            f"from {module} import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n")


def _loaded(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          check=True, env={**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING"})
    last = done.stderr.strip().splitlines()[-1]
    return set(json.loads(last))


def _assert_absent(loaded: set[str], forbidden: tuple[str, ...]) -> None:
    present = sorted(f for f in forbidden if f in loaded)
    assert not present, f"loaded, and outside this command's import budget: {present}"


def test_host_help_loads_no_transport_logging_or_pretty_printing() -> None:
    """`convocate-host --help` loads typer and the command table, nothing that talks or logs."""
    loaded = _loaded(_run_main("hostctl.cli", "--help"))
    assert "hostctl.cli" in loaded
    _assert_absent(loaded, (*TRANSPORT, *PRETTY, *DOCKER, "structlog", "asyncio", "common.domain"))


def test_host_agents_on_an_empty_registry_loads_no_transport(tmp_path: Path) -> None:
    """`agents --json` loads SSH, gRPC, asyncio and structlog only for an agent it asks (none here)."""
    loaded = _loaded(_run_main("hostctl.cli", "agents", "--json", "--registry", str(tmp_path)))
    assert "hostctl.fleet" in loaded
    _assert_absent(loaded, (*TRANSPORT, *PRETTY, *DOCKER, "asyncio", "structlog", "common.domain"))


def test_the_shared_tunnel_path_loads_no_ssh() -> None:
    """Reaching agents through the status service's tunnels (hostctl.fleet's TRANSPORT and the
    socket checks) loads gRPC but neither asyncssh nor cryptography: those come with SSH_TRANSPORT."""
    loaded = _loaded("import importlib, hostctl.cli, hostctl.fleet, hostctl.shared_tunnel\n"
                     "import shell.status.config\n"
                     "for name in hostctl.fleet.TRANSPORT:\n"
                     "    importlib.import_module(name)\n")
    assert {"grpc", "common.client.calls"} <= loaded
    _assert_absent(loaded, ("asyncssh", "cryptography", "common.tunnel", "hostctl.give_up", "aiohttp",
                            "shell.status.server", *PRETTY))


def test_talking_to_an_agent_loads_no_pretty_printing() -> None:
    """What asking an agent loads (tunnel, client, logging) has no rich, pydantic or SSH server."""
    loaded = _loaded("import hostctl.cli, hostctl.fleet, common.tunnel, common.client.calls\n"
                     "from common.logging import configure_logging\n"
                     "configure_logging('cli')\n")
    assert {"asyncssh", "grpc", "structlog"} <= loaded
    _assert_absent(loaded, (*PRETTY, "common.ssh_server", "common.ssh_limits"))


def test_agent_serve_loads_neither_pretty_printing_nor_rare_commands() -> None:
    """The agent's resident set: serving loads no rich, pydantic, image build or install code."""
    loaded = _loaded("import agent.main, agent.server, agent.docker_runtime\n"
                     "from common.logging import configure_logging\n"
                     "configure_logging('service')\n")
    assert {"grpc", "asyncssh", "aiodocker"} <= loaded
    _assert_absent(loaded, (*PRETTY[:3], *RARE))   # aiodocker itself reads importlib.metadata


def test_agent_version_loads_no_transport() -> None:
    """`convocate-agent version` answers without gRPC, SSH or Docker."""
    loaded = _loaded(_run_main("agent.main", "version"))
    _assert_absent(loaded, (*TRANSPORT, *PRETTY, *DOCKER))


def test_shell_help_loads_no_transport() -> None:
    """`convocate --help` loads neither SSH (the install command's) nor gRPC."""
    loaded = _loaded(_run_main("shell.main", "--help"))
    _assert_absent(loaded, (*TRANSPORT, *PRETTY, *DOCKER, "shell.install"))


def test_console_and_status_service_load_no_pretty_printing() -> None:
    """The console's and the status service's resident sets: no rich, pydantic or install code."""
    loaded = _loaded("import shell.main, shell.status.server, shell.console.runner\n"
                     "from common.logging import configure_logging\n"
                     "configure_logging('service')\n")
    assert {"grpc", "asyncssh", "prompt_toolkit"} <= loaded
    _assert_absent(loaded, (*PRETTY, *RARE, "shell.install"))


def test_structlog_import_leaves_rich_importable() -> None:
    """Hiding rich from structlog is temporary: rich itself still imports afterwards."""
    loaded = _loaded("import common.logging\n"
                     "common.logging.get_logger('t')\n"
                     "assert all(sys.modules.get(m, 1) is not None for m in ('rich', 'better_exceptions'))\n"
                     "import rich\n")
    assert {"rich", "structlog"} <= loaded


def test_version_is_the_installed_distribution_version() -> None:
    """The build takes the version from common/version.py: the metadata cannot differ."""
    from importlib import metadata  # noqa: PLC0415 - only this test needs it

    assert metadata.version("convocate") == VERSION


def test_the_status_service_loads_aiohttp_only_for_a_webhook(tmp_path: Path) -> None:
    """The status service without a webhook (the default) never loads aiohttp: 8 MiB of its resident
    memory, the figure that bounds how many agents one service holds (benchmarks, scale on paper)."""
    def server(webhook_url: str) -> str:
        return ("from pathlib import Path\n"
                "from shell.status.config import StatusConfig\n"
                "from shell.status.server import StatusServer\n"
                f"root = Path({str(tmp_path)!r})\n"
                "StatusServer(StatusConfig(host='127.0.0.1', port=0, host_key=root / 'host_key',\n"
                "    authorized_keys=root / 'authorized_keys', socket=root / 'status.sock',\n"
                f"    registry_dir=None, webhook_url={webhook_url!r}))\n")

    without = _loaded(server(""))
    assert "shell.status.server" in without
    _assert_absent(without, ("aiohttp", "shell.status.webhook"))
    assert {"aiohttp", "shell.status.webhook"} <= _loaded(server("http://127.0.0.1:9/hook"))
