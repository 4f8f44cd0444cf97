"""The Collector and Jaeger configurations of the compose runtime, checked without running them.

No Collector or Jaeger binary runs here, so the committed YAML is read the way they read it: every
component named in a pipeline must be defined and every defined one used, the redaction
statements are executed (OTTL unquoting, the Collector's ``$$`` escape and Go's ``$1`` templates
emulated) against the same samples the services' own redactor handles, and the regexes are
compiled by RE2, the engine the Collector uses.
"""

from __future__ import annotations

import copy
import hashlib
import random
import re
import string

import pytest
import yaml

from obslab import conventions as c
from obslab import settings, topology
from obslab.generators import collectorconfig as cc
from obslab.telemetry.redaction import redact_text
from obslab.topology import PROMETHEUS

ROOT = settings.repo_root()
COLLECTOR_FILE = "otel-collector/config.yaml"
JAEGER_FILE = "jaeger/config.yaml"
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")


@pytest.fixture(scope="module")
def collector() -> dict:
    return yaml.safe_load((ROOT / COLLECTOR_FILE).read_text())


@pytest.fixture(scope="module")
def jaeger() -> dict:
    return yaml.safe_load((ROOT / JAEGER_FILE).read_text())


def test_committed_configurations_are_what_the_generator_writes():
    for relative, produce in cc.generated_files().items():
        text = (ROOT / relative).read_text()
        assert text == produce(), f"{relative} is stale: run `obslab generate`"
        assert "`obslab generate`" in text.splitlines()[0]


def test_the_rendered_yaml_reads_back_as_the_generator_built_it():
    # Folded OTTL statements and indented sequences are the renderer's doing: nothing may change.
    assert yaml.safe_load(cc.render_collector()) == cc.collector_config()
    assert yaml.safe_load(cc.render_jaeger()) == cc.jaeger_config()


def test_both_files_pass_yamllint_with_its_default_rules():
    yamllint_config = pytest.importorskip("yamllint.config")
    linter = pytest.importorskip("yamllint.linter")
    config = yamllint_config.YamlLintConfig("extends: default")
    for relative in (COLLECTOR_FILE, JAEGER_FILE):
        problems = list(linter.run((ROOT / relative).read_text(), config))
        assert problems == [], f"{relative}: {problems}"


# --- wiring ---------------------------------------------------------------------------------

def _signal(pipeline: str) -> str:
    return pipeline.split("/")[0]


def wiring_problems(config: dict) -> list[str]:
    """What a Collector would refuse at start-up, or silently never run."""
    defined = {section: set(config.get(section) or {}) for section in SECTIONS}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    connector_ends: dict[str, dict[str, set[str]]] = {
        name: {"exporter": set(), "receiver": set()} for name in defined["connectors"]}
    problems = []
    for pipeline, spec in config["service"]["pipelines"].items():
        if _signal(pipeline) not in ("traces", "metrics", "logs"):
            problems.append(f"pipeline {pipeline}: no signal type in its name")
        for role, section in (("receiver", "receivers"), ("processor", "processors"),
                              ("exporter", "exporters")):
            for name in spec.get(section, []):
                if role != "processor" and name in defined["connectors"]:
                    used["connectors"].add(name)
                    connector_ends[name][role].add(_signal(pipeline))
                elif name in defined[section]:
                    used[section].add(name)
                else:
                    problems.append(f"pipeline {pipeline}: {role} {name} is not defined")
        if not spec.get("receivers") or not spec.get("exporters"):
            problems.append(f"pipeline {pipeline}: needs receivers and exporters")
    for name in config["service"].get("extensions", []):
        if name in defined["extensions"]:
            used["extensions"].add(name)
        else:
            problems.append(f"extension {name} is not defined")
    for section in SECTIONS:
        problems += [f"{section}: {name} is defined but never used"
                     for name in sorted(defined[section] - used[section])]
    for name, ends in connector_ends.items():
        if name in used["connectors"] and not (ends["exporter"] and ends["receiver"]):
            problems.append(f"connector {name} must end one pipeline and start another")
    return problems


