"""``obslab bench profile``: where a transfer's CPU goes, per service and per layer, with a flame graph.

A fresh native lab (services, trace sink and Prometheus; no load generator, no ML) with telemetry
fully on (every request traced, spans exported, exemplars and JSON logs; ``--telemetry off`` for
the same lab without tracing, to see what tracing costs where), saturated by
``--concurrency`` clients moving 0.01 EUR between alice and bob. During ``--seconds`` of it,
py-spy samples every banking service and the trace sink at ``--rate`` Hz without stopping them
(``--nonblocking``: the profiler must not be the bottleneck it measures). Each sample becomes CPU
time of one layer (:mod:`obslab.bench.flame`), divided by the transfers completed meanwhile.

By default py-spy samples only the thread holding the GIL (``--gil``): the interpreter's own
work, never a thread waiting for a lock, a socket, a sleep or a core. (``--sampling threads``
samples every thread py-spy deems active; on two busy cores that counts runnable and sleeping
threads too, and the notification provider's simulated sleep looked like CPU.) Samples give each
layer's *share* of a service; the kernel's count of the service's CPU over the same window
(``/proc/<pid>/stat``) turns shares into milliseconds, so C code that runs without the GIL
(SQLite's own work, the kernel's for sockets) is spread over the layers that call it. The
gateway's per-client rate limit is off (every client is 127.0.0.1), as in ``obslab bench api``.

Writes ``flame.svg``, ``breakdown.md``, ``profile.json`` and py-spy's raw stacks per service
(``NAME.raw``, for any flame graph tool) into ``--out`` (default ``bench-profile/``) and prints the
breakdown.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from obslab import conventions as c
from obslab import topology
from obslab.bench import flame
from obslab.bench.api import BOTH_ENVIRONMENT, MODE_ENVIRONMENT, OFF, ON, TransferClient, _environment, git_commit
from obslab.bench.lab import CLOCK_TICKS, component_pids, cpu_ticks
from obslab.lab.native import LabError, NativeLab
from obslab.profiles import FAST

PROFILED = (*c.BANKING_SERVICES, c.TRACE_SINK)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of sampling under load (default: 20)")
    parser.add_argument("--concurrency", type=int, default=8, help="parallel clients (default: 8)")
    parser.add_argument("--rate", type=int, default=100, help="samples per second per process (default: 100)")
    parser.add_argument("--port-offset", type=int, default=16000,
                        help="ports of the profiled lab: the usual ones + this (default: 16000)")
    parser.add_argument("--out", type=Path, default=Path("bench-profile"),
                        help="folder for flame.svg, breakdown.md and profile.json (default: bench-profile/)")
    parser.add_argument("--sampling", choices=("gil", "threads"), default="gil",
                        help="sample the thread holding the GIL (default: Python's own work, no waits) or every "
                             "thread that py-spy deems active")
    parser.add_argument("--telemetry", choices=("on", "off"), default="on",
                        help="profile with telemetry on (default) or off (OTEL_SDK_DISABLED=true), to compare")
    parser.add_argument("--render", type=Path, metavar="DIR",
                        help="no new profile: rebuild the table and flame graph from the one saved in DIR")
    parser.add_argument("--json", action="store_true", help="print profile.json instead of the table")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise LabError("py-spy is not installed: pip install py-spy (or: pip install -e '.[test]')")
    return found


class Traffic:
    """Closed-loop transfers from ``concurrency`` threads until stopped; counts what completed."""

    def __init__(self, gateway_url: str, concurrency: int) -> None:
        self.client = TransferClient(gateway_url)
        self.concurrency = concurrency
        self.completed = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _loop(self, index: int) -> None:
        while not self._stop.is_set():
            ok = self.client.transfer(index)
            with self._lock:
                if ok:
                    self.completed += 1
                else:
                    self.failed += 1
            index += 1

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(self.concurrency)]
        for thread in self._threads:
            thread.start()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.completed, self.failed

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=35)


def sample_services(pids: dict[str, int], seconds: float, rate: int, folder: Path,
                    sampling: str = "gil") -> None:
    """Sample each process with its own py-spy for ``seconds``, into ``folder/NAME.raw``."""
    binary = py_spy()
    outputs, procs = {}, []
    for name, pid in pids.items():
        outputs[name] = folder / f"{name}.raw"
        procs.append((name, subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
             "--duration", str(max(1, round(seconds))), "--threads", "--nonblocking", "--full-filenames",
             *(["--gil"] if sampling == "gil" else []), "-o", str(outputs[name])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    for name, proc in procs:
        _, errors = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0 or not outputs[name].exists():
            raise LabError(f"py-spy could not sample {name} (pid {pids[name]}): {errors.strip()[-300:]}")


def profile_lab(lab: NativeLab, *, seconds: float, concurrency: int, rate: int, folder: Path,
                progress, sampling: str = "gil") -> dict:
    gateway = f"http://127.0.0.1:{topology.DEFAULT_PORTS[c.GATEWAY] + lab.offset}"
    traffic = Traffic(gateway, concurrency)
    every_pid = component_pids(lab)
    pids = {name: pid for name, pid in every_pid.items() if name in PROFILED}
    traffic.start()
    try:
        progress(f"warming up for 5 s with {concurrency} clients ...")
        time.sleep(5.0)
        progress(f"sampling {len(pids)} processes at {rate} Hz for {seconds:.0f} s ...")
        ticks_before = {name: cpu_ticks(pid) for name, pid in every_pid.items()}
        done_before, failed_before = traffic.counts()
        started = time.monotonic()
        sample_services(pids, seconds, rate, folder, sampling)
        elapsed = time.monotonic() - started
        done_after, failed_after = traffic.counts()
        ticks_after = {name: cpu_ticks(pid) for name, pid in every_pid.items()}
    finally:
        traffic.stop()
    transfers = done_after - done_before
    if transfers <= 0:
        raise LabError("no transfer completed while sampling; see the lab's logs")
    kernel_ms = {name: round(1000.0 * (ticks_after[name] - ticks_before[name]) / CLOCK_TICKS / transfers, 3)
                 for name in every_pid}
    return {
        "transfers": transfers, "failed": failed_after - failed_before, "seconds": round(elapsed, 1),
        "transfers_per_second": round(transfers / elapsed, 1), "concurrency": concurrency, "rate_hz": rate,
        "sampling": sampling,
        "kernel_cpu_ms_per_transfer": {**kernel_ms, "all": round(sum(kernel_ms.values()), 3)},
    }


def run(args: argparse.Namespace) -> int:
    if args.render is not None:
        return _print(*render(args.render), args.json)
    if args.seconds < 2 or args.concurrency < 1 or not 1 <= args.rate <= 1000:
        raise LabError("--seconds must be >= 2, --concurrency >= 1 and --rate between 1 and 1000")
    py_spy()

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="obslab-bench-profile-"))
    lab = NativeLab(directory / "data", offset=args.port_offset, profile=FAST, out=sys.stderr)
    progress(f"starting a lab of the services alone, telemetry {args.telemetry} (ports +{args.port_offset}) ...")
    try:
        with _environment(**BOTH_ENVIRONMENT, **MODE_ENVIRONMENT[ON if args.telemetry == "on" else OFF]):
            code = lab.up(detach=True, timeout=180, traffic=False, ml=False)
        if code == 130:
            raise KeyboardInterrupt
        if code != 0:
            raise LabError(f"the profiled lab did not become healthy; its logs are kept in {lab.supervisor.log_dir}")
        result = profile_lab(lab, seconds=args.seconds, concurrency=args.concurrency, rate=args.rate,
                             folder=args.out, progress=progress, sampling=args.sampling)
    except BaseException:
        lab.down()
        raise
    lab.down()
    shutil.rmtree(directory, ignore_errors=True)
    result.update(telemetry=args.telemetry, commit=git_commit())
    (args.out / "profile.json").write_text(json.dumps(result, indent=1))
    return _print(*render(args.out), args.json)


def render(folder: Path) -> tuple[dict, str, Path]:
    """Build ``flame.svg``, ``breakdown.md`` and the breakdown in ``profile.json`` from the raw
    stacks and the kernel's figures in ``folder``; again, for a saved profile, with ``--render``."""
    try:
        result = json.loads((folder / "profile.json").read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{folder} holds no profile of `obslab bench profile` ({exc})") from None
    transfers = result["transfers"]
    profile = flame.Profile(rate_hz=result["rate_hz"])
    for name, ms in result["kernel_cpu_ms_per_transfer"].items():
        raw = folder / f"{name}.raw"
        if raw.exists():
            profile.add(name, raw.read_text())
            profile.cpu_seconds[name] = ms * transfers / 1000.0
    result["breakdown_ms_per_transfer"] = profile.breakdown(transfers)
    result["idle_sample_share"] = {name: round(profile.idle[name] / max(1, profile.idle[name] + profile.samples(name)), 3)
                                   for name in profile.stacks}
    result["top_functions"] = [{"function": f, "layer": layer, "ms_per_transfer": ms}
                               for f, layer, ms in flame.top_frames(profile, transfers, limit=25)]
    title = (f"obslab: CPU of one transfer through the gateway, telemetry {result.get('telemetry', 'on')} "
             f"({result['transfers_per_second']}/s while sampled, {result['concurrency']} clients, "
             f"{result['breakdown_ms_per_transfer']['all']['total']:.1f} ms of CPU each; "
             f"{result.get('sampling', 'gil')} samples; commit {result.get('commit') or 'unknown'})")
    (folder / "flame.svg").write_text(flame.flame_svg(profile, transfers, title))
    table = flame.breakdown_markdown(result["breakdown_ms_per_transfer"])
    (folder / "breakdown.md").write_text(table + "\n")
    (folder / "profile.json").write_text(json.dumps(result, indent=1))
    return result, table, folder


def _print(result: dict, table: str, folder: Path, as_json: bool) -> int:
    print(json.dumps(result) if as_json else report(result, table, folder))
    return 0


def report(result: dict, table: str, out: Path) -> str:
    kernel = result["kernel_cpu_ms_per_transfer"]
    lines = [f"{result['transfers']} transfers in {result['seconds']} s ({result['transfers_per_second']}/s, "
             f"{result['failed']} failed), CPU ms per transfer by service and layer (sampled):", "", table, "",
             "CPU ms per transfer counted by the kernel, every process of the lab (the sampled ones and "
             "the rest):",
             "  " + ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(kernel.items(), key=lambda i: -i[1])),
             "", "Costliest functions (self time, ms per transfer):"]
    for row in result["top_functions"][:12]:
        lines.append(f"  {row['ms_per_transfer']:7.3f}  {row['layer']:<38} {row['function']}")
    lines.append(f"\nFlame graph: {out / 'flame.svg'}   table: {out / 'breakdown.md'}   figures: {out / 'profile.json'}")
    return "\n".join(lines)
