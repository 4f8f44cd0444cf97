"""The simulation: seeded, vectorised models of what the lab's estate would have exposed.

- :mod:`.seasonality`: the shape of a bank's week (one definition for traffic, IIS and history);
- :mod:`.sampling`: seeded sampling of counts, shares and latency buckets;
- :mod:`.series`: per-step values as a scrape would see them, counters that accumulate;
- :mod:`.iis` and :mod:`.iis_series`: the IIS estate and its exposed series (the live IIS mock
  and history both use them);
- :mod:`.banking`: the banking services' metrics for history;
- :mod:`.incidents`: the seeded incident plan of history (and of the NAB lab corpus).

Nothing here serves, scrapes or runs promtool: obslab/lab/backfill.py and obslab/lab/history.py load
what is simulated into Prometheus.
"""