def test_every_component_the_collector_pipelines_name_is_defined_and_every_defined_one_used(collector):
    assert wiring_problems(collector) == []


def test_the_wiring_check_notices_a_missing_an_unused_and_a_dangling_component(collector):
    broken = copy.deepcopy(collector)
    del broken["processors"]["tail_sampling"]
    broken["exporters"]["otlp/unused"] = {"endpoint": "x:4317"}
    broken["service"]["pipelines"]["metrics/spans"]["receivers"].remove("servicegraph")
    problems = wiring_problems(broken)
    assert "pipeline traces/sampled: processor tail_sampling is not defined" in problems
    assert "exporters: otlp/unused is defined but never used" in problems
    assert "connector servicegraph must end one pipeline and start another" in problems


def test_connectors_turn_traces_into_metrics_and_forward_traces_to_traces(collector):
    ends: dict[str, set[tuple[str, str]]] = {}
    for pipeline, spec in collector["service"]["pipelines"].items():
        for role in ("receivers", "exporters"):
            for name in spec[role]:
                if name in collector["connectors"]:
                    ends.setdefault(name, set()).add((role, _signal(pipeline)))
    assert ends["spanmetrics"] == ends["servicegraph"] == {("exporters", "traces"), ("receivers", "metrics")}
    assert ends["forward/sampled"] == {("exporters", "traces"), ("receivers", "traces")}


def test_memory_limiter_comes_first_and_batch_last_in_every_pipeline(collector):
    for pipeline, spec in collector["service"]["pipelines"].items():
        processors = spec.get("processors", [])
        if processors:
            assert processors[0] == "memory_limiter" and processors[-1] == "batch", pipeline


def _upstream_processors(config: dict) -> dict[str, set[str]]:
    """Pipeline -> every processor data passes before leaving it (its own and those upstream)."""
    pipelines = config["service"]["pipelines"]
    connectors = set(config.get("connectors") or {})
    seen = {name: set(spec.get("processors", [])) for name, spec in pipelines.items()}
    changed = True
    while changed:
        changed = False
        for name, spec in pipelines.items():
            for upstream, upstream_spec in pipelines.items():
                if set(upstream_spec["exporters"]) & set(spec["receivers"]) & connectors:
                    if not seen[upstream] <= seen[name]:
                        seen[name] |= seen[upstream]
                        changed = True
    return seen


def test_span_metrics_count_every_span_and_jaeger_gets_redacted_tail_sampled_traces(collector):
    pipelines = collector["service"]["pipelines"]
    upstream = _upstream_processors(collector)
    for name, spec in pipelines.items():
        if {"spanmetrics", "servicegraph"} & set(spec["exporters"]):
            assert "tail_sampling" not in upstream[name], f"{name} feeds span metrics after sampling"
            assert "transform/redact" in upstream[name]
        if cc.JAEGER_EXPORTER in spec["exporters"]:
            assert {"tail_sampling", "transform/redact", "attributes/pseudonymise"} <= upstream[name]
    ingest = next(spec for spec in pipelines.values() if "otlp" in spec["receivers"])
    processors = ingest["processors"]
    # User attributes are hashed before the patterns run, so each is hashed exactly once.
    assert processors.index("attributes/pseudonymise") < processors.index("transform/redact")


# --- redaction: the statements, executed -------------------------------------------------------

_LITERAL = r'"(?:\\.|[^"\\])*"'
_ARGUMENT = re.compile(rf"\s*({_LITERAL}|[^,]+?)\s*(?:,|$)")


def _unquote(literal: str) -> str:
    assert literal[0] == literal[-1] == '"', literal
    body = literal[1:-1]
    assert not re.search(r'\\[^\\"]', body.replace("\\\\", "")), f"escape OTTL would read otherwise: {body}"
    return re.sub(r'\\(["\\])', r"\1", body)


