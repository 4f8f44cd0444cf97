"""Which components the lab has, how each is reached and scraped, in both runtimes.

Native and compose differ only in addresses: ``127.0.0.1:<port + offset>`` here,
``<name>:<port>`` on the compose network. Everything generated for either runtime (Prometheus
scrape jobs, the native process list, health checks, docker-compose.yml) reads this table.

The compose stack adds third-party components the native lab replaces or lacks (the Collector
and Jaeger, for which the trace sink stands in natively; Grafana; MySQL, for which SQLite files
stand in). Their images fix their ports (``image_port``); the lab chooses its own (``DEFAULT_PORTS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from obslab import conventions as c

# Who may drive the control plane besides the components (obslab/secrets.py gives each a token).
OPERATOR = "operator"          # a person at the CLI, a drill, a test: drives the control plane
ALERTMANAGER_PRINCIPAL = "alertmanager"  # posts notifications to the alert-receiver

# The ports the lab chooses for its own components (the native lab adds OBSLAB_PORT_OFFSET).
DEFAULT_PORTS: dict[str, int] = {
    c.GATEWAY: 8080,
    c.AUTH: 8081,
    c.ACCOUNTS: 8082,
    c.TRANSACTIONS: 8083,
    c.PAYMENTS: 8084,
    c.FRAUD: 8085,
    c.NOTIFICATIONS: 8086,
    c.TRACE_SINK: 4318,
    c.PROMETHEUS: 9090,
    c.FAULT_INJECTOR: 8094,
    c.IIS_MOCK: 9182,
    c.LOAD_GENERATOR: 8096,
    c.ALERT_RECEIVER: 8095,
    c.ALERTMANAGER: 9093,
    c.DDOS_DETECTOR: 8091,
    c.BASELINER: 8092,
    c.PERFORMANCE_AGGREGATOR: 8093,
}

Runtime = Literal["native", "compose"]
Tier = Literal["banking", "ml", "iis", "telemetry", "monitoring", "control", "traffic", "storage"]


@dataclass(frozen=True)
class Component:
    """``image_port``: the main port of a third-party image (the lab's own: ``DEFAULT_PORTS``).
    ``health_port``: where ``health_path`` is served when not on the main port.
    ``metrics_ports``: (scrape job, port) pairs when /metrics is not on the main port.
    ``entry``: this project's code for it, ``module:callable``: a Flask app factory that
    ``obslab serve`` serves, or, with ``runner``, a callable that runs in the foreground.
    ``image``: the pinned third-party image (repository:tag) compose runs it from; never ``latest``.
    ``database``: it keeps state in a database of its own (SQLite natively; in compose one MySQL
    database and user each, unless native-only); its app factory refuses tables otherwise."""

    name: str
    tier: Tier
    health_path: str
    scraped: bool = True
    native_only: bool = False
    compose_only: bool = False
    image_port: int | None = None
    health_port: int | None = None
    metrics_ports: tuple[tuple[str, int], ...] = ()
    entry: str | None = None
    runner: bool = False
    database: bool = False
    image: str | None = None

    @property
    def image_variable(self) -> str:
        """The .env variable compose reads this component's image from, e.g. ``GRAFANA_IMAGE``."""
        return f"{self.name.upper().replace('-', '_')}_IMAGE"

    @property
    def port(self) -> int:
        return self.image_port if self.image_port is not None else DEFAULT_PORTS[self.name]

    def address(self, runtime: Runtime, host: str = "127.0.0.1", offset: int = 0,
                port: int | None = None) -> str:
        port = self.port if port is None else port
        if runtime == "native":
            return f"{host}:{port + offset}"
        return f"{self.name}:{port}"

    def scrape_jobs(self) -> tuple[tuple[str, int], ...]:
        """(job name, port) of every /metrics endpoint: usually one job named after the component."""
        return self.metrics_ports or ((self.name, self.port),)

    def runs_in(self, runtime: Runtime) -> bool:
        return not (self.native_only and runtime != "native") and not (self.compose_only and runtime != "compose")


SERVICES: tuple[Component, ...] = tuple(
    Component(name, "banking", "/ready", entry=f"obslab.services.{name}.app:create_app", database=True)
    for name in c.BANKING_SERVICES
)
TRACE_SINK = Component(c.TRACE_SINK, "telemetry", "/ready", native_only=True,
                       entry="obslab.lab.trace_sink:create_app", database=True)
PROMETHEUS = Component(c.PROMETHEUS, "monitoring", "/-/ready", image="prom/prometheus:v2.55.1")
FAULT_INJECTOR = Component(c.FAULT_INJECTOR, "control", "/ready",
                           entry="obslab.services.fault_injector.app:create_app", database=True)
IIS_MOCK = Component(c.IIS_MOCK, "iis", "/health", entry="obslab.iis_mock.exporter:create_app")
LOAD_GENERATOR = Component(c.LOAD_GENERATOR, "traffic", "/health", entry="obslab.services.loadgen.runner:serve",
                           runner=True)
ALERT_RECEIVER = Component(c.ALERT_RECEIVER, "monitoring", "/ready",
                           entry="obslab.services.alert_receiver.app:create_app", database=True)
ALERTMANAGER = Component(c.ALERTMANAGER, "monitoring", "/-/ready", image="prom/alertmanager:v0.27.0")
# Alive is enough: without Prometheus they are up but stale (their /ready says why).
DDOS_DETECTOR = Component(c.DDOS_DETECTOR, "ml", "/health", entry="obslab.ml.ddos.service:create_app")
BASELINER = Component(c.BASELINER, "ml", "/health", entry="obslab.ml.baseliner:create_app")
PERFORMANCE_AGGREGATOR = Component(c.PERFORMANCE_AGGREGATOR, "ml", "/health",
                                   entry="obslab.ml.performance.service:create_app")
ML: tuple[Component, ...] = (DDOS_DETECTOR, BASELINER, PERFORMANCE_AGGREGATOR)

# --- compose only ---
# The versions whose configuration keys obslab/generators/collectorconfig.py was written against.
COLLECTOR_VERSION = "0.115.1"        # otel/opentelemetry-collector-contrib
JAEGER_VERSION = "2.1.0"             # jaegertracing/jaeger---------------------------------------------------------------------------
OTEL_COLLECTOR_NAME = "otel-collector"
JAEGER_NAME = "jaeger"
GRAFANA_NAME = "grafana"
MYSQL_NAME = "mysql"
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
COLLECTOR_PROMETHEUS_PORT = 8889    # the prometheus exporter: spanmetrics, servicegraph (OpenMetrics)
COLLECTOR_TELEMETRY_PORT = 8888     # the Collector's own metrics (queue sizes, refused and dropped spans)
COLLECTOR_HEALTH_PORT = 13133       # the health_check extension
JAEGER_OTLP_GRPC_PORT = 4317        # Jaeger v2 receives the Collector's traces over OTLP/gRPC
JAEGER_HEALTH_PORT = 13133          # Jaeger v2's healthcheckv2 extension
# Services send OTLP/HTTP, so that is its main port; both exporter endpoints are scraped.
OTEL_COLLECTOR = Component(OTEL_COLLECTOR_NAME, "telemetry", "/", compose_only=True,
                           image_port=OTLP_HTTP_PORT, health_port=COLLECTOR_HEALTH_PORT,
                           image=f"otel/opentelemetry-collector-contrib:{COLLECTOR_VERSION}",
                           metrics_ports=((OTEL_COLLECTOR_NAME, COLLECTOR_PROMETHEUS_PORT),
                                          (f"{OTEL_COLLECTOR_NAME}-telemetry", COLLECTOR_TELEMETRY_PORT)))
# The query API, not just the UI: it answers once the trace storage does.
JAEGER = Component(JAEGER_NAME, "telemetry", "/api/services", scraped=False, compose_only=True,
                   image_port=16686, image=f"jaegertracing/jaeger:{JAEGER_VERSION}")
GRAFANA = Component(GRAFANA_NAME, "monitoring", "/api/health", scraped=False, compose_only=True,
                    image_port=3000, image="grafana/grafana:11.4.0")
# Not HTTP: compose probes it with mysqladmin.
MYSQL = Component(MYSQL_NAME, "storage", "", scraped=False, compose_only=True, image_port=3306, image="mysql:8.0.40")
COMPOSE_ONLY: tuple[Component, ...] = (OTEL_COLLECTOR, JAEGER, GRAFANA, MYSQL)

# Start order of the native lab: the sink first so no early span is lost, the alert path next
# (receiver, then Alertmanager; Prometheus, started last by the lab, sends to it), the fault
# injector before the services that poll it, the gateway after its peers, then the ML detectors
# (they only read Prometheus), traffic last.
NATIVE_START_ORDER: tuple[Component, ...] = (
    TRACE_SINK,
    ALERT_RECEIVER,
    FAULT_INJECTOR,
    *(s for s in SERVICES if s.name != c.GATEWAY),
    *(s for s in SERVICES if s.name == c.GATEWAY),
    IIS_MOCK,
    *ML,
    LOAD_GENERATOR,
)

ALL: tuple[Component, ...] = (*SERVICES, TRACE_SINK, FAULT_INJECTOR, IIS_MOCK, *ML, LOAD_GENERATOR,
                              ALERT_RECEIVER, ALERTMANAGER, PROMETHEUS, *COMPOSE_ONLY)
_BY_NAME = {comp.name: comp for comp in ALL}


def component(name: str) -> Component:
    return _BY_NAME[name]


# --- links the lab publishes (alert annotations, notifications, Grafana data links) ----------------

# Runbooks are served by the alert-receiver, one page per alert: runbooks/<AlertName>.md.
RUNBOOK_BASE_URL = f"http://localhost:{ALERT_RECEIVER.port}/runbooks"
# Grafana's short dashboard link: /d/<uid> (Grafana adds the slug itself).
DASHBOARD_BASE_URL = f"http://localhost:{GRAFANA.port}/d"
# Jaeger's UI (compose); natively the trace sink answers its query API (/api/traces) instead.
JAEGER_UI_URL = f"http://localhost:{JAEGER.port}"


def runbook_url(alert: str, base: str = RUNBOOK_BASE_URL) -> str:
    """Where the runbook of ``alert`` is served, e.g. ``.../runbooks/IISAppPoolDown.md`` (``base``:
    the alert-receiver's runbook folder; a lab on other ports passes its own)."""
    return f"{base}/{alert}.md"


def dashboard_url(uid: str) -> str:
    """Grafana link to the dashboard with ``uid``."""
    return f"{DASHBOARD_BASE_URL}/{uid}"


# --- who may call what (README.md, "Trust") -------------------------------------------------------

# Anything that is not a component: the public internet at the gateway, a browser, an OTLP exporter.
Access = Literal["open", "customer", "service", "control"]
# Served by every component the same way and open to every scraper and probe.
OPERATIONAL_ROUTES: frozenset[str] = frozenset({"/health", "/ready", "/metrics"})
# Components that follow the fault-injector's faults (they poll it).
FAULT_FOLLOWERS: tuple[str, ...] = (*c.BANKING_SERVICES, c.IIS_MOCK, c.LOAD_GENERATOR)
# May tell the gateway which internet client a request comes from (X-Forwarded-For): the load
# generator simulates the internet's many clients. A configured proxy may too (OBSLAB_TRUSTED_PROXIES).
FORWARDING_CALLERS: tuple[str, ...] = (c.LOAD_GENERATOR,)


@dataclass(frozen=True)
class Endpoint:
    """One route of a component and who may call it.

    ``service``: only the components in ``callers``, each proving itself with its signed service
    token; ``control``: only the control-plane principals in ``callers`` (a bearer token);
    ``customer``: a customer's access token (the gateway's public API); ``open``: anybody."""

    method: str
    rule: str
    access: Access
    callers: tuple[str, ...] = ()


def _service(method: str, rule: str, *callers: str) -> Endpoint:
    return Endpoint(method, rule, "service", callers)


_FAULTS = f"{c.API_PREFIX}/faults"
_CONTROL = (OPERATOR,)

# Every route of every component that is not operational. A route missing here is refused at
# start-up (obslab/platform/app.py): the call graph lives in this table and nowhere else.
ENDPOINTS: dict[str, tuple[Endpoint, ...]] = {
    c.GATEWAY: (
        Endpoint("POST", f"{c.API_PREFIX}/auth/register", "open"),
        Endpoint("POST", f"{c.API_PREFIX}/auth/login", "open"),
        Endpoint("GET", f"{c.API_PREFIX}/accounts", "customer"),
        Endpoint("POST", f"{c.API_PREFIX}/accounts", "customer"),
        Endpoint("GET", f"{c.API_PREFIX}/accounts/<account_id>", "customer"),
        Endpoint("POST", f"{c.API_PREFIX}/transfers", "customer"),
        Endpoint("GET", f"{c.API_PREFIX}/transfers", "customer"),
        Endpoint("GET", f"{c.API_PREFIX}/transfers/<transfer_id>", "customer"),
        Endpoint("POST", f"{c.API_PREFIX}/payments", "customer"),
        Endpoint("GET", f"{c.API_PREFIX}/payments/<payment_id>", "customer"),
    ),
    c.AUTH: (
        _service("POST", "/users", c.GATEWAY),
        _service("POST", "/tokens", c.GATEWAY),
    ),
    c.ACCOUNTS: (
        _service("GET", "/accounts", c.GATEWAY),
        _service("POST", "/accounts", c.GATEWAY),
        _service("GET", "/accounts/<account_id>", c.GATEWAY, c.TRANSACTIONS),
        # Which kinds of movement each caller may ask for is the ledger's rule (accounts/app.py).
        _service("POST", "/movements", c.TRANSACTIONS, c.PAYMENTS),
        _service("POST", "/deposits", c.LOAD_GENERATOR, OPERATOR),
        _service("GET", "/ledger/invariants", OPERATOR),
    ),
    c.TRANSACTIONS: (
        _service("POST", "/transfers", c.GATEWAY),
        _service("GET", "/transfers", c.GATEWAY),
        _service("GET", "/transfers/<transfer_id>", c.GATEWAY),
    ),
    c.PAYMENTS: (
        _service("POST", "/payments", c.GATEWAY),
        _service("GET", "/payments/<payment_id>", c.GATEWAY),
    ),
    c.FRAUD: (
        _service("POST", "/assessments", c.TRANSACTIONS, c.PAYMENTS),
    ),
    c.NOTIFICATIONS: (
        _service("POST", "/notifications", c.TRANSACTIONS, c.PAYMENTS),
        _service("GET", "/notifications", OPERATOR),
    ),
    c.FAULT_INJECTOR: (
        Endpoint("POST", _FAULTS, "control", _CONTROL),
        Endpoint("GET", _FAULTS, "control", _CONTROL),
        Endpoint("DELETE", _FAULTS, "control", _CONTROL),
        Endpoint("GET", f"{_FAULTS}/audit", "control", _CONTROL),
        Endpoint("GET", f"{_FAULTS}/<fault_id>", "control", _CONTROL),
        Endpoint("DELETE", f"{_FAULTS}/<fault_id>", "control", _CONTROL),
        _service("GET", "/internal/faults", *FAULT_FOLLOWERS),
    ),
    c.ALERT_RECEIVER: (
        Endpoint("POST", "/webhook/<receiver>", "control", (ALERTMANAGER_PRINCIPAL, OPERATOR)),
        # Read-only pages a person opens (notifications, runbooks).
        Endpoint("GET", "/", "open"),
        Endpoint("GET", f"{c.API_PREFIX}/notifications", "open"),
        Endpoint("GET", "/runbooks/", "open"),
        Endpoint("GET", "/runbooks/<path:page>", "open"),
        # Drills (obslab drill run) post reports and start/end events as the operator; people read them.
        Endpoint("POST", f"{c.API_PREFIX}/drills", "control", _CONTROL),
        Endpoint("POST", f"{c.API_PREFIX}/drills/events", "control", _CONTROL),
        Endpoint("GET", f"{c.API_PREFIX}/drills", "open"),
        Endpoint("GET", f"{c.API_PREFIX}/drills/<run_id>", "open"),
        Endpoint("GET", "/drills", "open"),
        Endpoint("GET", "/drills/<run_id>", "open"),
    ),
    # Native only, on loopback: OTLP in (as the Collector's receiver is), Jaeger's query API out.
    c.TRACE_SINK: (
        Endpoint("POST", "/v1/traces", "open"),
        Endpoint("POST", "/v1/metrics", "open"),
        Endpoint("GET", "/api/services", "open"),
        Endpoint("GET", "/api/services/<service>/operations", "open"),
        Endpoint("GET", "/api/traces", "open"),
        Endpoint("GET", "/api/traces/<trace_id>", "open"),
    ),
    c.DDOS_DETECTOR: (Endpoint("GET", f"{c.API_PREFIX}/status", "open"),),
    c.BASELINER: (Endpoint("GET", f"{c.API_PREFIX}/status", "open"),),
    c.PERFORMANCE_AGGREGATOR: (Endpoint("GET", f"{c.API_PREFIX}/status", "open"),
                               Endpoint("GET", f"{c.API_PREFIX}/kpis", "open")),
    c.IIS_MOCK: (),
}


def endpoints(component_name: str) -> dict[tuple[str, str], Endpoint]:
    """(method, Flask rule) -> endpoint of ``component_name``."""
    return {(e.method, e.rule): e for e in ENDPOINTS.get(component_name, ())}


# Calls that are not to an internal endpoint: the load generator uses the public API like any
# client, the ML services read Prometheus.
OTHER_CALLS: dict[str, tuple[str, ...]] = {
    c.LOAD_GENERATOR: (c.GATEWAY,),
    c.DDOS_DETECTOR: (c.PROMETHEUS,),
    c.BASELINER: (c.PROMETHEUS,),
    c.PERFORMANCE_AGGREGATOR: (c.PROMETHEUS,),
}


def callees(caller: str) -> tuple[str, ...]:
    """The components whose internal endpoints ``caller`` may call, in table order."""
    found = [name for name, table in ENDPOINTS.items()
             if any(e.access == "service" and caller in e.callers for e in table)]
    return tuple(found)


def service_peers(caller: str) -> tuple[str, ...]:
    """The services a service calls per request (its ServiceClients): the fault poll aside."""
    return tuple(name for name in callees(caller) if name != c.FAULT_INJECTOR)


def calls(caller: str) -> tuple[str, ...]:
    """Everything ``caller`` reaches over the network: compose wires these addresses and start order."""
    return (*OTHER_CALLS.get(caller, ()), *callees(caller))


def scraped_components(runtime: Runtime) -> list[Component]:
    return [comp for comp in ALL if comp.scraped and comp.runs_in(runtime)]
