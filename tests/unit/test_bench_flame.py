"""The profile's per-layer breakdown and flame graph, from py-spy's raw format."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from obslab.bench import flame

RAW = textwrap.dedent("""\
    thread (101): MainThread;serve (waitress/server.py:10);handle (waitress/task.py:20);wsgi_app (flask/app.py:30);transfer (services/transactions/app.py:40);execute (sqlalchemy/engine/base.py:50);execute (sqlite3/dbapi2.py:1) 6
    thread (101): MainThread;serve (waitress/server.py:10);handle (waitress/task.py:20);wsgi_app (flask/app.py:30);transfer (services/transactions/app.py:41) 2
    thread (101): MainThread;serve (waitress/server.py:10);handle (waitress/task.py:20);wsgi_app (flask/app.py:30);jsonify (flask/json/provider.py:9);encode (json/encoder.py:200) 1
    thread (101): MainThread;serve (waitress/server.py:10);call (services/transactions/app.py:50);request (requests/sessions.py:5);send (http/client.py:9);sendall (socket.py:1) 3
    thread (101): MainThread;serve (waitress/server.py:10);start_span (opentelemetry/sdk/trace/__init__.py:7);acquire (threading.py:1) 2
    thread (102): OtelBatchSpanProcessor;run (threading.py:1);worker (opentelemetry/sdk/trace/export/__init__.py:3);export (obslab/telemetry/redaction.py:9);sub (re/__init__.py:1) 4
    thread (102): OtelBatchSpanProcessor;run (threading.py:1);worker (opentelemetry/sdk/trace/export/__init__.py:3);post (requests/api.py:2) 5
    thread (103): MainThread;handle (logging/__init__.py:1);format (obslab/telemetry/logs.py:2);dumps (json/__init__.py:3) 1
    thread (104): waitress-0;observe (prometheus_client/metrics.py:1) 1
    thread (105): waitress-1;<module> (runpy.py:1) 1
    """)


def test_each_sample_goes_to_one_layer_whole_stack_costs_before_the_innermost_frame():
    stacks = flame.parse_raw(RAW)
    assert sum(stacks.values()) == 26
    layers = {}
    for stack, count in stacks.items():
        layers[flame.layer_of(stack)] = layers.get(flame.layer_of(stack), 0) + count
    assert layers == {
        flame.DATABASE: 6,          # sqlite3 under SQLAlchemy under the app
        flame.APPLICATION: 2,       # the app's own line
        flame.JSON: 1,              # json under Flask's provider
        flame.HTTP_CLIENT: 3,       # socket under http.client: the innermost known frame decides
        flame.OTEL_SPANS: 2,        # a lock taken while starting a span
        flame.REDACTION: 4,         # inside the exporter, but a cost of its own
        flame.OTEL_EXPORT: 5,       # the exporter's HTTP post is telemetry, not the HTTP client's
        flame.LOGGING: 1,           # the log formatter's JSON is logging
        flame.METRICS: 1,
        flame.OTHER: 1,
    }


def test_the_breakdown_turns_samples_into_milliseconds_per_request_per_service():
    profile = flame.Profile(rate_hz=100)
    profile.add("transactions", RAW)
    profile.add("gateway", "a (waitress/x.py:1);b (flask/app.py:2) 50\n")
    table = profile.breakdown(requests=10)
    # 26 samples at 100 Hz = 0.26 s over 10 requests = 26 ms each
    assert table["transactions"]["total"] == pytest.approx(26.0)
    assert table["transactions"][flame.DATABASE] == pytest.approx(6.0)
    assert table["gateway"] == {flame.FLASK: 50.0, "total": 50.0}
    assert table["all"]["total"] == pytest.approx(76.0)
    assert list(table)[:2] == ["gateway", "transactions"]       # the costliest service first
    text = flame.breakdown_markdown(table)
    assert "| **total** | 50.00 | 26.00 | 76.00 | 100 % |" in text
    assert f"| {flame.DATABASE} | 0.00 | 6.00 | 6.00 | 8 % |" in text


def test_the_flame_graph_is_valid_svg_with_a_tooltip_per_frame_and_a_tower_per_service():
    profile = flame.Profile(rate_hz=100)
    profile.add("transactions", RAW)
    profile.add("gateway", "a (waitress/x.py:1);b (flask/app.py:2) 50\n")
    svg = flame.flame_svg(profile, requests=10, title="one transfer")
    root = ET.fromstring(svg)
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("gateway\n50 samples") for t in titles)
    assert any(t.startswith("execute (sqlite3/dbapi2.py)") and flame.DATABASE in t for t in titles)
    assert "{Y" not in svg and "{T" not in svg                   # every row placed


def test_top_frames_rank_functions_by_self_time():
    profile = flame.Profile(rate_hz=100)
    profile.add("transactions", RAW)
    first = flame.top_frames(profile, requests=1)[0]
    assert first == ("execute (sqlite3/dbapi2.py)", flame.DATABASE, 60.0)


def test_a_line_that_is_not_py_spy_raw_output_is_refused_naming_it():
    with pytest.raises(ValueError, match="not a line of py-spy's raw format"):
        flame.parse_raw("Error: failed to open process\n")


@pytest.mark.skipif(shutil.which("py-spy") is None and not (
        __import__("pathlib").Path(sys.executable).parent / "py-spy").exists(), reason="py-spy is not installed")
def test_real_py_spy_output_of_a_busy_process_parses_and_finds_its_json_work(tmp_path):
    from pathlib import Path

    busy = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""\
        import json, time
        print("ready", flush=True)
        end = time.time() + 20   # killed as soon as py-spy is done
        while time.time() < end:
            json.dumps({"a": list(range(200))})
        """)], stdout=subprocess.PIPE, text=True)
    try:
        # py-spy attached to an interpreter still starting cannot find its state: wait until it runs.
        assert busy.stdout.readline().strip() == "ready"
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        out = tmp_path / "raw.txt"
        subprocess.run([py_spy, "record", "--pid", str(busy.pid), "--format", "raw", "--rate", "100",
                        "--duration", "1", "--threads", "--nonblocking", "-o", str(out)],
                       check=True, capture_output=True, timeout=30)
    finally:
        busy.kill()
        busy.wait()
    profile = flame.Profile(rate_hz=100)
    profile.add("busy", out.read_text())
    layers = profile.layers("busy")
    assert profile.samples("busy") >= 30
    assert layers[flame.JSON] >= profile.samples("busy") // 3


