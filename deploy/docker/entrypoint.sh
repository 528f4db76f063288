#!/bin/sh
# convocate session entrypoint (production image), after v2.0.0's entrypoint.sh:
# create user claude with the agent's uid/gid, then run the command (the Claude CLI by
# default) in tmux session "claude" as that user, and live exactly as long as it.
set -eu
CLAUDE_UID="${CLAUDE_UID:-1000}"
CLAUDE_GID="${CLAUDE_GID:-1000}"

getent group claude >/dev/null 2>&1 || groupadd -g "$CLAUDE_GID" claude 2>/dev/null || groupadd claude
if ! id claude >/dev/null 2>&1; then
  useradd -u "$CLAUDE_UID" -g claude -d /home/claude -s /bin/bash claude 2>/dev/null \
    || useradd -g claude -d /home/claude -s /bin/bash claude
fi
# The Docker socket is mounted only when the agent opts in: give claude its group then.
if [ -S /var/run/docker.sock ]; then
  sock_gid="$(stat -c %g /var/run/docker.sock)"
  group="$(getent group "$sock_gid" | cut -d: -f1 || true)"
  if [ -z "$group" ]; then groupadd -g "$sock_gid" docker-host; group=docker-host; fi
  usermod -aG "$group" claude
fi
echo 'claude ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/claude && chmod 0440 /etc/sudoers.d/claude
mkdir -p /home/claude && chown claude:claude /home/claude
echo 'export PATH=/usr/local/go/bin:$PATH' > /etc/profile.d/go.sh
export HOME=/home/claude

[ "$#" -gt 0 ] || set -- /usr/local/bin/claude --dangerously-skip-permissions
trap 'sudo -u claude -H tmux kill-server 2>/dev/null; exit 0' TERM INT HUP
sudo -u claude -H --preserve-env=LANG,LC_ALL,PATH tmux new-session -d -s claude -x 80 -y 24 -- "$@"
while sudo -u claude -H tmux has-session -t claude 2>/dev/null; do sleep 1; done
