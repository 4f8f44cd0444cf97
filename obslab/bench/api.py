"""``obslab bench api``: transfers through the gateway with telemetry on and off, and what each costs.

**What runs.** Two fresh native labs side by side, each in a temporary data directory of its own,
on ports below the kernel's ephemeral range (no client socket on this machine can take one of
them): the banking services, the trace sink, the fault injector, the alert path and Prometheus.
No load generator, and no ML services unless ``--with-ml``: nothing but the benchmark makes
requests. "on" traces every request (``OTEL_SDK_DISABLED=false``, the always-on sampler, OTLP to
the lab's trace sink); "off" sets ``OTEL_SDK_DISABLED=true``, so no span is created, instrumented
or exported. Prometheus metrics stay on in both: they are part of every service's contract. The
gateway's per-client rate limit is off in both labs: every client here is 127.0.0.1, and the
benchmark measures the services, not the limiter. Clients are threads of this process moving
0.01 EUR back and forth between alice and bob; a transfer that is not answered 201 (a refusal,
a timeout, no connection) is an error, counted, and the run goes on.

**Why interleaved.** A machine drifts: other work starts and stops, CPUs throttle, the labs'
SQLite files grow. Two modes measured one after the other carry that drift into their ratio.
Both labs stay up for the whole benchmark and the modes alternate ABBA (on, off, off, on, ...), so
a steady drift falls on both alike; min/median/max over ``--repeats`` show how far the runs
disagree, and the on/off ratio is of the medians.

**Why open loop for the p99 at half of saturation.** A closed-loop client sends its next request
only after the answer to the last, so a stall also delays the requests that would have measured
it, and the p99 looks better than what users see ("coordinated omission"). The paced run starts
requests on a fixed schedule at half of the mode's median saturated rate, and measures each
latency from its scheduled start: a request that waited for a free client thread counts the wait.

**CPU.** utime + stime of every component process over each timed run, per transfer: from after
the warm-up's spans were exported to after the run's were, so the export work is the run's own.
It includes the lab's background work over the window (Prometheus scrapes, fault polls), alike in
both modes. "Other CPU" is what the rest of the machine used meanwhile: ``/proc/stat``'s busy time
minus the hypervisor's steal, both labs' and this process's; before the start, the busiest
processes over one second are listed too. "Steal" is the time a virtual machine's CPUs wanted to
run and the hypervisor ran something else: a burst of it can make a paced run's tail. CPU
percentages are of one core (100 = a whole core), as in ``obslab bench lab``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from obslab import conventions as c
from obslab import settings, topology
from obslab.bench.lab import CLOCK_TICKS, component_pids, cpu_ticks
from obslab.lab.native import LabError, NativeLab, port_in_use
from obslab.lab.seed import demo_password
from obslab.profiles import FAST

ON, OFF = "telemetry_on", "telemetry_off"
MODES: tuple[str, str] = (ON, OFF)
# What each mode's lab is started with, on top of this process's environment.
MODE_ENVIRONMENT: dict[str, dict[str, str]] = {
    ON: {"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_SAMPLER": "parentbased_always_on",
         "OTEL_TRACES_EXPORTER": "otlp"},
    OFF: {"OTEL_SDK_DISABLED": "true"},
}
BOTH_ENVIRONMENT: dict[str, str] = {settings.RATE_LIMIT_RPS.name: "0"}

DEFAULT_OFFSETS = (20000, 22000)
MIN_OFFSET = 10000
OFFSET_STEP = 1000
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
EPHEMERAL_RANGE_FALLBACK = (32768, 60999)     # Linux's default

TARGET_RATIO = 0.95                 # issue 16: on/off throughput, every request traced
TARGET_HALF_SATURATION_P99_MS = 50.0
# The labs export spans every second (NativeLab: OTEL_BSP_SCHEDULE_DELAY=1000); waiting a little
# longer puts the export of the warm-up's spans before a CPU window and that of the run's inside.
SPAN_FLUSH_SECONDS = 1.5
LAB_START_TIMEOUT = 180.0
REQUEST_TIMEOUT = 30.0


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- ports ------------------------------------------------------------------------------------------

def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (where client sockets get their port), e.g. (32768, 60999)."""
    try:
        low, high = (int(word) for word in path.read_text().split())
        return low, high
    except (OSError, ValueError):
        return EPHEMERAL_RANGE_FALLBACK


