"""A simulated external card processor: the slow, occasionally-declining third party.

Latency is log-normal (median ~180 ms, p99 ~600 ms), as acquirer round trips are. Merchants
whose name starts with ``test-decline`` are always declined, like a card network's test card
numbers, so declines can be produced on purpose.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from opentelemetry import trace

from obslab import conventions as c
from obslab import settings
from obslab.faults.board import FaultBoard
from obslab.faults.model import injected_delay_seconds

DECLINE_PREFIX = "test-decline"


@dataclass(frozen=True)
class Authorization:
    approved: bool
    code: str          # "approved", "card_declined"
    latency_seconds: float


class CardProcessor:
    def __init__(self, *, median_ms: float | None = None, sigma: float = 0.5,
                 decline_rate: float | None = None, rng: random.Random | None = None,
                 board: FaultBoard | None = None) -> None:
        self.median_ms = median_ms if median_ms is not None else settings.PROCESSOR_LATENCY_MS.get()
        self.sigma = sigma
        self.decline_rate = decline_rate if decline_rate is not None else settings.PROCESSOR_DECLINE_RATE.get()
        if not 0 <= self.decline_rate <= 1:
            raise settings.ConfigError(f"decline rate must be within 0-1, got {self.decline_rate}")
        self.rng = rng or random.Random()
        self.tracer = trace.get_tracer(__name__)
        self.board = board

    def authorize(self, amount_minor: int, currency: str, merchant: str) -> Authorization:
        with self.tracer.start_as_current_span("card-processor authorize", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute(c.ATTR_PEER_SERVICE, c.CARD_PROCESSOR)
            span.set_attribute(c.ATTR_CURRENCY, currency)
            latency = self.rng.lognormvariate(0, self.sigma) * self.median_ms / 1000
            # An injected slowdown of the acquirer (`latency` on card-processor): the third party
            # is slow, payments itself is not.
            fault = self.board.find(c.FaultKind.LATENCY, c.CARD_PROCESSOR) if self.board is not None else None
            if fault is not None:
                latency += injected_delay_seconds(fault, self.rng)
                span.add_event(c.EVENT_FAULT_INJECTED, {c.ATTR_FAULT_ID: fault.id, c.ATTR_FAULT_KIND: fault.kind.value,
                                                        c.ATTR_FAULT_TARGET: fault.target})
            time.sleep(latency)
            declined = merchant.lower().startswith(DECLINE_PREFIX) or self.rng.random() < self.decline_rate
            result = Authorization(not declined, "card_declined" if declined else "approved", latency)
            span.set_attribute(c.ATTR_OUTCOME, result.code)
            return result
