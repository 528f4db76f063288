"""The terminal hand-off: the console gives its terminal to an attach relay and takes it back.

Runs inside the console process. :mod:`.relay` pumps keystrokes and screen frames between
the local terminal and an agent's Attach stream, :mod:`.terminal` owns raw mode and the
writer, :mod:`.outcome` says how an attach ended and what the console shows next.
"""