def test_waiting_threads_are_idle_and_the_kernels_cpu_time_turns_shares_into_milliseconds():
    waiting = ("thread (1): waitress-0;handler_thread (waitress/task.py:1);Condition.wait (threading.py:320) 70\n"
               "thread (2): MainThread;run (waitress/server.py:1);poll2 (waitress/wasyncore.py:9) 20\n")
    profile = flame.Profile(rate_hz=100, cpu_seconds={"accounts": 0.5})
    profile.add("accounts", waiting + "a (flask/app.py:1);b (sqlalchemy/engine/base.py:2) 30\n"
                                      "a (flask/app.py:1);c (services/accounts/app.py:3) 10\n")
    assert profile.idle["accounts"] == 90 and profile.samples("accounts") == 40
    table = profile.breakdown(requests=100)
    # 0.5 s of CPU over 100 requests = 5 ms each, split 30:10 between the database and the app
    assert table["accounts"] == {flame.DATABASE: 3.75, flame.APPLICATION: 1.25, "total": 5.0}
    svg = flame.flame_svg(profile, requests=100, title="t")
    assert "Condition.wait" not in svg and "5.000 ms per request" in svg


def test_instrumentation_wrappers_and_the_labs_span_code_are_opentelemetrys_cost():
    wrapper = flame.parse_raw(
        "a (/x/site-packages/requests/sessions.py:1);"
        "instrumented_send (/x/site-packages/opentelemetry/instrumentation/requests/__init__.py:2) 1\n"
        "run (/repo/obslab/platform/db.py:1);_collect (/repo/obslab/telemetry/dbspans.py:2) 1\n"
        "send (/x/site-packages/requests/sessions.py:1) 1\n")
    assert [flame.layer_of(stack) for stack in wrapper] == [flame.OTEL_SPANS, flame.OTEL_SPANS, flame.HTTP_CLIENT]


def test_a_saved_profile_renders_again_from_its_raw_stacks(tmp_path):
    import json

    from obslab.bench import profile

    (tmp_path / "accounts.raw").write_text("a (flask/app.py:1);b (sqlalchemy/engine/base.py:2) 30\n"
                                           "a (flask/app.py:1);c (services/accounts/app.py:3) 10\n")
    (tmp_path / "profile.json").write_text(json.dumps({
        "transfers": 100, "rate_hz": 100, "transfers_per_second": 50.0, "concurrency": 8, "sampling": "gil",
        "kernel_cpu_ms_per_transfer": {"accounts": 5.0, "supervisord": 0.5, "all": 5.5}, "commit": "abc1234"}))
    result, table, folder = profile.render(tmp_path)
    assert result["breakdown_ms_per_transfer"]["accounts"] == {flame.DATABASE: 3.75, flame.APPLICATION: 1.25,
                                                                "total": 5.0}
    assert "commit abc1234" in (folder / "flame.svg").read_text()
    assert "| **total** | 5.00 | 5.00 | 100 % |" in (folder / "breakdown.md").read_text()
    with pytest.raises(Exception, match="holds no profile"):
        profile.render(tmp_path / "missing")
