"""fraud service: scores a transfer or payment before money moves.

Routes (internal):
  POST /assessments {customer_id, kind, amount_minor, currency, counterparty, reference}
       -> 200 {id, score, decision, reasons}
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from flask import Flask
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import BigInteger, Column, Float, Index, MetaData, String, Table, bindparam, func, insert, select

from obslab import conventions as c
from obslab.platform.app import ServiceContext, create_service_app, parse_body
from obslab.platform.ids import new_id
from obslab.services.common.money import Currency, amount_bucket
from obslab.services.fraud.rules import VELOCITY_WINDOW_SECONDS, Decision, Facts, assess

metadata = MetaData()

assessments = Table(
    "assessments", metadata,
    Column("id", String(32), primary_key=True),
    Column("customer_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("counterparty", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("score", Float, nullable=False),
    Column("decision", String(8), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_assessments_customer_time", "customer_id", "created_ms"),
    Index("ix_assessments_customer_counterparty", "customer_id", "counterparty"),
)

Text64 = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AssessmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: Text64
    kind: Literal["transfer", "payment"]
    amount_minor: Annotated[int, Field(gt=0, strict=True)]
    currency: Currency
    counterparty: Text64
    reference: Text64


def create_app(db_url: str | None = None) -> Flask:
    return create_service_app(
        c.FRAUD, _routes, metadata=metadata, db_url=db_url,
        metric_specs=[c.FRAUD_ASSESSMENTS, c.FRAUD_RISK_SCORE],
    )


# Built once: building a statement anew costs SQLAlchemy more than running it.
_RECENT_ASSESSMENTS = select(func.count()).select_from(assessments).where(
    (assessments.c.customer_id == bindparam("customer_id"))
    & (assessments.c.created_ms >= bindparam("since_ms")))
_KNOWN_COUNTERPARTY = select(assessments.c.id).where(
    (assessments.c.customer_id == bindparam("customer_id"))
    & (assessments.c.counterparty == bindparam("counterparty"))
    & (assessments.c.decision != Decision.DENY.value)).limit(1)
_INSERT_ASSESSMENT = insert(assessments)


def _routes(app: Flask, ctx: ServiceContext) -> None:
    assert ctx.db is not None
    db = ctx.db

    def facts_for(conn: Any, body: AssessmentRequest, now_ms: int) -> Facts:
        recent = conn.execute(_RECENT_ASSESSMENTS, {
            "customer_id": body.customer_id, "since_ms": now_ms - VELOCITY_WINDOW_SECONDS * 1000,
        }).scalar_one()
        known = conn.execute(_KNOWN_COUNTERPARTY, {
            "customer_id": body.customer_id, "counterparty": body.counterparty,
        }).first() is not None
        return Facts(body.kind, body.amount_minor, body.counterparty, recent, known)

    @app.post("/assessments")
    def create_assessment():
        body = parse_body(AssessmentRequest)
        now_ms = int(time.time() * 1000)
        assessment_id = new_id("risk_")

        def assess_and_record(conn: Any) -> Any:
            # The customer's history read and this assessment written in one unit of work: one
            # connection and one span on a transfer's path, not two. On SQLite, whose write
            # transactions hold the lock from their start, two assessments of one customer at
            # once now also see each other for the velocity rule.
            result = assess(facts_for(conn, body, now_ms))
            conn.execute(_INSERT_ASSESSMENT, {
                "id": assessment_id, "customer_id": body.customer_id, "kind": body.kind,
                "reference": body.reference, "counterparty": body.counterparty,
                "amount_minor": body.amount_minor, "currency": body.currency,
                "score": result.score, "decision": result.decision.value, "created_ms": now_ms,
            })
            return result

        result = db.run(assess_and_record)
        decision = result.decision
        span = trace.get_current_span()
        span.set_attribute(c.ATTR_TRANSACTION_TYPE, body.kind)
        span.set_attribute(c.ATTR_AMOUNT_BUCKET, amount_bucket(body.amount_minor))
        span.set_attribute(c.ATTR_RISK_SCORE, result.score)
        span.set_attribute(c.ATTR_RISK_DECISION, decision.value)
        ctx.metrics.count(c.FRAUD_ASSESSMENTS, kind=body.kind, decision=decision.value)
        ctx.metrics.observe(c.FRAUD_RISK_SCORE, result.score, kind=body.kind)
        return {"id": assessment_id, "score": result.score, "decision": decision.value,
                "reasons": result.reasons}
