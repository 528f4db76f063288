"""One table of issue 13's figures, each against its same-run baseline: results/summary.md.

Runs the keystroke suite (which also writes keystroke_breakdown.md), the transport,
idle-CPU and start-up measurements, then the suites in :data:`EXTRA` (image_push among
them, which also writes image_push.md). Nothing here asserts a number: a missed target
is a row that says so, with its cause.
"""

from __future__ import annotations

import asyncio
import importlib

from benchmarks import idle_cpu, keystroke, startup, transport
from benchmarks.report import (
    QUICK,
    Figures,
    Row,
    host_line,
    load_average,
    median,
    percentile,
    write_markdown,
)
from benchmarks.scale import CliCosts, ShellCosts, scale_lines

__all__ = ["EXTRA", "run"]

# Further suites whose rows join the one table: each is a module of this package with
# ``async def figures() -> Figures`` (it may write its own results/<name>.md as well).
# They run after the figures above, in this order, each alone on the machine. The load
# suite runs last: its 200 sessions leave the engine busy for a while after they are gone
# (an image push right after it measured 1.67x against 2.14x on a quiet engine).
EXTRA: list[str] = ["fleet", "agent_list", "first_screen", "image_push", "agent_memory", "real_cli", "load"]


def _hops_why(r: keystroke.KeystrokeResult) -> str:
    """What the per-hop breakdown of this run shows, from its p50s."""
    hs = keystroke.hops(r)
    if len(hs) < 2:
        return "see keystroke_breakdown.md"
    parts = ", ".join(f"{h.name} {h.added:+.0f}" for h in hs[1:])
    worst = max(hs[1:], key=lambda h: h.added)
    return (f"p50 per hop (keystroke_breakdown.md): the agent's own Docker exec + tmux "
            f"{hs[0].cumulative:.0f} µs, then {parts} µs; the largest is the {worst.name}")


def _output_rows(r: keystroke.KeystrokeResult) -> list[Row]:
    raw, like = keystroke.OUTPUT_RAW, keystroke.OUTPUT_BASELINE
    if raw not in r.output_seconds or like not in r.output_seconds:
        return []

    def rate(label: str) -> float:
        return 1 / median(r.output_seconds[label])

    def mb(label: str) -> float:
        return median([float(b) for b in r.output_bytes.get(label, [])]) / 1e6

    what = f"output of seq 1 {keystroke.SEQ_N}"
    like_name = "the same seq in the session, watched by docker exec -it tmux attach"
    rows = [Row(f"{what} in the session, watched by docker exec -it tmux attach",
                "docker exec -t CTR seq (no tmux)", rate(like), rate(raw), "runs/s",
                "(floor of every attach path)", lambda _x: True,
                f"tmux turns the {mb(raw):.2f} MB of lines into {mb(like):.2f} MB of screen updates at "
                "its own pace; every attach path goes through it", higher_is_better=True, reference=True)]
    for label in r.output_seconds:
        if label in (raw, like):
            continue
        ours = label.removesuffix(" (in the session)")
        got = f"received {mb(label):.2f} MB against the baseline's {mb(like):.2f} MB"
        if mb(label) < 0.9 * mb(like):
            got += " (tmux sends a client that drains slower fewer lines and redraws the screen instead)"
        rows.append(Row(f"{what}: {ours}", like_name, rate(label), rate(like), "runs/s", "≥ 0.9x",
                        lambda x: x >= 0.9, got, higher_is_better=True))
        rows.append(Row(f"{what}: {ours}", "docker exec -t CTR seq (no tmux; the issue's literal baseline)",
                        rate(label), rate(raw), "runs/s", "≥ 0.9x", lambda x: x >= 0.9,
                        f"tmux itself reaches {rate(like) / rate(raw):.2f}x of this baseline (the floor "
                        "row): an attach to the session cannot be faster than the session's tmux",
                        higher_is_better=True))
    return rows


