"""Risk rules: each adds to a score in [0, 1] and says why, so a decision can be explained.

Deliberately simple and deterministic; the point of the lab is the signal, not the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Decision(str, Enum):
    APPROVE = "approve"
    REVIEW = "review"   # allowed, flagged for a human
    DENY = "deny"


DENY_AT = 0.8
REVIEW_AT = 0.5
LARGE_AMOUNT_MAJOR = 2_500
VERY_LARGE_AMOUNT_MAJOR = 10_000
VELOCITY_WINDOW_SECONDS = 600
HIGH_VELOCITY = 10
VERY_HIGH_VELOCITY = 20
RISKY_MERCHANT_WORDS = ("crypto", "casino", "giftcard", "gift-card")


@dataclass(frozen=True)
class Facts:
    """What the rules look at; gathered by the service from the request and its history."""

    kind: str
    amount_minor: int
    counterparty: str
    recent_count: int            # this customer's assessments in the velocity window
    counterparty_known: bool     # has this customer moved money to this counterparty before?


@dataclass
class Assessment:
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def add(self, points: float, reason: str) -> None:
        self.score = min(1.0, round(self.score + points, 4))
        self.reasons.append(reason)

    @property
    def decision(self) -> Decision:
        if self.score >= DENY_AT:
            return Decision.DENY
        if self.score >= REVIEW_AT:
            return Decision.REVIEW
        return Decision.APPROVE


def assess(facts: Facts) -> Assessment:
    result = Assessment()
    major = facts.amount_minor // 100
    if major >= VERY_LARGE_AMOUNT_MAJOR:
        result.add(0.5, f"amount >= {VERY_LARGE_AMOUNT_MAJOR}")
    elif major >= LARGE_AMOUNT_MAJOR:
        result.add(0.25, f"amount >= {LARGE_AMOUNT_MAJOR}")
    if facts.recent_count >= VERY_HIGH_VELOCITY:
        result.add(0.4, f"{facts.recent_count} movements in {VELOCITY_WINDOW_SECONDS // 60} min")
    elif facts.recent_count >= HIGH_VELOCITY:
        result.add(0.2, f"{facts.recent_count} movements in {VELOCITY_WINDOW_SECONDS // 60} min")
    if not facts.counterparty_known:
        result.add(0.1, "new counterparty")
    if facts.kind == "payment" and any(w in facts.counterparty.lower() for w in RISKY_MERCHANT_WORDS):
        result.add(0.3, "high-risk merchant category")
    return result