def lab_ports(ml: bool) -> list[int]:
    """The port of every component a benchmark lab may start (Prometheus and Alertmanager included)."""
    probe = NativeLab(Path(tempfile.gettempdir()), out=sys.stderr)   # only asked what it would start
    return sorted(comp.port for comp in probe._components(with_prometheus=True, traffic=False,
                                                            with_alertmanager=True, ml=ml))


def choose_offsets(ports: Sequence[int], ephemeral_start: int, in_use: Callable[[int], bool] = port_in_use,
                   first: int | None = None) -> tuple[int, int]:
    """Two port offsets for the two labs: every port below ``ephemeral_start`` (and within what
    NativeLab accepts), the two port sets disjoint, and no port ``in_use``.

    The first is ``first`` if given, else 20000 or the next free one stepping down from the
    highest that fits, 1000 at a time, not below 10000; the second is the first + 2000, or the next
    free one on the same ladder.

    >>> choose_offsets([4318, 8080, 9182], 32768, in_use=lambda port: False)
    (20000, 22000)
    """
    highest = min(ephemeral_start - 1 - max(ports), settings.max_port_offset())
    ladder = list(range(highest - highest % OFFSET_STEP, MIN_OFFSET - 1, -OFFSET_STEP))
    if first is not None and not 0 <= first <= highest:
        raise LabError(f"--port-offset {first} puts the lab's ports (up to {max(ports)} + offset) outside "
                       f"0..{ephemeral_start - 1}, below the kernel's ephemeral range ({ephemeral_start}+)")
    busy: dict[int, list[int]] = {}

    def free(offset: int) -> bool:
        if offset not in busy:
            busy[offset] = [port + offset for port in ports if in_use(port + offset)]
        return not busy[offset]

    def fits(offset: int) -> bool:
        return 0 <= offset <= highest

    gap = DEFAULT_OFFSETS[1] - DEFAULT_OFFSETS[0]
    for one in _unique([first] if first is not None else [DEFAULT_OFFSETS[0], *ladder]):
        if not (fits(one) and free(one)):
            continue
        taken = {port + one for port in ports}
        for two in _unique([one + gap, *ladder]):
            if two != one and fits(two) and not taken & {port + two for port in ports} and free(two):
                return one, two
    raise LabError(_no_offsets(busy, ephemeral_start, max(ports)))


def _unique(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(values))


def _no_offsets(busy: dict[int, list[int]], ephemeral_start: int, top_port: int) -> str:
    tried = {offset: ports for offset, ports in busy.items() if ports}
    if not tried:
        return (f"no two port offsets of at least {MIN_OFFSET} keep the two labs' ports (up to {top_port} + offset) "
                f"apart and below the kernel's ephemeral range ({ephemeral_start}+); pass --port-offset")
    shown = "; ".join(f"offset {offset}: {', '.join(map(str, ports[:8]))}{' ...' if len(ports) > 8 else ''}"
                      for offset, ports in list(tried.items())[:3])
    more = f" (and {len(tried) - 3} more offsets with ports in use)" if len(tried) > 3 else ""
    return f"no two free port offsets for the benchmark labs; ports in use: {shown}{more}"


# --- the order of runs and their figures -----------------------------------------------------------

def abba_order(repeats: int, modes: Sequence[str] = MODES) -> list[tuple[int, str]]:
    """(repetition, mode) in the order they run: even repetitions in ``modes`` order, odd reversed.

    >>> abba_order(2)
    [(0, 'telemetry_on'), (0, 'telemetry_off'), (1, 'telemetry_off'), (1, 'telemetry_on')]
    """
    return [(rep, mode) for rep in range(repeats) for mode in (modes if rep % 2 == 0 else modes[::-1])]


def percentile(samples: Sequence[float], q: int) -> float:
    if len(samples) < 2:
        return samples[0] if samples else math.nan
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def spread(values: Sequence[float], digits: int = 1) -> dict[str, float]:
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits),
            "max": round(max(values), digits)}


