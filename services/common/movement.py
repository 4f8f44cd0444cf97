"""The shared life cycle of a money movement (transfer or payment).

Validate -> claim the Idempotency-Key -> execute -> store the result -> record the seed
``transaction_*`` metrics and the span's banking attributes. Each service supplies only
``execute``: its business steps, returning an :class:`Outcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, jsonify
from opentelemetry import trace
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from obslab import conventions as c
from obslab.conventions import TransactionStatus, TransactionType
from obslab.platform.errors import ApiError
from obslab.services.common.idempotency import ClaimKind, IdempotencyStore, request_fingerprint
from obslab.services.common.money import to_minor
from obslab.telemetry import MetricSet

log = logging.getLogger(__name__)

MOVEMENT_METRICS = (
    c.TRANSACTION_REQUESTS, c.TRANSACTION_DURATION, c.TRANSACTION_FAILURES, c.SLOW_TRANSACTIONS,
)


@dataclass(frozen=True)
class Outcome:
    """The final result of a movement: what the client gets and what the metrics say."""

    status: TransactionStatus
    http_status: int
    body: dict[str, Any]
    error_code: str | None = None
    # The movement stored this answer for its Idempotency-Key itself, in the unit of work that
    # wrote its final state (IdempotencyStore.complete_in): the runner does not store it again.
    stored: bool = False


def fingerprint_payload(body: BaseModel, amount_field: str = "amount") -> dict[str, Any]:
    """The request as its Idempotency-Key compares it: the validated body, with the amount in
    integer minor units (``"2.00"`` and ``"2"`` are the same request), everything else as JSON."""
    payload = body.model_dump(mode="json", exclude={amount_field})
    payload[f"{amount_field}_minor"] = to_minor(getattr(body, amount_field))
    return payload


def rejected(http_status: int, code: str, message: str, **details: Any) -> Outcome:
    return Outcome(TransactionStatus.REJECTED, http_status,
                   {"error": code, "message": message, "status": "rejected", **details}, code)


class MovementRunner:
    def __init__(self, kind: TransactionType, store: IdempotencyStore, metrics: MetricSet) -> None:
        self.kind = kind
        self.store = store
        self.metrics = metrics

    def run(
        self,
        customer_id: str,
        idempotency_key: str,
        request_payload: dict[str, Any],
        new_id: Callable[[], str],
        execute: Callable[[str], Outcome],
        begin: Callable[[Connection, str], None] | None = None,
    ) -> tuple[Response, int]:
        """``request_payload``: what identifies the request for its key (:func:`fingerprint_payload`).

        ``begin(conn, resource_id)``: the movement's first row. A new claim writes it in its own
        unit of work; a resumed one writes it unless an earlier attempt already did."""
        span = trace.get_current_span()
        span.set_attribute(c.ATTR_TRANSACTION_TYPE, self.kind.value)
        fingerprint = request_fingerprint(self.kind.value, request_payload)
        claim = self.store.claim(customer_id, idempotency_key, fingerprint, new_id, begin)
        span.set_attribute(c.ATTR_TRANSACTION_ID, claim.resource_id)
        if claim.kind is ClaimKind.REPLAY:
            span.set_attribute(c.ATTR_IDEMPOTENT_REPLAY, True)
            response = jsonify(claim.response_body)
            response.headers[c.HEADER_IDEMPOTENT_REPLAYED] = "true"
            return response, claim.response_status or 200
        started = time.perf_counter()
        try:
            if claim.kind is ClaimKind.RESUME and begin is not None:
                self._begin_again(begin, claim.resource_id)
            outcome = execute(claim.resource_id)
        except ApiError as exc:
            if exc.status < 500:  # a business refusal raised deep down is still final
                outcome = Outcome(TransactionStatus.REJECTED, exc.status, exc.body(), exc.code)
            else:
                self.store.release(customer_id, idempotency_key, claim)
                self._record(TransactionStatus.FAILED, exc.code, time.perf_counter() - started)
                raise
        except Exception:
            self.store.release(customer_id, idempotency_key, claim)
            self._record(TransactionStatus.FAILED, "internal_error", time.perf_counter() - started)
            raise
        if not outcome.stored:
            self.store.complete(customer_id, idempotency_key, outcome.http_status, outcome.body)
        self._record(outcome.status, outcome.error_code, time.perf_counter() - started)
        return jsonify(outcome.body), outcome.http_status

    def _begin_again(self, begin: Callable[[Connection, str], None], resource_id: str) -> None:
        """A resumed movement's first row, unless the attempt that claimed the key wrote it."""
        try:
            self.store.db.run(lambda conn: begin(conn, resource_id))
        except IntegrityError:
            pass

    def _record(self, status: TransactionStatus, error_code: str | None, elapsed: float) -> None:
        kind = self.kind.value
        self.metrics.count(c.TRANSACTION_REQUESTS, type=kind, status=status.value)
        self.metrics.observe(c.TRANSACTION_DURATION, elapsed, type=kind)
        if status is not TransactionStatus.COMPLETED:
            self.metrics.count(c.TRANSACTION_FAILURES, type=kind, error_code=error_code or status.value)
        for label, threshold in c.SLOW_TRANSACTION_THRESHOLDS.items():
            if elapsed > threshold:
                self.metrics.count(c.SLOW_TRANSACTIONS, threshold=label, type=kind)
        span = trace.get_current_span()
        span.set_attribute(c.ATTR_OUTCOME, status.value)
        if error_code:
            span.set_attribute(c.ATTR_ERROR_CODE, error_code)
        log.info("money movement finished", extra={
            "type": kind, "status": status.value, "error_code": error_code,
            "duration_ms": round(elapsed * 1000, 2),
        })
