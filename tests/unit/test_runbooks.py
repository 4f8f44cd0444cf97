"""Runbooks: one page per alert, in the shape on-call relies on, with PromQL that parses and runs.

Every alert of the spec (``obslab.rules.load_catalog``) needs ``runbooks/<AlertName>.md``: a
table whose severity, team and dashboard agree with the rule, the five sections in order, the
rule's expression verbatim in Meaning, at least three queries in Diagnosis, and the way to clear
an injected fault in Mitigation. Every ```promql block of every page must parse (the real
``promtool``) and run (a real Prometheus loading the committed rules, scraping the real services).
No page may exist without its alert, and the generated index lists every alert.

Prometheus and promtool must be installed in CI (``CI=true``: a missing binary fails there); on
a laptop without them the two tests that need them are skipped.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from obslab import conventions as c
from obslab import settings, topology
from obslab.rules import AlertRule, load_catalog
from tests.prometheus_support import scrape_job, start_prometheus
from tests.support import free_port, required_binary

ROOT = settings.repo_root()
RUNBOOKS = ROOT / "runbooks"
RULES_GLOB = ROOT / "prometheus" / "rules" / "*.yml"
INDEX = "README.md"
SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation", "Escalation")
MIN_DIAGNOSIS_QUERIES = 3
# How a page names the team of an alert whose team label is chosen per service (a template).
OWNER_OF_THE_SERVICE = "owner of the service"
FENCE_LANGUAGES = {"promql", "sh"}

CATALOG = load_catalog()
ALERT_NAMES = CATALOG.alert_names()


# --- reading a page ---------------------------------------------------------------------------

def _rules(name: str) -> list[AlertRule]:
    """The alert's rules: one, or one per burn-rate window pair for an SLO alert."""
    return [rule for rule in CATALOG.alerts() if rule.alert == name]


def _page(name: str) -> str:
    path = RUNBOOKS / f"{name}.md"
    if not path.exists():
        pytest.fail(f"alert {name} has no runbook: write runbooks/{name}.md")
    return path.read_text()


