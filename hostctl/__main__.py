"""`python -m hostctl` runs `convocate-host`."""

from hostctl.cli import main

main()