def parse_statement(statement: str) -> tuple[str, list[str]]:
    """``f(a, "b")`` as the Collector sees it: ``$$`` unescaped by the config loader first."""
    # A lone $ is the loader's: ${env:X} is expanded, anything else is not what OTTL gets.
    assert "$" not in statement.replace("$$", ""), f"write $ as $$ in the configuration: {statement}"
    statement = statement.replace("$$", "$")
    match = re.fullmatch(r"(\w+)\((.*)\)", statement, re.S)
    assert match, statement
    arguments = [argument for argument in _ARGUMENT.findall(match.group(2))]
    return match.group(1), [_unquote(a) if a.startswith('"') else a for a in arguments]


def go_expand(template: str, match: re.Match) -> str:
    """Go's ``regexp.Expand``: ``$name`` takes the longest run of word characters."""
    def group(found: re.Match) -> str:
        name = found.group(1) or found.group(2)
        if name.isdigit():
            index = int(name)
            return (match.group(index) or "") if index <= (match.re.groups or 0) else ""
        return match.groupdict().get(name) or ""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", group, template.replace("$$", "\0")).replace("\0", "$")


def apply_statement(statement: str, value: str) -> str:
    """The effect of one replace_pattern / replace_all_patterns statement on a string value."""
    function, args = parse_statement(statement)
    if function == "replace_all_patterns":
        assert args[1] == "value", "only attribute values are rewritten"
        args = [args[0], *args[2:]]
    _target, pattern, replacement, *hashing = args
    regex = re.compile(pattern)
    if not hashing:
        return regex.sub(lambda m: go_expand(replacement, m), value)
    function_name, format_string = hashing
    assert function_name == "SHA256"
    updated = value
    for m in regex.finditer(value):
        digest = hashlib.sha256(go_expand(replacement, m).encode()).hexdigest()
        updated = updated.replace(m.group(0), format_string.replace("%s", digest))
    return updated


def _statements(collector: dict) -> dict[str, list[str]]:
    blocks = collector["processors"]["transform/redact"]["trace_statements"]
    return {block["context"]: block["statements"] for block in blocks}


def collector_redact(collector: dict, value: str, target: str = "attributes") -> str:
    for statement in _statements(collector)["span"]:
        if parse_statement(statement)[1][0] == target:
            value = apply_statement(statement, value)
    return value


_RANDOM = random.Random(6)
_ID_ALPHABET = string.ascii_lowercase + string.digits


def _account() -> str:
    return c.ACCOUNT_ID_PREFIX + "".join(_RANDOM.choices(_ID_ALPHABET, k=16))


def _customer() -> str:
    return c.CUSTOMER_ID_PREFIX + "".join(_RANDOM.choices(_ID_ALPHABET, k=16))


def _opaque_token() -> str:
    return "".join(_RANDOM.choices(string.ascii_letters + string.digits + "-_", k=43))


def _argon2_hash() -> str:
    def b64(length: int) -> str:
        return "".join(_RANDOM.choices(string.ascii_letters + string.digits + "+/", k=length))
    return f"$argon2id$v=19$m=65536,t=3,p=4${b64(22)}${b64(43)}"


def _jwt() -> str:
    segment = string.ascii_letters + string.digits + "-_"
    return "eyJ" + ".".join("".join(_RANDOM.choices(segment, k=n)) for n in (20, 40, 43))


def _pan(length: int) -> str:
    return str(_RANDOM.randint(1, 9)) + "".join(_RANDOM.choices(string.digits, k=length - 1))


