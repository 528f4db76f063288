"""The console: the prompt_toolkit application an operator runs in a terminal.

Runs as the login shell of the console user on the shell host (or ``convocate`` on a
workstation). ptpython's split: :mod:`.state` (what is shown), :mod:`.layout`
(state → containers), :mod:`.key_bindings`, :mod:`.filters`, :mod:`.style`, the table,
dialogs and forms, and the controllers that run operations through the fleet router
(:mod:`shell.fleet`) and hand the terminal to :mod:`shell.attach`.
"""
