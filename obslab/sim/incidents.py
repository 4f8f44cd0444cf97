"""Incidents of simulated history: which faults, where, for how long, and when (seeded).

``obslab history`` plays them into the generated IIS and banking series, and the NAB lab corpus
(:mod:`obslab.ml.nab.lab_incidents`) labels its anomaly windows with the same plan.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from obslab import conventions as c
from obslab.faults.model import Fault

K = c.FaultKind
DEFAULT_SEED = 1


def iso8601(ts: float) -> str:
    """Epoch seconds as UTC ISO 8601 to the second: ``2026-12-06T18:00:00Z``."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class IncidentKind:
    kind: c.FaultKind
    target: str
    params: dict[str, Any]
    minutes: int
    jobs: tuple[str, ...]
    description: str


_SITE, _POOL_SITE, _APP_SITE = c.IIS_SITES[0], c.IIS_SITES[1], c.IIS_SITES[2]
INCIDENT_KINDS: tuple[IncidentKind, ...] = (
    IncidentKind(K.VOLUME_SURGE, _SITE.site, {"factor": 3.0}, 30, (c.IIS_MOCK,),
                 f"{_SITE.site} receives three times its usual load"),
    IncidentKind(K.APP_POOL_CRASH, _POOL_SITE.app_pool, {}, 15, (c.IIS_MOCK,),
                 f"{_POOL_SITE.app_pool} stops; {_POOL_SITE.site} answers 503 to nearly every request"),
    IncidentKind(K.EXCEPTION_STORM, _APP_SITE.app_name, {"rate": 40.0}, 20, (c.IIS_MOCK,),
                 f"{_APP_SITE.app_name} throws 40 extra {c.NETFRAMEWORK_STORM_EXCEPTION} per second"),
    IncidentKind(K.LATENCY, _SITE.site, {"latency_ms": 400, "jitter_ms": 100}, 30, (c.IIS_MOCK,),
                 f"{_SITE.site} responds 400 ms slower"),
    IncidentKind(K.LATENCY, c.FRAUD, {"latency_ms": 800}, 30, (c.TRANSACTIONS, c.PAYMENTS, c.GATEWAY),
                 "fraud answers 800 ms slower: every transfer and payment is slow"),
    IncidentKind(K.UNAVAILABLE, c.FRAUD, {}, 15, (c.TRANSACTIONS, c.PAYMENTS, c.GATEWAY),
                 "fraud is down: transfers and payments fail with 503 dependency_unavailable"),
)
INCIDENT_EDGE_SECONDS = 1800        # keep incidents clear of each other and of the window's ends


@dataclass(frozen=True)
class Incident:
    spec: IncidentKind
    start: float
    end: float

    def fault(self) -> Fault:
        return Fault(id=f"history-{self.spec.kind.value}-{int(self.start)}", kind=self.spec.kind,
                     target=self.spec.target, params=dict(self.spec.params),
                     created_at=self.start, expires_at=self.end, actor="obslab history")

    def to_json(self, seed: int) -> dict[str, Any]:
        return {
            "kind": self.spec.kind.value, "target": self.spec.target, "params": dict(self.spec.params),
            "start": iso8601(self.start), "end": iso8601(self.end),
            "start_unix": self.start, "end_unix": self.end,
            "jobs": list(self.spec.jobs), "description": self.spec.description,
            "source": "obslab history", "seed": seed,
        }


def plan_incidents(start: float, end: float, step: int, seed: int) -> list[Incident]:
    """Each kind once per week of history (at least once), at seeded times: the window is cut
    into one slot per incident and every incident starts somewhere inside its own slot."""
    rng = np.random.default_rng([seed, zlib.crc32(b"incidents")])
    rounds = max(1, round((end - start) / (7 * 86400)))
    kinds = INCIDENT_KINDS * rounds
    slot = (end - start) / len(kinds)
    incidents = []
    for index, spec in zip(rng.permutation(len(kinds)), kinds):
        earliest = start + index * slot + INCIDENT_EDGE_SECONDS
        latest = max(earliest, start + (index + 1) * slot - spec.minutes * 60 - INCIDENT_EDGE_SECONDS)
        begin = (float(rng.uniform(earliest, latest)) // step) * step
        incidents.append(Incident(spec, begin, begin + spec.minutes * 60))
    return sorted(incidents, key=lambda i: i.start)
