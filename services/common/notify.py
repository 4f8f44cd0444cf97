"""Telling a customer what happened: best effort, never at the price of the money movement."""

from __future__ import annotations

import logging

from obslab import conventions as c
from obslab.platform.errors import ApiError
from obslab.platform.http import ServiceClient
from obslab.telemetry import MetricSet

log = logging.getLogger(__name__)

NOTIFY_TIMEOUT_SECONDS = 1.0


def notify_customer(client: ServiceClient, metrics: MetricSet, customer_id: str, kind: str,
                    reference: str, text: str) -> None:
    """Hand a notification to the notifications service; a failure is counted and logged only."""
    try:
        client.call("POST", "/notifications", json={
            "customer_id": customer_id, "kind": kind, "reference": reference, "message": text,
        }, timeout=NOTIFY_TIMEOUT_SECONDS)
    except ApiError as exc:
        metrics.count(c.NOTIFICATIONS_DROPPED, kind=kind)
        log.warning("notification not delivered",
                    extra={"reference": reference, "kind": kind, "error": exc.code})
    except Exception:   # the money has moved and its answer is stored: nothing here may undo that
        metrics.count(c.NOTIFICATIONS_DROPPED, kind=kind)
        log.exception("notification not delivered", extra={"reference": reference, "kind": kind})
