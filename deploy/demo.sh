#!/usr/bin/env bash
# The one-command demo: run as root on a fresh Debian 12 machine, from a checkout.
#
#   sudo deploy/demo.sh            # installs what is missing, then opens the console
#   sudo deploy/demo.sh --no-console   # the same, as a smoke test (starts, checks, stops)
#
# What it does:
#   1. apt-get installs what is missing: docker.io (when no dockerd is there: a docker
#      client alone is not enough), tmux, busybox-static, python3-venv;
#   2. starts the Docker Engine if none answers (its log: CONVOCATE_DEMO_LOG_DIR, default
#      /var/log, named in any failure);
#   3. creates a venv (CONVOCATE_DEMO_VENV, default /opt/convocate-demo/venv) and
#      pip-installs this checkout into it;
#   4. runs `convocate demo`: keys, a local agent on 127.0.0.1, the status service, an
#      offline session image, and the console. Quit the console (q) to clean up: the
#      demo processes stop; session containers are removed unless --keep-sessions.
# Extra arguments are passed to `convocate demo` (see `convocate demo --help`).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CONVOCATE_DEMO_VENV:-/opt/convocate-demo/venv}"
LOG_DIR="${CONVOCATE_DEMO_LOG_DIR:-/var/log}"

say() { printf '[demo] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "error: deploy/demo.sh installs packages and starts dockerd: run it as root (sudo)" >&2
    exit 1
fi

missing=()
# The engine, not just a client: a docker CLI alone (docker-ce-cli, a static binary)
# cannot run sessions, so dockerd decides whether docker.io is needed.
if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    missing+=(docker.io)
fi
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

DOCKERD_LOG="$LOG_DIR/convocate-demo-dockerd.log"
if ! docker info >/dev/null 2>&1; then
    say "starting the Docker Engine"
    started=""
    if [ -d /run/systemd/system ] && systemctl start docker >/dev/null 2>&1; then
        started="systemd"
    else
        # No systemd (a container, a chroot) or no docker unit: run the engine ourselves.
        nohup dockerd >"$DOCKERD_LOG" 2>&1 &
        dockerd_pid=$!
        started="nohup"
    fi
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        # An engine that exited will not answer later: stop waiting.
        if [ "$started" = nohup ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then break; fi
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        if [ "$started" = systemd ]; then
            echo "error: dockerd did not start: see 'journalctl -u docker' and 'systemctl status docker'" >&2
        else
            echo "error: dockerd did not start: see $DOCKERD_LOG" >&2
        fi
        exit 1
    fi
fi

if [ ! -x "$VENV/bin/convocate" ] || [ "$REPO" -nt "$VENV/bin/convocate" ]; then
    say "installing convocate into $VENV"
    python3 -m venv "$VENV"
    PIP_LOG="$LOG_DIR/convocate-demo-pip.log"
    if ! { "$VENV/bin/pip" install -q --upgrade pip && "$VENV/bin/pip" install -q "$REPO"; } >"$PIP_LOG" 2>&1; then
        echo "error: installing convocate into $VENV failed: see $PIP_LOG" >&2
        exit 1
    fi
fi

say "starting the demo"
exec "$VENV/bin/convocate" demo "$@"
