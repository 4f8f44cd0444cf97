"""Sampled stacks (py-spy's ``raw`` format) turned into a per-layer breakdown and a flame graph.

A layer is the part of the stack a sample is spent in: the WSGI server, Flask, JSON, the database,
the HTTP client, OpenTelemetry (spans in the request path, export off it), redaction, metrics,
logging, crypto, or the application's own code. A sample belongs to one layer only, so the
layers of a service add up to its CPU:

1. Whole-stack rules first, for work that runs *inside* other layers but is a cost of its own:
   redaction, span export (the batch processor's thread: its encoding and HTTP are telemetry, not
   the request's), logging and metrics. The innermost such frame decides: the exporter that the
   redacting wrapper calls is export, the redaction the log formatter calls is redaction.
2. Otherwise the innermost frame that belongs to a known layer decides, walking from the leaf
   outwards: ``socket.send`` under ``http.client`` is the HTTP client, a lock taken by
   OpenTelemetry is OpenTelemetry, the application's code under Flask is the application.

The flame graph is a self-contained SVG (no script): one tower per service, each frame coloured by
its layer, its width the share of samples, its tooltip the samples and milliseconds per request.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field

# Layers, in the order the breakdown prints them.
WSGI = "WSGI server (waitress)"
FLASK = "Flask / Werkzeug"
JSON = "JSON"
DATABASE = "database (SQLAlchemy, sqlite3, PyMySQL)"
HTTP_CLIENT = "HTTP client (requests, urllib3)"
OTEL_SPANS = "OpenTelemetry spans (request path)"
OTEL_EXPORT = "OpenTelemetry export (batch thread)"
REDACTION = "redaction"
METRICS = "metrics (prometheus-client)"
LOGGING = "logging"
CRYPTO = "crypto (JWT, HMAC, Argon2)"
APPLICATION = "application code"
OTHER = "other (stdlib, interpreter)"
LAYERS = (WSGI, FLASK, JSON, DATABASE, HTTP_CLIENT, OTEL_SPANS, OTEL_EXPORT, REDACTION, METRICS,
          LOGGING, CRYPTO, APPLICATION, OTHER)

# Rule 1: anywhere in the stack, first match wins (order matters: redaction runs inside export).
_WHOLE_STACK: tuple[tuple[str, re.Pattern[str]], ...] = (
    (REDACTION, re.compile(r"obslab/telemetry/redaction\.py|telemetry/redaction\.py")),
    (OTEL_EXPORT, re.compile(r"opentelemetry/sdk/trace/export/|opentelemetry/exporter/|"
                             r"obslab/telemetry/pipeline\.py|lab/trace_sink")),
    (LOGGING, re.compile(r"(^|/)logging/|obslab/telemetry/logs\.py")),
    (METRICS, re.compile(r"prometheus_client/|obslab/telemetry/metrics\.py")),
)
# Rule 2: from the leaf outwards, the first frame that matches.
_BY_FRAME: tuple[tuple[str, re.Pattern[str]], ...] = (
    # First: an instrumentation's wrapper of requests or Flask, and the lab's own span code, are
    # OpenTelemetry's cost, not the library's they wrap.
    (OTEL_SPANS, re.compile(r"opentelemetry/|obslab/telemetry/(?:tracing|dbspans)\.py")),
    (JSON, re.compile(r"(^|/)json/|flask/json/|simplejson/|orjson")),
    (DATABASE, re.compile(r"sqlalchemy/|(^|/)sqlite3/|pymysql/|obslab/platform/db\.py")),
    (HTTP_CLIENT, re.compile(r"(^|/)requests/|urllib3/|(^|/)http/client\.py|obslab/platform/http\.py")),
    (CRYPTO, re.compile(r"(^|/)jwt/|(^|/)hmac\.py|(^|/)hashlib\.py|argon2/|cryptography/|"
                        r"obslab/platform/identity\.py|services/auth/hashing\.py")),
    (WSGI, re.compile(r"waitress/")),
    (FLASK, re.compile(r"flask/|werkzeug/|(^|/)jinja2/|(^|/)click/")),
    (APPLICATION, re.compile(r"services/|obslab/|(^|/)ml/|iis-mock/")),
)
# Leaves where a thread waits rather than computes: a condition or lock, the server's poll, a
# socket read waiting for the peer, a sleep. On a machine whose cores are all busy, py-spy sees
# threads that have been woken but not yet scheduled as active, still at these frames; they are
# demand for CPU, not use of it, and are left out (see Profile.add).
IDLE_LEAVES = frozenset({
    ("wait", "threading.py"), ("Condition.wait", "threading.py"), ("Event.wait", "threading.py"),
    ("_wait_for_tstate_lock", "threading.py"), ("Thread._wait_for_tstate_lock", "threading.py"),
    ("poll", "waitress/wasyncore.py"), ("poll2", "waitress/wasyncore.py"),
    ("readinto", "socket.py"), ("SocketIO.readinto", "socket.py"), ("accept", "socket.py"),
    ("socket.accept", "socket.py"), ("do_poll", "urllib3/util/wait.py"),
    ("poll_wait_for_socket.<locals>.do_poll", "urllib3/util/wait.py"),
    ("select", "selectors.py"), ("EpollSelector.select", "selectors.py"), ("PollSelector.select", "selectors.py"),
    ("acquire", "logging/__init__.py"), ("Handler.acquire", "logging/__init__.py"),
})
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str

    @property
    def label(self) -> str:
        return f"{self.function} ({short_path(self.file)})" if self.file else self.function


_SHORT = re.compile(r"^.*/(?:site-packages|dist-packages|lib/python3\.\d+)/|^.*/(?=(?:obslab|services|ml|iis-mock)/)")


def short_path(path: str) -> str:
    """``/x/.venv/lib/python3.11/site-packages/flask/app.py`` -> ``flask/app.py``; the repository's
    own files from their top folder (``services/accounts/app.py``)."""
    return _SHORT.sub("", path)


def parse_frame(text: str) -> Frame:
    """``dumps (json/__init__.py:231)`` -> Frame("dumps", "json/__init__.py"); lines are dropped so
    that one function is one box of the flame graph."""
    match = _FRAME.match(text.strip())
    if not match:
        return Frame(text.strip(), "")
    return Frame(match["function"], match["file"])


def is_idle(stack: tuple[Frame, ...]) -> bool:
    return bool(stack) and (stack[-1].function, short_path(stack[-1].file)) in IDLE_LEAVES


def parse_raw(text: str) -> Counter[tuple[Frame, ...]]:
    """py-spy ``--format raw`` output (``frame;frame;... count``, outermost first) as stacks.

    A leading ``process ...`` or ``thread ...`` element (``--threads``, ``--subprocesses``) is
    dropped: threads of one service are one service here.
    """
    stacks: Counter[tuple[Frame, ...]] = Counter()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            raise ValueError(f"not a line of py-spy's raw format: {line[:120]!r}")
        parts = [p for p in body.split(";") if p]
        while parts and (parts[0].startswith("thread (") or parts[0].startswith("process ")):
            parts.pop(0)
        stacks[tuple(parse_frame(p) for p in parts)] += int(count)
    return stacks


def layer_of(stack: tuple[Frame, ...]) -> str:
    files = [short_path(frame.file) for frame in stack]
    # The innermost whole-stack frame: the exporter's encoding under the redacting wrapper is export.
    for file in reversed(files):
        for layer, pattern in _WHOLE_STACK:
            if pattern.search(file):
                return layer
    for file in reversed(files):
        for layer, pattern in _BY_FRAME:
            if pattern.search(file):
                return layer
    return OTHER


@dataclass
class Profile:
    """Samples per service, and what they mean in CPU milliseconds per request.

    ``cpu_seconds`` (by service, from the kernel) turns a service's sample *shares* into CPU time:
    py-spy counts a runnable thread waiting for a core as active, so on a busy machine raw sample
    counts overstate CPU several times over, while the shares between layers hold. Without it,
    samples count as ``1 / rate_hz`` seconds each.
    """
    rate_hz: int
    stacks: dict[str, Counter[tuple[Frame, ...]]] = field(default_factory=dict)
    idle: Counter[str] = field(default_factory=Counter)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def add(self, service: str, raw_text: str) -> None:
        """Add py-spy's raw output for ``service``; samples at an idle leaf only count in ``idle``."""
        busy = self.stacks.setdefault(service, Counter())
        for stack, count in parse_raw(raw_text).items():
            if is_idle(stack):
                self.idle[service] += count
            else:
                busy[stack] += count

    def samples(self, service: str) -> int:
        return sum(self.stacks.get(service, Counter()).values())

    def seconds_per_sample(self, service: str) -> float:
        if service in self.cpu_seconds and self.samples(service):
            return self.cpu_seconds[service] / self.samples(service)
        return 1.0 / self.rate_hz

    def layers(self, service: str) -> Counter[str]:
        found: Counter[str] = Counter()
        for stack, count in self.stacks.get(service, Counter()).items():
            found[layer_of(stack)] += count
        return found

    def ms(self, service: str, samples: float, requests: int) -> float:
        return 1000.0 * samples * self.seconds_per_sample(service) / max(1, requests)

    def breakdown(self, requests: int) -> dict[str, dict[str, float]]:
        """{service: {layer: CPU ms per request}} with a "total" per service and an "all" service."""
        table: dict[str, dict[str, float]] = {}
        every: Counter[str] = Counter()
        for service in sorted(self.stacks, key=lambda s: self.ms(s, self.samples(s), 1), reverse=True):
            layers = self.layers(service)
            ms = {layer: self.ms(service, layers[layer], requests) for layer in LAYERS if layers[layer]}
            every.update(ms)
            table[service] = {layer: round(value, 3) for layer, value in ms.items()}
            table[service]["total"] = round(sum(ms.values()), 3)
        table["all"] = {layer: round(every[layer], 3) for layer in LAYERS if every[layer]}
        table["all"]["total"] = round(sum(every.values()), 3)
        return table


