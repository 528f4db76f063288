#!/bin/sh
# convocate session entrypoint (production image), after v2.0.0's entrypoint.sh: the command
# (the Claude CLI by default) runs in tmux session "claude" as user claude, and the container
# lives exactly as long as that tmux session. The CLI never runs as root and gets no sudo.
set -eu
export HOME=/home/claude USER=claude LOGNAME=claude SHELL=/bin/bash
[ "$#" -gt 0 ] || set -- /usr/local/bin/claude --dangerously-skip-permissions
cd "$HOME" 2>/dev/null || cd /

if [ "$(id -u)" = 0 ]; then
  # Started as root (inventory §5.2): take the agent's uid/gid (CLAUDE_UID/CLAUDE_GID) unless
  # it is root's or not a number (then the image's 1337), give the session home and its
  # .claude to claude, then drop root for good.
  uid="${CLAUDE_UID:-1337}"; gid="${CLAUDE_GID:-1337}"
  case "$uid" in ''|0|*[!0-9]*) uid=1337 ;; esac
  case "$gid" in ''|0|*[!0-9]*) gid=1337 ;; esac
  [ "$gid" = "$(id -g claude)" ] || groupmod -o -g "$gid" claude
  [ "$uid" = "$(id -u claude)" ] || usermod -o -u "$uid" claude
  # The Docker socket is mounted only when the agent opts in: give claude its group then.
  if [ -S /var/run/docker.sock ]; then
    sock_gid="$(stat -c %g /var/run/docker.sock)"
    group="$(getent group "$sock_gid" | cut -d: -f1 || true)"
    if [ -z "$group" ]; then groupadd -g "$sock_gid" docker-host; group=docker-host; fi
    usermod -aG "$group" claude
  fi
  for d in "$HOME" "$HOME/.claude"; do
    if [ -d "$d" ] && [ ! -L "$d" ]; then chown claude:claude "$d"; fi
  done
  as_claude() { setpriv --reuid=claude --regid=claude --init-groups -- "$@"; }
else
  as_claude() { "$@"; }
fi

trap 'as_claude tmux kill-server 2>/dev/null; exit 0' TERM INT HUP
as_claude tmux new-session -d -s claude -x 80 -y 24 -- "$@"
# Block (no polling) until the session closes: the hook wakes the waiter, and the server's
# exit (exit-empty) ends it too. In the background, so a TERM runs the trap at once.
as_claude tmux set-hook -g session-closed 'wait-for -S convocate-exit'
while as_claude tmux has-session -t claude 2>/dev/null; do
  as_claude tmux wait-for convocate-exit 2>/dev/null & wait $!
done
