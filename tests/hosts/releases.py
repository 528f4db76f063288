"""Other releases of this checkout for update tests: the wheelhouse with one shipped file edited.

A release is a wheelhouse; its identity is a hash of the wheels. Editing a file the
convocate wheel carries (a unit template under ``common/_deploy``) and rewriting the
wheel's RECORD gives a new release of the same version in a second, without a build.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["AGENT_UNIT_TEMPLATE", "with_edited_file"]

AGENT_UNIT_TEMPLATE = "common/_deploy/systemd/convocate-agent.service"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def with_edited_file(wheelhouse: Path, dest: Path, member: str, edit: Callable[[str], str]) -> Path:
    """A copy of ``wheelhouse`` in ``dest`` whose convocate wheel holds ``edit(member's text)``."""
    shutil.copytree(wheelhouse, dest)
    (wheel,) = dest.glob("convocate-*.whl")
    with zipfile.ZipFile(wheel) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    texts = {info.filename: data for info, data in entries}
    if member not in texts:
        raise AssertionError(f"{wheel.name} carries no {member}")
    new = edit(texts[member].decode()).encode()
    if new == texts[member]:
        raise AssertionError(f"the edit left {member} as it was")
    record = next(name for name in texts if name.endswith(".dist-info/RECORD"))
    lines = [_record_line(member, new) if line.startswith(f"{member},") else line
             for line in texts[record].decode().splitlines()]
    replaced = {member: new, record: ("\n".join(lines) + "\n").encode()}
    wheel.unlink()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in entries:
            z.writestr(info, replaced.get(info.filename, data))
    return dest
