"""``obslab bench lab``: what the whole native lab costs the machine.

A fresh lab (fast profile by default, traffic on) in a temporary data directory on ports
``+--port-offset`` (below the kernel's ephemeral range): the time from ``up`` to every component
healthy, then ``--minutes`` of the lab's own traffic, then per component (each a supervised
process: the lab's Python components, Prometheus, Alertmanager, and supervisord itself):

* **PSS** (proportional set size, ``/proc/<pid>/smaps_rollup``): resident memory with each page
  shared between processes divided among them, so the components add up to what the lab really
  holds (RSS would count a shared library once per process);
* **CPU %** of one core over the traffic window (``/proc/<pid>/stat`` utime + stime), 100 = a
  whole core;

and Prometheus's head series. ``--json`` prints
``{"total_pss_mib": N, "components": {NAME: {"pss_mib": N, "cpu_percent": N}},
"prometheus_head_series": N, "startup_seconds": N}`` plus ``"profile"`` and ``"minutes"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from obslab import profiles, topology
from obslab.lab.launch import pid_file, read_pid_file
from obslab.lab.native import LabError, NativeLab

SUPERVISOR = "supervisord"
TARGET_PSS_MIB = 1228.8          # the target: the whole lab with traffic within 1.2 GiB
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="minutes of the lab's own traffic before measuring (default: 3)")
    parser.add_argument("--profile", choices=sorted(profiles.PROFILES), default="fast",
                        help="the lab's time profile (default: fast, as tests and drills run it)")
    parser.add_argument("--port-offset", type=int, default=18000,
                        help="ports of the benchmark lab: the usual ones + this (default: 18000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


@dataclass(frozen=True)
class Usage:
    pss_kib: int
    cpu_ticks: int


def pss_kib(pid: int) -> int:
    """Proportional set size of one process, in KiB (its ``smaps_rollup``)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise LabError(f"/proc/{pid}/smaps_rollup has no Pss line (Linux 4.14 or newer is needed)")


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (``/proc/<pid>/stat`` fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()     # the command name may hold spaces
    return int(fields[11]) + int(fields[12])


def forked_child(lab: NativeLab, name: str, pid: int) -> int:
    """The process that runs component ``name``: the fork server's child when supervisord's ``pid``
    is its launcher (obslab/lab/launch.py), otherwise ``pid`` itself."""
    recorded = read_pid_file(pid_file(str(lab.fork_server_socket), name))
    if recorded is None:
        return pid
    launcher, child = recorded
    return child if launcher == pid and Path(f"/proc/{child}").exists() else pid


def component_pids(lab: NativeLab) -> dict[str, int]:
    """Every running program of the lab, and supervisord, by name."""
    # STARTING too: a program started last (the load generator, after the seed) may still be in
    # supervisord's start-up window, with its process long running.
    pids = {name: forked_child(lab, name, state.pid) for name, state in lab.supervisor.processes().items()
            if state.state in ("RUNNING", "STARTING") and state.pid}
    supervisor = lab.supervisor.pid()
    if supervisor:
        pids[SUPERVISOR] = supervisor
    return pids


def launcher_pids(lab: NativeLab, pids: dict[str, int]) -> list[int]:
    """The launchers between supervisord and the forked components (``pids``, by component_pids)."""
    supervised = {name: state.pid for name, state in lab.supervisor.processes().items() if state.pid}
    return [pid for name, pid in supervised.items() if name in pids and pids[name] != pid]


def sample(pids: dict[str, int | list[int]]) -> dict[str, Usage]:
    """PSS and CPU ticks per name; a list of processes is summed (one missing: the name is)."""
    found = {}
    for name, group in pids.items():
        try:
            usages = [Usage(pss_kib(pid), cpu_ticks(pid)) for pid in ([group] if isinstance(group, int) else group)]
        except (FileNotFoundError, ProcessLookupError):
            continue          # it exited meanwhile: reported as missing
        found[name] = Usage(sum(u.pss_kib for u in usages), sum(u.cpu_ticks for u in usages))
    return found


def figures(before: dict[str, Usage], after: dict[str, Usage], seconds: float,
            healthy_after: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Per component: PSS, CPU % over the window and, where known, seconds from start to healthy."""
    healthy_after = healthy_after or {}
    return {name: {"pss_mib": round(usage.pss_kib / 1024, 1),
                   "cpu_percent": round(100.0 * (usage.cpu_ticks - before[name].cpu_ticks) / CLOCK_TICKS / seconds, 1)
                   if name in before else None,
                   "healthy_after_s": healthy_after.get(name)}
            for name, usage in sorted(after.items(), key=lambda item: -item[1].pss_kib)}


def head_series(lab: NativeLab) -> int | None:
    try:
        address = topology.PROMETHEUS.address("native", offset=lab.offset)
        answer = requests.get(f"http://{address}/api/v1/query",
                              params={"query": "prometheus_tsdb_head_series"}, timeout=5).json()
        return int(float(answer["data"]["result"][0]["value"][1]))
    except (requests.RequestException, ValueError, KeyError, IndexError):
        return None


def run(args: argparse.Namespace) -> int:
    if args.minutes <= 0:
        raise LabError("--minutes must be above 0")

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="obslab-bench-lab-") as directory:
        lab = NativeLab(Path(directory) / "data", offset=args.port_offset, profile=profiles.profile(args.profile),
                        out=sys.stderr)
        progress(f"starting a fresh {args.profile}-profile lab with traffic (ports +{args.port_offset}) ...")
        try:
            began = time.monotonic()
            if lab.up(detach=True, timeout=180) != 0:
                raise LabError("the benchmark lab did not become healthy; see the table above")
            startup = time.monotonic() - began
            pids: dict[str, int | list[int]] = {**component_pids(lab)}
            if launchers := launcher_pids(lab, pids):
                pids[f"launchers ({len(launchers)})"] = launchers
            before, started = sample(pids), time.monotonic()
            window = args.minutes * 60
            while (left := window - (time.monotonic() - started)) > 0:
                progress(f"  traffic for {left:.0f} s more ...")
                time.sleep(min(30.0, left))
            after, seconds = sample(pids), time.monotonic() - started
            result = {
                "total_pss_mib": round(sum(u.pss_kib for u in after.values()) / 1024, 1),
                "components": figures(before, after, seconds, lab.healthy_after),
                "prometheus_head_series": head_series(lab),
                "startup_seconds": round(startup, 1),
                "profile": args.profile, "minutes": args.minutes,
            }
        finally:
            lab.down()
    missing = sorted(set(pids) - set(after))
    if args.json:
        print(json.dumps(result))
    else:
        print(report(result, missing))
    return 0


def report(result: dict, missing: list[str]) -> str:
    lines = [f"The native lab ({result['profile']} profile) after {result['minutes']:g} minutes of its own traffic:",
             f"  startup (up -> every component healthy): {result['startup_seconds']} s",
             f"  Prometheus head series: {result['prometheus_head_series']}", "",
             f"  {'COMPONENT':24} {'PSS MiB':>8} {'CPU %':>6} {'UP s':>6}"]
    for name, row in result["components"].items():
        cpu = "-" if row["cpu_percent"] is None else f"{row['cpu_percent']:.1f}"
        up = "-" if row.get("healthy_after_s") is None else f"{row['healthy_after_s']:.1f}"
        lines.append(f"  {name:24} {row['pss_mib']:8.1f} {cpu:>6} {up:>6}")
    total = result["total_pss_mib"]
    lines.append(f"  {'total':24} {total:8.1f}   (target: {TARGET_PSS_MIB:.0f} MiB; "
                 f"{'within' if total <= TARGET_PSS_MIB else 'over'} it)")
    if missing:
        lines.append(f"  exited during the run, not counted: {', '.join(missing)}")
    return "\n".join(lines)
