"""What one transfer costs in telemetry: its spans, counted. Every span is CPU in the service
that makes it, in its export and in the trace store (obslab/bench/README.md), so a unit of work
or a hop more on the transfer's path shows here first."""

from __future__ import annotations

import collections

from opentelemetry.trace import SpanKind


def test_a_transfers_trace_is_fifteen_spans_with_one_database_unit_per_service_and_two_in_transactions(
        funded, spans):
    alice, account = funded(10_000)
    savings = alice.open_account()
    spans.clear()
    assert alice.transfer(account, savings, "30.00").status_code == 201
    finished = spans.get_finished_spans()
    [gateway] = [s for s in finished if s.kind is SpanKind.SERVER and s.name == "POST /api/v1/transfers"]
    # The transfer's trace, without the test's own call to the gateway (its root, a client span).
    lab = [s for s in finished if s.context.trace_id == gateway.context.trace_id
           and not (s.kind is SpanKind.CLIENT and s.parent is None)]
    # (A service's database is named after it: "transactions", or "obslabtest_<run>_transactions".)
    units = collections.Counter(s.attributes["db.namespace"].rsplit("_", 1)[-1]
                                for s in lab if "db.namespace" in s.attributes)
    assert units == {"transactions": 2, "fraud": 1, "accounts": 1, "notifications": 1}, \
        [s.name for s in lab if "db.namespace" in s.attributes]
    servers = sorted(s.name for s in lab if s.kind is SpanKind.SERVER)
    assert servers == ["POST /api/v1/transfers", "POST /assessments", "POST /movements", "POST /notifications",
                       "POST /transfers"]
    calls = [s for s in lab if s.kind is SpanKind.CLIENT and "url.full" in s.attributes]
    assert len(calls) == 4, [s.attributes["url.full"] for s in calls]
    assert len(lab) == 15, sorted(s.name for s in lab)