def ratio(on: float, off: float) -> float | None:
    return round(on / off, 3) if off else None


# --- CPU ----------------------------------------------------------------------------------------------

def _cpu_line(proc_stat: str) -> list[int]:
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            return [int(f) for f in fields[1:9]]
    raise ValueError("no cpu line in /proc/stat")


def busy_ticks(proc_stat: str) -> int:
    """Busy time of all CPUs together, in clock ticks, from ``/proc/stat``'s ``cpu`` line (user, nice,
    system, irq, softirq, steal; guest time is inside user already)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = _cpu_line(proc_stat)
    return user + nice + system + irq + softirq + steal


def steal_ticks(proc_stat: str) -> int:
    """Time the hypervisor ran something else while this machine's CPUs wanted to run, in clock
    ticks: on a virtual machine, a burst of it can make the lab's latency tail (bench README)."""
    return _cpu_line(proc_stat)[7]


def read_ticks(pids: dict[str, int]) -> dict[str, int]:
    """cpu_ticks of each named process; one that exited meanwhile is left out."""
    found = {}
    for name, pid in pids.items():
        try:
            found[name] = cpu_ticks(pid)
        except (OSError, ValueError):
            continue
    return found


@dataclass(frozen=True)
class CpuSample:
    busy: int                          # every CPU's busy ticks, steal included
    own: int                           # this process (the clients)
    labs: dict[str, dict[str, int]]    # mode -> component -> ticks
    steal: int = 0                     # ticks the hypervisor took


def cpu_sample(pids: dict[str, dict[str, int]]) -> CpuSample:
    proc_stat = Path("/proc/stat").read_text()
    return CpuSample(busy=busy_ticks(proc_stat), own=cpu_ticks(os.getpid()),
                     labs={mode: read_ticks(named) for mode, named in pids.items()}, steal=steal_ticks(proc_stat))


def _deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if name in before}


def cpu_ms_per_transfer(before: dict[str, int], after: dict[str, int], transfers: int) -> dict[str, float]:
    """CPU milliseconds per transfer of each component over a window, and their ``total``."""
    per = {name: ticks * 1000 / CLOCK_TICKS / transfers for name, ticks in _deltas(before, after).items()}
    rounded = {name: round(ms, 3) for name, ms in sorted(per.items(), key=lambda item: -item[1])}
    return {**rounded, "total": round(sum(per.values()), 3)}


@dataclass(frozen=True)
class WindowUsage:
    cpu_ms_per_transfer: dict[str, float]
    other_cpu_percent: float
    client_cpu_percent: float
    steal_cpu_percent: float = 0.0


def window_usage(before: CpuSample, after: CpuSample, *, measured: str, transfers: int,
                 seconds: float) -> WindowUsage:
    """What the measured lab's components, this process and everything else used over a window."""
    labs = sum(sum(_deltas(before.labs[mode], after.labs.get(mode, {})).values()) for mode in before.labs)
    own = after.own - before.own
    steal = max(0, after.steal - before.steal)
    other = max(0, after.busy - before.busy - steal - labs - own)

    def percent(ticks: int) -> float:
        return round(100.0 * ticks / CLOCK_TICKS / seconds, 1)

    return WindowUsage(cpu_ms_per_transfer(before.labs[measured], after.labs.get(measured, {}), transfers),
                       other_cpu_percent=percent(other), client_cpu_percent=percent(own),
                       steal_cpu_percent=percent(steal))


