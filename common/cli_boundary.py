"""The error boundary every command's ``main()`` goes through.

A known error prints one line (``error: <message>``) and exits 1; an unexpected one
prints its type and message, also on one line; Ctrl-C exits 130. ``CONVOCATE_DEBUG=1``
re-raises instead, for a traceback. Usage errors are typer's own (exit 2).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["run_with_error_boundary"]


def run_with_error_boundary(app: Callable[[], object]) -> None:
    """Run ``app()`` (a typer app) and turn failures into one line and an exit status."""
    debug = os.environ.get("CONVOCATE_DEBUG") == "1"
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if debug:
            raise
        # Imported here: common.errors loads gRPC, and a command that raised a domain
        # error has loaded it already; --help and other light commands never need it.
        from common.errors import ConvocateError  # noqa: PLC0415

        if isinstance(e, ConvocateError):
            print(f"error: {e}", file=sys.stderr)  # noqa: T201 - the boundary's one line
            sys.exit(1)
        print(f"error: {type(e).__name__}: {e} (CONVOCATE_DEBUG=1 shows the traceback)",  # noqa: T201
              file=sys.stderr)
        sys.exit(1)
