"""``obslab bench api``'s pure parts: port offsets, run order, figures, pacing, CPU arithmetic, the
report; and its client against a real HTTP server on loopback. No lab is started here."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from obslab import settings
from obslab.bench import api
from obslab.bench.lab import CLOCK_TICKS
from obslab.lab.native import LabError

LAB_PORTS = api.lab_ports(ml=False)


def nothing_busy(_port: int) -> bool:
    return False


def busy(*ports: int):
    return lambda port: port in ports


def disjoint(offsets: tuple[int, int], ports=LAB_PORTS) -> bool:
    one, two = offsets
    return not {p + one for p in ports} & {p + two for p in ports}


# --- ports -------------------------------------------------------------------------------------------

def test_a_lab_without_ml_leaves_the_ml_ports_out_and_never_the_load_generator_in():
    with_ml = api.lab_ports(ml=True)
    assert 8091 not in LAB_PORTS and {8091, 8092, 8093} <= set(with_ml)
    assert 8096 not in with_ml and 9090 in LAB_PORTS and 9093 in LAB_PORTS


def test_the_default_offsets_are_20000_and_22000_when_their_ports_are_free():
    assert api.choose_offsets(LAB_PORTS, 32768, nothing_busy) == (20000, 22000)
    assert disjoint((20000, 22000))


def test_a_busy_port_of_the_first_default_moves_the_first_lab_to_the_next_free_offset_on_the_ladder():
    one, two = api.choose_offsets(LAB_PORTS, 32768, busy(28080))
    assert one != 20000 and one % 1000 == 0 and one >= api.MIN_OFFSET
    assert 28080 not in {p + one for p in LAB_PORTS} | {p + two for p in LAB_PORTS}
    assert disjoint((one, two)) and max(LAB_PORTS) + max(one, two) < 32768


def test_a_busy_port_of_the_second_default_moves_only_the_second_lab():
    one, two = api.choose_offsets(LAB_PORTS, 32768, busy(22000 + 8082))
    assert one == 20000 and two not in (20000, 22000) and disjoint((one, two))


def test_every_port_stays_below_a_lower_ephemeral_range():
    one, two = api.choose_offsets(LAB_PORTS, 28000, nothing_busy)
    assert max(LAB_PORTS) + max(one, two) < 28000 and min(one, two) >= api.MIN_OFFSET and disjoint((one, two))


def test_an_ephemeral_range_too_low_for_any_offset_is_a_clear_error():
    with pytest.raises(LabError, match="ephemeral range"):
        api.choose_offsets(LAB_PORTS, 15000, nothing_busy)


def test_when_every_offset_has_a_port_in_use_the_error_names_the_busy_ports():
    with pytest.raises(LabError, match=r"ports in use: offset 20000: 28080"):
        api.choose_offsets(LAB_PORTS, 32768, lambda port: port % 1000 == 80)


def test_the_users_port_offset_is_the_first_labs_and_the_second_is_2000_higher():
    assert api.choose_offsets(LAB_PORTS, 32768, nothing_busy, first=15000) == (15000, 17000)


def test_a_busy_port_at_the_users_offset_is_an_error_naming_it_not_another_offset():
    with pytest.raises(LabError, match="offset 15000: 23080"):
        api.choose_offsets(LAB_PORTS, 32768, busy(23080), first=15000)


def test_a_users_offset_that_reaches_the_ephemeral_range_is_refused():
    with pytest.raises(LabError, match="--port-offset 30000"):
        api.choose_offsets(LAB_PORTS, 32768, nothing_busy, first=30000)


def test_no_offset_above_what_a_native_lab_accepts_is_chosen_even_with_a_high_ephemeral_range():
    one, two = api.choose_offsets(LAB_PORTS, 49152, busy(22000 + 8080))
    assert max(one, two) <= settings.max_port_offset()


def test_the_ephemeral_range_is_read_from_the_kernels_file_or_falls_back_to_linuxs_default(tmp_path):
    path = tmp_path / "ip_local_port_range"
    path.write_text("40000\t60999\n")
    assert api.ephemeral_range(path) == (40000, 60999)
    path.write_text("nonsense\n")
    assert api.ephemeral_range(path) == api.EPHEMERAL_RANGE_FALLBACK
    assert api.ephemeral_range(tmp_path / "missing") == (32768, 60999)


# --- order and figures -------------------------------------------------------------------------------

def test_runs_alternate_abba_so_a_steady_drift_falls_on_both_modes_alike():
    order = api.abba_order(4)
    assert [mode for _, mode in order] == ["telemetry_on", "telemetry_off", "telemetry_off", "telemetry_on",
                                           "telemetry_on", "telemetry_off", "telemetry_off", "telemetry_on"]
    assert [rep for rep, _ in order] == [0, 0, 1, 1, 2, 2, 3, 3]
    # A linear drift: run k is slowed by k; each mode's positions then add up to the same.
    positions = {mode: sum(k for k, (_, m) in enumerate(order) if m == mode) for mode in api.MODES}
    assert positions["telemetry_on"] == positions["telemetry_off"]


def test_one_repeat_runs_each_mode_once():
    assert api.abba_order(1) == [(0, "telemetry_on"), (0, "telemetry_off")]


def test_spread_is_min_median_max_and_the_ratio_is_of_medians():
    assert api.spread([100.0, 120.04, 90.0]) == {"min": 90.0, "median": 100.0, "max": 120.0}
    on = {"transfers_per_second": api.spread([95.0, 96.0, 200.0]), "p50_ms": api.spread([10.0, 11.0, 12.0]),
          "p99_ms": api.spread([40.0])}
    off = {"transfers_per_second": api.spread([100.0, 100.0, 1.0]), "p50_ms": api.spread([10.0]),
           "p99_ms": api.spread([0.0])}
    assert api.on_off_ratio(on, off) == {"transfers_per_second": 0.96, "p50_ms": 1.1, "p99_ms": None}


def test_a_percentile_of_one_sample_is_that_sample():
    assert api.percentile([7.0], 99) == 7.0
    assert api.percentile([float(i) for i in range(1, 101)], 50) == pytest.approx(50.5)


# --- open-loop pacing ------------------------------------------------------------------------------------

class FakeClock:
    """Time that moves only when slept through or spent in a request (one client thread)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def request_taking(self, seconds: float, fails=lambda index: False):
        def request(index: int) -> bool:
            self.now += seconds
            return not fails(index)
        return request


