"""The stand-in for the Claude CLI in the offline image, and the hooks it fires.

The stand-in prints a banner and runs an interactive shell. Like the real CLI it runs the
command hooks configured in ``~/.claude/settings.json`` and ``~/.claude/settings.local.json``
for each event, with the JSON input the real CLI sends on stdin (``session_id``,
``transcript_path``, ``cwd``, ``permission_mode``, ``hook_event_name`` and the event's own
fields: ``source``, ``prompt``, ``tool_name``/``tool_input``, ``message``/``notification_type``,
``stop_hook_active``, ``reason``). ``SessionStart`` fires when it starts and ``SessionEnd``
when its shell exits. In between, commands typed at its prompt fire the others, so tests
drive a session through working, needs input and idle:

===========================  =============================================================
``:prompt [text]``           UserPromptSubmit
``:tool [name]``             PostToolUse
``:permit [tool]``           PermissionRequest, then Notification ``permission_prompt``
``:ask [message]``           Notification ``elicitation_dialog``
``:idle``                    Notification ``idle_prompt``
``:done``                    Stop
``:hook EVENT [json]``       any event (extra fields as a JSON fragment)
===========================  =============================================================

The hook commands are read from the pretty-printed settings with ``awk`` (the image has
no JSON tool): every ``"command"`` under an event's key, JSON string escapes ``\\"`` and
``\\\\`` undone, run with ``sh -c`` and the input on stdin, one after another.
"""

from __future__ import annotations

__all__ = ["HOOK_RUNNER", "STAND_IN_CLI", "STAND_IN_COMMANDS"]

STAND_IN_CLI = """#!/bin/sh
# Stand-in for the Claude CLI in the offline convocate image (see agent/stand_in_cli.py).
echo "claude stand-in ($*): a shell in the session container"
CLAUDE_STAND_IN_SESSION=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "stand-in-$$")
export CLAUDE_STAND_IN_SESSION
claude-hook SessionStart '"source":"startup"'
export PS1='$ ' ENV=
/bin/sh -i
code=$?
claude-hook SessionEnd '"reason":"exit"'
exit $code
"""

# Fires one event: `claude-hook EVENT [fields]`, or through the `:name` links by name.
HOOK_RUNNER = r"""#!/bin/sh
# Runs the CLI's command hooks of one event with the JSON input the Claude CLI sends.
esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
cmds() {
  for f in "$HOME/.claude/settings.json" "$HOME/.claude/settings.local.json"; do
    [ -r "$f" ] || continue
    awk -v ev="$1" '
      /^[ \t]*"[A-Za-z]+": \[/ { k=$0; sub(/^[ \t]*"/, "", k); sub(/".*/, "", k); if (k != "hooks") cur=k }
      /"command": "/ && cur == ev {
        c=$0; sub(/^[^:]*: "/, "", c); sub(/",?[ \t]*$/, "", c)
        gsub(/\\"/, "\"", c); gsub(/\\\\/, "\\", c); print c
      }' "$f"
  done
}
fire() {  # fire EVENT EXTRA-FIELDS
  sid=${CLAUDE_STAND_IN_SESSION:-stand-in}
  json="{\"session_id\":\"$sid\""
  json="$json,\"transcript_path\":\"$HOME/.claude/projects/-home-claude/$sid.jsonl\""
  json="$json,\"cwd\":\"$(esc "$PWD")\",\"permission_mode\":\"default\""
  json="$json,\"hook_event_name\":\"$1\"${2:+,$2}}"
  cmds "$1" | while IFS= read -r c; do printf '%s' "$json" | sh -c "$c"; done
}
note() {  # note TYPE MESSAGE
  fire Notification "\"message\":\"$(esc "$2")\",\"notification_type\":\"$1\""
}
name=${0##*/}
case "$name" in
  :prompt) fire UserPromptSubmit "\"prompt\":\"$(esc "${*:-do the work}")\"" ;;
  :tool) fire PostToolUse "\"tool_name\":\"$(esc "${1:-Bash}")\",\"tool_input\":{},\"tool_response\":{}" ;;
  :permit)
    fire PermissionRequest "\"tool_name\":\"$(esc "${1:-Bash}")\",\"tool_input\":{}"
    note permission_prompt "Claude needs your permission to use ${1:-Bash}" ;;
  :ask) note elicitation_dialog "${*:-Claude has a question for you}" ;;
  :idle) note idle_prompt "Claude is waiting for your input" ;;
  :done) fire Stop "\"stop_hook_active\":false" ;;
  *) [ "$name" = :hook ] || [ "$name" = claude-hook ] || exit 2; ev=$1; shift; fire "$ev" "$*" ;;
esac
exit 0
"""

# The commands typed at the stand-in's prompt (links to the hook runner).
STAND_IN_COMMANDS = (":prompt", ":tool", ":permit", ":ask", ":idle", ":done", ":hook")
