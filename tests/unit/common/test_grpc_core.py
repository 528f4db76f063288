"""gRPC core is configured (common.grpc_options.configure_core) before any entry point loads grpc."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.grpc_options import CORE_EXPERIMENTS

# Records GRPC_EXPERIMENTS at the moment grpc is first imported, then imports the entry
# point and (when it did not load grpc itself) grpc after it, as its commands do later.
_PROBE = """
import importlib, os, sys
seen = []
class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" and not seen:
            seen.append(os.environ.get("GRPC_EXPERIMENTS", ""))
        return None
sys.meta_path.insert(0, Probe())
importlib.import_module(sys.argv[1])
import grpc
print(seen[0])
"""


def _experiments_seen_by_grpc(module: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", _PROBE, module], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.parametrize("module", ["agent.main", "shell.main", "hostctl.cli", "benchmarks.relay_child"])
def test_entry_points_set_the_core_experiments_before_grpc_loads(module: str) -> None:
    """Each process's first import of grpc already sees the classic I/O manager selected."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    assert _experiments_seen_by_grpc(module, env) == CORE_EXPERIMENTS


def test_an_operator_setting_wins() -> None:
    """GRPC_EXPERIMENTS set in the environment is left as it is."""
    env = {**os.environ, "GRPC_EXPERIMENTS": "-event_engine_client"}
    assert _experiments_seen_by_grpc("agent.main", env) == "-event_engine_client"
