"""End-to-end tests on throwaway Debian hosts with systemd (``nox -s e2e-hosts``)."""
