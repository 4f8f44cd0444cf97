"""A traced service shows its own span pipeline on its /metrics: spans exported by outcome, drops.

The pipeline is built once per process by the telemetry bootstrap, and this test process already
has the tests' in-memory provider; so each case builds a real fraud app in a fresh interpreter
(OTLP/HTTP exporter from the environment, as in production) and reads its /metrics through the
Flask test client. Success goes to the real trace sink on loopback; failure to a closed port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from obslab import conventions as c
from obslab.lab.trace_sink import create_app as create_trace_sink
from obslab.platform.app import context
from tests.support import free_port, serve

SPANS = 7

# Runs in the child: prints the telemetry_spans_* samples before and after SPANS spans.
CHILD = """
import json, sys
from opentelemetry import trace
from prometheus_client.parser import text_string_to_metric_families
from obslab.services.fraud.app import create_app

app = create_app(sys.argv[1])
client = app.test_client()
provider = trace.get_tracer_provider()

def samples():
    body = client.get("/metrics").get_data(as_text=True)
    return [[s.name, s.labels, s.value] for f in text_string_to_metric_families(body)
            for s in f.samples if s.name.startswith("telemetry_spans_") and s.name.endswith("_total")]

provider.force_flush()  # the schema's SQL spans, out of the way
before = samples()
tracer = trace.get_tracer("test")
for i in range(int(sys.argv[2])):
    with tracer.start_as_current_span(f"span-{i}"):
        pass
provider.force_flush()
print(json.dumps({"before": before, "after": samples()}))
"""


def run_child(tmp_path, endpoint: str, **env: str) -> dict[str, dict[tuple, float]]:
    environment = {
        **os.environ, "OBSLAB_DATA_DIR": str(tmp_path), "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2",
        **env,
    }
    environment.pop("OTEL_SDK_DISABLED", None)
    environment.pop("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, f"sqlite:///{tmp_path / 'fraud.sqlite3'}", str(SPANS)],
        env=environment, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        moment: {(name, tuple(sorted(labels.items()))): value for name, labels, value in samples}
        for moment, samples in result.items()
    }


def exported(outcome: str) -> tuple:
    return (c.SPANS_EXPORTED.name, ((c.L_OUTCOME, outcome), (c.L_SERVICE, c.FRAUD)))


DROPPED = (c.SPANS_DROPPED.name, ((c.L_SERVICE, c.FRAUD),))


@pytest.fixture
def trace_sink(tmp_path):
    server = serve(create_trace_sink(str(tmp_path / "sink")))
    yield server
    server.stop()


def test_spans_the_collector_accepts_count_as_success(tmp_path, trace_sink):
    result = run_child(tmp_path, f"{trace_sink.url}/v1/traces")
    before, after = result["before"], result["after"]
    assert set(after) == {exported(c.SPAN_EXPORT_SUCCESS), exported(c.SPAN_EXPORT_FAILURE), DROPPED}
    assert after[exported(c.SPAN_EXPORT_SUCCESS)] - before[exported(c.SPAN_EXPORT_SUCCESS)] == SPANS
    assert after[exported(c.SPAN_EXPORT_FAILURE)] == 0
    assert after[DROPPED] == 0
    # What the service counts as exported is what the sink received.
    received = context(trace_sink.app).metrics.registry.get_sample_value(
        c.TRACE_SINK_SPANS.name, {c.L_SERVICE: c.FRAUD})
    assert received == after[exported(c.SPAN_EXPORT_SUCCESS)]


def test_spans_nobody_accepts_count_as_failure(tmp_path):
    result = run_child(tmp_path, f"http://127.0.0.1:{free_port()}/v1/traces")
    before, after = result["before"], result["after"]
    assert after[exported(c.SPAN_EXPORT_FAILURE)] - before[exported(c.SPAN_EXPORT_FAILURE)] == SPANS
    assert after[exported(c.SPAN_EXPORT_SUCCESS)] == 0


def test_without_an_exporter_the_series_are_absent(tmp_path):
    result = run_child(tmp_path, "http://127.0.0.1:1/unused", OTEL_TRACES_EXPORTER="none")
    assert result == {"before": {}, "after": {}}
