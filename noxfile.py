"""Development sessions. `nox` alone runs the whole test suite: lint, typecheck, the tests,
then the throwaway-hosts end to end (`e2e-hosts`) and the production image (`image-production`).
During development, `nox -s lint typecheck tests` is the quick loop (a few minutes).

Each session gets a fresh uv venv with the project installed editable; the build hook
generates the protobuf code, so a stale tree cannot hide.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "tests", "e2e-hosts", "image-production"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
SOURCES = ["common", "agent", "shell", "hostctl", "tests", "benchmarks", "noxfile.py", "hatch_build.py"]


def _install(session: nox.Session, *groups: str) -> None:
    args = ["-e", "."]
    for group in groups:
        args += ["--group", group]
    session.install(*args)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over every source file, then the import contracts (pyproject [tool.importlinter])."""
    _install(session, "lint")   # lint-imports needs the packages, pb2 modules included, importable
    session.run("ruff", "check", *SOURCES)
    session.run("lint-imports")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the packages, the tests and this file."""
    _install(session, "typecheck")
    session.run("mypy", *SOURCES)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, integration (real SSH, gRPC, Docker) and end to end (tmux): the quick part of `nox`."""
    _install(session, "test")
    session.run("pytest", "-m", "not production_image",
                *(session.posargs or ["tests", "--ignore=tests/hosts"]))


@nox.session(name="e2e-hosts", python=PYTHON)
def e2e_hosts(session: nox.Session) -> None:
    """Throwaway Debian hosts with systemd (tests/hosts): boots machines, minutes; needs root,
    debootstrap and the Debian archive."""
    _install(session, "test")
    session.install("pip")  # builds the wheelhouse the hosts install convocate from
    # Options alone (e.g. `-- -x`) still run tests/hosts only, never the whole suite.
    args = session.posargs if any(a.startswith("tests") for a in session.posargs) else [
        "tests/hosts", *session.posargs]
    session.run("pytest", "-o", "timeout=900", *args, env={"CONVOCATE_E2E_HOSTS": "1"})


@nox.session(name="image-production", python=PYTHON)
def image_production(session: nox.Session) -> None:
    """The production image (debootstrap, Debian toolset, Claude CLI from npm), built or reused,
    run by a real agent and attached from the console. Minutes cold, about a minute cached;
    needs root and debootstrap."""
    _install(session, "test")
    session.run("pytest", "-m", "production_image", "-s", *(session.posargs or ["tests/image"]))


@nox.session(python=PYTHON)
def protos(session: nox.Session) -> None:
    """Regenerate the protobuf/gRPC code in place (after editing a .proto)."""
    session.install("grpcio-tools==1.85.1", "mypy-protobuf==5.1.0")
    session.run("python", "hatch_build.py")


@nox.session(python=PYTHON)
def benchmarks(session: nox.Session) -> None:
    """Speed and memory against same-run baselines; writes benchmarks/results/*.md.

    ``nox -s benchmarks -- --quick`` is a short smoke run; name suites to run only those."""
    _install(session, "bench")
    # Bytecode, as `pip install` writes it on a host: without it every process would
    # compile its modules again at start (PYTHONDONTWRITEBYTECODE, a fresh editable
    # install), paying start-up time and memory no installed convocate pays.
    site = session.run("python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       silent=True)
    session.run("python", "-m", "compileall", "-q", "-j", "0", str(site).strip(), "common", "agent", "shell",
                "hostctl", "tests", "benchmarks", "proto",
                silent=True, success_codes=[0, 1])
    session.run("python", "-m", "benchmarks", *session.posargs)
