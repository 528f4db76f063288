"""Root test configuration: markers by directory, log capture, CI strictness."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.logging import configure_logging


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("cli", level="DEBUG", json=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "e2e" in parts:
            item.add_marker(pytest.mark.slow)
