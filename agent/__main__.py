"""``python -m agent``: the same as the ``convocate-agent`` command."""

from agent.main import main

__all__: list[str] = []

main()
