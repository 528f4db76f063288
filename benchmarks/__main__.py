"""`python -m benchmarks [--quick] [name ...]` runs the named benchmarks (default: all).

``--quick`` is a short smoke run with fewer samples (figures are then rough).
"""

from __future__ import annotations

import sys

from benchmarks.report import QUICK

QUICK.on = "--quick" in sys.argv[1:]   # before the suites read their sample counts

from benchmarks import (  # noqa: E402
    agent_list,
    agent_memory,
    attach,
    attach_rtt,
    first_screen,
    fleet,
    image_push,
    keystroke,
    keystroke_ab,
    load,
    output_ab,
    real_cli,
    startup,
    summary,
    transport,
)

SUITES = {
    "summary": summary.run,
    "keystroke": keystroke.run,
    "keystroke_ab": keystroke_ab.run,
    "output_ab": output_ab.run,
    "transport": transport.run,
    "attach": attach.run,
    "attach_rtt": attach_rtt.run,
    "image_push": image_push.run,
    "fleet": fleet.run,
    "load": load.run,
    "first_screen": first_screen.run,
    "agent_list": agent_list.run,
    "agent_memory": agent_memory.run,
    "real_cli": real_cli.run,
    "startup": startup.run,
}


# summary covers the figures (image_push's among them, through summary.EXTRA);
# the single-figure suites, image_push included, also run by name.
DEFAULT = ["summary"]


def main(argv: list[str]) -> int:
    """Run each requested suite in turn."""
    names = [a for a in argv if a != "--quick"] or DEFAULT
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"error: unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(SUITES)}")
        return 2
    for name in names:
        SUITES[name]()
    return 0


sys.exit(main(sys.argv[1:]))
