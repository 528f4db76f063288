"""A bundle whose convocate wheel lost its generated gRPC code is refused, not installed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from common.errors import FailedPreconditionError
from hostctl.bundle import load_bundle


def _wheel(directory: Path, name: str, members: list[str]) -> None:
    with zipfile.ZipFile(directory / name, "w") as wheel:
        for member in members:
            wheel.writestr(member, "# generated\n")


GENERATED = [
    "convocate/v1/sessions_pb2.py", "convocate/v1/sessions_pb2_grpc.py", "convocate/v1/status_pb2.py",
]


def test_a_wheel_without_its_generated_code_is_refused(tmp_path: Path) -> None:
    """The race of two builds in one checkout left a wheel without *_pb2.py: named, with what to do."""
    _wheel(tmp_path, "convocate-2.1.0-py3-none-any.whl", ["convocate/__init__.py", "shell/main.py"])
    with pytest.raises(FailedPreconditionError, match=r"lacks its generated gRPC code .*sessions_pb2\.py"):
        load_bundle(tmp_path)


def test_a_complete_wheelhouse_loads(tmp_path: Path) -> None:
    """With the generated code present the bundle loads, with its version and Python tag."""
    _wheel(tmp_path, "convocate-2.1.0-py3-none-any.whl", ["convocate/__init__.py", *GENERATED])
    _wheel(tmp_path, "grpcio-1.85.1-cp311-cp311-manylinux_2_17_x86_64.whl", ["grpc/__init__.py"])
    bundle = load_bundle(tmp_path)
    assert bundle.version == "2.1.0"
    assert bundle.python == "cp311"
    assert len(bundle.digest) == 64