SAMPLES = [
    *(f"http://accounts:8082/accounts/{_account()}" for _ in range(5)),
    f"GET /api/v1/transfers?account={_account()}&limit=10",
    f"insufficient funds in {_account()} for a transfer to {_account()}",
    *(f"Authorization: Bearer {_jwt()}" for _ in range(3)),
    f"refresh failed for {_jwt()}",
    "https://gateway/api/v1/auth/login?password=hunter2&user=alice",
    "POST /reset?TOKEN=abc123 then access_token=xyz&secret=s3cr3t",
    *(f"card {_pan(n)} charged" for n in range(13, 20)),
    f"declined: card={_pan(16)}; account {_account()}",
    *(f"GET /api/v1/accounts?owner={_customer()}&limit=10" for _ in range(3)),
    f"accounts is slow; retrying for owner={_customer()} ({_account()})",
    f"Authorization: Bearer {_opaque_token()}",
    '{"username": "alice", "password": "hunter2"}',
    "{'new_password': 'correct \\'horse\\'', 'username': 'alice'}",
    f'{{"access_token": "{_jwt()}", "token_type": "Bearer", "expires_in": 900}}',
    f"UNIQUE constraint failed: users.username [parameters: ('{_customer()}', 'alice', "
    f"'{_argon2_hash()}', 1700000000000)]",
    f"stored hash {_argon2_hash()} rejected",
    "POST /api/v1/transfers 201 in 12 ms",
    "order 123456789012 (12 digits is no card)",
    "missing bearer token",
    "customer cus_short has no accounts",
    '{"password_changed": true, "tokens": 3}',
    "trace 4bf92f3577b34da6a3ce929d0e0e4736",
]


@pytest.mark.parametrize("sample", SAMPLES)
def test_the_collector_redacts_what_the_services_redact_and_nothing_else(collector, sample):
    # The services write one star per hidden card digit, the Collector four: compare the rest.
    def stars(text: str) -> str:
        return re.sub(r"\*+", "*", text)
    assert stars(collector_redact(collector, sample)) == stars(redact_text(sample))


@pytest.mark.parametrize("target", ["attributes", "name", "status.message"])
def test_account_card_and_token_leave_no_trace_in_span_attributes_names_or_status(collector, target):
    account, token, pan = _account(), _jwt(), _pan(16)
    redacted = collector_redact(collector, f"{account} paid with {pan} using {token}", target)
    assert account not in redacted and token not in redacted and pan not in redacted
    assert f"{c.ACCOUNT_ID_PREFIX}****{account[-4:]}" in redacted and pan[-4:] in redacted


def test_customer_ids_are_masked_as_the_services_mask_them(collector):
    customer = c.CUSTOMER_ID_PREFIX + "k3v9x0q2m7d1p8zt"
    url = f"http://accounts:8082/accounts?owner={customer}&also={customer}"
    redacted = collector_redact(collector, url)
    assert redacted == "http://accounts:8082/accounts?owner=cus_****p8zt&also=cus_****p8zt"
    assert redacted == redact_text(url)
    assert collector_redact(collector, redacted) == redacted


@pytest.mark.parametrize("target", ["attributes", "name", "status.message"])
def test_password_fields_and_password_hashes_leave_no_trace_in_span_data(collector, target):
    password_hash = _argon2_hash()
    redacted = collector_redact(
        collector, f'insert failed: ("alice", "{password_hash}") body {{"password": "hunter2"}}', target)
    assert password_hash not in redacted and "hunter2" not in redacted
    assert "[REDACTED_PASSWORD_HASH]" in redacted and '"password": "[REDACTED]"' in redacted


def test_the_collector_also_hides_opaque_bearer_tokens_and_over_long_digit_runs(collector):
    assert collector_redact(collector, "Authorization: Bearer abc.DEF-123_x") == \
        "Authorization: Bearer [REDACTED_TOKEN]"
    redacted = collector_redact(collector, "ref 1234567890123456789012345")
    assert not re.search(r"\d{13}", redacted)


def test_redacting_twice_changes_nothing_more(collector):
    # Spans the services already scrubbed pass the Collector unchanged.
    for sample in SAMPLES:
        once = collector_redact(collector, sample)
        assert collector_redact(collector, once) == once
        assert collector_redact(collector, redact_text(sample)) == redact_text(sample)


