"""History generation without Prometheus: the OpenMetrics text and the banking model's bookkeeping."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from obslab import conventions as c
from obslab import topology
from obslab.lab.backfill import blocks, create_blocks, write_openmetrics
from obslab.faults.model import Fault
from obslab.sim.banking import BankingModel, Target
from obslab.sim.iis import IisModel
from obslab.sim.iis_series import iis_series
from obslab.sim.series import Accumulator

MONDAY = dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc).timestamp()
TARGETS = {name: Target(name, f"127.0.0.1:{topology.DEFAULT_PORTS[name]}", tier)
           for name, tier in ((c.GATEWAY, "banking"), (c.TRANSACTIONS, "banking"), (c.PAYMENTS, "banking"))}


@pytest.fixture(autouse=True)
def utc_lab(monkeypatch):
    monkeypatch.delenv("OBSLAB_UTC_OFFSET_HOURS", raising=False)


def test_the_openmetrics_document_is_what_promtool_turns_into_a_block(tmp_path):
    ts = MONDAY + 60.0 * np.arange(1, 16)
    labels = {"job": c.IIS_MOCK, "instance": "127.0.0.1:9182", "tier": "iis"}
    series = Accumulator().apply(iis_series(IisModel(1, 60).simulate(ts), extra=labels))
    path = tmp_path / "window.om"
    with path.open("w") as out:
        samples = write_openmetrics(out, ts, series)
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF" and samples == len(series) * len(ts)
    types = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(types) == len(set(types)) == len(c.IIS_FAMILIES)        # families never interleaved
    first_point = [line for line in lines if line.startswith(f"{c.IIS_EXECUTION_TIME.name}_")][:15]
    assert [line.split("{")[0].rsplit("_", 1)[1] for line in first_point] == ["bucket"] * 13 + ["count", "sum"]
    get = [line for line in lines if line.startswith(f'{c.IIS_REQUESTS.name}{{method="GET",site="OnlineBanking"')]
    values = [float(line.split()[-2]) for line in get]
    assert len(values) == 15 and values == sorted(values) and 'job="iis-mock"' in get[0]

    done = create_blocks(path, tmp_path / "tsdb")
    _, stderr = done.communicate(timeout=60)
    assert done.returncode == 0, stderr
    (block,) = blocks(tmp_path / "tsdb")
    meta = json.loads((block.path / "meta.json").read_text())
    assert meta["stats"]["numSamples"] == samples and meta["stats"]["numSeries"] == len(series)
    assert block.min_time == ts[0] and block.max_time == pytest.approx(ts[-1] + 0.001)


def test_counters_continue_from_one_window_to_the_next():
    ts = MONDAY + 60.0 * np.arange(1, 31)
    model, accumulator = IisModel(2, 60), Accumulator()
    first = accumulator.apply(iis_series(model.simulate(ts[:10])))
    second = accumulator.apply(iis_series(model.simulate(ts[10:])))
    for a, b in zip(first, second):
        if a.cumulative:
            assert b.values[0] >= a.values[-1]


def _by(series, spec, **labels) -> np.ndarray:
    chosen = [s.values for s in series if s.name == spec.name and labels.items() <= dict(s.labels).items()]
    assert chosen, (spec.name, labels)
    return np.sum(chosen, axis=0)


def test_gateway_status_codes_agree_with_the_transaction_statuses_of_the_same_movements():
    ts = MONDAY + 60.0 * np.arange(1, 241)                        # 00:01 .. 04:00
    series = BankingModel(3, 60, TARGETS).series(ts)
    for kind, job, route in (("transfer", c.TRANSACTIONS, f"{c.API_PREFIX}/transfers"),
                             ("payment", c.PAYMENTS, f"{c.API_PREFIX}/payments")):
        total = _by(series, c.TRANSACTION_REQUESTS, type=kind, job=job).sum()
        completed = _by(series, c.TRANSACTION_REQUESTS, type=kind, status="completed").sum()
        failures = _by(series, c.TRANSACTION_FAILURES, type=kind).sum()
        assert failures == total - completed
        assert _by(series, c.HTTP_SERVER_REQUESTS, route=route, code="201", job=c.GATEWAY).sum() == completed
        assert _by(series, c.HTTP_SERVER_REQUESTS, route=route, method="POST").sum() == total
        count = next(s.values for s in series if s.name == f"{c.TRANSACTION_DURATION.name}_count"
                     and dict(s.labels)["type"] == kind)
        assert count.sum() == total
        slow = {label: _by(series, c.SLOW_TRANSACTIONS, type=kind, threshold=label).sum()
                for label in c.SLOW_TRANSACTION_THRESHOLDS}
        assert slow["500ms"] >= slow["1s"] >= slow["2s"] and slow["500ms"] < 0.1 * total


def test_a_slow_dependency_slows_movements_and_one_that_is_down_fails_them():
    ts = MONDAY + 60.0 * np.arange(1, 121)
    slow = Fault(id="a", kind=c.FaultKind.LATENCY, target=c.FRAUD, params={"latency_ms": 800},
                 created_at=ts[0], expires_at=ts[60])
    down = Fault(id="b", kind=c.FaultKind.UNAVAILABLE, target=c.FRAUD, created_at=ts[60], expires_at=ts[-1] + 1)
    series = BankingModel(4, 60, TARGETS).series(ts, [slow, down])
    transfers = _by(series, c.TRANSACTION_REQUESTS, type="transfer")
    slow_share = _by(series, c.SLOW_TRANSACTIONS, type="transfer", threshold="500ms")[:60].sum() / transfers[:60].sum()
    failed = _by(series, c.TRANSACTION_FAILURES, type="transfer", error_code="dependency_unavailable")
    assert slow_share > 0.99
    assert failed[60:].sum() == transfers[60:].sum() and failed[:60].sum() < 0.01 * transfers[:60].sum()
    gateway_503 = _by(series, c.HTTP_SERVER_REQUESTS, route=f"{c.API_PREFIX}/transfers", code="503")
    assert gateway_503[60:].sum() == transfers[60:].sum()
