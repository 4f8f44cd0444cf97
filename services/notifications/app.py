"""notifications service: stores and "delivers" customer notifications.

Delivery is simulated (an e-mail/SMS provider would sit here) with a small, realistic latency,
so that the service shows up in traces with a duration of its own.

Routes (internal):
  POST /notifications {customer_id, kind, reference, message} -> 201 {id, status}
  GET  /notifications?customer_id=C[&limit=N]                 -> newest first
"""

from __future__ import annotations

import random
import time
from typing import Annotated

from flask import Flask
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, insert, select

from obslab import conventions as c
from obslab import settings
from obslab.platform.app import ServiceContext, create_service_app, parse_body, query_int, require_query
from obslab.platform.ids import new_id

metadata = MetaData()

notifications = Table(
    "notifications", metadata,
    Column("id", String(32), primary_key=True),
    Column("customer_id", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("message", String(500), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_notifications_customer", "customer_id", "created_ms"),
)

KINDS = ("transfer_sent", "transfer_received", "payment_completed", "payment_declined")
Text64 = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class NotificationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: Text64
    kind: Annotated[str, StringConstraints(pattern="^(" + "|".join(KINDS) + ")$")]
    reference: Text64
    message: Annotated[str, StringConstraints(min_length=1, max_length=500)]


def create_app(db_url: str | None = None) -> Flask:
    return create_service_app(
        c.NOTIFICATIONS, _routes, metadata=metadata, db_url=db_url, metric_specs=[c.NOTIFICATIONS_SENT],
    )


_INSERT_NOTIFICATION = insert(notifications)  # built once: building it costs more than running it


def _routes(app: Flask, ctx: ServiceContext) -> None:
    assert ctx.db is not None
    db = ctx.db
    tracer = trace.get_tracer(__name__)
    median_ms = settings.NOTIFY_LATENCY_MS.get()

    def deliver(kind: str) -> None:
        with tracer.start_as_current_span("deliver notification", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute(c.ATTR_NOTIFICATION_KIND, kind)
            span.set_attribute(c.ATTR_PEER_SERVICE, "notification-provider")
            time.sleep(random.lognormvariate(0, 0.4) * median_ms / 1000)

    @app.post("/notifications")
    def notify():
        body = parse_body(NotificationRequest)
        deliver(body.kind)
        notification_id = new_id("ntf_")
        db.run(lambda conn: conn.execute(_INSERT_NOTIFICATION, {
            "id": notification_id, "customer_id": body.customer_id, "kind": body.kind, "reference": body.reference,
            "message": body.message, "status": "delivered", "created_ms": int(time.time() * 1000),
        }))
        ctx.metrics.count(c.NOTIFICATIONS_SENT, kind=body.kind, outcome="delivered")
        return {"id": notification_id, "status": "delivered"}, 201

    @app.get("/notifications")
    def list_notifications():
        customer = require_query("customer_id")
        limit = query_int("limit", 50, 1, 200)
        t = notifications
        with db.connect() as conn:
            rows = conn.execute(select(t).where(t.c.customer_id == customer)
                                .order_by(t.c.created_ms.desc()).limit(limit)).mappings().all()
        return [dict(row) for row in rows]