def test_a_server_faster_than_the_schedule_shows_its_own_latency_at_the_asked_rate():
    clock = FakeClock()
    figures = api.paced(clock.request_taking(0.02), rate=10.0, seconds=2.0, threads=1, clock=clock, sleep=clock.sleep)
    assert figures.rate == 10.0 and figures.target_rate == 10.0
    assert figures.p50_ms == pytest.approx(20.0) and figures.p99_ms == pytest.approx(20.0)
    assert figures.max_start_lag_ms == 0.0 and figures.errors == 0


def test_latency_counts_from_the_scheduled_start_so_a_stall_is_not_hidden():
    # 10 requests a second asked, each takes 0.25 s on the one thread: request i starts 0.15 s x i
    # late; a closed-loop client would report 250 ms for every one of them.
    clock = FakeClock()
    figures = api.paced(clock.request_taking(0.25), rate=10.0, seconds=1.0, threads=1, clock=clock, sleep=clock.sleep)
    assert figures.p50_ms > 800 and figures.p99_ms == pytest.approx(250 + 150 * 9, abs=15)
    assert figures.max_start_lag_ms == pytest.approx(150 * 9)
    assert figures.rate == pytest.approx(10 / (9 * 0.25 + 0.1), abs=0.1)   # the schedule was not kept


def test_failed_requests_are_counted_as_errors_and_the_run_goes_on():
    clock = FakeClock()
    figures = api.paced(clock.request_taking(0.01, fails=lambda i: i % 4 == 0), rate=20.0, seconds=1.0, threads=1,
                        clock=clock, sleep=clock.sleep)
    assert figures.errors == 5


def test_many_real_threads_keep_a_real_schedule():
    figures = api.paced(lambda index: True, rate=200.0, seconds=0.5, threads=4)
    assert figures.rate == pytest.approx(200.0, rel=0.1) and figures.errors == 0 and figures.p99_ms < 50


def test_the_paced_run_gets_twice_the_saturating_clients_or_enough_for_the_requests_in_flight():
    assert api.paced_threads(rate=50.0, p99_ms=100.0, concurrency=8) == 20     # 4 x 50/s x 0.1 s
    assert api.paced_threads(rate=50.0, p99_ms=10.0, concurrency=8) == 16
    assert api.paced_threads(rate=5000.0, p99_ms=1000.0, concurrency=8) == 256


# --- CPU ----------------------------------------------------------------------------------------------

