"""IIS rules: the seed's four derived metrics as recording rules, and the alerts built on them.

Seeds (001, "Derived metrics") define volume surge, success rate, technical exception % and
P95 response time estate-wide; they are recorded per site (per .NET application for exceptions)
and for the whole estate, with the seed's semantics kept:

- volume surge: the 5-minute request rate against the 30-minute average of that same rate
  (the seed's subquery ``avg_over_time(rate(...)[30m:])`` becomes ``avg_over_time`` of the
  recorded 5-minute rate, evaluated at the same resolution);
- success rate: requests minus 5xx minus 4xx, over requests, in percent (4xx count as failures);
- technical exception %: .NET exceptions thrown per request, in percent (may exceed 100);
- P95: ``histogram_quantile(0.95, ...)`` of the execution time histogram.

Thresholds are justified against the mock's normal behaviour (seeds): 100 req/s estate base load,
2-2.5x in business hours, 0.1 % 5xx, 0.4 % 404, execution time Gaussian(50 ms, 20 ms), .NET
exceptions ~0.2 % of requests.
"""

from __future__ import annotations

import textwrap

from obslab import conventions as c
from obslab.rules.model import AlertRule, RecordingRule, RuleGroup
from obslab.rules.render import RuleFile

RECORDING_GROUP = "iis.rules"
ALERT_GROUP = "iis.alerts"

# The normal day peaks at a ratio of 1.30 (the 07:00-08:00 ramp from 1x to 2.1x base load,
# computed from obslab.seasonality at 15 s resolution), so 2 - the seed's factor - never fires
# on the day's shape. A sustained surge becomes its own average, so the ratio stays above 2
# only for a while after a step of factor f: from 2.75 to 9.5 min at f=3, 1.75 to 12 min at
# f=4, 3.75 to 7 min at f=2.5, never at f=2 (same model, step at minute 0). Hence a short
# `for:`, and the alert resolving does not mean the surge ended.
SURGE_RATIO_THRESHOLD = 2
SURGE_FOR = "3m"

# Normal success is 99.5 % (0.1 % 5xx + 0.4 % 404). 95 % is ten times the normal failure rate,
# far beyond the noise of the quietest site (CorporatePortal, >= 15 req/s: +-0.1 % over 5 min).
# One request in twenty failing on online banking is customer-visible: it pages.
SUCCESS_PERCENT_THRESHOLD = 95
SUCCESS_FOR = "5m"

# Normal is ~0.2 % of requests; 1 % is five times that and about ten standard deviations of
# the quietest application's 5-minute count (CorporatePortal on a weekend night: ~7 of 3600).
# Exceptions are often handled (no failed request), so this is a ticket; when they do fail
# requests, IISSuccessRateLow pages.
EXCEPTIONS_PERCENT_THRESHOLD = 1
EXCEPTIONS_FOR = "5m"

# Normal p95 is ~89 ms as the buckets interpolate it (83 ms for the true Gaussian). 0.3 s is a
# bucket boundary, so "p95 > 0.3 s" means exactly "more than 5 % of requests took over 0.3 s"
# (no interpolation error), at 3.4x normal. 10 minutes rides out the JIT warm-up after an
# app pool recycle; slow but working is a ticket.
P95_SECONDS_THRESHOLD = 0.3
P95_FOR = "10m"

# A stopped pool does not restart by itself (rapid-fail protection disables it) and its site
# answers 503 to everyone: it pages. 1 minute rides out an operator's restart, which shows as
# a transient state (4, stopping) for a scrape or two.
APP_POOL_DOWN_FOR = "1m"


def _promql(text: str) -> str:
    return textwrap.dedent(text).strip()


def _app_name_from_site(expr: str) -> str:
    """``expr`` (by site) relabelled by app_name, the label of the .NET exception counter."""
    if any(s.app_name != s.site for s in c.IIS_SITES):
        raise ValueError("IIS app_name differs from site in conventions.IIS_SITES; "
                         "map them explicitly in obslab/rules/iis.py")
    return f'label_replace({expr}, "{c.L_APP_NAME}", "$1", "{c.L_SITE}", "(.*)")'


