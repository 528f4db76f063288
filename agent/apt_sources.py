"""The Debian archive this machine's apt uses, read from its sources (for debootstrap).

Both formats apt reads are understood: one-line ``sources.list`` entries
(``deb [options] URI SUITE COMPONENT...``) and deb822 ``*.sources`` paragraphs
(``Types:``, ``URIs:``, ``Suites:``, ``Components:``, ``Enabled:``). Nothing here names a
mirror host: the production image's base is bootstrapped from whatever this host's apt uses,
and ``--mirror`` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import FailedPreconditionError

__all__ = ["AptSource", "archive_mirror", "parse_deb822", "parse_one_line", "read_sources",
           "release_sources", "sources_list"]


@dataclass(frozen=True)
class AptSource:
    """One binary package source: an archive URI with its suites and components."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_one_line(text: str) -> list[AptSource]:
    """The ``deb`` entries of a one-line ``sources.list`` text (``deb-src`` and comments skipped)."""
    found: list[AptSource] = []
    for raw in text.splitlines():
        tokens = raw.split("#", 1)[0].split()
        if not tokens or tokens[0] != "deb":
            continue
        rest = tokens[1:]
        if rest and rest[0].startswith("["):        # options: [arch=amd64 signed-by=...]
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:                             # URI SUITE [COMPONENT...]
            found.append(AptSource(rest[0].rstrip("/"), (rest[1],), tuple(rest[2:])))
    return found


def _paragraphs(text: str) -> list[dict[str, str]]:
    paragraphs: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                paragraphs.append(fields)
            fields, key = {}, ""
        elif line[0] in " \t" and key:                # a continuation line
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return paragraphs


def parse_deb822(text: str) -> list[AptSource]:
    """The enabled ``deb`` entries of a deb822 ``.sources`` text (one per URI)."""
    found: list[AptSource] = []
    for fields in _paragraphs(text):
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        components = tuple(fields.get("components", "").split())
        found.extend(AptSource(uri.rstrip("/"), suites, components)
                     for uri in fields.get("uris", "").split() if suites)
    return found


def read_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every ``deb`` source of ``apt_dir`` in apt's order (``sources.list``, then the directory)."""
    found: list[AptSource] = []
    main = apt_dir / "sources.list"
    if main.is_file():
        found += parse_one_line(main.read_text(errors="replace"))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                found += parse_one_line(path.read_text(errors="replace"))
            elif path.suffix == ".sources":
                found += parse_deb822(path.read_text(errors="replace"))
    return found


def archive_mirror(sources: list[AptSource], suite: str) -> str:
    """The URI of the first source that carries ``suite`` itself (the release's main archive).

    Raises:
        FailedPreconditionError: no source carries it.
    """
    for source in sources:
        if suite in source.suites:
            return source.uri
    raise FailedPreconditionError(
        f"no apt source on this machine carries the suite {suite!r}: pass --mirror URL "
        "(the Debian archive to bootstrap from)")


def release_sources(sources: list[AptSource], suite: str) -> list[AptSource]:
    """The sources of ``suite`` and its companions (``-updates``, ``-security``), suites narrowed."""
    picked: list[AptSource] = []
    for source in sources:
        mine = tuple(s for s in source.suites if s == suite or s.startswith(f"{suite}-"))
        if mine:
            picked.append(AptSource(source.uri, mine, source.components or ("main",)))
    return picked


def sources_list(sources: list[AptSource]) -> str:
    """One-line ``sources.list`` text for ``sources`` (what the image's apt will read)."""
    return "".join(f"deb {s.uri} {suite} {' '.join(s.components)}\n"
                   for s in sources for suite in s.suites)
