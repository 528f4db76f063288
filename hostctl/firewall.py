"""The accept rules for convocate's ports, applied now and again at every boot.

One script (:data:`FIREWALL_SCRIPT`) is the rule set: ``install`` runs it over SSH, and
writes it to the host with ``convocate-firewall.service``, a oneshot unit that runs the
same file at boot after the host's own firewall restore (``netfilter-persistent``,
``nftables.service``, ``ufw``, ``firewalld``), so a rule set restored (or flushed) at boot
cannot leave the agent and the status service unreachable. The script adds only what is
missing, so the rules are there exactly once however often it runs.

``update`` refreshes both files from this module (:func:`plan_refresh`) on a host that
has the boot unit, with the ports and script path its unit names.
"""

from __future__ import annotations

from pathlib import Path

from common.install_options import exec_start
from hostctl.remote import Runner
from hostctl.remote_files import ensure_file, read_file, run_checked
from hostctl.report import Report
from hostctl.units import UnitChange

__all__ = ["FIREWALL_SCRIPT", "FIREWALL_UNIT", "SCRIPT_PATH", "ensure_firewall", "installed_firewall",
           "plan_refresh", "render_firewall_unit"]

FIREWALL_UNIT = "convocate-firewall.service"
SCRIPT_PATH = Path("/usr/local/lib/convocate/firewall.sh")
SYSTEMD_DIR = Path("/etc/systemd/system")
# The host's own firewall restore units: ours runs after whichever of them the host has.
RESTORE_UNITS = ("netfilter-persistent.service", "iptables.service", "ip6tables.service", "nftables.service",
                 "ufw.service", "firewalld.service")
SERVICES = ("convocate-agent.service", "convocate-status.service")
_NEITHER = 4

# $1 = apply|plan, then the ports. Prints what it added (or would); exit 4 when the host has
# neither iptables nor nft. Run by `install` (sh -c) and, from its file, by the boot unit.
FIREWALL_SCRIPT = """#!/bin/sh
# convocate: accept tcp for convocate's ports (written by convocate-host install; run at boot
# by convocate-firewall.service). Adds only what is missing.
set -e
mode="$1"; shift
if command -v iptables >/dev/null 2>&1 && iptables -w 30 -S INPUT >/dev/null 2>&1; then
  for p in "$@"; do
    iptables -w 30 -C INPUT -p tcp --dport "$p" -m comment --comment convocate -j ACCEPT 2>/dev/null &&
      continue
    [ "$mode" = plan ] || iptables -w 30 -I INPUT -p tcp --dport "$p" -m comment --comment convocate -j ACCEPT
    echo "iptables: accept tcp/$p"
  done
elif command -v nft >/dev/null 2>&1; then
  tag="convocate ports $(echo "$@" | tr ' ' ',')"
  want="tcp dport { $(echo "$@" | tr ' ' ',') } accept comment \\"$tag\\""
  nft list chain inet convocate input 2>/dev/null | grep -qF "$tag" && exit 0
  if [ "$mode" != plan ]; then
    nft add table inet convocate
    nft 'add chain inet convocate input { type filter hook input priority -10; policy accept; }'
    nft flush chain inet convocate input
    nft add rule inet convocate input "$want"
  fi
  echo "nftables: table inet convocate: $want"
else
  exit 4
fi
"""


def render_firewall_unit(ports: tuple[int, ...], script: Path = SCRIPT_PATH) -> str:
    """``convocate-firewall.service``: the script at boot, after the host's firewall, before our services."""
    listed = ", ".join(map(str, ports))
    return f"""# convocate: accept tcp {listed} again at every boot (written by convocate-host install).
# Runs after the host restores its own rule set, which may not hold these rules.
[Unit]
Description=convocate firewall accept rules (tcp {listed})
After={' '.join(RESTORE_UNITS)}
Before={' '.join(SERVICES)}

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=2min
ExecStart=/bin/sh {script} apply {' '.join(map(str, ports))}

[Install]
WantedBy=multi-user.target
"""


