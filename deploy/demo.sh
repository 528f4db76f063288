#!/usr/bin/env bash
# The one-command demo: run as root on a fresh Debian 12 machine, from a checkout.
#
#   sudo deploy/demo.sh            # installs what is missing, then opens the console
#   sudo deploy/demo.sh --no-console   # the same, as a smoke test (starts, checks, stops)
#
# What it does:
#   1. apt-get installs what is missing: docker.io, tmux, busybox-static, python3-venv;
#   2. starts dockerd if no Docker Engine answers;
#   3. creates a venv (CONVOCATE_DEMO_VENV, default /opt/convocate-demo/venv) and
#      pip-installs this checkout into it;
#   4. runs `convocate demo`: keys, a local agent on 127.0.0.1, the status service, an
#      offline session image, and the console. Quit the console (q) to clean up: the
#      demo processes stop; session containers are removed unless --keep-sessions.
# Extra arguments are passed to `convocate demo` (see `convocate demo --help`).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CONVOCATE_DEMO_VENV:-/opt/convocate-demo/venv}"

say() { printf '[demo] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "error: deploy/demo.sh installs packages and starts dockerd: run it as root (sudo)" >&2
    exit 1
fi

missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! docker info >/dev/null 2>&1; then
    say "starting the Docker Engine"
    if [ -d /run/systemd/system ]; then
        systemctl start docker
    else
        nohup dockerd >/var/log/convocate-demo-dockerd.log 2>&1 &
    fi
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "error: dockerd did not start (see its log)" >&2; exit 1; }
fi

if [ ! -x "$VENV/bin/convocate" ] || [ "$REPO" -nt "$VENV/bin/convocate" ]; then
    say "installing convocate into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "$REPO"
fi

say "starting the demo"
exec "$VENV/bin/convocate" demo "$@"
