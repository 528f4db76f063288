"""``python -m agent``: the same as the ``convocate-agent`` command."""

from agent.main import main

main()