def test_every_rule_runs_on_resource_span_and_event_data_in_the_same_order(collector):
    statements = _statements(collector)
    rules = [rule.pattern for rule in cc.redactions()]
    expected_targets = {"resource": ["attributes"], "span": ["attributes", "name", "status.message"],
                        "spanevent": ["attributes"]}
    for context, targets in expected_targets.items():
        parsed = [parse_statement(s)[1] for s in statements[context]]
        assert [(args[0], args[2] if args[0] == "attributes" else args[1]) for args in parsed] == \
            [(target, pattern) for pattern in rules for target in targets]


def test_user_attributes_are_hashed(collector):
    actions = collector["processors"]["attributes/pseudonymise"]["actions"]
    assert {"key": "enduser.id", "action": "hash"} in actions


def test_the_collector_regexes_compile_in_re2_and_match_as_python_does(collector):
    re2 = pytest.importorskip("re2")
    patterns = {parse_statement(s)[1][2 if s.startswith("replace_all") else 1]
                for block in _statements(collector).values() for s in block}
    corpus = " | ".join(SAMPLES + ["Bearer abc.def", "BEARER abcdefgh12", "cus_k3v9x0q2m7d1p8zt", "1" * 25,
                                   "{'Secret' : 'x', \"API_TOKEN\":\"y\\\\\"z\"}", "$argon2i$m=4,t=1,p=1$YQ$Yg"])
    for pattern in patterns:
        assert [m.span() for m in re2.compile(pattern).finditer(corpus)] == \
            [m.span() for m in re.compile(pattern).finditer(corpus)], pattern


def test_a_redaction_rule_re2_cannot_run_is_refused():
    with pytest.raises(ValueError, match="look-arounds"):
        cc.Redaction("card", c.CARD_NUMBER_PATTERN, "****")
    with pytest.raises(ValueError, match="not \\$1x"):
        cc.Redaction("account", "acc_(x)", "$1x")


def test_ottl_literals_escape_backslashes_quotes_and_the_config_loaders_dollar():
    literal = cc.ottl_string('a\\d "q" $1')
    assert literal == '"a\\\\d \\"q\\" $$1"'
    assert parse_statement(f"f(x, {literal})")[1] == ["x", 'a\\d "q" $1']


# --- sampling, span metrics, exporters -------------------------------------------------------

def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_tail_sampling_keeps_errors_slow_traces_fault_traces_and_a_share_of_the_rest(collector):
    policies = {p["type"]: p for p in collector["processors"]["tail_sampling"]["policies"]}
    assert "ERROR" in policies["status_code"]["status_code"]["status_codes"]
    assert policies["latency"]["latency"]["threshold_ms"] == c.SLOW_TRANSACTION_THRESHOLDS["1s"] * 1000
    assert 0 < policies["probabilistic"]["probabilistic"]["sampling_percentage"] < 100
    assert policies["ottl_condition"]["ottl_condition"]["spanevent"] == [
        f'name == "{c.EVENT_FAULT_INJECTED}"']


def test_span_metrics_carry_exemplars_in_the_services_latency_buckets(collector):
    spanmetrics = collector["connectors"]["spanmetrics"]
    assert spanmetrics["exemplars"]["enabled"] is True
    buckets = [_seconds(b) for b in spanmetrics["histogram"]["explicit"]["buckets"]]
    assert buckets == pytest.approx(list(c.LATENCY_BUCKETS))
    graph = [_seconds(b) for b in collector["connectors"]["servicegraph"]["latency_histogram_buckets"]]
    assert graph == pytest.approx(list(c.LATENCY_BUCKETS))
    dimensions = {d["name"] for d in spanmetrics["dimensions"]}
    assert {"http.route", "http.response.status_code"} <= dimensions


