"""``transaction_performance_score``: one number per transaction type, and the parts behind it.

The score answers "are customers getting what we promise for this kind of money movement?",
from three parts, each 0 (bad) to 1 (meets its objective):

* **success** - the worse of the customer's view (the gateway route's 5xx ratio) and the owning
  service's technical failure ratio (business refusals such as insufficient funds or a declined
  card are answers, not failures). 1 while the failures stay within the error budget of the
  objective (0.1 % for 99.9 %); then falls linearly to 0 at :data:`SUCCESS_ZERO_AT` times the
  budget (2 % for 99.9 %: past the 14.4x fast-burn page of the SLO, where the score has nothing
  left to say);
* **latency** - the gateway route's p95 against the type's objective: 1 up to it, then
  ``objective / p95`` (twice the objective is 0.5, four times is 0.25);
* **throughput** - requests that reached the owning service per second against the lower edge
  of the band the baseliner learned for them (its ensemble band: obslab.ml.baseliner): 1 at or
  above it, then ``observed / lower``. More traffic than usual is not a performance problem.

The score is ``100 x`` the **weighted geometric mean** of the parts present (weights
:data:`WEIGHTS`): any part at 0 takes the score to 0 (a transfer path that fails every request is
not "half fine" because it fails fast), and a part that cannot be measured (no request to time or
to count failures of, a baseline still learning) is left out with the other weights rescaled
instead of guessed. With no part measurable the score is withdrawn. No requests at all while the
baseline expects some is not "unmeasurable": it is a throughput of 0, and the score is 0
(customers cannot get through). Examples: latency at twice its objective alone gives 81; a 14.4x
burn of the success budget alone gives 54; half the usual throughput alone gives 87.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from obslab import conventions as c

SUCCESS_ZERO_AT = 20.0      # times the error budget: the success part reaches 0 here
WEIGHTS: dict[str, float] = {c.PART_SUCCESS: 0.5, c.PART_LATENCY: 0.3, c.PART_THROUGHPUT: 0.2}
# Below this the type is in trouble for customers (TransactionPerformanceScoreLow): each part alone
# reaches it at about 3.3x its latency objective, 11x its error budget, or a throughput at 17 % of
# its baseline's lower edge.
SCORE_FLOOR = 70.0


@dataclass(frozen=True)
class Objective:
    """What a transaction type promises: where it is measured and the objectives of its parts."""

    type: str
    service: str                 # the owning service
    route: str                   # the gateway's public route (the customer's view)
    latency_p95_s: float
    success_ratio: float         # e.g. 0.999


# The latency objectives are bucket boundaries of LATENCY_BUCKETS (so a p95 against them is not
# an interpolation artefact) and match the SLOs: transfers 1 s (transfer-latency), payments 2.5 s
# (they wait for the external card processor). Success objectives are the availability SLOs'.
OBJECTIVES: tuple[Objective, ...] = (
    Objective(c.TransactionType.TRANSFER.value, c.TRANSACTIONS, f"{c.API_PREFIX}/transfers", 1.0, 0.999),
    Objective(c.TransactionType.PAYMENT.value, c.PAYMENTS, f"{c.API_PREFIX}/payments", 2.5, 0.999),
)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def success_part(success_ratio: float | None, objective: float) -> float | None:
    if not _finite(success_ratio):
        return None
    budget = 1.0 - objective
    failures = max(0.0, 1.0 - float(success_ratio))     # type: ignore[arg-type]
    if failures <= budget:
        return 1.0
    return max(0.0, 1.0 - (failures - budget) / ((SUCCESS_ZERO_AT - 1.0) * budget))


def latency_part(p95_s: float | None, objective_s: float) -> float | None:
    if not _finite(p95_s):
        return None
    return 1.0 if p95_s <= objective_s else objective_s / float(p95_s)   # type: ignore[operator]


def throughput_part(observed: float | None, lower: float | None) -> float | None:
    if not _finite(observed) or not _finite(lower):
        return None
    if lower <= 0 or observed >= lower:                                    # type: ignore[operator]
        return 1.0
    return max(0.0, float(observed) / float(lower))                        # type: ignore[arg-type]


def score(parts: dict[str, float | None]) -> float | None:
    """100 x the weighted geometric mean of the parts that are not None (None: none are)."""
    present = {name: value for name, value in parts.items() if value is not None}
    if not present:
        return None
    total = sum(WEIGHTS[name] for name in present)
    if any(value <= 0 for value in present.values()):
        return 0.0
    return 100.0 * math.exp(sum(WEIGHTS[name] / total * math.log(value) for name, value in present.items()))
