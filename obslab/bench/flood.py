"""``obslab bench flood``: what the gateway answers while a DDoS flood hits it.

A fresh fast-profile lab (the services and the load generator, no ML services) serves its own
customers. Once the load generator's sign-ups are done (they keep auth busy for a minute), the
benchmark measures a quiet window, then sets a ``ddos_flood`` fault on the gateway far above
what it can answer (``--rps``, 3000 by default): the load generator turns it into the lab's
botnet (requests without a token, with forged tokens, junk and stuffed logins from thousands of
addresses, the real flood's mix and code path). After the ramp, it measures ``--repeats``
windows of ``--seconds``.

Per window, from the gateway's own counters (``http_server_requests_total``) and ``/proc``:

- the gateway's answers per second, in all and by status code: its ceiling under the flood;
- the gateway's CPU (percent of one core) and CPU milliseconds per answer; near 100 % the
  gateway is the limit, well below it the senders are (``--senders``);
- every component's CPU percent and the machine's;
- two probes from this process, a few per second each: a request without a token (what a bot
  waits for its 401) and a customer's authenticated accounts list (what a real customer waits
  while the bank is flooded), with their p50/p99 and the customer's success rate.

The figures are medians over the windows, with min and max. The flood is cleared and the lab
stopped whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from obslab import conventions as c
from obslab import settings, topology
from obslab.bench.api import (_environment, _login, busy_ticks, choose_offsets, ephemeral_range, git_commit, lab_ports,
                              machine_before, percentile, progress, read_ticks, spread)
from obslab.bench.lab import CLOCK_TICKS, component_pids, cpu_ticks
from obslab.drills.lab import DrillError, Lab
from obslab.lab.native import LabError, NativeLab
from obslab.profiles import FAST

DEFAULT_RPS = 3000
DEFAULT_OFFSET = 17000
LAB_START_TIMEOUT = 180.0
# Auth hashes the load generator's customers with Argon2 at start: a flood measured meanwhile
# would compete with a core that is not the flood's.
SIGNUPS_TIMEOUT_S = 240.0
QUIET_AUTH_PERCENT = 25.0
PROBE_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 10.0
REQUESTS_TOTAL = "http_server_requests_total"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rps", type=int, default=DEFAULT_RPS,
                        help=f"the flood's requests per second at its plateau (default: {DEFAULT_RPS}, above "
                             "what the gateway answers here)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measured window (default: 20)")
    parser.add_argument("--repeats", type=int, default=3, help="measured windows under the flood (default: 3)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds between setting the flood and the first window (default: its ramp + 10)")
    parser.add_argument("--senders", type=int, default=0,
                        help="the load generator's flood threads (default: 0, the lab's own choice from --rps)")
    parser.add_argument("--port-offset", type=int, default=DEFAULT_OFFSET,
                        help=f"ports of the benchmark's lab = defaults + this (default: {DEFAULT_OFFSET})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


@dataclass(frozen=True)
class Options:
    rps: int
    seconds: float
    repeats: int
    warmup: float
    senders: int
    port_offset: int

    def check(self) -> None:
        if not 1 <= self.rps <= 100_000:
            raise LabError(f"--rps must be 1..100000, got {self.rps}")
        if self.seconds < 5 or self.repeats < 1 or self.warmup < 0 or self.senders < 0:
            raise LabError("--seconds must be at least 5, --repeats at least 1, --warmup and --senders not negative")


def answers_by_code(metrics_text: str, service: str = c.GATEWAY) -> dict[str, float]:
    """The ``/api/...`` requests a service answered, by status code, from its ``/metrics``.

    >>> answers_by_code('http_server_requests_total{code="401",method="GET",route="/api/v1/accounts",'
    ...                 'service="gateway"} 7.0\\nhttp_server_requests_total{code="200",method="GET",'
    ...                 'route="/health",service="gateway"} 3.0\\n')
    {'401': 7.0}
    """
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == REQUESTS_TOTAL and labels.get("service") == service \
                    and labels.get("route", "").startswith(c.API_PREFIX + "/"):
                out[labels.get("code", "?")] = out.get(labels.get("code", "?"), 0.0) + sample.value
    return out


class Probe:
    """One request every ``PROBE_INTERVAL_S`` in a thread: latency in ms and whether it got ``want``."""

    def __init__(self, name: str, send, want: int) -> None:
        self.name, self.send, self.want = name, send, want
        self.samples: list[tuple[float, float, bool]] = []    # (monotonic time, ms, answered as wanted)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{name}", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=PROBE_TIMEOUT_S + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                ok = self.send().status_code == self.want
            except requests.RequestException:
                ok = False
            self.samples.append((began, (time.monotonic() - began) * 1000, ok))
            self._stop.wait(max(0.0, PROBE_INTERVAL_S - (time.monotonic() - began)))

    def figures(self, start: float, end: float) -> dict:
        window = [(ms, ok) for at, ms, ok in self.samples if start <= at < end]
        latencies = [ms for ms, _ in window]
        return {"requests": len(window),
                "ok_percent": round(100.0 * sum(ok for _, ok in window) / len(window), 1) if window else None,
                "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
                "p99_ms": round(percentile(latencies, 99), 1) if latencies else None}


@dataclass
class Window:
    kind: str                      # "quiet" or "flood"
    seconds: float
    answers_per_second: float
    by_code: dict[str, float]
    gateway_cpu_percent: float
    gateway_cpu_ms_per_answer: float | None
    cpu_percent: dict[str, float]
    machine_cpu_percent: float
    probes: dict[str, dict] = field(default_factory=dict)


class FloodBench:
    def __init__(self, native: NativeLab, lab: Lab) -> None:
        self.native, self.lab = native, lab
        self.gateway = f"http://{topology.component(c.GATEWAY).address('native', offset=native.offset)}"
        self.session = requests.Session()
        self.session.trust_env = False
        self.pids = component_pids(native)

    def answers(self) -> dict[str, float]:
        response = self.session.get(f"{self.gateway}/metrics", timeout=PROBE_TIMEOUT_S)
        response.raise_for_status()
        return answers_by_code(response.text)

    def ticks(self) -> dict[str, int]:
        return read_ticks(self.pids)

    def wait_for_signups(self) -> None:
        """Until auth's CPU stays low for a few seconds: the load generator's customers exist."""
        progress("waiting for the load generator's sign-ups (auth hashing passwords) to finish ...")
        deadline, calm = time.monotonic() + SIGNUPS_TIMEOUT_S, 0
        while time.monotonic() < deadline:
            before = cpu_ticks(self.pids[c.AUTH])
            time.sleep(1.0)
            percent = 100.0 * (cpu_ticks(self.pids[c.AUTH]) - before) / CLOCK_TICKS
            calm = calm + 1 if percent < QUIET_AUTH_PERCENT else 0
            if calm >= 3:
                return
        raise LabError(f"auth stayed busy for {SIGNUPS_TIMEOUT_S:.0f} s after the lab started; its log: "
                       f"{self.native.supervisor.log_dir}/")

    def probes(self) -> list[Probe]:
        api = self.gateway + c.API_PREFIX
        headers, _ = _login(api, "alice")
        bot, customer = requests.Session(), requests.Session()
        for session in (bot, customer):
            session.trust_env = False
        customer.headers.update(headers)
        return [Probe("bot", lambda: bot.get(f"{api}/accounts", timeout=PROBE_TIMEOUT_S), 401),
                Probe("customer", lambda: customer.get(f"{api}/accounts", timeout=PROBE_TIMEOUT_S), 200)]

    def window(self, kind: str, seconds: float, probes: list[Probe]) -> Window:
        answers, ticks, busy = self.answers(), self.ticks(), _busy_ticks()
        start = time.monotonic()
        time.sleep(seconds)
        answers_after, ticks_after, busy_after = self.answers(), self.ticks(), _busy_ticks()
        took = time.monotonic() - start
        by_code = {code: round((answers_after[code] - answers.get(code, 0.0)) / took, 1)
                   for code in sorted(answers_after) if answers_after[code] > answers.get(code, 0.0)}
        percent = {name: round(100.0 * (ticks_after[name] - ticks[name]) / CLOCK_TICKS / took, 1)
                   for name in ticks_after if name in ticks}
        total = sum(by_code.values())
        gateway = percent.get(c.GATEWAY, 0.0)
        return Window(kind=kind, seconds=round(took, 1), answers_per_second=round(total, 1), by_code=by_code,
                      gateway_cpu_percent=gateway,
                      gateway_cpu_ms_per_answer=round(gateway * 10 / total, 3) if total else None,
                      cpu_percent=dict(sorted(percent.items(), key=lambda kv: -kv[1])),
                      machine_cpu_percent=round(100.0 * (busy_after - busy) / CLOCK_TICKS / took, 1),
                      probes={p.name: p.figures(start, start + took) for p in probes})


def _busy_ticks() -> int:
    return busy_ticks(Path("/proc/stat").read_text())


def run(args: argparse.Namespace) -> int:
    options = Options(rps=args.rps, seconds=args.seconds, repeats=args.repeats,
                      warmup=args.warmup if args.warmup is not None else settings.LOAD_FLOOD_RAMP_SECONDS.get() + 10,
                      senders=args.senders, port_offset=args.port_offset)
    options.check()
    result = run_flood_benchmark(options)
    print(json.dumps(result) if args.json else report(result))
    return 0


def run_flood_benchmark(options: Options) -> dict:
    progress("sampling what else runs on this machine for 1 s ...")
    environment = machine_before()
    low, _ = ephemeral_range()
    offset, _ = choose_offsets(lab_ports(False), low, first=options.port_offset)
    root = Path(tempfile.mkdtemp(prefix="obslab-bench-flood-"))
    keep = False
    overrides = {settings.LOAD_FLOOD_THREADS.name: str(options.senders)} if options.senders else {}
    try:
        with ExitStack() as stack:
            native = NativeLab(root / "data", offset=offset, profile=FAST, out=sys.stderr)
            stack.callback(native.down)
            progress(f"starting a fresh fast-profile lab with its traffic, no ML services (ports +{offset}) ...")
            with _environment(**overrides):
                code = native.up(detach=True, timeout=LAB_START_TIMEOUT, ml=False)
            if code == 130:
                raise KeyboardInterrupt
            if code != 0:
                raise LabError(f"the benchmark lab did not become healthy; its logs: {native.supervisor.log_dir}/")
            bench = FloodBench(native, Lab.connect(root / "data"))
            bench.wait_for_signups()
            windows = _measure(bench, options, stack)
    except (LabError, DrillError, requests.RequestException):
        keep = True
        progress(f"kept {root} for the lab's logs")
        raise
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    floods = [w for w in windows if w.kind == "flood"]
    quiet = next(w for w in windows if w.kind == "quiet")
    return {
        "commit": git_commit(), "rps": options.rps, "senders": options.senders or "lab default",
        "window_seconds": options.seconds, "repeats": options.repeats, "environment": environment,
        "quiet": quiet.__dict__,
        "flood": {
            "answers_per_second": spread([w.answers_per_second for w in floods]),
            "gateway_cpu_percent": spread([w.gateway_cpu_percent for w in floods]),
            "gateway_cpu_ms_per_answer": spread([w.gateway_cpu_ms_per_answer or 0.0 for w in floods], 3),
            "machine_cpu_percent": spread([w.machine_cpu_percent for w in floods]),
            "probes": {name: {key: statistics.median(w.probes[name][key] for w in floods
                                                     if w.probes[name][key] is not None)
                              for key in ("ok_percent", "p50_ms", "p99_ms")
                              if any(w.probes[name][key] is not None for w in floods)}
                       for name in ("bot", "customer")},
            "windows": [w.__dict__ for w in floods],
        },
    }


def _measure(bench: FloodBench, options: Options, stack: ExitStack) -> list[Window]:
    probes = [p.start() for p in bench.probes()]
    stack.callback(lambda: [p.stop() for p in probes])
    progress(f"quiet window: {options.seconds:g} s of the lab's own traffic ...")
    windows = [bench.window("quiet", options.seconds, probes)]
    ttl = options.warmup + options.repeats * (options.seconds + 5) + 30
    fault = bench.lab.set_fault({"kind": c.FaultKind.DDOS_FLOOD.value, "target": c.GATEWAY, "rps": options.rps,
                                 "ttl_seconds": round(ttl), "reason": "obslab bench flood"})
    stack.callback(bench.lab.clear_fault, fault["id"])
    progress(f"flood of {options.rps} requests/s set ({fault['id']}); {options.warmup:g} s of ramp-up ...")
    time.sleep(options.warmup)
    for index in range(options.repeats):
        window = bench.window("flood", options.seconds, probes)
        progress(f"  window {index + 1}/{options.repeats}: {window.answers_per_second:.1f} answers/s, gateway "
                 f"{window.gateway_cpu_percent:.0f} % CPU ({window.gateway_cpu_ms_per_answer} ms each), "
                 f"customer p99 {window.probes['customer']['p99_ms']} ms")
        windows.append(window)
    return windows


def report(result: dict) -> str:
    flood, quiet = result["flood"], result["quiet"]

    def three(figures: dict, unit: str = "") -> str:
        return f"{figures['median']:g}{unit} (min {figures['min']:g}, max {figures['max']:g})"

    codes: dict[str, list[float]] = {}
    for window in flood["windows"]:
        for code, rate in window["by_code"].items():
            codes.setdefault(code, []).append(rate)
    busiest = sorted(((statistics.median(w["cpu_percent"].get(name, 0.0) for w in flood["windows"]), name)
                      for name in flood["windows"][0]["cpu_percent"]), reverse=True)[:6]
    lines = [
        f"obslab bench flood: a {result['rps']}/s ddos_flood on the gateway of a fresh fast-profile lab "
        f"(commit {result['commit']}, senders: {result['senders']})",
        f"quiet: {quiet['answers_per_second']} answers/s, gateway {quiet['gateway_cpu_percent']} % CPU, customer "
        f"p99 {quiet['probes']['customer']['p99_ms']} ms",
        f"flood, {result['repeats']} windows of {result['window_seconds']:g} s:",
        f"  gateway answers/s           {three(flood['answers_per_second'])}",
        "  by code                     " + ", ".join(f"{code} {statistics.median(rates):g}/s"
                                               for code, rates in sorted(codes.items())),
        f"  gateway CPU                 {three(flood['gateway_cpu_percent'], ' %')} of one core",
        f"  gateway CPU/answer          {three(flood['gateway_cpu_ms_per_answer'], ' ms')}",
        f"  machine CPU                 {three(flood['machine_cpu_percent'], ' %')} of {os.cpu_count()} cores",
        "  busiest                     " + ", ".join(f"{name} {percent:g} %" for percent, name in busiest),
    ]
    for name, label in (("bot", "a bot's 401"), ("customer", "a customer's accounts list")):
        probe = flood["probes"][name]
        lines.append(f"  {label:28}p50 {probe.get('p50_ms')} ms, p99 {probe.get('p99_ms')} ms, "
                     f"{probe.get('ok_percent')} % answered as expected")
    return "\n".join(lines)
