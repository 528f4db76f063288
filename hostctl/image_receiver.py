"""The target's side of an image push: short shell steps over the sender's one connection.

1. **inventory**: is the decompressor there, and which images (id and layer diff ids)
   does the engine hold (asked of the Docker API by one python3, the docker CLI if that
   cannot). The sender leaves out the layers whose chain the target has.
2. **load**: ``tee FIFO | decompress | docker load`` while ``sha256sum`` reads the FIFO:
   the stream is loaded as it arrives, hashed in the same pass. The tar carries no tag
   (see :mod:`hostctl.image_tar`), so this registers an image by id and moves nothing.
   It prints the stream's sha256 and the id ``docker load`` registered.
3. **commit**, started with the load step, waits for the sender's verdict: only if the
   sender's and target's sha256 and the image id all matched, it tags the image by its
   id, then rewrites the current-image pointer (atomic rename). Or **discard**: remove
   the image this load added, if it was not on the target before and nothing tagged it
   since; a refused stream leaves no tag and no image behind.

The target needs bash, coreutils (``mktemp``, ``mkfifo``, ``tee``, ``sha256sum``), the
decompressor and Docker; ``openssl`` (hashes faster) and ``python3`` (lists the images
faster) are used when there.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import ConvocateError
from hostctl.remote import CommandResult

__all__ = ["COMMIT", "DISCARD", "MISSING_TOOL", "inventory_script", "layers_to_skip", "load_script",
           "parse_inventory", "parse_load", "raise_for_commit"]

MISSING_TOOL = 3  # exit status of the inventory step when the decompressor is missing


# The engine's images and their layers straight from the Docker API on its unix socket
# (DOCKER_HOST or the default): one short python3 (every convocate host has it) instead of
# two docker CLI start-ups. Prints nothing until it has everything; exit 5 when it cannot
# ask (no unix socket, an HTTP error): the docker CLI answers instead. An image removed
# between the list and its inspect is not there any more: left out.
_INVENTORY_PY = """
import json, os, socket, sys
url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
def get(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(url.removeprefix("unix://"))
        s.sendall(b"GET " + path.encode() + b" HTTP/1.0\\r\\nHost: docker\\r\\n\\r\\n")
        data = b"".join(iter(lambda: s.recv(1 << 16), b""))
    head, _, body = data.partition(b"\\r\\n\\r\\n")
    status = head.split(b" ", 2)[1] if head.startswith(b"HTTP/1.") else b""
    if status not in (b"200", b"404"):
        raise ValueError(status)
    return json.loads(body) if status == b"200" else None
try:
    if not url.startswith("unix://"):
        raise ValueError(url)
    lines = []
    for image in get("/images/json?all=1") or []:
        if found := get("/images/" + image["Id"] + "/json"):
            lines.append(" ".join([found["Id"], *(found["RootFS"].get("Layers") or [])]))
except (OSError, ValueError, KeyError, TypeError):
    sys.exit(5)
sys.stdout.write("".join(line + "\\n" for line in lines))
"""


def inventory_script(decompressor: str) -> list[str]:
    """The inventory step's argv: exit 3 without ``decompressor``; else print ``ID DIFFID...``
    per image of the engine (the Docker API through python3, else the docker CLI)."""
    script = (
        f"command -v {decompressor} >/dev/null || exit {MISSING_TOOL}\n"
        'command -v python3 >/dev/null && python3 -I -S -c "$1" && exit 0\n'
        "ids=$(docker image ls -aq --no-trunc | sort -u) || exit 4\n"
        '[ -z "$ids" ] && exit 0\n'
        # The ids come from docker itself: word splitting of them is intended.
        "docker image inspect --format '{{.Id}} {{range .RootFS.Layers}}{{.}} {{end}}' $ids || exit 4\n"
    )
    return ["bash", "-c", script, "inventory", _INVENTORY_PY]


def parse_inventory(text: str) -> dict[str, list[str]]:
    """The inventory step's output as image id -> layer diff ids (bottom first)."""
    images: dict[str, list[str]] = {}
    for line in text.splitlines():
        if fields := line.split():
            images[fields[0]] = fields[1:]
    return images


def layers_to_skip(layers: Sequence[str], inventory: dict[str, list[str]]) -> frozenset[str]:
    """Diff ids the sender may leave out: those of the longest prefix of ``layers`` that a
    target image also starts with (its chain ids exist there), unless the same diff id
    also sits above that prefix (a tar member cannot be told apart by position)."""
    have = 0
    for other in inventory.values():
        n = 0
        while n < min(len(layers), len(other)) and layers[n] == other[n]:
            n += 1
        have = max(have, n)
    above = set(layers[have:])
    return frozenset(d for d in layers[:have] if d not in above)


# $0: staging directory for the FIFO and the digest (a few bytes, removed on exit).
# openssl's sha256 (SHA-NI) when it is there: a quarter of the CPU of coreutils' sha256sum,
# on the two cores the decompressor and docker load share. Both print "HEX ...".
# Prints "sha256 HEX" and "loaded ID"; exits with the pipeline's status.
_LOAD = """
set -o pipefail
d=$(mktemp -d "$0/convocate-image-XXXXXXXX") || exit 20
trap 'rm -rf "$d"' EXIT
mkfifo -m 600 "$d/fifo" || exit 20
hash=sha256sum
command -v openssl >/dev/null && hash="openssl dgst -sha256 -r"
$hash < "$d/fifo" > "$d/sum" &
hasher=$!
tee "$d/fifo" | DECOMPRESS | docker load -q > "$d/out"
status=$?
wait "$hasher"
printf 'sha256 %s\\n' "$(cut -d' ' -f1 "$d/sum")"
sed -n 's/^Loaded image ID: /loaded /p' "$d/out" | tail -n 1
exit "$status"
"""


def load_script(decompress: Sequence[str]) -> str:
    """The load step (see the module docstring) with ``decompress`` in the pipe."""
    return _LOAD.replace("DECOMPRESS", " ".join(decompress))


def parse_load(result: CommandResult) -> tuple[str, str]:
    """The target's sha256 of the stream and the image id it loaded ("" when none)."""
    digest = loaded = ""
    for line in result.text().splitlines():
        key, _, value = line.partition(" ")
        if key == "sha256":
            digest = value.strip()
        elif key == "loaded":
            loaded = value.strip()
    return digest, loaded


# $0 image id, $1 tag, $2 pointer or "". Started with the load step; it waits for the
# sender's verdict on stdin ("commit ID" once the digests and the id matched; EOF: exit 14,
# nothing changed). Exit 11: tagging failed; 13: writing the pointer failed. (docker tag
# names the id itself: the tag cannot end up on another image.)
COMMIT = """
IFS= read -r verdict && [ "$verdict" = "commit $0" ] || exit 14
docker tag "$0" "$1" >&2 || exit 11
[ -z "$2" ] && exit 0
umask 022 && printf '%s\\n' "$1" > "$2.tmp" && mv "$2.tmp" "$2" || exit 13
"""

# $0 image id: removed if no tag names it (this push added it; the caller checked that it
# was not on the target before).
DISCARD = """
tags=$(docker image inspect --format '{{len .RepoTags}}' "$0" 2>/dev/null) || exit 0
[ "$tags" = 0 ] && docker rmi "$0" >/dev/null
exit 0
"""


def raise_for_commit(result: CommandResult, where: str, tag: str, image_id: str, pointer: str | None) -> None:
    """Turn the commit step's exit status into one clear error (nothing on success)."""
    if result.status == 0:
        return
    detail = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
    what = {11: f"docker tag {image_id} {tag}", 13: f"writing {pointer}"}.get(result.status, "tagging")
    raise ConvocateError(f"{what} on {where} failed (exit {result.status}): {' '.join(detail)}")
