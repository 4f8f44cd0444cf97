"""The IIS model's counts as exposed series: one function for /metrics and for history alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from obslab import conventions as c
from obslab.sim.iis import ERROR_CODES, EXCEPTION_TYPES, METHODS, Batch
from obslab.sim.series import Series, counter, gauge, histogram


def iis_series(batch: Batch, sites: Sequence[c.IisSite] = c.IIS_SITES,
               extra: Mapping[str, str] = {}) -> list[Series]:  # noqa: B006 - never mutated
    """Every seed IIS series for the steps of ``batch`` (counters as per-step increments).

    ``extra`` labels are the ones a scrape adds (job, instance, tier): empty for /metrics,
    set for history so that it lands on the same series as the live scrapes.
    """
    out: list[Series] = []
    for j, site in enumerate(sites):
        for m, method in enumerate(METHODS):
            out.append(counter(c.IIS_REQUESTS, (method, site.site), batch.requests[:, j, m], extra))
        out.append(gauge(c.IIS_CURRENT_CONNECTIONS, (site.site,), batch.connections[:, j], extra))
        out.append(counter(c.IIS_SERVER_ERRORS, (site.site,), batch.server_errors[:, j], extra))
        out.append(counter(c.IIS_CLIENT_ERRORS, (site.site,), batch.client_errors[:, j], extra))
        out += histogram(c.IIS_EXECUTION_TIME, (site.site,), batch.buckets[:, j], batch.exec_sum[:, j], extra)
        out.append(gauge(c.IIS_APP_POOL_STATE, (site.app_pool,), batch.pool_state[:, j], extra))
        for e, exception_type in enumerate(EXCEPTION_TYPES):
            out.append(counter(c.NETFRAMEWORK_EXCEPTIONS, (site.app_name, exception_type),
                               batch.exceptions[:, j, e], extra))
        for k, code in enumerate(ERROR_CODES):
            out.append(counter(c.CUSTOM_ERRORS, (code, site.app_name), batch.custom_errors[:, j, k], extra))
    return out
