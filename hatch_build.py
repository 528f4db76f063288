"""Build hook: generate convocate.v1 protobuf/gRPC code (with mypy stubs) at build time.

Runs for every wheel build, editable installs included, so generated code is never
committed. Also runs standalone (``python hatch_build.py``) for ``nox -s protos``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "proto"
GENERATED_GLOBS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi")


def _plugin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    return str(Path(sys.executable).parent / name)


def generate(proto_root: Path = PROTO_ROOT) -> None:
    """Delete stale output, then run protoc over every .proto below ``proto_root``."""
    package_dir = proto_root / "convocate"
    for pattern in GENERATED_GLOBS:
        for stale in package_dir.rglob(pattern):
            stale.unlink()
    protos = sorted(str(p.relative_to(proto_root)) for p in package_dir.rglob("*.proto"))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        ".",
        "--python_out=.",
        "--grpc_python_out=.",
        "--mypy_out=.",
        "--mypy_grpc_out=async_only:.",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        *protos,
    ]
    subprocess.run(cmd, cwd=proto_root, check=True)


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # standalone use by nox, without hatchling installed
    pass
else:

    class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
        """Hatchling hook that regenerates the protobuf code before a wheel is built."""

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:  # noqa: ARG002
            if self.target_name == "wheel":
                generate(Path(self.root) / "proto")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT)
