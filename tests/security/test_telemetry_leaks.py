"""Secrets and personal data must not leave a service in its telemetry, logs or spans.

Each test is one way a secret used to leak (or could): the real code path produces the data, the
real JSON log handler and the real span redaction scrub it, and the test reads what would have
been shipped.
"""

from __future__ import annotations

import io
import json
import logging
import secrets as stdlib_secrets
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from flask import Flask, request
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Column, MetaData, String, Table, create_engine, insert
from sqlalchemy.exc import IntegrityError

from obslab.platform.db import Database
from obslab.services.common import tokens
from obslab.telemetry import instrument_flask_app
from obslab.telemetry.logs import json_handler
from obslab.telemetry.redaction import RedactingSpanExporter, redact_span

CUSTOMER = "cus_k3v9x0q2m7d1p8zt"
MASKED_CUSTOMER = "cus_****p8zt"


@pytest.fixture
def log_output() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the services' JSON handler into a string."""
    stream = io.StringIO()
    logger = logging.getLogger(f"leaks-{id(stream)}")
    logger.handlers[:] = [json_handler("leaks", stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.handlers.clear()


def _password_hash() -> str:
    # Argon2id as the auth service stores it; cheap parameters, same format.
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(stdlib_secrets.token_urlsafe(12))


def _users_table(metadata: MetaData) -> Table:
    return Table("users", metadata,
                 Column("id", String(32), primary_key=True),
                 Column("username", String(64), nullable=False, unique=True),
                 Column("password_hash", String(256), nullable=False))


def _exported_text(span: ReadableSpan) -> str:
    """Everything of a span that an exporter ships and a person could read."""
    parts = [span.name, span.status.description or "", json.dumps(dict(span.attributes or {}), default=str)]
    for event in span.events:
        parts += [event.name, json.dumps(dict(event.attributes or {}), default=str)]
    return "\n".join(parts)


def _duplicate_insert(users: Table, password_hash: str, run) -> IntegrityError:
    run(lambda conn: conn.execute(insert(users).values(id="cus_aaaaaaaaaaaaaaaa", username="alice",
                                                         password_hash=_password_hash())))
    with pytest.raises(IntegrityError) as caught:
        run(lambda conn: conn.execute(insert(users).values(id=CUSTOMER, username="alice",
                                                             password_hash=password_hash)))
    return caught.value


def test_a_failed_insert_never_puts_the_password_hash_into_logs_or_spans(tmp_path, spans, log_output):
    log, stream = log_output
    metadata = MetaData()
    users = _users_table(metadata)
    db = Database("auth", metadata, f"sqlite:///{tmp_path / 'auth.sqlite3'}")
    password_hash = _password_hash()
    with trace.get_tracer("leaks").start_as_current_span("POST /api/v1/auth/register") as span:
        error = _duplicate_insert(users, password_hash, db.run)
        span.record_exception(error)
        log.exception("registration failed", extra={"error": str(error)})
    db.engine.dispose()

    # At the source: the engine never renders bound parameters into its errors.
    assert "hide_parameters=True" in str(error)
    assert password_hash not in str(error)
    output = stream.getvalue()
    assert "UNIQUE constraint failed" in output
    assert password_hash not in output
    finished = spans.get_finished_spans()
    assert any("INSERT INTO users" in str(s.attributes.get("db.query.text", s.attributes.get("db.statement")))
               for s in finished), "the insert was not traced: nothing was checked"
    for finished_span in finished:
        assert password_hash not in _exported_text(redact_span(finished_span)), finished_span.name


def test_a_password_hash_in_an_error_from_a_careless_engine_is_still_kept_out_of_the_log(tmp_path, log_output):
    # An engine built without hide_parameters (a script, a future service) renders its
    # parameters into the error: the log handler is the second line of defence.
    log, stream = log_output
    metadata = MetaData()
    users = _users_table(metadata)
    engine = create_engine(f"sqlite:///{tmp_path / 'careless.sqlite3'}")
    metadata.create_all(engine)
    password_hash = _password_hash()

    def run(unit_of_work):
        with engine.begin() as conn:
            return unit_of_work(conn)

    error = _duplicate_insert(users, password_hash, run)
    engine.dispose()
    assert password_hash in str(error), "the careless engine hid the parameters: nothing was checked"
    log.exception("registration failed")
    log.error("registration failed: %s", error, extra={"detail": [str(error)]})
    output = stream.getvalue()
    assert password_hash not in output
    assert password_hash.rsplit("$", 1)[-1] not in output   # not even the digest alone
    assert "[REDACTED_PASSWORD_HASH]" in output and CUSTOMER not in output


def test_customer_ids_in_log_records_are_masked(log_output):
    log, stream = log_output
    try:
        raise RuntimeError(f"accounts answered 503 for owner={CUSTOMER}")
    except RuntimeError:
        # What the services' dependency warnings wrote verbatim.
        log.exception("dependency degraded: owner=%s", CUSTOMER,
                      extra={"owner": CUSTOMER, "request": {"params": {"owner": CUSTOMER}, "ids": [CUSTOMER]}})
    output = stream.getvalue()
    assert CUSTOMER not in output
    line = json.loads(output)
    assert line["message"] == f"dependency degraded: owner={MASKED_CUSTOMER}"
    assert line["owner"] == MASKED_CUSTOMER
    assert line["request"] == {"params": {"owner": MASKED_CUSTOMER}, "ids": [MASKED_CUSTOMER]}
    assert f"owner={MASKED_CUSTOMER}" in line["exception"]


def test_customer_ids_in_span_url_query_are_masked(spans):
    app = Flask("leaks")

    @app.get("/accounts")
    def accounts():
        return {"owner": request.args["owner"]}

    instrument_flask_app(app)
    response = app.test_client().get(f"/accounts?owner={CUSTOMER}&limit=5")
    assert response.status_code == 200
    recorded = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert recorded and any(CUSTOMER in _exported_text(s) for s in recorded), "nothing to redact was recorded"

    shipped = InMemorySpanExporter()
    RedactingSpanExporter(shipped).export(recorded)
    for span in shipped.get_finished_spans():
        assert CUSTOMER not in _exported_text(span)
        for key in ("url.query", "url.full", "http.target", "http.url"):
            if key in span.attributes:
                assert MASKED_CUSTOMER in span.attributes[key], key
    assert any("url.query" in s.attributes or "http.target" in s.attributes for s in shipped.get_finished_spans())


@pytest.mark.parametrize("kind", ["access-token", "control-token"])
def test_a_bearer_token_logged_by_mistake_is_redacted(kind, log_output):
    log, stream = log_output
    if kind == "access-token":
        token = tokens.issue(stdlib_secrets.token_urlsafe(32), tokens.Identity(CUSTOMER, "alice"), 60)
    else:
        token = stdlib_secrets.token_urlsafe(32)  # the lab's opaque control tokens have this form
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    log.warning("upstream refused the call with headers %s", headers,
                extra={"headers": headers, "auth": [f"Bearer {token}"], "access_token": token})
    output = stream.getvalue()
    assert token not in output
    line = json.loads(output)
    assert "Bearer [REDACTED_TOKEN]" in line["message"]
    assert line["headers"] == {"Authorization": "Bearer [REDACTED_TOKEN]", "Accept": "application/json"}
    assert line["access_token"] == "[REDACTED]"


def test_a_password_in_a_logged_request_body_is_redacted(log_output):
    log, stream = log_output
    body = '{"username": "alice", "password": "correct horse battery staple"}'
    log.info("rejected body %s", body, extra={"body": json.loads(body), "raw": body})
    output = stream.getvalue()
    assert "correct horse" not in output
    line = json.loads(output)
    assert line["body"] == {"username": "alice", "password": "[REDACTED]"}
    assert line["raw"] == '{"username": "alice", "password": "[REDACTED]"}'
