"""The collector around a command line's imports and exit (common.startup_gc).

Each case runs in a fresh interpreter: a freeze is for the life of a process, and this
test run's own objects must stay collectable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True,
                          env={**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING"})
    return done.stdout.split()


def test_loading_pauses_collection_then_freezes_what_it_loaded_and_resumes() -> None:
    """No collection inside the block; after it the loaded objects are frozen and collection is back."""
    out = _run("import gc\n"
               "from common.startup_gc import paused_while_loading\n"
               "before = gc.get_freeze_count()\n"
               "with paused_while_loading():\n"
               "    inside = gc.isenabled()\n"
               "    import json.decoder\n"
               "print(before, inside, gc.isenabled(), gc.get_freeze_count() > before,\n"
               "      any(o is json.decoder.JSONDecoder for o in gc.get_objects()))\n")
    # get_objects() lists only what the collector still scans: the frozen class is not there.
    assert out == ["0", "False", "True", "True", "False"]


def test_loading_leaves_a_disabled_collector_disabled_even_when_the_block_fails() -> None:
    """Whoever disabled collection before keeps it disabled; an exception in the block changes nothing."""
    out = _run("import gc\n"
               "from common.startup_gc import paused_while_loading\n"
               "gc.disable()\n"
               "try:\n"
               "    with paused_while_loading():\n"
               "        raise KeyError\n"
               "except KeyError:\n"
               "    pass\n"
               "print(gc.isenabled(), gc.get_freeze_count() > 0)\n")
    assert out == ["False", "True"]


def test_convocate_host_freezes_before_it_exits_whatever_the_exit_status(tmp_path: Path) -> None:
    """`convocate-host` leaves its exit nothing to collect: on success and on a usage error alike."""
    for argv, status in ((["agents", "--json", "--registry", str(tmp_path)], 0), (["agents", "--bogus"], 2)):
        out = _run("import atexit, gc, sys\n"
                   "atexit.register(lambda: print(gc.isenabled(), gc.get_freeze_count() > 0))\n"
                   f"sys.argv = ['convocate-host', *{argv!r}]\n"
                   "from hostctl.cli import main\n"
                   "try:\n    main()\nexcept SystemExit as e:\n    print(e.code)\n")
        assert out[-3:] == [str(status), "True", "True"]
