"""Configuration precedence: flags > env > TOML > defaults, with clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from common.config import load
from common.errors import InvalidArgumentError


@dataclass(frozen=True)
class Sample:
    state_root: Path = Path("/var/lib/x")
    port: int = 222
    debug: bool = False
    uid: int | None = 1337
    name: str = "n"


def _toml(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(body)
    return p


def test_defaults_when_nothing_is_given() -> None:
    """With no file, env or flags, the dataclass defaults are used."""
    assert load(Sample, "agent", env={}) == Sample()


def test_precedence(tmp_path: Path) -> None:
    """A flag beats env, env beats the TOML file, the file beats the default."""
    cfg = _toml(tmp_path, '[agent]\nport = 1\nname = "file"\nstate_root = "/f"\n')
    env = {"CONVOCATE_AGENT_PORT": "2", "CONVOCATE_AGENT_NAME": "env"}
    got = load(Sample, "agent", config_file=cfg, env=env, overrides={"port": 3, "debug": None})
    assert got == Sample(state_root=Path("/f"), port=3, name="env")


def test_config_file_from_env_and_coercion(tmp_path: Path) -> None:
    """CONVOCATE_CONFIG names the file; strings are coerced to bool, int and None."""
    cfg = _toml(tmp_path, "[agent]\ndebug = true\n")
    env = {"CONVOCATE_CONFIG": str(cfg), "CONVOCATE_AGENT_UID": ""}
    got = load(Sample, "agent", env=env)
    assert got.debug is True
    assert got.uid is None


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    """A misspelt key in the TOML table is reported, not ignored."""
    cfg = _toml(tmp_path, "[agent]\nprot = 1\n")
    with pytest.raises(InvalidArgumentError, match="unknown key\\(s\\) in \\[agent\\]: prot"):
        load(Sample, "agent", config_file=cfg, env={})


def test_bad_value_names_its_source(tmp_path: Path) -> None:
    """A value that does not coerce names where it came from."""
    with pytest.raises(InvalidArgumentError, match="CONVOCATE_AGENT_PORT: 'x' is not a valid int"):
        load(Sample, "agent", env={"CONVOCATE_AGENT_PORT": "x"})


def test_missing_and_broken_files(tmp_path: Path) -> None:
    """A named file that is missing or not TOML is an error saying so."""
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        load(Sample, "agent", config_file=tmp_path / "none.toml", env={})
    with pytest.raises(InvalidArgumentError, match="not valid TOML"):
        load(Sample, "agent", config_file=_toml(tmp_path, "[agent"), env={})