def median_cpu(per_run: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per component, the median over runs of its CPU ms per transfer (largest first, total last)."""
    names = {name for run in per_run for name in run if name != "total"}
    medians = {name: round(statistics.median([run[name] for run in per_run if name in run]), 3) for name in names}
    ordered = dict(sorted(medians.items(), key=lambda item: -item[1]))
    return {**ordered, "total": round(statistics.median([run["total"] for run in per_run]), 3)}


# --- what else runs on this machine -------------------------------------------------------------------

def process_ticks() -> dict[int, int]:
    """cpu_ticks of every process that can be read."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found[int(entry)] = cpu_ticks(int(entry))
            except (OSError, ValueError):
                continue
    return found


def busiest(before: dict[int, int], after: dict[int, int], seconds: float, *, exclude: Iterable[int] = (),
            count: int = 5) -> list[tuple[int, float]]:
    """(pid, CPU % of one core) of the ``count`` processes that used the most CPU between two readings."""
    skip = set(exclude)
    used = [(pid, 100.0 * (ticks - before[pid]) / CLOCK_TICKS / seconds)
            for pid, ticks in after.items() if pid in before and pid not in skip and ticks > before[pid]]
    return [(pid, round(percent, 1)) for pid, percent in sorted(used, key=lambda item: -item[1])[:count]]


def command_line(pid: int, width: int = 60) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        text = " ".join(word.decode(errors="replace") for word in words if word)
        if not text:
            stat = Path(f"/proc/{pid}/stat").read_text()
            text = f"[{stat[stat.index('(') + 1:stat.rindex(')')]}]"
    except OSError:
        text = "?"
    return text[:width]


def git_commit() -> str | None:
    """The checkout's commit (``git rev-parse --short HEAD``), or None where that does not work."""
    try:
        answer = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    if answer.returncode != 0 or not answer.stdout.strip():
        return None
    # Figures from uncommitted code must not pass for the commit's own.
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
    return answer.stdout.strip() + ("+changes" if changed.returncode == 0 and changed.stdout.strip() else "")


def machine_before(seconds: float = 1.0) -> dict:
    """The machine before the labs start: CPUs, commit, load average, and the busiest processes."""
    first, busy_first, began = process_ticks(), busy_ticks(Path("/proc/stat").read_text()), time.monotonic()
    time.sleep(seconds)
    second, busy_second, took = process_ticks(), busy_ticks(Path("/proc/stat").read_text()), time.monotonic() - began
    return {
        "cpus": os.cpu_count(), "commit": git_commit(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "busy_cpu_percent": round(100.0 * (busy_second - busy_first) / CLOCK_TICKS / took, 1),
        "top_processes": [{"pid": pid, "cpu_percent": percent, "command": command_line(pid)}
                          for pid, percent in busiest(first, second, took, exclude={os.getpid()})],
    }


# --- the client ---------------------------------------------------------------------------------------

@contextmanager
def _environment(**overrides: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _login(api: str, username: str, attempts: int = 3) -> tuple[dict[str, str], str]:
    """(Authorization header, checking account id) of a demo customer; a few tries, a second apart."""
    failure: Exception | None = None
    for _ in range(attempts):
        try:
            with requests.Session() as session:
                login = session.post(f"{api}/auth/login", json={"username": username, "password": demo_password()},
                                     timeout=REQUEST_TIMEOUT)
                login.raise_for_status()
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
                accounts = session.get(f"{api}/accounts", headers=headers, timeout=REQUEST_TIMEOUT).json()
                return headers, next(a["id"] for a in accounts if a["type"] == "checking")
        except (requests.RequestException, ValueError, KeyError, TypeError, StopIteration) as exc:
            failure = exc
            time.sleep(1.0)
    raise LabError(f"{username} could not log in and find a checking account ({failure!r})")


class TransferClient:
    """alice and bob, logged in, moving 0.01 EUR to each other: ``transfer(i)`` is True when
    answered 201; one connection pool per client thread."""

    def __init__(self, gateway_url: str) -> None:
        self.api = gateway_url + c.API_PREFIX
        self.parties = [_login(self.api, "alice"), _login(self.api, "bob")]
        self._local = threading.local()

    def _sessions(self) -> list[requests.Session]:
        if not hasattr(self._local, "sessions"):
            self._local.sessions = []
            for headers, _ in self.parties:
                session = requests.Session()
                session.headers.update(headers)
                self._local.sessions.append(session)
        return self._local.sessions

    def transfer(self, index: int) -> bool:
        sender = index % 2
        session, source, target = self._sessions()[sender], self.parties[sender][1], self.parties[1 - sender][1]
        try:
            response = session.post(f"{self.api}/transfers", json={
                "from_account": source, "to_account": target, "amount": "0.01", "currency": "EUR",
            }, headers={c.HEADER_IDEMPOTENCY_KEY: uuid.uuid4().hex}, timeout=REQUEST_TIMEOUT)
        except requests.RequestException:
            return False
        return response.status_code == 201


def timed(request: Callable[[int], bool]) -> Callable[[int], tuple[float, bool]]:
    def call(index: int) -> tuple[float, bool]:
        started = time.perf_counter()
        ok = request(index)
        return time.perf_counter() - started, ok
    return call


# --- open-loop pacing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PacedFigures:
    target_rate: float
    rate: float                 # requests started per second over the run
    p50_ms: float
    p99_ms: float
    errors: int
    max_start_lag_ms: float     # how far behind the schedule a request started, at worst
    threads: int


def paced(request: Callable[[int], bool], *, rate: float, seconds: float, threads: int,
          clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> PacedFigures:
    """Start request ``i`` at ``i / rate`` seconds, on whichever of ``threads`` is free, for ``seconds``;
    each latency is measured from the scheduled start, so waiting for a thread is counted."""
    count = max(2, round(rate * seconds))
    lock = threading.Lock()
    indexes = itertools.count()
    results: list[tuple[int, float, float, bool]] = []    # (index, start, end, ok), from the first due time
    start = clock()

    def worker() -> None:
        while True:
            with lock:
                index = next(indexes)
            if index >= count:
                return
            due = start + index / rate
            if (wait := due - clock()) > 0:
                sleep(wait)
            began = clock()
            ok = request(index)
            ended = clock()
            with lock:
                results.append((index, began - start, ended - start, ok))

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    latencies = [(ended - index / rate) * 1000 for index, _, ended, _ in results]
    lags = [began - index / rate for index, began, _, _ in results]
    last_start = max(began for _, began, _, _ in results)
    return PacedFigures(
        target_rate=round(rate, 1), rate=round(count / (last_start + 1 / rate), 1),
        p50_ms=round(percentile(latencies, 50), 1), p99_ms=round(percentile(latencies, 99), 1),
        errors=sum(1 for *_, ok in results if not ok), max_start_lag_ms=round(max(0.0, *lags) * 1000, 1),
        threads=threads,
    )


def paced_threads(rate: float, p99_ms: float, concurrency: int, most: int = 256) -> int:
    """Client threads enough to keep the schedule: twice the saturating clients, or four times the
    requests in flight if each took the saturated p99 (Little's law), whichever is more."""
    return min(most, max(2 * concurrency, math.ceil(4 * rate * p99_ms / 1000)))


# --- the labs and one run -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    transfers: int
    concurrency: int
    warmup: int
    repeats: int
    paced_seconds: float
    port_offset: int | None
    ml: bool
    as_json: bool

    def check(self) -> None:
        if self.transfers < 10 or self.concurrency < 1 or self.warmup < 0 or self.repeats < 1 \
                or self.paced_seconds < 0:
            raise LabError("--transfers must be >= 10, --concurrency >= 1, --warmup >= 0, --repeats >= 1 "
                           "and --paced-seconds >= 0")


@dataclass(frozen=True)
class RunFigures:
    repetition: int
    transfers: int
    errors: int
    seconds: float
    transfers_per_second: float    # answered 201, per second
    p50_ms: float
    p99_ms: float
    other_cpu_percent: float
    client_cpu_percent: float
    cpu_ms_per_transfer: dict[str, float]
    steal_cpu_percent: float = 0.0


class BenchLabs:
    """The two labs, one per mode, each started once and measured in turn."""

    def __init__(self, root: Path, offsets: tuple[int, int]) -> None:
        self.labs = {mode: NativeLab(root / mode / "data", offset=offset, profile=FAST, out=sys.stderr)
                     for mode, offset in zip(MODES, offsets)}

    def gateway_url(self, mode: str) -> str:
        return f"http://{topology.component(c.GATEWAY).address('native', offset=self.labs[mode].offset)}"

    def start(self, mode: str, ml: bool) -> None:
        lab = self.labs[mode]
        progress(f"[{mode}] starting a fresh lab (ports +{lab.offset}{', ML services too' if ml else ''}) ...")
        # The environment counts only while up() spawns supervisord: it is copied into its programs.
        with _environment(**BOTH_ENVIRONMENT, **MODE_ENVIRONMENT[mode]):
            code = lab.up(detach=True, timeout=LAB_START_TIMEOUT, traffic=False, ml=ml)
        if code == 130:
            raise KeyboardInterrupt
        if code != 0:
            raise LabError(f"the {mode} lab did not become healthy; its logs: {lab.supervisor.log_dir}/")

    def client(self, mode: str) -> TransferClient:
        try:
            return TransferClient(self.gateway_url(mode))
        except LabError as exc:
            raise LabError(f"{exc}; the {mode} lab's logs: {self.labs[mode].supervisor.log_dir}/") from None

    def pids(self) -> dict[str, dict[str, int]]:
        return {mode: component_pids(lab) for mode, lab in self.labs.items()}


def saturation_run(labs: BenchLabs, mode: str, repetition: int, options: Options) -> RunFigures:
    """``--warmup`` untimed transfers, then ``--transfers`` timed ones by ``--concurrency`` clients."""
    client = labs.client(mode)
    with ThreadPoolExecutor(options.concurrency) as pool:
        list(pool.map(client.transfer, range(options.warmup)))
        time.sleep(SPAN_FLUSH_SECONDS)
        pids = labs.pids()
        before, window_began = cpu_sample(pids), time.monotonic()
        started = time.perf_counter()
        results = list(pool.map(timed(client.transfer), range(options.transfers)))
        elapsed = time.perf_counter() - started
        time.sleep(SPAN_FLUSH_SECONDS)
        usage = window_usage(before, cpu_sample(pids), measured=mode, transfers=options.transfers,
                             seconds=time.monotonic() - window_began)
    latencies = [latency * 1000 for latency, _ in results]
    errors = sum(1 for _, ok in results if not ok)
    return RunFigures(
        repetition=repetition, transfers=options.transfers, errors=errors, seconds=round(elapsed, 2),
        transfers_per_second=round((options.transfers - errors) / elapsed, 1),
        p50_ms=round(percentile(latencies, 50), 1), p99_ms=round(percentile(latencies, 99), 1),
        other_cpu_percent=usage.other_cpu_percent, client_cpu_percent=usage.client_cpu_percent,
        cpu_ms_per_transfer=usage.cpu_ms_per_transfer, steal_cpu_percent=usage.steal_cpu_percent,
    )


def half_saturation_run(labs: BenchLabs, mode: str, summary: dict, options: Options) -> dict | None:
    rate = summary["transfers_per_second"]["median"] / 2
    if rate <= 0:
        progress(f"[{mode}] no transfer succeeded at saturation: no paced run")
        return None
    threads = paced_threads(rate, summary["p99_ms"]["median"], options.concurrency)
    progress(f"[{mode}] open loop at {rate:.1f} transfers/s (half of saturation) for {options.paced_seconds:g} s, "
             f"{threads} client threads")
    client = labs.client(mode)
    pids = labs.pids()
    before, began = cpu_sample(pids), time.monotonic()
    figures = paced(client.transfer, rate=rate, seconds=options.paced_seconds, threads=threads)
    usage = window_usage(before, cpu_sample(pids), measured=mode, transfers=max(1, round(rate * options.paced_seconds)),
                         seconds=time.monotonic() - began)
    return {**asdict(figures), "other_cpu_percent": usage.other_cpu_percent,
            "steal_cpu_percent": usage.steal_cpu_percent}


def summarize(runs: Sequence[RunFigures]) -> dict:
    return {
        "runs": [asdict(run) for run in runs],
        "transfers_per_second": spread([run.transfers_per_second for run in runs]),
        "p50_ms": spread([run.p50_ms for run in runs]),
        "p99_ms": spread([run.p99_ms for run in runs]),
        "errors": sum(run.errors for run in runs),
        "cpu_ms_per_transfer": median_cpu([run.cpu_ms_per_transfer for run in runs]),
    }


def on_off_ratio(on: dict, off: dict) -> dict[str, float | None]:
    return {key: ratio(on[key]["median"], off[key]["median"]) for key in ("transfers_per_second", "p50_ms", "p99_ms")}


# --- the command --------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transfers", type=int, default=1000, help="timed transfers per run (default: 1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="parallel clients at saturation (default: 8)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed transfers before each run (default: 100)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per mode, interleaved on, off, off, on, ... (default: 3)")
    parser.add_argument("--paced-seconds", type=float, default=20.0,
                        help="open-loop run at half of saturation per mode, for the p99 (default: 20; 0: none)")
    parser.add_argument("--port-offset", type=int, default=None,
                        help=f"ports of the first lab = the usual ones + this (default: {DEFAULT_OFFSETS[0]}, or the "
                             "next free offset); the second lab's are 2000 higher or the next free; every port stays "
                             "below the kernel's ephemeral range")
    parser.add_argument("--with-ml", action="store_true", help="run the ML services in both labs too")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the figures")


def run(args: argparse.Namespace) -> int:
    options = Options(transfers=args.transfers, concurrency=args.concurrency, warmup=args.warmup,
                      repeats=args.repeats, paced_seconds=args.paced_seconds, port_offset=args.port_offset,
                      ml=args.with_ml, as_json=args.json)
    options.check()
    result = run_api_benchmark(options)
    print(json.dumps(result) if options.as_json else report(result))
    return 0


def run_api_benchmark(options: Options) -> dict:
    """Both labs up, the saturated runs in ABBA order, the paced runs; the labs stopped whatever happens.
    The temporary directory is kept when a lab failed, for its logs."""
    progress("sampling what else runs on this machine for 1 s ...")
    environment = machine_before()
    low, high = ephemeral_range()
    offsets = choose_offsets(lab_ports(options.ml), low, first=options.port_offset)
    environment.update(ephemeral_ports=[low, high], port_offsets=list(offsets), ml_services=options.ml)
    root = Path(tempfile.mkdtemp(prefix="obslab-bench-"))
    keep = False
    try:
        with ExitStack() as stack:
            labs = BenchLabs(root, offsets)
            for mode in MODES:
                stack.callback(labs.labs[mode].down)
                labs.start(mode, options.ml)
            result = _measure(labs, options)
    except LabError:
        keep = True
        progress(f"kept {root} for the labs' logs")
        raise
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    others = [run["other_cpu_percent"] for mode in MODES for run in result[mode]["runs"]]
    environment["other_cpu_percent"] = spread(others)
    environment["steal_cpu_percent"] = spread([run["steal_cpu_percent"] for mode in MODES
                                               for run in result[mode]["runs"]])
    return {"transfers": options.transfers, "concurrency": options.concurrency, "repeats": options.repeats,
            "environment": environment, **result}


def _measure(labs: BenchLabs, options: Options) -> dict:
    runs: dict[str, list[RunFigures]] = {mode: [] for mode in MODES}
    for repetition, mode in abba_order(options.repeats):
        progress(f"[{mode}] run {repetition + 1}/{options.repeats}: {options.warmup} warm-up + "
                 f"{options.transfers} timed transfers, {options.concurrency} clients")
        figures = saturation_run(labs, mode, repetition, options)
        progress(f"  {figures.transfers_per_second:.1f} transfers/s, p50 {figures.p50_ms:.1f} ms, "
                 f"p99 {figures.p99_ms:.1f} ms, {figures.errors} errors; other CPU {figures.other_cpu_percent:.1f} %, "
                 f"steal {figures.steal_cpu_percent:.1f} %")
        runs[mode].append(figures)
    summaries = {mode: summarize(runs[mode]) for mode in MODES}
    for mode in MODES:
        summaries[mode]["half_saturation"] = (half_saturation_run(labs, mode, summaries[mode], options)
                                              if options.paced_seconds > 0 else None)
    return {**summaries, "on_off_ratio": on_off_ratio(summaries[ON], summaries[OFF])}


# --- the report ---------------------------------------------------------------------------------------

def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(result: dict) -> str:
    env = result["environment"]
    lines = [f"obslab bench api: {result['repeats']} x {result['transfers']} transfers per mode through the gateway, "
             f"{result['concurrency']} clients, modes interleaved on/off/off/on; {env['cpus']} CPUs, "
             f"commit {env['commit'] or 'unknown'}, ML services {'on' if env['ml_services'] else 'off'}",
             f"before the start: load average {' '.join(f'{x:.2f}' for x in env['load_average'])}, "
             f"{env['busy_cpu_percent']:.0f} % of a core busy; busiest processes over 1 s:"
             f"{'' if env['top_processes'] else ' none used any CPU'}"]
    lines += [f"  {p['cpu_percent']:6.1f} %  {p['pid']:>7}  {p['command']}" for p in env["top_processes"]]
    other = env["other_cpu_percent"]
    lines += [f"other processes during the runs: {other['median']:.1f} % of a core (median; "
              f"{other['min']:.1f} to {other['max']:.1f})"]
    steal = env["steal_cpu_percent"]
    lines += [f"taken by the hypervisor (steal) during the runs: {steal['median']:.1f} % of a core (median; "
              f"{steal['min']:.1f} to {steal['max']:.1f})", ""]
    lines += _throughput_table(result) + [""] + _cpu_table(result) + [""] + _half_saturation_lines(result)
    return "\n".join(lines)


def _throughput_table(result: dict) -> list[str]:
    def cell(row: dict[str, float]) -> str:
        return f"{row['min']:.1f} / {row['median']:.1f} / {row['max']:.1f}"

    lines = [f"{'min / median / max':16}{'transfers/s':>26}{'p50 ms':>24}{'p99 ms':>24}{'errors':>8}"]
    for mode, name in ((ON, "telemetry on"), (OFF, "telemetry off")):
        row = result[mode]
        lines.append(f"{name:16}{cell(row['transfers_per_second']):>26}{cell(row['p50_ms']):>24}"
                     f"{cell(row['p99_ms']):>24}{row['errors']:>8}")
    r = result["on_off_ratio"]
    lines.append(f"{'on / off':16}{_three(r['transfers_per_second']):>26}{_three(r['p50_ms']):>24}"
                 f"{_three(r['p99_ms']):>24}")
    if r["transfers_per_second"] is not None:
        lines.append(f"throughput ratio on/off {r['transfers_per_second']:.3f} (medians; target >= {TARGET_RATIO}: "
                     f"{_verdict(r['transfers_per_second'] >= TARGET_RATIO)})")
    return lines


def _cpu_table(result: dict) -> list[str]:
    on, off = result[ON]["cpu_ms_per_transfer"], result[OFF]["cpu_ms_per_transfer"]
    names = [name for name in on if name != "total"] + [name for name in off if name not in on]
    lines = ["CPU ms per transfer (median over runs)",
             f"  {'COMPONENT':24}{'on':>9}{'off':>9}{'on - off':>10}"]
    for name in [*names, "total"]:
        a, b = on.get(name), off.get(name)
        diff = f"{a - b:+.3f}" if a is not None and b is not None else "-"
        lines.append(f"  {name:24}{_three(a):>9}{_three(b):>9}{diff:>10}")
    return lines


def _three(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _half_saturation_lines(result: dict) -> list[str]:
    lines = []
    for mode, name in ((ON, "telemetry on"), (OFF, "telemetry off")):
        half = result[mode]["half_saturation"]
        if half is None:
            continue
        met = _verdict(half["p99_ms"] <= TARGET_HALF_SATURATION_P99_MS)
        lines.append(f"  {name:14} p99 {half['p99_ms']:.1f} ms (target <= {TARGET_HALF_SATURATION_P99_MS:.0f} ms: "
                     f"{met}), p50 {half['p50_ms']:.1f} ms; {half['rate']:.1f}/s of {half['target_rate']:.1f}/s "
                     f"asked, {half['errors']} errors, latest start {half['max_start_lag_ms']:.1f} ms late, "
                     f"other CPU {half['other_cpu_percent']:.1f} %, steal {half['steal_cpu_percent']:.1f} %")
    if not lines:
        return ["p99 at half of saturation: not measured (--paced-seconds 0)"]
    return ["p99 at half of saturation (open loop; latency from each request's scheduled start):", *lines]