def test_prometheus_scrapes_open_metrics_so_exemplars_survive(collector):
    exporter = collector["exporters"]["prometheus"]
    assert exporter["enable_open_metrics"] is True
    assert exporter["resource_to_telemetry_conversion"]["enabled"] is True
    pipelines = collector["service"]["pipelines"].values()
    metrics = [spec for spec in pipelines if "prometheus" in spec["exporters"]]
    assert len(metrics) == 1 and {"spanmetrics", "servicegraph"} <= set(metrics[0]["receivers"])


def test_jaeger_export_goes_where_jaeger_listens_and_is_the_exporter_the_alert_watches(collector, jaeger):
    exporter = collector["exporters"][cc.JAEGER_EXPORTER]
    host, port = exporter["endpoint"].rsplit(":", 1)
    assert host == topology.JAEGER_NAME and exporter["tls"]["insecure"] is True
    assert jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(f":{port}")
    alert_spec = (ROOT / "prometheus/spec/platform.yml").read_text()
    assert f'exporter="{cc.JAEGER_EXPORTER}"' in alert_spec


def _port(endpoint: str) -> int:
    host, port = endpoint.rsplit(":", 1)
    assert host == "0.0.0.0", f"{endpoint}: other containers could not reach it"
    return int(port)


def test_the_collector_listens_on_the_lab_ports(collector):
    readers = collector["service"]["telemetry"]["metrics"]["readers"]
    telemetry = readers[0]["pull"]["exporter"]["prometheus"]
    listening = {
        "otlp-grpc": _port(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]),
        "otlp-http": _port(collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]),
        "telemetry": _port(f"{telemetry['host']}:{telemetry['port']}"),
        "spanmetrics": _port(collector["exporters"]["prometheus"]["endpoint"]),
        "health": _port(collector["extensions"]["health_check"]["endpoint"]),
    }
    assert listening == cc.COLLECTOR_PORTS == {
        "otlp-grpc": 4317, "otlp-http": 4318, "telemetry": 8888, "spanmetrics": 8889, "health": 13133}


# --- Jaeger -----------------------------------------------------------------------------------

def test_every_component_jaeger_names_is_defined_and_used(jaeger):
    assert wiring_problems(jaeger) == []
    storage = jaeger["extensions"]["jaeger_storage"]
    query = jaeger["extensions"]["jaeger_query"]["storage"]
    assert query["traces"] in storage["backends"]
    assert query["metrics"] in storage["metric_backends"]
    assert jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"] in storage["backends"]


def test_jaeger_keeps_traces_a_week_or_more_on_disk(jaeger):
    backend = jaeger["extensions"]["jaeger_storage"]["backends"][cc.TRACE_STORE]["badger"]
    assert backend["ephemeral"] is False
    assert _seconds(backend["ttl"]["spans"]) >= 7 * 24 * 3600


def test_jaeger_monitor_tab_reads_the_collectors_span_metrics_from_prometheus(collector, jaeger):
    prometheus = jaeger["extensions"]["jaeger_storage"]["metric_backends"][cc.METRIC_STORE]["prometheus"]
    assert prometheus["endpoint"] == f"http://{PROMETHEUS.address('compose')}"
    spanmetrics = collector["connectors"]["spanmetrics"]
    assert prometheus["metric_namespace"] == spanmetrics["namespace"].replace(".", "_")
    assert prometheus["latency_unit"] == spanmetrics["histogram"]["unit"] == "ms"
    # The Collector's Prometheus exporter adds _total and _milliseconds: Jaeger must expect them.
    assert prometheus["normalize_calls"] is True and prometheus["normalize_duration"] is True
    assert c.SPANMETRICS_CALLS == "traces_span_metrics_calls_total"


def test_jaeger_has_a_health_endpoint_for_the_compose_healthcheck(jaeger):
    assert "healthcheckv2" in jaeger["service"]["extensions"]
    assert _port(jaeger["extensions"]["healthcheckv2"]["http"]["endpoint"]) == topology.JAEGER_HEALTH_PORT
