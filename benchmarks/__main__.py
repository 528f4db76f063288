"""`python -m benchmarks [name ...]` runs the named benchmarks (default: all)."""

from __future__ import annotations

import sys

from benchmarks import attach, attach_rtt, image_push, transport

SUITES = {
    "transport": transport.run,
    "attach": attach.run,
    "attach_rtt": attach_rtt.run,
    "image_push": image_push.run,
}


def main(argv: list[str]) -> int:
    """Run each requested suite in turn."""
    names = argv or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"error: unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(SUITES)}")
        return 2
    for name in names:
        SUITES[name]()
    return 0


sys.exit(main(sys.argv[1:]))