_REQUESTS = c.IIS_REQUESTS.name
_SERVER_ERRORS = c.IIS_SERVER_ERRORS.name
_CLIENT_ERRORS = c.IIS_CLIENT_ERRORS.name
_EXCEPTIONS = c.NETFRAMEWORK_EXCEPTIONS.name
_EXECUTION_BUCKET = f"{c.IIS_EXECUTION_TIME.name}_bucket"


def _success(requests: str, server_errors: str, client_errors: str) -> str:
    return f"100 * ({requests} - {server_errors} - {client_errors}) / {requests}"


RECORDING_RULES = RuleGroup(RECORDING_GROUP, (
    RecordingRule(c.RULE_IIS_SITE_REQUESTS_RATE, f"sum by ({c.L_SITE}) (rate({_REQUESTS}[5m]))"),
    RecordingRule(c.RULE_IIS_SITE_REQUESTS_RATE_AVG30M, f"avg_over_time({c.RULE_IIS_SITE_REQUESTS_RATE}[30m])"),
    RecordingRule(c.RULE_IIS_SITE_SURGE_RATIO,
                  f"{c.RULE_IIS_SITE_REQUESTS_RATE} / {c.RULE_IIS_SITE_REQUESTS_RATE_AVG30M}"),
    RecordingRule(c.RULE_IIS_SITE_SERVER_ERRORS_RATE, f"sum by ({c.L_SITE}) (rate({_SERVER_ERRORS}[5m]))"),
    RecordingRule(c.RULE_IIS_SITE_CLIENT_ERRORS_RATE, f"sum by ({c.L_SITE}) (rate({_CLIENT_ERRORS}[5m]))"),
    RecordingRule(c.RULE_IIS_SITE_SUCCESS_PERCENT, _success(
        c.RULE_IIS_SITE_REQUESTS_RATE, c.RULE_IIS_SITE_SERVER_ERRORS_RATE, c.RULE_IIS_SITE_CLIENT_ERRORS_RATE)),
    RecordingRule(c.RULE_IIS_SITE_P95, _promql(f"""
        histogram_quantile(0.95, sum by ({c.L_SITE}, le) (rate({_EXECUTION_BUCKET}[5m])))
    """)),
    RecordingRule(c.RULE_IIS_APP_EXCEPTIONS_RATE, f"sum by ({c.L_APP_NAME}) (rate({_EXCEPTIONS}[5m]))"),
    RecordingRule(c.RULE_IIS_APP_EXCEPTIONS_PERCENT, _promql(f"""
        100 * {c.RULE_IIS_APP_EXCEPTIONS_RATE}
          / on ({c.L_APP_NAME}) {_app_name_from_site(c.RULE_IIS_SITE_REQUESTS_RATE)}
    """)),
    # The whole estate, as the seeds write them (sums of the per-site rates above).
    RecordingRule(c.RULE_IIS_REQUESTS_RATE, f"sum({c.RULE_IIS_SITE_REQUESTS_RATE})"),
    RecordingRule(c.RULE_IIS_SUCCESS_PERCENT, _success(
        c.RULE_IIS_REQUESTS_RATE, f"sum({c.RULE_IIS_SITE_SERVER_ERRORS_RATE})",
        f"sum({c.RULE_IIS_SITE_CLIENT_ERRORS_RATE})")),
    RecordingRule(c.RULE_IIS_EXCEPTIONS_PERCENT,
                  f"100 * sum({c.RULE_IIS_APP_EXCEPTIONS_RATE}) / {c.RULE_IIS_REQUESTS_RATE}"),
    RecordingRule(c.RULE_IIS_P95, f"histogram_quantile(0.95, sum by (le) (rate({_EXECUTION_BUCKET}[5m])))"),
))


