"""The lab's own labelled incidents as a NAB corpus: key series from the history generator.

``obslab history`` simulates the IIS estate and the banking services with seeded incidents
(:func:`obslab.sim.incidents.plan_incidents` over :data:`obslab.sim.incidents.INCIDENT_KINDS`). This module
runs the same models in memory, at 60 s steps, and derives one series per symptom an incident
kind is designed to cause, from the models' per-step counter increments (what ``rate()`` over
one step would show):

==============================  ============================================  =======================
series                          from                                          labelled by
==============================  ============================================  =======================
``iis_requests_per_second``     requests of a site / step                     volume_surge (site)
``iis_5xx_ratio``               server errors / requests of a site            app_pool_crash (pool)
``iis_mean_execution_seconds``  execution-time sum / count of a site          latency (site)
``iis_exceptions_per_second``   .NET exceptions of an application / step      exception_storm (app)
``gateway_transfer_seconds``    gateway duration sum / count, POST transfers  latency, unavailable
                                                                              (fraud)
``gateway_transfer_5xx_ratio``  503 answers / requests, POST transfers        unavailable (fraud)
==============================  ============================================  =======================

Each incident becomes a window, ``[start, end)`` of its fault, on the series it is designed to
affect and no other, so a detector is neither rewarded nor punished for side effects (a crashed
pool also answers faster; that is not what the incident is about). The simulated days are
preceded by :data:`WARMUP_ROWS` clean rows, NAB's largest probationary period, so that every
incident lies in the scored part of its series. The end of the window is a fixed date: the same
seed gives the same series on every machine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from obslab import conventions as c
from obslab.ml.nab.corpus import DataFile
from obslab.sim.banking import BankingModel, Target
from obslab.sim.iis import Batch, Effects, IisModel
from obslab.sim.incidents import DEFAULT_SEED, INCIDENT_KINDS, Incident, IncidentKind, plan_incidents

K = c.FaultKind
STEP_SECONDS = 60
WARMUP_ROWS = 750                   # NAB's largest probationary period (util.getProbationPeriod)
MAX_DAYS = 30                       # as `obslab history`
CATEGORY = "lab"
# A Thursday, 00:00 UTC: with the default two days the scored part is Tuesday and Wednesday.
DEFAULT_END = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc).timestamp()
TRANSFER_ROUTE = f"{c.API_PREFIX}/transfers"


@dataclass(frozen=True)
class LabCorpus:
    files: tuple[DataFile, ...]
    incidents: tuple[Incident, ...]
    seed: int
    days: int
    step: int
    start: float                    # first scored-part second (warm-up rows come before it)
    end: float

    def describe(self) -> dict:
        return {"seed": self.seed, "days": self.days, "step_seconds": self.step,
                "warmup_rows": WARMUP_ROWS, "start": _iso(self.start), "end": _iso(self.end),
                "series": [f.path for f in self.files], "incidents": len(self.incidents),
                "windows": sum(len(f.windows) for f in self.files)}


@dataclass(frozen=True)
class _Simulated:
    timestamps: np.ndarray
    iis: Batch
    banking: list


SeriesFn = Callable[[_Simulated], np.ndarray]


def _site_index(attribute: str, value: str) -> int:
    for index, site in enumerate(c.IIS_SITES):
        if getattr(site, attribute) == value:
            return index
    raise ValueError(f"no IIS site has {attribute}={value!r}")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    out = np.full(len(denominator), np.nan)        # no request in a step: a gap, not a 0
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _banking(sim: _Simulated, name: str, **labels: str) -> np.ndarray:
    chosen = [s.values for s in sim.banking if s.name == name and labels.items() <= dict(s.labels).items()]
    if not chosen:
        raise ValueError(f"the banking model has no {name} with {labels}")
    return np.sum(chosen, axis=0)


def _series_for(spec: IncidentKind, step: int) -> list[tuple[str, SeriesFn]]:
    """The series an incident kind is designed to affect: (name, how to compute it)."""
    if spec.kind == K.VOLUME_SURGE:
        j = _site_index("site", spec.target)
        return [(f"iis_requests_per_second_{spec.target}", lambda s: s.iis.requests[:, j].sum(-1) / step)]
    if spec.kind == K.APP_POOL_CRASH:
        j = _site_index("app_pool", spec.target)
        site = c.IIS_SITES[j].site
        return [(f"iis_5xx_ratio_{site}", lambda s: _ratio(s.iis.server_errors[:, j], s.iis.requests[:, j].sum(-1)))]
    if spec.kind == K.EXCEPTION_STORM:
        j = _site_index("app_name", spec.target)
        return [(f"iis_exceptions_per_second_{spec.target}", lambda s: s.iis.exceptions[:, j].sum(-1) / step)]
    if spec.kind == K.LATENCY and spec.target in {site.site for site in c.IIS_SITES}:
        j = _site_index("site", spec.target)
        return [(f"iis_mean_execution_seconds_{spec.target}",
                 lambda s: _ratio(s.iis.exec_sum[:, j], s.iis.buckets[:, j].sum(-1)))]
    if spec.target in (c.FRAUD, c.ACCOUNTS) and spec.kind in (K.LATENCY, K.UNAVAILABLE):
        duration = c.HTTP_SERVER_DURATION.name
        where = {"method": "POST", "route": TRANSFER_ROUTE}
        latency = ("gateway_transfer_seconds",
                   lambda s: _ratio(_banking(s, f"{duration}_sum", **where), _banking(s, f"{duration}_count", **where)))
        if spec.kind == K.LATENCY:
            return [latency]
        requests = c.HTTP_SERVER_REQUESTS.name
        return [latency, ("gateway_transfer_5xx_ratio",
                          lambda s: _ratio(_banking(s, requests, code="503", **where), _banking(s, requests, **where)))]
    return []


def build_lab_corpus(days: int, seed: int = DEFAULT_SEED, *, end: float = DEFAULT_END,
                     step: int = STEP_SECONDS, kinds: Sequence[IncidentKind] = INCIDENT_KINDS) -> LabCorpus:
    """``days`` of simulated lab metrics with seeded incidents, one labelled file per series."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"--lab-days must be between 0 (skip) and {MAX_DAYS}, got {days}")
    end = (end // step) * step
    start = end - days * 86400
    timestamps = np.arange(start - WARMUP_ROWS * step + step, end + step / 2, step)
    incidents = [i for i in plan_incidents(start, end, step, seed) if i.spec in kinds]
    faults = [i.fault() for i in incidents]
    iis = IisModel(seed, step).simulate(timestamps, Effects.from_faults(faults, len(timestamps), timestamps=timestamps))
    targets = {name: Target(name, "lab", "banking") for name in (c.GATEWAY, c.TRANSACTIONS, c.PAYMENTS)}
    banking = BankingModel(seed, step, targets).series(timestamps, faults)
    simulated = _Simulated(timestamps, iis, banking)

    functions: dict[str, SeriesFn] = {}
    windows: dict[str, list[tuple[int, int]]] = {}
    for spec in kinds:
        for name, function in _series_for(spec, step):
            functions.setdefault(name, function)
            windows.setdefault(name, [])
    for incident in incidents:
        rows = np.flatnonzero((timestamps >= incident.start) & (timestamps < incident.end))
        for name, _ in _series_for(incident.spec, step):
            windows[name].append((int(rows[0]), int(rows[-1])))
    text = np.array([dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                     for t in timestamps])
    files = tuple(DataFile(f"{CATEGORY}/{name}.csv", text, timestamps, functions[name](simulated),
                           tuple(sorted(windows[name])))
                  for name in sorted(functions))
    return LabCorpus(files, tuple(incidents), seed, days, step, start, end)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
