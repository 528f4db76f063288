"""The cyclic garbage collector around a command line's imports and its exit (issue 13).

A one-shot command such as ``convocate-host agents --json`` spends most of its life
importing modules (asyncssh, gRPC, protobuf): tens of thousands of classes, functions
and tables that live until the process ends. The collector does not know that: it runs
about a hundred times while they load, and the interpreter collects over all of them
again, more than once, as it exits. Measured on that command: about a fifth of its CPU
time (``benchmarks/results/startup.md``).

Both functions are for a command line's own process (its ``main()`` and what only it
runs), never for a long-lived process that merely calls a command's code (a test run):

- :func:`paused_while_loading` runs a block of imports with collection paused; at its
  end what is alive is frozen (:func:`gc.freeze`: left out of every later collection,
  as it lives until exit anyway) and collection runs as before for what the command
  makes afterwards.
- :func:`freeze_at_exit` does the same freeze when the command has finished, so the
  interpreter's collections at exit skip everything, and the memory goes back to the
  system with the process. Objects in reference cycles are then not finalised at exit:
  Python never promised that, and nothing here relies on it (a command closes what it
  opens before it returns; atexit hooks, such as logging's flush and the removal of
  temporary directories, run as before).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_at_exit", "paused_while_loading"]


@contextmanager
def paused_while_loading() -> Iterator[None]:
    """No collection during the block (its imports); then freeze what is alive and resume."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def freeze_at_exit() -> None:
    """The command is done: the interpreter's exit collections skip what is alive now."""
    gc.freeze()
