"""Time profiles: production values ship in the generated files; ``fast`` scales them down.

Drills and integration tests need minutes, not hours. Every interval any generated
configuration uses is taken from the active profile, so the two cannot drift apart.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from obslab import settings
from obslab.settings import ConfigError, parse_duration

# How long Prometheus keeps its data, natively and in compose: room for `obslab history`'s
# longest backfill (its MAX_DAYS) plus the live weeks after it.
RETENTION_DAYS = 35


_UNITS = r"[0-9]+(?:ms|s|m|h|d|w|y)"
_RANGE = re.compile(rf"\[(?P<range>(?:{_UNITS})+)(?P<sub>:(?P<step>(?:{_UNITS})+)?)?\]")


@dataclass(frozen=True)
class Profile:
    name: str
    scrape_default_s: int
    scrape_banking_s: int     # seeds: banking services 10 s
    scrape_ml_s: int          # seeds: ML services 15 s
    scrape_iis_s: int         # seeds: Windows IIS 15 s
    evaluation_s: int
    # An alert's `for:` is divided by this (never below two evaluations): 5m -> 30s when fast.
    for_divisor: int = 1
    # SLO burn-rate windows are divided by this (recorded names keep the production window):
    # a fast lab's 1h/5m page pair reads 6m/30s, so a burn fires and resets in a live test.
    slo_window_divisor: int = 1
    # The range of every rate(), avg_over_time() and subquery in the spec's rules (and in the
    # runbook queries a drill runs) is divided by this: a fast lab's rate5m reads 30 s, so an
    # incident shows, and clears, in seconds (recorded names keep the production window).
    range_divisor: int = 1
    # Alertmanager (production values: the Prometheus/Alertmanager defaults SREs expect).
    group_wait_s: int = 30
    group_interval_s: int = 300
    repeat_interval_s: int = 4 * 3600
    watchdog_repeat_s: int = 300      # the dead-man receiver hears the Watchdog this often
    resend_delay_s: int = 60          # Prometheus --rules.alert.resend-delay
    # ML detectors: how often they evaluate, and the windows of their features and fits.
    ml_evaluation_s: int = 15
    ddos_signal_window_s: int = 60        # rate() range of the DDoS features
    ddos_baseline_window_s: int = 3600    # a feature's baseline: its median over this ...
    ddos_baseline_lag_s: int = 300        # ... ending this long ago (an attack is not its own baseline)
    ddos_retrain_s: int = 6 * 3600        # automatic retraining, refused when worse
    ddos_training_window_s: int = 24 * 3600
    ddos_min_training_rows: int = 60      # a fresh lab's detector learns once it has this many
    baseline_refit_s: int = 300           # the baseliner refits every series this often
    baseline_history_s: int = 6 * 3600    # ... from this much history (1-24 h makes sense)
    # A level the series never visited is news (levelNovelty) until it has lasted this long; then
    # it is the new normal. Twice MetricOutsideBaseline's 15 minutes, so a lasting excursion pages.
    baseline_adopt_s: int = 1800

    def __post_init__(self) -> None:
        if not 0 < self.baseline_adopt_s < self.baseline_history_s:
            raise ValueError(f"profile {self.name}: baseline_adopt_s ({self.baseline_adopt_s}) must be positive and "
                             f"shorter than baseline_history_s ({self.baseline_history_s}), or no level is ever settled")

    def duration(self, seconds: int) -> str:
        """Prometheus duration text: ``15`` -> ``"15s"``."""
        return f"{seconds}s"

    def _scaled(self, text: str, divisor: int, *, minimum_s: int) -> str:
        """A duration divided by ``divisor`` (unchanged text when 1), never below ``minimum_s``."""
        if divisor == 1:
            return text
        return self.duration(max(math.ceil(parse_duration(text) / divisor), minimum_s))

    def alert_for(self, text: str) -> str:
        """An alert's ``for:`` under this profile: unchanged in production, scaled when fast.

        >>> PRODUCTION.alert_for("5m"), FAST.alert_for("5m"), FAST.alert_for("10s")
        ('5m', '30s', '4s')
        """
        return self._scaled(text, self.for_divisor, minimum_s=2 * self.evaluation_s)

    def detection_floor(self, *, condition_s: float, for_: str | None = None, dependent_groups: int = 1,
                        scrape_s: int | None = None) -> float:
        """The theoretical time-to-detect (drills/README.md): scrape + evaluation (+1 per dependent rule
        group) + condition time + ``for`` + Alertmanager's group_wait, in seconds.

        >>> FAST.detection_floor(condition_s=5.0, for_="5m")
        43.0
        """
        scrape = self.scrape_banking_s if scrape_s is None else scrape_s
        hold = parse_duration(self.alert_for(for_)) if for_ else 0.0
        return scrape + self.evaluation_s * (1 + dependent_groups) + condition_s + hold + self.group_wait_s

    def scale_ranges(self, expr: str) -> str:
        """PromQL with every range selector (and subquery) scaled by ``range_divisor``, never
        below four scrapes.

        >>> FAST.scale_ranges('rate(x[5m]) / avg_over_time(y[30m:])'), PRODUCTION.scale_ranges('rate(x[5m])')
        ('rate(x[30s]) / avg_over_time(y[180s:])', 'rate(x[5m])')
        """
        if self.range_divisor == 1:
            return expr

        def scaled(match: re.Match[str]) -> str:
            window = self._scaled(match.group("range"), self.range_divisor, minimum_s=4 * self.scrape_default_s)
            if match.group("sub") is None:
                return f"[{window}]"
            step = match.group("step")
            return f"[{window}:{self._scaled(step, self.range_divisor, minimum_s=self.evaluation_s) if step else ''}]"

        return _RANGE.sub(scaled, expr)

    def slo_window(self, text: str) -> str:
        """A burn-rate window's range under this profile (at least four scrapes).

        >>> PRODUCTION.slo_window("5m"), FAST.slo_window("5m"), FAST.slo_window("1h")
        ('5m', '30s', '360s')
        """
        return self._scaled(text, self.slo_window_divisor, minimum_s=4 * self.scrape_banking_s)


PRODUCTION = Profile("production", scrape_default_s=15, scrape_banking_s=10, scrape_ml_s=15,
                     scrape_iis_s=15, evaluation_s=15)
FAST = Profile("fast", scrape_default_s=2, scrape_banking_s=2, scrape_ml_s=2, scrape_iis_s=2, evaluation_s=2,
               for_divisor=10, slo_window_divisor=10, range_divisor=10, group_wait_s=2, group_interval_s=10, repeat_interval_s=3600,
               watchdog_repeat_s=30, resend_delay_s=2, ml_evaluation_s=2, ddos_signal_window_s=10,
               ddos_baseline_window_s=180, ddos_baseline_lag_s=20, ddos_retrain_s=300, ddos_training_window_s=900,
               ddos_min_training_rows=20,
               baseline_refit_s=30, baseline_history_s=900, baseline_adopt_s=180)

PROFILES = {p.name: p for p in (PRODUCTION, FAST)}


def active() -> Profile:
    """The profile a component runs under: ``OBSLAB_PROFILE`` (set by the native lab), else production."""
    return profile(settings.PROFILE.get())


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
