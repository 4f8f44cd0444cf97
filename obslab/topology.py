"""Which components the lab has, how each is reached and scraped, in both runtimes.

Native and compose differ only in addresses: ``127.0.0.1:<port + offset>`` here,
``<name>:<port>`` on the compose network. Everything generated for either runtime (Prometheus
scrape jobs, the native process list, health checks) reads this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from obslab import conventions as c

Runtime = Literal["native", "compose"]
Tier = Literal["banking", "ml", "iis", "telemetry", "monitoring", "control", "traffic"]


@dataclass(frozen=True)
class Component:
    name: str
    tier: Tier
    health_path: str
    scraped: bool = True
    native_only: bool = False

    @property
    def port(self) -> int:
        return c.DEFAULT_PORTS[self.name]

    def address(self, runtime: Runtime, host: str = "127.0.0.1", offset: int = 0) -> str:
        if runtime == "native":
            return f"{host}:{self.port + offset}"
        return f"{self.name}:{self.port}"


SERVICES: tuple[Component, ...] = tuple(
    Component(name, "banking", "/ready") for name in c.BANKING_SERVICES
)
TRACE_SINK = Component(c.TRACE_SINK, "telemetry", "/ready", native_only=True)
PROMETHEUS = Component(c.PROMETHEUS, "monitoring", "/-/ready")
FAULT_INJECTOR = Component(c.FAULT_INJECTOR, "control", "/ready")
IIS_MOCK = Component(c.IIS_MOCK, "iis", "/health")
LOAD_GENERATOR = Component(c.LOAD_GENERATOR, "traffic", "/health")
ALERT_RECEIVER = Component(c.ALERT_RECEIVER, "monitoring", "/ready")
ALERTMANAGER = Component(c.ALERTMANAGER, "monitoring", "/-/ready")

# Start order of the native lab: the sink first so no early span is lost, the alert path next
# (receiver, then Alertmanager; Prometheus, started last by the lab, sends to it), the fault
# injector before the services that poll it, the gateway after its peers, traffic last.
NATIVE_START_ORDER: tuple[Component, ...] = (
    TRACE_SINK,
    ALERT_RECEIVER,
    FAULT_INJECTOR,
    *(s for s in SERVICES if s.name != c.GATEWAY),
    *(s for s in SERVICES if s.name == c.GATEWAY),
    IIS_MOCK,
    LOAD_GENERATOR,
)

ALL: tuple[Component, ...] = (*SERVICES, TRACE_SINK, FAULT_INJECTOR, IIS_MOCK, LOAD_GENERATOR, ALERT_RECEIVER,
                              ALERTMANAGER, PROMETHEUS)
_BY_NAME = {comp.name: comp for comp in ALL}


def component(name: str) -> Component:
    return _BY_NAME[name]


def scraped_components(runtime: Runtime) -> list[Component]:
    return [comp for comp in ALL if comp.scraped and not (comp.native_only and runtime != "native")]
