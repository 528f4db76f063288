#!/bin/sh
# The convocate session image's layers (v2.0.0's toolset), shared by both ways to build it:
# the Dockerfile `FROM ubuntu:24.04` (where a registry is reachable) and
# `convocate-agent build-image --production` (a debootstrap'ed Debian base). Only the
# distribution's archive and the npm registry are used. Run as root inside the image:
#   install-toolset.sh system         the tools from the archive, locale, user claude (1337)
#   install-toolset.sh cli VERSION    the Claude CLI from npm at VERSION
set -eu
CLI_PACKAGE="@anthropic-ai/claude-code"
CLI_UID=1337
# Debian's bundle, which includes any CA under /usr/local/share/ca-certificates (a proxy's).
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
export DEBIAN_FRONTEND=noninteractive

system() {
  apt-get update -q
  # The Docker client: a client-only package where the archive has one, else docker.io.
  docker_pkg=docker.io
  if apt-cache show docker-cli >/dev/null 2>&1; then docker_pkg=docker-cli; fi
  apt-get install -y -q --no-install-recommends \
    build-essential cmake pkg-config python3 python3-pip python3-venv nodejs npm golang \
    git gnupg curl wget jq ripgrep tmux vim nano less procps openssh-client ca-certificates \
    locales "$docker_pkg"
  # Only the client is wanted: no daemon, containerd or runc in a session container.
  rm -f /usr/sbin/dockerd /usr/bin/dockerd /usr/bin/containerd /usr/bin/containerd-shim* \
        /usr/bin/ctr /usr/sbin/runc /usr/bin/runc
  apt-get clean
  rm -rf /var/lib/apt/lists/*
  sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
  locale-gen >/dev/null
  # The CLI's user: uid/gid 1337, home /home/claude (the session directory is mounted
  # there). No sudo: nothing in the container runs as root after the entrypoint.
  groupadd -g "$CLI_UID" claude
  useradd -u "$CLI_UID" -g claude -d /home/claude -M -s /bin/bash claude
  install -d -o claude -g claude -m 0750 /home/claude
}

cli() {
  version="${1:?usage: install-toolset.sh cli VERSION}"
  npm install -g --no-audit --no-fund --loglevel=error --cafile="$CA_BUNDLE" \
    "${CLI_PACKAGE}@${version}"
  npm cache clean --force >/dev/null 2>&1 || true
  rm -rf /root/.npm
  [ -x /usr/local/bin/claude ] || ln -sf "$(npm prefix -g)/bin/claude" /usr/local/bin/claude
  /usr/local/bin/claude --version
}

case "${1:-}" in
  system) system ;;
  cli) shift; cli "$@" ;;
  *) echo "usage: install-toolset.sh system | cli VERSION" >&2; exit 2 ;;
esac