def _keystroke_rows(r: keystroke.KeystrokeResult) -> list[Row]:
    base, ssh = "docker exec -it (baseline)", "ssh -t (OpenSSH) docker exec -it"
    ours = "console relay on a pty + tunnel"
    why = _hops_why(r)
    tail, base_tail = r.p(ours, 99) / r.p(ours, 50), r.p(base, 99) / r.p(base, 50)
    rows = [
        Row("keystroke echo p50, console relay + tunnel + agent", "docker exec -it CTR tmux attach",
            r.p(ours, 50), r.p(base, 50), "µs", "≤ 2.0x", lambda x: x <= 2.0, why),
        Row("keystroke echo p99, console relay + tunnel + agent", "docker exec -it CTR tmux attach",
            r.p(ours, 99), r.p(base, 99), "µs", "≤ 3.0x", lambda x: x <= 3.0,
            f"the slowest 1 % of keys take {tail:.1f}x the median here, {base_tail:.1f}x on the baseline "
            f"(load average at the end of the run: {load_average()})"),
    ]
    if ssh in r.samples:
        ssh_adds = r.p(ssh, 50) - r.p(base, 50)
        ours_adds = r.p(ours, 50) - r.p(base, 50)
        rows.append(Row("keystroke echo p50, console relay + tunnel + agent", "ssh -t host docker exec -it",
                        r.p(ours, 50), r.p(ssh, 50), "µs", "≤ 1.5x", lambda x: x <= 1.5,
                        f"OpenSSH adds {ssh_adds:.0f} µs to the local docker exec, the console path "
                        f"{ours_adds:.0f} µs; {why}"))
    rows += _output_rows(r)
    if r.create_ms:
        rows.append(Row("create-to-running (create + start through the tunnel)", "bare docker run -d",
                        median(r.create_ms["create + start through the tunnel"]),
                        median(r.create_ms["docker run -d (baseline)"]), "ms", "≤ 1.05x",
                        lambda x: x <= 1.05, "the agent's create also writes its store, mounts and "
                        "slice; the bare run has none of it"))
    return rows


async def _main() -> None:
    rows: list[Row] = []
    notes: list[str] = []
    k = await keystroke.measure(with_profile=not QUICK.on)
    keystroke.write(k, [])
    rows += _keystroke_rows(k)
    tr = await transport.measure()
    transport.write(tr)
    direct, tunnel = tr.get("after", "direct"), tr.get("after", "tunnel")
    rows.append(Row("gRPC bidi throughput through the tunnel", "the same server dialled directly",
                    tunnel.mbps, direct.mbps, "MB/s", "≥ 0.5x", lambda x: x >= 0.5,
                    transport.why_tunnel_throughput(tr), higher_is_better=True))
    before_p50 = percentile(tr.get("before", "tunnel").ping_us, 50)
    rows.append(Row("gRPC Ping p50 through the tunnel", "the same server dialled directly",
                    percentile(tunnel.ping_us, 50), percentile(direct.ping_us, 50), "µs", "(no target)",
                    lambda _x: True, f"before ({tr.base[:12]}): {before_p50:.0f} µs in the same run"))
    idle = await idle_cpu.measure()
    names = list(idle.shares)
    rows.append(Row(f"idle CPU of {idle.n} sessions", f"{idle.n} bare containers running sleep",
                    idle.shares[names[0]], idle.shares[names[2]], "% of a core", "≤ 1.1x",
                    lambda x: x <= 1.1 or idle.shares[names[0]] < 1.0,
                    f"before (polling entrypoint): {idle.shares[names[1]]:.2f} % of a core; under 1 % "
                    "of a core both are noise"))
    rows += startup.rows(*await startup.measure())
    rss = list(k.agent_rss_mib.values())
    extra_sessions = keystroke.CREATES * keystroke.ROUNDS
    per_session = max(0.0, (rss[-1] - rss[0]) / extra_sessions)
    for label, mib in k.agent_rss_mib.items():
        rows.append(Row(f"resident memory: {label}", "(target)", mib, 80 if "one" in label else 150, "MiB",
                        "≤ 80 MiB idle, ≤ 150 MiB with 200 sessions", lambda x: x <= 1.0,
                        "most of it is what the agent imports (gRPC, asyncssh with cryptography, aiohttp; "
                        f"see the idle agent's row); each further session added {per_session:.2f} MiB"))
    inputs: dict[str, float] = {}
    for name in EXTRA:
        module = importlib.import_module(f"benchmarks.{name}")
        extra: Figures = await module.figures()
        rows += extra.rows
        notes += extra.notes
        inputs.update(extra.inputs)
    notes += scale_lines(
        session_mib=idle.rss_mib[names[0]], shim_mib=idle.rss_mib["containerd-shim per container"],
        agent_base_mib=rss[0], agent_per_session_mib=per_session,
        session_cpu_pct=idle.shares[names[0]] / idle.n, shell=ShellCosts.from_inputs(inputs),
        cli=CliCosts.from_inputs(inputs))
    lines = [
        "# Issue 13 figures against their same-run baselines", "", host_line(), "",
        "| figure | baseline | measured | baseline value | ratio | target | met or missed, and why |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(r.cells()) + " |" for r in rows), "",
        "Ratios are measured/baseline; for rates (higher is better) a ratio above 1 is faster.",
        "",
        *notes,
    ]
    write_markdown("summary", lines)


def run() -> None:
    """Run every figure and write benchmarks/results/summary.md."""
    asyncio.run(_main())
