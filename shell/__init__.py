"""convocate's shell host: the console, the status service, and their set-up.

Each sub-package is one process or one layer, so ``ls shell/`` tells what runs where:

- :mod:`shell.console`: the prompt_toolkit application (an operator's terminal);
- :mod:`shell.attach`: the terminal hand-off between the console and an attach stream;
- :mod:`shell.fleet`: how the console reaches agents (router, caches, DNS file, orphans);
- :mod:`shell.status`: the status service, a separate process under systemd;
- :mod:`shell.install`, :mod:`shell.demo`, :mod:`shell.demo_smoke`: set-up, the only
  code that combines the shell with the agent.

:mod:`shell.main` is the ``convocate`` command line.
"""
