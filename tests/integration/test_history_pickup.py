"""A running Prometheus 2.42 serves new history without a restart (it rescans every minute).

Slow by nature (up to a minute of waiting for the rescan), hence its own file. The Prometheus
here scrapes itself, so its head holds live data: history must end before the head begins.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from obslab import conventions as c
from obslab.lab.backfill import blocks
from tests.prometheus_support import scrape_job, start_prometheus
from tests.support import free_port

pytestmark = pytest.mark.prometheus


def test_a_running_prometheus_serves_new_history_without_restart_and_before_its_live_data(tmp_path):
    tsdb = tmp_path / "prometheus" / "data"
    port = free_port()
    prometheus = start_prometheus(tmp_path / "work", data_dir=tsdb, port=port,
                                  scrape_configs=[scrape_job("self", f"127.0.0.1:{port}", "1s")])
    try:
        prometheus.wait_for(lambda: prometheus.query("up"), 20, "the first live scrape")
        environment = {k: v for k, v in os.environ.items() if k != "OBSLAB_UTC_OFFSET_HOURS"}
        environment["OBSLAB_PROMETHEUS_URL"] = prometheus.url
        done = subprocess.run([sys.executable, "-m", "obslab", "history", "--days", "1", "--no-incidents",
                               "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=150,
                              env=environment)
        assert done.returncode == 0, done.stdout + done.stderr
        # The head began seconds ago, so "5 minutes before now" is the earlier of the two limits.
        assert "ends 5 minutes before now" in done.stdout
        waited = re.search(r"serves the history now \(picked it up after (\d+) s", done.stdout)
        assert waited, done.stdout
        assert int(waited.group(1)) <= 75
        head_start = prometheus.api("status/tsdb")["headStats"]["minTime"] / 1000
        assert max(b.max_time for b in blocks(tsdb)) <= head_start
        last = max(b.max_time for b in blocks(tsdb))
        assert prometheus.scalar(f'count({c.IIS_APP_POOL_STATE.name}{{job="{c.IIS_MOCK}"}})', last - 60) == 3
    finally:
        prometheus.stop()