PROC_STAT = """cpu  100 20 30 5000 40 5 6 7 50 0
cpu0 50 10 15 2500 20 2 3 3 25 0
cpu1 50 10 15 2500 20 3 3 4 25 0
intr 12345
"""


def test_busy_ticks_are_user_nice_system_irq_softirq_steal_of_the_cpu_line():
    assert api.busy_ticks(PROC_STAT) == 100 + 20 + 30 + 5 + 6 + 7
    with pytest.raises(ValueError):
        api.busy_ticks("intr 1\n")


def test_steal_is_the_eighth_field_of_the_cpu_line():
    assert api.steal_ticks(PROC_STAT) == 7


def test_the_hypervisors_steal_is_reported_apart_from_other_processes():
    before = api.CpuSample(busy=0, own=0, labs={"telemetry_on": {"gateway": 0}}, steal=50)
    after = api.CpuSample(busy=3 * CLOCK_TICKS, own=0, labs={"telemetry_on": {"gateway": CLOCK_TICKS}},
                          steal=50 + CLOCK_TICKS // 2)
    usage = api.window_usage(before, after, measured="telemetry_on", transfers=10, seconds=1.0)
    assert usage.steal_cpu_percent == round(100 * (CLOCK_TICKS // 2) / CLOCK_TICKS, 1)
    other_ticks = 3 * CLOCK_TICKS - CLOCK_TICKS - CLOCK_TICKS // 2
    assert usage.other_cpu_percent == round(100 * other_ticks / CLOCK_TICKS, 1)


def test_cpu_per_transfer_is_each_components_ticks_in_milliseconds_over_the_transfers():
    before = {"gateway": 100, "auth": 50, "trace-sink": 10}
    after = {"gateway": 100 + CLOCK_TICKS, "auth": 50 + CLOCK_TICKS // 2, "fraud": 999}   # fraud: new pid, no start
    per = api.cpu_ms_per_transfer(before, after, transfers=200)
    assert per["gateway"] == pytest.approx(5.0)                  # one CPU-second over 200 transfers
    assert per["auth"] == pytest.approx(1000 * (CLOCK_TICKS // 2) / CLOCK_TICKS / 200, abs=0.001)
    assert "fraud" not in per and "trace-sink" not in per
    assert list(per) == ["gateway", "auth", "total"] and per["total"] == pytest.approx(per["gateway"] + per["auth"])


def test_other_cpu_is_the_machines_busy_time_minus_both_labs_and_this_process():
    before = api.CpuSample(busy=1000, own=10, labs={"telemetry_on": {"gateway": 0}, "telemetry_off": {"gateway": 0}})
    labs = {"telemetry_on": {"gateway": CLOCK_TICKS}, "telemetry_off": {"gateway": CLOCK_TICKS // 2}}
    after = api.CpuSample(busy=1000 + 4 * CLOCK_TICKS, own=10 + CLOCK_TICKS, labs=labs)
    usage = api.window_usage(before, after, measured="telemetry_on", transfers=100, seconds=2.0)
    assert usage.client_cpu_percent == 50.0
    other_ticks = 4 * CLOCK_TICKS - CLOCK_TICKS - CLOCK_TICKS // 2 - CLOCK_TICKS
    assert usage.other_cpu_percent == round(100 * other_ticks / CLOCK_TICKS / 2.0, 1)
    assert usage.cpu_ms_per_transfer == {"gateway": 10.0, "total": 10.0}


def test_other_cpu_is_never_negative():
    sample = api.CpuSample(busy=0, own=0, labs={"telemetry_on": {"gateway": 0}})
    later = api.CpuSample(busy=1, own=5, labs={"telemetry_on": {"gateway": 5}})
    assert api.window_usage(sample, later, measured="telemetry_on", transfers=1, seconds=1.0).other_cpu_percent == 0.0


def test_the_cpu_table_takes_each_components_median_over_runs():
    runs = [{"gateway": 1.0, "auth": 0.2, "total": 1.2}, {"gateway": 3.0, "auth": 0.4, "total": 3.4},
            {"gateway": 2.0, "total": 2.0}]
    assert api.median_cpu(runs) == {"gateway": 2.0, "auth": 0.3, "total": 2.0}


def test_the_busiest_processes_leave_this_one_out_and_come_largest_first():
    before = {1: 0, 2: 0, 3: 0, 4: 0}
    after = {1: CLOCK_TICKS // 10, 2: CLOCK_TICKS, 3: 0, 4: 5 * CLOCK_TICKS, 5: 100}
    tenth = round(100 * (CLOCK_TICKS // 10) / CLOCK_TICKS, 1)
    assert api.busiest(before, after, 1.0, exclude={4}, count=2) == [(2, 100.0), (1, tenth)]


def test_the_git_commit_is_none_rather_than_an_error_outside_a_checkout(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    monkeypatch.setattr(api.subprocess, "run", no_git)
    assert api.git_commit() is None


# --- the report ---------------------------------------------------------------------------------------

def _mode(tps: float, p99: float, half_p99: float | None) -> dict:
    return {"runs": [], "transfers_per_second": api.spread([tps]), "p50_ms": api.spread([10.0]),
            "p99_ms": api.spread([p99]), "errors": 0,
            "cpu_ms_per_transfer": {"gateway": 2.5, "total": 9.0},
            "half_saturation": None if half_p99 is None else {
                "target_rate": tps / 2, "rate": tps / 2, "p50_ms": 8.0, "p99_ms": half_p99, "errors": 0,
                "max_start_lag_ms": 0.4, "threads": 16, "other_cpu_percent": 1.0, "steal_cpu_percent": 12.5}}


def _result(on: dict, off: dict) -> dict:
    return {"transfers": 200, "concurrency": 8, "repeats": 2,
            "environment": {"cpus": 2, "commit": None, "load_average": [0.5, 0.4, 0.3], "busy_cpu_percent": 3.0,
                            "top_processes": [{"pid": 42, "cpu_percent": 2.0, "command": "python -m something"}],
                            "ml_services": False, "other_cpu_percent": api.spread([1.0, 2.0]),
                            "steal_cpu_percent": api.spread([3.0, 4.0])},
            "telemetry_on": on, "telemetry_off": off, "on_off_ratio": api.on_off_ratio(on, off)}


def test_the_report_judges_the_targets_and_says_what_else_was_running():
    text = api.report(_result(_mode(96.0, 40.0, 30.0), _mode(100.0, 35.0, 60.0)))
    assert "0.960" in text and "target >= 0.95: met" in text
    assert "telemetry on   p99 30.0 ms (target <= 50 ms: met)" in text
    assert "telemetry off  p99 60.0 ms (target <= 50 ms: NOT met)" in text
    assert "python -m something" in text and "commit unknown" in text and "load average 0.50" in text
    assert "gateway" in text and "total" in text
    assert "taken by the hypervisor (steal) during the runs: 3.5 % of a core" in text and "steal 12.5 %" in text


def test_the_report_without_paced_runs_says_so():
    text = api.report(_result(_mode(90.0, 40.0, None), _mode(100.0, 35.0, None)))
    assert "not measured (--paced-seconds 0)" in text and "target >= 0.95: NOT met" in text


# --- the client against a real server ------------------------------------------------------------------

class _Gateway(BaseHTTPRequestHandler):
    """Just enough of the gateway: login, accounts, and transfers answered 201, then 409, in turn."""

    transfers = 0
    keys: list[str] = []
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/api/v1/auth/login":
            return self._answer(200, {"access_token": "token"})
        with self.lock:
            type(self).transfers += 1
            type(self).keys.append(self.headers["Idempotency-Key"])
            status = 201 if self.transfers % 2 else 409
        assert self.headers["Authorization"] == "Bearer token"
        self._answer(status, {})

    def do_GET(self) -> None:
        self._answer(200, [{"id": "sav", "type": "savings"}, {"id": "chk", "type": "checking"}])


@pytest.fixture
def gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_counts_every_answer_but_201_as_an_error_with_a_fresh_idempotency_key_each(gateway):
    client = api.TransferClient(gateway)
    assert [account for _, account in client.parties] == ["chk", "chk"]
    outcomes = [client.transfer(i) for i in range(6)]
    assert outcomes == [True, False] * 3
    assert len(set(_Gateway.keys[-6:])) == 6


def test_a_request_that_cannot_connect_is_an_error_not_an_exception(gateway):
    client = api.TransferClient(gateway)
    client.api = "http://127.0.0.1:9" + "/api/v1"          # discard port: nothing listens
    assert client.transfer(0) is False


def test_a_gateway_nobody_can_log_in_to_is_a_lab_error(monkeypatch):
    monkeypatch.setattr(api.time, "sleep", lambda seconds: None)
    with pytest.raises(LabError, match="alice could not log in"):
        api.TransferClient("http://127.0.0.1:9")
