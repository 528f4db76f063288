"""The production image's pure parts: apt sources, the base's content key, tags, the pinned CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.apt_sources import (
    AptSource,
    archive_mirror,
    parse_deb822,
    parse_one_line,
    read_sources,
    release_sources,
    sources_list,
)
from agent.production_image import base_spec, docker_tag_part, pinned_cli_version, production_tags
from common.deploy_files import deploy_dir
from common.errors import FailedPreconditionError, InvalidArgumentError

DEB822 = """# a comment
Types: deb deb-src
URIs: http://archive.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://archive.example/debian-security/
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm

Types: deb
URIs: https://vendor.example/apt
Suites: nodistro
Components: main
"""


def _apt_dir(tmp_path: Path, one_line: str = "", deb822: str = DEB822) -> Path:
    parts = tmp_path / "sources.list.d"
    parts.mkdir(parents=True)
    (tmp_path / "sources.list").write_text(one_line)
    (parts / "debian.sources").write_text(deb822)
    (parts / "ignored.list.save").write_text("deb http://never.example/debian bookworm main\n")
    return tmp_path


def test_one_line_sources_with_options_and_comments() -> None:
    """Options in brackets, comments and deb-src lines do not confuse the parser."""
    text = ("# deb http://old.example/debian bookworm main\n"
            "deb-src http://src.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm main non-free\n"
            "deb [ arch=amd64 ] https://two.example/apt stable main # trailing\n"
            "deb broken-line-without-suite\n")
    assert parse_one_line(text) == [
        AptSource("http://one.example/debian", ("bookworm",), ("main", "non-free")),
        AptSource("https://two.example/apt", ("stable",), ("main",)),
    ]


def test_deb822_sources_skip_disabled_and_source_only() -> None:
    """Enabled ``deb`` paragraphs only, one entry per URI, suites kept together."""
    found = parse_deb822(DEB822)
    assert [s.uri for s in found] == ["http://archive.example/debian", "http://archive.example/debian-security",
                                      "https://vendor.example/apt"]
    assert found[0].suites == ("bookworm", "bookworm-updates")


def test_mirror_and_release_sources_come_from_the_machine(tmp_path: Path) -> None:
    """The archive serving the suite is the mirror; its companions go into the image's apt."""
    sources = read_sources(_apt_dir(tmp_path))
    assert archive_mirror(sources, "bookworm") == "http://archive.example/debian"
    text = sources_list(release_sources(sources, "bookworm"))
    assert text == ("deb http://archive.example/debian bookworm main contrib\n"
                    "deb http://archive.example/debian bookworm-updates main contrib\n"
                    "deb http://archive.example/debian-security bookworm-security main\n")
    with pytest.raises(FailedPreconditionError, match="--mirror"):
        archive_mirror(sources, "trixie")


def test_base_key_follows_suite_mirror_packages_and_sources(tmp_path: Path) -> None:
    """Same inputs, same tag; any change of suite, mirror or packages, another tag."""
    apt = _apt_dir(tmp_path)
    first = base_spec("bookworm", "", (), apt)
    assert first.tag == base_spec("bookworm", "", (), apt).tag
    assert first.tag.startswith("convocate-base:bookworm-")
    assert first.mirror == "http://archive.example/debian"
    other = base_spec("bookworm", "http://mirror.example/debian/", (), apt)
    assert other.mirror == "http://mirror.example/debian"
    assert "deb http://mirror.example/debian bookworm-updates main contrib\n" in other.sources
    assert "debian-security bookworm-security" in other.sources
    with_pkgs = base_spec("bookworm", "", ("less", "ca-certificates", "less"), apt)
    assert with_pkgs.packages == ("ca-certificates", "less")
    assert len({first.tag, other.tag, with_pkgs.tag}) == 3
    with pytest.raises(InvalidArgumentError):
        base_spec("bookworm; rm -rf /", "", (), apt)
    with pytest.raises(InvalidArgumentError):
        base_spec("bookworm", "", ("--evil",), apt)


def test_mirror_given_where_apt_has_no_sources(tmp_path: Path) -> None:
    """With no apt sources at all, --mirror alone is enough."""
    spec = base_spec("bookworm", "http://m.example/debian", (), tmp_path / "none")
    assert spec.sources == "deb http://m.example/debian bookworm main\n"
    with pytest.raises(FailedPreconditionError, match="--mirror"):
        base_spec("bookworm", "", (), tmp_path / "none")


def test_tags_and_the_pinned_cli_version() -> None:
    """Tags carry release and CLI version; the Dockerfile is the one place the pin lives."""
    assert production_tags("convocate", "2.0.76", "2.1.0") == ("convocate:2.1.0-cli2.0.76", "convocate:2.1.0")
    assert production_tags("r", "1.0.0", "2.1.0+g1a2b") == ("r:2.1.0-g1a2b-cli1.0.0", "r:2.1.0-g1a2b")
    assert docker_tag_part("..weird/tag") == "weird-tag"
    pinned = pinned_cli_version((deploy_dir() / "docker" / "Dockerfile").read_text())
    assert pinned.count(".") == 2
    with pytest.raises(FailedPreconditionError, match="CLI_VERSION"):
        pinned_cli_version("FROM scratch\n")
