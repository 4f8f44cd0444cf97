"""The fault model: what may be injected where (validated once, here), and a fault's wire form.

The fault-injector owns the list of faults; every process that applies them reads it through a
:class:`obslab.faults.board.FaultBoard`.

A fault on the wire (``GET /api/v1/faults``) is a JSON object::

    {"id": "flt_...", "kind": "latency", "target": "accounts", "latency_ms": 300,
     "jitter_ms": 50, "route": null, "created_at": 1700000000.0, "expires_at": 1700000600.0,
     "actor": "cli:root", "reason": ""}
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from obslab import conventions as c

K = c.FaultKind

DEFAULT_TTL_SECONDS = 600
MAX_TTL_SECONDS = 7 * 24 * 3600
MAX_LATENCY_MS = 60_000

IIS_SITES = tuple(s.site for s in c.IIS_SITES)
IIS_APP_POOLS = tuple(s.app_pool for s in c.IIS_SITES)
IIS_APPS = tuple(s.app_name for s in c.IIS_SITES)

# Which targets each kind may name. A service's name targets the service itself; an IIS site
# targets the simulated site in the IIS mock.
TARGETS: dict[c.FaultKind, tuple[str, ...]] = {
    K.ERROR_RATE: (*c.BANKING_SERVICES, *IIS_SITES),
    # The card processor is the external acquirer payments calls (services/payments/processor.py).
    K.LATENCY: (*c.BANKING_SERVICES, *IIS_SITES, c.CARD_PROCESSOR),
    K.UNAVAILABLE: c.BANKING_SERVICES,
    K.DB_SLOW: c.BANKING_SERVICES,
    K.EXCEPTION_STORM: IIS_APPS,
    K.APP_POOL_CRASH: IIS_APP_POOLS,
    K.VOLUME_SURGE: (*IIS_SITES, c.GATEWAY),
    K.DDOS_FLOOD: (c.GATEWAY,),
}
# Parameters each kind requires (beyond kind and target); the rest must be absent.
REQUIRED: dict[c.FaultKind, tuple[str, ...]] = {
    K.ERROR_RATE: ("rate",),
    K.LATENCY: ("latency_ms",),
    K.UNAVAILABLE: (),
    K.DB_SLOW: ("latency_ms",),
    K.EXCEPTION_STORM: ("rate",),
    K.APP_POOL_CRASH: (),
    K.VOLUME_SURGE: ("factor",),
    K.DDOS_FLOOD: ("rps",),
}
OPTIONAL: dict[c.FaultKind, tuple[str, ...]] = {
    K.ERROR_RATE: ("route",),
    K.LATENCY: ("jitter_ms", "route"),
    K.DDOS_FLOOD: ("sources",),
}
# What boards poll: the active faults, like GET /api/v1/faults, but left out of traces (every
# process asks every second; those spans would drown the ones an operator looks for).
POLL_PATH = "/internal/faults"
PARAMETERS = ("rate", "latency_ms", "jitter_ms", "factor", "rps", "sources", "route")
DEFAULT_FLOOD_SOURCES = 2000
MAX_EXCEPTIONS_PER_SECOND = 10_000


class FaultRequest(BaseModel):
    """The body of ``POST /api/v1/faults``; every rule that can reject a fault lives here."""

    model_config = ConfigDict(extra="forbid")

    kind: c.FaultKind
    target: str = Field(min_length=1, max_length=64)
    rate: float | None = Field(default=None, ge=0)
    latency_ms: int | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)
    jitter_ms: int | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)
    factor: float | None = Field(default=None, gt=1, le=100)
    rps: int | None = Field(default=None, ge=1, le=20_000)
    sources: int | None = Field(default=None, ge=1, le=1_000_000)
    route: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^/")
    ttl_seconds: int | None = Field(default=DEFAULT_TTL_SECONDS, ge=1, le=MAX_TTL_SECONDS)
    # A fault without expiry must be asked for by name: a forgotten one would never roll back.
    no_expiry: bool = False
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _check_kind(self) -> FaultRequest:
        allowed = TARGETS[self.kind]
        if self.target not in allowed:
            raise ValueError(f"target {self.target!r} is not a valid target of {self.kind.value}; "
                             f"choose one of: {', '.join(allowed)}")
        given = {name for name in PARAMETERS if getattr(self, name) is not None}
        missing = [name for name in REQUIRED[self.kind] if name not in given]
        if missing:
            raise ValueError(f"{self.kind.value} needs {', '.join(missing)}")
        extra = sorted(given - set(REQUIRED[self.kind]) - set(OPTIONAL.get(self.kind, ())))
        if extra:
            raise ValueError(f"{self.kind.value} takes no {', '.join(extra)}")
        if self.kind == K.ERROR_RATE and not 0 <= (self.rate or 0) <= 100:
            raise ValueError(f"rate is a percentage of requests: 0-100, got {self.rate}")
        if self.kind == K.EXCEPTION_STORM and not 0 < (self.rate or 0) <= MAX_EXCEPTIONS_PER_SECOND:
            raise ValueError(f"rate is exceptions per second: above 0 and at most {MAX_EXCEPTIONS_PER_SECOND}, "
                             f"got {self.rate}")
        if self.route is not None and self.target not in c.BANKING_SERVICES:
            raise ValueError("route applies to a banking service's routes only")
        if self.no_expiry:
            self.ttl_seconds = None
        elif self.ttl_seconds is None:
            raise ValueError("a fault needs ttl_seconds; ask for no_expiry: true to keep it until cleared")
        if self.kind == K.DDOS_FLOOD and self.sources is None:
            self.sources = DEFAULT_FLOOD_SOURCES
        return self

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PARAMETERS if getattr(self, name) is not None}


@dataclass(frozen=True)
class Fault:
    id: str
    kind: c.FaultKind
    target: str
    params: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    expires_at: float | None = None
    actor: str = ""
    reason: str = ""

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def applies_to_route(self, route: str | None) -> bool:
        wanted = self.params.get("route")
        return wanted is None or (route is not None and route.startswith(wanted))

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind.value} on {self.target}" + (f" ({shown})" if shown else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind.value, "target": self.target, **self.params,
            "created_at": self.created_at, "expires_at": self.expires_at,
            "ttl_seconds": None if self.expires_at is None else round(self.expires_at - self.created_at),
            "actor": self.actor, "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        return cls(
            id=data["id"], kind=c.FaultKind(data["kind"]), target=data["target"],
            params={name: data[name] for name in PARAMETERS if data.get(name) is not None},
            created_at=float(data.get("created_at") or 0.0),
            expires_at=None if data.get("expires_at") is None else float(data["expires_at"]),
            actor=data.get("actor") or "", reason=data.get("reason") or "",
        )


def injected_delay_seconds(fault: Fault, rng: random.Random | None = None) -> float:
    """Latency of a ``latency`` or ``db_slow`` fault: fixed, or Gaussian around it with ``jitter_ms``."""
    base = fault.param("latency_ms", 0) / 1000.0
    jitter = fault.param("jitter_ms", 0) / 1000.0
    if jitter <= 0:
        return base
    return max(0.0, (rng or random).gauss(base, jitter))
