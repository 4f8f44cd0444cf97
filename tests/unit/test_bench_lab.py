"""``obslab bench lab``'s measurements of one process (the test's own) and its report."""

from __future__ import annotations

import os
import time

from obslab.bench import lab


def test_the_proportional_set_size_of_a_process_is_read_from_proc_and_grows_with_what_it_touches():
    before = lab.pss_kib(os.getpid())
    block = bytearray(64 * 1024 * 1024)
    for i in range(0, len(block), 4096):        # touch every page, or it is never resident
        block[i] = 1
    after = lab.pss_kib(os.getpid())
    assert 0 < before and after - before >= 60 * 1024, (before, after)
    del block


def test_cpu_ticks_count_the_cpu_a_process_used_and_figures_turn_them_into_percent_of_a_core():
    first = lab.cpu_ticks(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:       # 0.3 s of CPU
        pass
    used = lab.cpu_ticks(os.getpid()) - first
    assert used >= 0.25 * lab.CLOCK_TICKS, used
    rows = lab.figures({"gateway": lab.Usage(1024, 0)},
                       {"gateway": lab.Usage(2048, lab.CLOCK_TICKS), "prometheus": lab.Usage(4096, 5)}, seconds=4.0,
                       healthy_after={"gateway": 3.5})
    assert list(rows) == ["prometheus", "gateway"]                      # largest first
    # one CPU-second in four seconds; healthy 3.5 s after the start
    assert rows["gateway"] == {"pss_mib": 2.0, "cpu_percent": 25.0, "healthy_after_s": 3.5}
    assert rows["prometheus"]["cpu_percent"] is None                   # not seen at the start


def test_the_report_compares_the_total_with_the_target():
    text = lab.report({"profile": "fast", "minutes": 3, "startup_seconds": 21.5, "prometheus_head_series": 9000,
                       "total_pss_mib": 1500.0, "components": {"gateway": {"pss_mib": 100.0, "cpu_percent": 12.5,
                                                                           "healthy_after_s": 7.25}}},
                      missing=["iis-mock"])
    assert "over it" in text and "21.5 s" in text and "iis-mock" in text and "7.2" in text


def test_a_group_of_processes_is_measured_as_their_sum_and_a_vanished_one_drops_the_group():
    me = os.getpid()
    single = lab.sample({"one": me})["one"]
    both = lab.sample({"twice": [me, me], "gone": [me, 2 ** 22 + 1]})
    assert both["twice"].pss_kib >= 2 * single.pss_kib * 0.9 and "gone" not in both