def _fences(markdown: str) -> list[tuple[str, str]]:
    """(info string, content) of every fenced code block."""
    return re.findall(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", markdown, re.S | re.M)


def _promql_blocks(markdown: str) -> list[str]:
    return [body.strip() for language, body in _fences(markdown) if language.strip() == "promql"]


def _without_fences(markdown: str) -> str:
    """The page with code blocks blanked, so a '## ' inside a shell block is not a heading."""
    return re.sub(r"^```.*?^```[ \t]*$", "", markdown, flags=re.S | re.M)


def _section(markdown: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    return match.group(1) if match else ""


def _table(markdown: str) -> dict[str, str]:
    """The key/value table between the title and the first section."""
    head = markdown.split("\n## ", 1)[0]
    return {key.strip(): value.strip()
            for key, value in re.findall(r"^\|([^|\n]+)\|(.*)\|[ \t]*$", head, re.M)
            if key.strip() and not set(key.strip()) <= {"-"}}


def _all_pages() -> list[Path]:
    return sorted(path for path in RUNBOOKS.glob("*.md") if path.name != INDEX)


# --- the pages --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_page_with_its_title_and_the_five_sections_in_order(name):
    text = _page(name)
    assert text.startswith(f"# {name}\n"), f"runbooks/{name}.md must start with '# {name}'"
    headings = re.findall(r"^## (.+?)[ \t]*$", _without_fences(text), re.M)
    assert headings == list(SECTIONS), f"runbooks/{name}.md: sections {headings}, want {list(SECTIONS)}"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_the_table_states_the_severity_team_and_dashboard_of_the_rule(name):
    table = _table(_page(name))
    rules = _rules(name)
    for key in ("Severity", "Team", "Fires when", "Dashboard"):
        assert table.get(key), f"runbooks/{name}.md: the table lacks a '{key}' row"

    # "critical (pages)", or for an SLO "critical (pages: ...) / warning (ticket: ...)".
    stated = [part.split()[0] for part in table["Severity"].split(" / ")]
    assert sorted(stated) == sorted({rule.severity.value for rule in rules}), \
        f"runbooks/{name}.md: Severity says {table['Severity']!r}"

    team = table["Team"]
    for rule in rules:
        if "{{" in rule.team:   # chosen per service by a label template (team: by_service)
            assert team.startswith(OWNER_OF_THE_SERVICE), \
                f"runbooks/{name}.md: Team must say '{OWNER_OF_THE_SERVICE} (prometheus/spec/teams.yml)'"
        else:
            assert team.split()[0] == rule.team, f"runbooks/{name}.md: Team says {team!r}, the rule {rule.team!r}"

    urls = {topology.dashboard_url(rule.dashboard) for rule in rules}
    assert table["Dashboard"].split()[0] in urls and all(url in table["Dashboard"] for url in urls), \
        f"runbooks/{name}.md: Dashboard says {table['Dashboard']!r}, the rule links {sorted(urls)}"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_meaning_quotes_the_rule_expression_verbatim_in_a_promql_block(name):
    # An SLO alert has a rule per window pair; the generator writes the fastest page (1h/5m) first.
    expr = _rules(name)[0].expr.strip()
    blocks = _promql_blocks(_section(_page(name), "Meaning"))
    assert expr in blocks, f"runbooks/{name}.md: Meaning needs the rule's expression in a ```promql block:\n{expr}"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_diagnosis_has_at_least_three_queries(name):
    queries = _promql_blocks(_section(_page(name), "Diagnosis"))
    assert len(queries) >= MIN_DIAGNOSIS_QUERIES, \
        f"runbooks/{name}.md: Diagnosis has {len(queries)} ```promql blocks, needs {MIN_DIAGNOSIS_QUERIES}"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_mitigation_says_how_to_find_and_clear_an_injected_fault(name):
    mitigation = _section(_page(name), "Mitigation")
    assert "obslab fault list" in mitigation, f"runbooks/{name}.md: Mitigation lacks `obslab fault list`"
    assert "obslab fault clear" in mitigation, f"runbooks/{name}.md: Mitigation lacks `obslab fault clear <ID>`"


@pytest.mark.parametrize("page", _all_pages(), ids=lambda path: path.name)
def test_code_blocks_are_promql_or_sh(page):
    languages = {language.strip() for language, _ in _fences(page.read_text())}
    assert languages <= FENCE_LANGUAGES, f"runbooks/{page.name}: fences {sorted(languages - FENCE_LANGUAGES)}"


def test_no_page_exists_without_its_alert():
    orphans = {path.stem for path in _all_pages()} - set(ALERT_NAMES)
    assert orphans == set(), f"runbooks without an alert in prometheus/spec/: {sorted(orphans)}"


def test_the_generated_index_lists_every_alert():
    index = (RUNBOOKS / INDEX).read_text()
    missing = [name for name in ALERT_NAMES if f"[{name}]({name}.md)" not in index]
    assert missing == [], f"runbooks/README.md does not list {missing}: run `obslab rules generate`"


# --- the PromQL parses ------------------------------------------------------------------------

def _all_queries() -> list[tuple[str, int, str]]:
    """(page, block number from 1, PromQL) for every promql block of every page."""
    return [(path.name, number, query) for path in _all_pages()
            for number, query in enumerate(_promql_blocks(path.read_text()), 1)]


def _promtool_problems(promtool: str, queries: list[tuple[str, int, str]], workdir: Path) -> list[str]:
    """Every query as a recording rule of one file, checked by ``promtool check rules``;
    each problem mapped back to its page and block."""
    records = {f"runbook_block_{i}": query for i, query in enumerate(queries)}
    path = workdir / "runbook_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "runbooks", "rules": [
        {"record": record, "expr": promql} for record, (_, _, promql) in records.items()]}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    problems = []
    for record, reason in re.findall(r'"(runbook_block_\d+)": (.*)', output):
        page, number, promql = records[record]
        problems.append(f"{page}, promql block {number}: {reason}\n    {promql}")
    if result.returncode != 0 and not problems:
        problems.append(f"promtool failed without naming a block: {output.strip()}")
    return problems