def _iis_alert(alert: str, expr: str, for_: str, severity: c.Severity, summary: str,
               description: str) -> AlertRule:
    return AlertRule(alert, expr, for_=for_, severity=severity, team=c.TEAM_WINDOWS_PLATFORM,
                     service=c.SERVICE_IIS, summary=summary, description=description,
                     dashboard=c.DASHBOARD_IIS)


ALERT_RULES = RuleGroup(ALERT_GROUP, (
    _iis_alert(
        c.ALERT_IIS_VOLUME_SURGE,
        f"{c.RULE_IIS_SITE_SURGE_RATIO} > {SURGE_RATIO_THRESHOLD}", SURGE_FOR, c.Severity.WARNING,
        "IIS site {{ $labels.site }} receives {{ $value | printf \"%.1f\" }}x its usual request rate",
        "The 5-minute request rate of {{ $labels.site }} is {{ $value | printf \"%.1f\" }} times its "
        f"30-minute average (alert above {SURGE_RATIO_THRESHOLD}x; a normal day stays below 1.3x). "
        "A flood, a retry storm or a campaign: check the source and whether errors or latency follow.",
    ),
    _iis_alert(
        c.ALERT_IIS_SUCCESS_RATE_LOW,
        f"{c.RULE_IIS_SITE_SUCCESS_PERCENT} < {SUCCESS_PERCENT_THRESHOLD}", SUCCESS_FOR, c.Severity.CRITICAL,
        "IIS site {{ $labels.site }} answers only {{ $value | printf \"%.1f\" }}% of requests successfully",
        "{{ $labels.site }} answered {{ $value | printf \"%.2f\" }}% of requests without a 4xx or 5xx "
        f"over the last 5 minutes (alert below {SUCCESS_PERCENT_THRESHOLD}%; normal is 99.5%).",
    ),
    _iis_alert(
        c.ALERT_IIS_TECHNICAL_EXCEPTIONS_HIGH,
        f"{c.RULE_IIS_APP_EXCEPTIONS_PERCENT} > {EXCEPTIONS_PERCENT_THRESHOLD}", EXCEPTIONS_FOR,
        c.Severity.WARNING,
        "{{ $labels.app_name }} throws .NET exceptions on {{ $value | printf \"%.1f\" }}% of requests",
        ".NET application {{ $labels.app_name }} threw {{ $value | printf \"%.2f\" }} exceptions per "
        f"100 requests over the last 5 minutes (alert above {EXCEPTIONS_PERCENT_THRESHOLD}; normal is about 0.2).",
    ),
    _iis_alert(
        c.ALERT_IIS_RESPONSE_TIME_P95_HIGH,
        f"{c.RULE_IIS_SITE_P95} > {P95_SECONDS_THRESHOLD}", P95_FOR, c.Severity.WARNING,
        "IIS site {{ $labels.site }} p95 response time is {{ $value | humanizeDuration }}",
        "95th percentile request execution time of {{ $labels.site }} over the last 5 minutes is "
        "{{ $value | humanizeDuration }} (alert above "
        f"{P95_SECONDS_THRESHOLD * 1000:.0f}ms; normal is about 90ms).",
    ),
    _iis_alert(
        c.ALERT_IIS_APP_POOL_DOWN,
        f"{c.IIS_APP_POOL_STATE.name} != {c.IIS_APP_POOL_RUNNING}", APP_POOL_DOWN_FOR, c.Severity.CRITICAL,
        "IIS application pool {{ $labels.app_pool }} is not running",
        "Application pool {{ $labels.app_pool }} on {{ $labels.instance }} reports state "
        "{{ $value }} (" f"{c.IIS_APP_POOL_RUNNING} is running, {c.IIS_APP_POOL_STOPPED} stopped by rapid-fail "
        "protection); "
        "its site answers 503 to every request.",
    ),
))

RULES = RuleFile("obslab/rules/iis.py", (RECORDING_RULES, ALERT_RULES))