def breakdown_markdown(table: dict[str, dict[str, float]]) -> str:
    """Layers as rows, services as columns, CPU ms per request; the share of the whole in the last column."""
    services = [s for s in table if s != "all"]
    whole = table["all"]["total"] or 1.0
    head = "| layer | " + " | ".join(services) + " | all | share |"
    rows = [head, "|---|" + "---:|" * (len(services) + 2)]
    for layer in (*LAYERS, "total"):
        if layer not in table["all"]:
            continue
        cells = [f"{table[s].get(layer, 0.0):.2f}" for s in services]
        share = 100.0 * table["all"][layer] / whole
        name = f"**{layer}**" if layer == "total" else layer
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {table['all'][layer]:.2f} | {share:.0f} % |")
    return "\n".join(rows)


# --- flame graph ---------------------------------------------------------------------------------

_COLOURS = {
    WSGI: "#9ecae1", FLASK: "#6baed6", JSON: "#fdd49e", DATABASE: "#a1d99b", HTTP_CLIENT: "#c7e9c0",
    OTEL_SPANS: "#fc9272", OTEL_EXPORT: "#ef3b2c", REDACTION: "#cb181d", METRICS: "#fdae6b",
    LOGGING: "#e6550d", CRYPTO: "#bcbddc", APPLICATION: "#fee391", OTHER: "#d9d9d9",
}
_ROW = 17
_FONT = 11