@pytest.mark.prometheus
def test_every_promql_block_parses(tmp_path):
    promtool = required_binary("promtool")
    queries = _all_queries()
    assert queries
    problems = _promtool_problems(promtool, queries, tmp_path)
    assert problems == [], "\n".join(problems)


@pytest.mark.prometheus
def test_the_parse_check_names_the_page_and_block_of_a_broken_query(tmp_path):
    promtool = required_binary("promtool")
    queries = [("Good.md", 1, "up == 0"), ("Broken.md", 1, "up"), ("Broken.md", 2, "sum by (job) (rate(up[5m])")]
    problems = _promtool_problems(promtool, queries, tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("Broken.md, promql block 2: ") and "parse error" in problems[0]


# --- the PromQL runs --------------------------------------------------------------------------

@pytest.fixture
def prometheus_scraping_the_services(tmp_path):
    """A real Prometheus loading the committed rules and scraping, every second, the banking
    services, the fault-injector, the alert-receiver and an IIS mock running in this process
    (same jobs and tiers as the lab), plus itself; some real traffic goes through the gateway."""
    required_binary("prometheus")
    from obslab.faults.board import FaultBoard
    from obslab.iis_mock.clock import SimClock
    from obslab.iis_mock.exporter import IisExporter
    from obslab.iis_mock.exporter import create_app as iis_app
    from obslab.services.alert_receiver.app import create_app as receiver_app
    from obslab.services.fault_injector.app import create_app as injector_app
    from tests.support import Customer, deposit, serve, start_stack

    stack = start_stack(lambda service: f"sqlite:///{tmp_path / f'{service}.sqlite3'}")
    exporter = IisExporter(clock=SimClock(time.time()), board=FaultBoard(None), seed=7, step_seconds=1.0).start()
    others = {
        c.IIS_MOCK: serve(iis_app(exporter=exporter)),
        c.FAULT_INJECTOR: serve(injector_app(f"sqlite:///{tmp_path / 'faults.sqlite3'}")),
        c.ALERT_RECEIVER: serve(receiver_app(f"sqlite:///{tmp_path / 'alerts.sqlite3'}")),
    }
    port = free_port()
    targets = {**{name: server.url for name, server in stack.servers.items()},
               **{name: server.url for name, server in others.items()},
               c.PROMETHEUS: f"http://127.0.0.1:{port}"}
    jobs = [scrape_job(name, url.removeprefix("http://"), "1s", {"tier": topology.component(name).tier})
            for name, url in targets.items()]
    server = None
    try:
        server = start_prometheus(tmp_path, scrape_configs=jobs, scrape_interval="1s", port=port,
                                  rule_files=[str(RULES_GLOB)], extra_args=["--log.level=warn"])
        customer = Customer(stack.url(c.GATEWAY))
        account = customer.open_account()
        deposit(stack.url(c.ACCOUNTS), account, 10_000)
        other = customer.open_account()
        assert customer.transfer(account, other, "5.00").status_code == 201
        assert customer.pay(account, "ACME Utilities", "3.00").status_code == 201
        customer.balances()
        # Two scrapes of each target and an evaluation after them: rates and recorded series exist.
        server.wait_for(lambda: server.query('service:http_server_requests:rate5m{service="gateway"}'), 30,
                        "the gateway's recorded request rate")
        server.wait_for(lambda: server.query("site:windows_iis_success:percent_rate5m"), 30, "the IIS success rate")
        yield server
    finally:
        if server is not None:
            server.stop()
        for running in others.values():
            running.stop()
        exporter.stop()
        stack.stop()


@pytest.mark.prometheus
def test_every_runbook_query_runs_in_a_real_prometheus(prometheus_scraping_the_services):
    url = prometheus_scraping_the_services.url
    queries = _all_queries()
    assert queries
    failures = []
    for page, number, promql in queries:
        body = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
        if body.get("status") != "success":
            failures.append(f"{page}, promql block {number}: {body.get('error')}\n    {promql}")
    assert failures == [], "\n".join(failures)