async def ensure_firewall(runner: Runner, ports: tuple[int, ...], report: Report, *,
                          systemd_dir: Path = SYSTEMD_DIR, script: Path = SCRIPT_PATH) -> None:
    """Accept rules for ``ports`` now (iptables first, else nftables) and at every boot; a note if neither.

    The rules are inserted at the top of INPUT (iptables) or in a base chain of our own
    that runs before ``filter`` (nftables); a host whose own rules drop in a later chain
    still needs those ports opened there. Two steps: ``firewall`` (the rules now) and
    ``firewall-boot`` (the script, its unit, enabled).
    """
    argv = ["sh", "-c", FIREWALL_SCRIPT, "convocate-firewall", "plan" if report.dry_run else "apply",
            *map(str, ports)]
    result = await runner.run(argv, root=True)
    if result.status == _NEITHER:
        report.add("firewall", changed=False, detail="skipped: neither iptables nor nft on the host; "
                   f"keep tcp {', '.join(map(str, ports))} reachable by hand")
        return
    if result.status != 0:
        await run_checked(runner, argv, "firewall rules")  # raises with the host's words
    added = result.text()
    report.add("firewall", changed=bool(added),
               detail=added.replace("\n", "; ") or f"tcp {', '.join(map(str, ports))} accepted already")
    await _boot_unit(runner, ports, report, systemd_dir, script)


async def _boot_unit(runner: Runner, ports: tuple[int, ...], report: Report, systemd_dir: Path,
                     script: Path) -> None:
    if (await runner.run(["test", "-d", "/run/systemd/system"])).status != 0:
        report.add("firewall-boot", changed=False, detail="skipped: systemd is not running; the rules last "
                   "until the next boot unless the host saves them")
        return
    dry = report.dry_run
    wrote_script = await ensure_file(runner, script, FIREWALL_SCRIPT, "755", dry_run=dry)
    unit = systemd_dir / FIREWALL_UNIT
    wrote_unit = await ensure_file(runner, unit, render_firewall_unit(ports, script), "644", dry_run=dry)
    enabled = (await runner.run(["systemctl", "is-enabled", FIREWALL_UNIT])).text() == "enabled"
    active = (await runner.run(["systemctl", "is-active", FIREWALL_UNIT])).text() == "active"
    done = [f"{script} written"] if wrote_script else []
    done += [f"{unit} written"] if wrote_unit else []
    done += [] if enabled and active else [f"systemctl enable --now {FIREWALL_UNIT}"]
    if done and not dry:
        if wrote_unit or wrote_script:
            await run_checked(runner, ["systemctl", "daemon-reload"], "reloading systemd")
        if wrote_unit and active:   # re-run with the new ports; the script adds only what is missing
            await run_checked(runner, ["systemctl", "restart", FIREWALL_UNIT], f"restarting {FIREWALL_UNIT}")
        await run_checked(runner, ["systemctl", "enable", "--now", FIREWALL_UNIT],
                          f"enabling {FIREWALL_UNIT}")
    report.add("firewall-boot", changed=bool(done),
               detail="; ".join(done) or f"{FIREWALL_UNIT} enabled: the rules come back at every boot")


def installed_firewall(unit_text: str) -> tuple[Path, tuple[int, ...]] | None:
    """The script and ports an installed boot unit runs (``/bin/sh <script> apply <ports>``), or None."""
    words = exec_start(unit_text)
    if len(words) < 4 or words[0] != "/bin/sh" or words[2] != "apply" or not words[1].startswith("/"):
        return None
    if not all(w.isdigit() and 0 < int(w) < 65536 for w in words[3:]):
        return None
    return Path(words[1]), tuple(int(w) for w in words[3:])


async def plan_refresh(runner: Runner, systemd_dir: Path = SYSTEMD_DIR) -> tuple[tuple[UnitChange, ...], str]:
    """The boot unit and its script as this release writes them, where they differ from the host's.

    Only on a host that has the unit (``install`` wrote it), with the script path and the
    ports it names. Returns the changes and a note when the unit is there but not ours
    to read (left as it is).
    """
    unit = systemd_dir / FIREWALL_UNIT
    found = await read_file(runner, unit)
    if found is None:
        return (), ""
    installed = installed_firewall(found[2].decode(errors="replace"))
    if installed is None:
        return (), f"{unit} stays as it is: its ExecStart is not '/bin/sh <script> apply <ports>'"
    script, ports = installed
    changes = []
    for path, text, mode, before in ((unit, render_firewall_unit(ports, script), "644", found),
                                     (script, FIREWALL_SCRIPT, "755", await read_file(runner, script))):
        if before is None or before[2] != text.encode():
            name = FIREWALL_UNIT if path == unit else str(path)
            changes.append(UnitChange(name, text, None if before is None else before[2], path, mode))
    return tuple(changes), ""