@dataclass
class _Node:
    seconds: float = 0.0       # CPU seconds under this frame
    samples: int = 0
    layer: str = OTHER
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(profile: Profile) -> _Node:
    root = _Node()
    for service, stacks in profile.stacks.items():
        top = root.children.setdefault(service, _Node(layer=APPLICATION))
        each = profile.seconds_per_sample(service)
        for stack, count in stacks.items():
            for node in (root, top):
                node.seconds += count * each
                node.samples += count
            node = top
            for depth in range(len(stack)):
                node = node.children.setdefault(stack[depth].label, _Node())
                node.seconds += count * each
                node.samples += count
                # A box is coloured by the layer of the stack up to it (its own and its callers').
                node.layer = layer_of(stack[:depth + 1])
    return root


def flame_svg(profile: Profile, requests: int, title: str, width: int = 1600) -> str:
    """A flame graph of every service side by side, frames coloured by layer, as SVG text; a
    frame's width is its share of the CPU time of all services."""
    root = _tree(profile)
    total = root.seconds or 1.0
    boxes: list[str] = []
    depth_max = 0

    def draw(name: str, node: _Node, x: float, depth: int) -> None:
        nonlocal depth_max
        box_width = width * node.seconds / total
        if box_width < 0.3:
            return
        depth_max = max(depth_max, depth)
        ms = 1000.0 * node.seconds / max(1, requests)
        tip = html.escape(f"{name}\n{node.samples} samples, {100.0 * node.seconds / total:.1f} % of the CPU, "
                          f"{ms:.3f} ms per request; {node.layer}")
        label = html.escape(name[: max(0, int(box_width / (_FONT * 0.6)) - 1)]) if box_width > 3 * _FONT else ""
        boxes.append(f'<g><title>{tip}</title><rect x="{x:.1f}" y="{{Y{depth}}}" width="{box_width:.1f}" '
                     f'height="{_ROW - 1}" fill="{_COLOURS.get(node.layer, _COLOURS[OTHER])}" rx="2"/>'
                     + (f'<text x="{x + 3:.1f}" y="{{T{depth}}}">{label}</text>' if label else "") + "</g>")
        child_x = x
        for child_name, child in sorted(node.children.items(), key=lambda item: -item[1].seconds):
            draw(child_name, child, child_x, depth + 1)
            child_x += width * child.seconds / total

    x = 0.0
    for service, node in sorted(root.children.items(), key=lambda item: -item[1].seconds):
        draw(service, node, x, 0)
        x += width * node.seconds / total
    legend, lx, ly = [], 0.0, 40
    for layer in LAYERS:                   # the colour key, wrapped to the picture's width
        item_width = 16 + len(layer) * _FONT * 0.6 + 14
        if lx and lx + item_width > width:
            lx, ly = 0.0, ly + _ROW
        legend.append(f'<rect x="{lx:.0f}" y="{ly}" width="12" height="12" fill="{_COLOURS[layer]}"/>'
                      f'<text x="{lx + 16:.0f}" y="{ly + 10}">{html.escape(layer)}</text>')
        lx += item_width
    height = ly + 2 * _ROW + (depth_max + 1) * _ROW + 10
    svg = "\n".join(boxes)
    for depth in range(depth_max + 1):    # towers grow upwards from the bottom, as flame graphs do
        y = height - 10 - (depth + 1) * _ROW
        svg = svg.replace(f"{{Y{depth}}}", f"{y}").replace(f"{{T{depth}}}", f"{y + _ROW - 5}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="monospace" font-size="{_FONT}">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n'
            f'<text x="0" y="18" font-size="15">{html.escape(title)}</text>\n'
            + "\n".join(legend) + "\n" + svg + "\n</svg>\n")


def top_frames(profile: Profile, requests: int, limit: int = 15) -> list[tuple[str, str, float]]:
    """The functions that cost the most by self time (the leaf of a sample), across services:
    (function, layer, CPU ms per request)."""
    self_ms: Counter[tuple[str, str]] = Counter()
    for service, stacks in profile.stacks.items():
        for stack, count in stacks.items():
            if stack:
                self_ms[(stack[-1].label, layer_of(stack))] += profile.ms(service, count, requests)
    return [(label, layer, round(ms, 3)) for (label, layer), ms in self_ms.most_common(limit)]
