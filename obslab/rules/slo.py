"""SLOs -> recording rules, multiwindow multi-burn-rate alerts and their promtool cases.

For each SLO (SRE workbook, chapter 5, "Alerting on SLOs"; the same shape Sloth generates):

* ``slo:sli_error:ratio_rate<w>`` - bad events / all events over each window ``w`` the policy
  uses (long and short windows of every pair), labelled ``slo``, ``service``, ``team``;
* ``slo:burn_rate:ratio_rate<w>`` - that ratio over the error budget (1 = spending the budget
  exactly over the period);
* ``slo:objective:ratio`` and ``slo:error_budget:ratio`` - the objective as data, for dashboards;
* ``slo:error_budget_remaining:ratio`` - 1 - (period error ratio / budget): 1 untouched, 0 spent,
  negative overspent. The period ratio is the average of the 5-minute ratios (Sloth's choice):
  a raw ``rate(...[30d])`` every evaluation would read a month of raw samples per SLO;
* one alert per window pair, ``<Alert>{long_window, short_window}``: both windows above
  ``factor x budget``, no ``for:`` (the short window is the confirmation and makes it reset fast).

With no traffic no ratio is recorded at all: an idle journey does not page (``BankingServiceDown``
covers a silent gateway), and the period's average skips idle stretches instead of turning NaN.
"""

from __future__ import annotations

from obslab import conventions as c
from obslab.profiles import PRODUCTION, Profile
from obslab.rules.model import AlertRule, RecordingRule, RuleGroup
from obslab.rules.spec import BurnWindow, SloSpec, SlosSpec
from obslab.settings import parse_duration

BUDGET_WINDOW = "5m"   # the period's error ratio averages this window's ratio


def windows(spec: SlosSpec) -> list[str]:
    """Every window the policy needs, shortest first (5m always: the budget uses it)."""
    found = {BUDGET_WINDOW} | {w.long for w in spec.burn_windows} | {w.short for w in spec.burn_windows}
    return sorted(found, key=parse_duration)


def _labels(slo: SloSpec) -> tuple[tuple[str, str], ...]:
    return ((c.L_SLO, slo.name), (c.L_SERVICE, slo.service), (c.L_TEAM, slo.team))


def _selector(slo: SloSpec) -> str:
    return f'{{{c.L_SLO}="{slo.name}"}}'


def error_ratio(window: str) -> str:
    return c.RULE_SLO_ERROR_RATIO.format(window=window)


def burn_rate(window: str) -> str:
    return c.RULE_SLO_BURN_RATE.format(window=window)


def _budget(slo: SloSpec) -> str:
    return f"{slo.error_budget:g}"


def sli_group(spec: SlosSpec, slo: SloSpec, profile: Profile = PRODUCTION) -> RuleGroup:
    rules: list[RecordingRule] = []
    for window in windows(spec):
        scaled = profile.slo_window(window)
        errors = slo.sli.errors.replace("$window", scaled).strip()
        total = slo.sli.total.replace("$window", scaled).strip()
        # No 5xx series yet is a ratio of 0, not nothing; no traffic at all records nothing
        # (not NaN, which would poison the period's average for a month).
        rules.append(RecordingRule(
            error_ratio(window),
            f"(\n  {errors}\n  or\n  0 * {total}\n)\n/\n(\n  {total} > 0\n)", _labels(slo)))
    for window in windows(spec):
        rules.append(RecordingRule(burn_rate(window),
                                   f"{error_ratio(window)}{_selector(slo)} / {_budget(slo)}", _labels(slo)))
    return RuleGroup(f"slo.{slo.name}.sli", tuple(rules))


def budget_group(spec: SlosSpec, slo: SloSpec, profile: Profile = PRODUCTION) -> RuleGroup:
    """Objective and budget as series, and what is left of the budget over the period."""
    return RuleGroup(f"slo.{slo.name}.budget", (
        RecordingRule(c.RULE_SLO_OBJECTIVE, f"vector({slo.objective / 100:g})", _labels(slo)),
        RecordingRule(c.RULE_SLO_ERROR_BUDGET, f"vector({_budget(slo)})", _labels(slo)),
        RecordingRule(c.RULE_SLO_BUDGET_REMAINING,
                      f"1 - avg_over_time({error_ratio(BUDGET_WINDOW)}{_selector(slo)}[{profile.slo_window(spec.period)}]) "
                      f"/ {_budget(slo)}", _labels(slo)),
    ))


def _lasts(spec: SlosSpec, factor: float) -> str:
    days = parse_duration(spec.period) / 86_400 / factor
    return f"{days * 24:.0f} hours" if days < 2 else f"{days:.0f} days"


def burn_alert(spec: SlosSpec, slo: SloSpec, window: BurnWindow) -> AlertRule:
    threshold = f"{window.factor:g}"
    expr = (f"{burn_rate(window.long)}{_selector(slo)} > {threshold}\n"
            f"and\n{burn_rate(window.short)}{_selector(slo)} > {threshold}")
    how = "pages" if window.severity is c.Severity.CRITICAL else "opens a ticket"
    return AlertRule(
        slo.alert, expr, for_=None, severity=window.severity, team=slo.team, service=slo.service,
        summary=(f"{slo.title}: error budget burning at {{{{ $value | printf \"%.1f\" }}}}x "
                 f"over {window.long} (threshold {threshold}x)"),
        description=(
            f"{slo.description} SLO {slo.objective:g}% over {spec.period}. Over the last {window.long} the "
            f"error budget burned at {{{{ $value | printf \"%.1f\" }}}}x the sustainable rate, and it still "
            f"burns above {threshold}x over the last {window.short}. At {threshold}x the whole "
            f"{spec.period} budget lasts {_lasts(spec, window.factor)}; this {how}."
        ),
        dashboard=slo.dashboard,
        extra_labels=((c.L_SLO, slo.name), (c.L_LONG_WINDOW, window.long), (c.L_SHORT_WINDOW, window.short)),
    )


def alert_group(spec: SlosSpec, slo: SloSpec) -> RuleGroup:
    return RuleGroup(f"slo.{slo.name}.alerts", tuple(burn_alert(spec, slo, w) for w in spec.burn_windows))


def groups(spec: SlosSpec, profile: Profile = PRODUCTION) -> tuple[RuleGroup, ...]:
    """The SLOs' rule groups; a fast ``profile`` shrinks the windows (see Profile.slo_window)."""
    out: list[RuleGroup] = []
    for slo in spec.slos:
        out += [sli_group(spec, slo, profile), budget_group(spec, slo, profile), alert_group(spec, slo)]
    return tuple(out)


def burn_condition_seconds(spec: SlosSpec, slo: SloSpec, window: BurnWindow, profile: Profile, *,
                           error_ratio: float = 1.0, history_s: float = float("inf")) -> float:
    """How long a steady ``error_ratio`` must last before the pair's long window crosses its
    threshold (the short window, 1/12 as long, crosses first). ``history_s``: how much data the
    window holds at most (a young lab's window is not full yet)."""
    window_s = min(parse_duration(profile.slo_window(window.long)), history_s)
    return window.factor * slo.error_budget / error_ratio * window_s
