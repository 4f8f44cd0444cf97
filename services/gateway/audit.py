"""The gateway's audit log, written in batches by one thread.

Every state-changing call is recorded (who, what route, the answer, the trace, a digest of the
idempotency key). Written one row per request, the insert was the gateway's costliest step under
a flood of junk logins (a fifth of its CPU, ``obslab bench flood``) and a database round trip on
every transfer's path. Records now queue in memory and one thread inserts them together, at
least every ``max_delay_s`` or as soon as ``max_batch`` wait. The stop of the service flushes
what is queued (obslab/platform/serving.py).

What this trades, deliberately: a record is in the database up to ``max_delay_s`` after its
answer, and a process killed outright loses that much. Losing an audit line was already an
alert, not a 500 (``gateway_audit_records_total{outcome="failed"}``); so is a queue that outgrows
``max_pending`` because the database stopped taking rows: memory stays bounded.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Table, insert

from obslab import conventions as c
from obslab.platform.db import Database
from obslab.telemetry.metrics import MetricSet

log = logging.getLogger(__name__)

MAX_DELAY_S = 0.2
MAX_BATCH = 500
MAX_PENDING = 20_000
# One warning per this many seconds while records are dropped: a flood must not flood the log.
DROP_WARNING_EVERY_S = 10.0


class AuditWriter:
    def __init__(self, db: Database, table: Table, metrics: MetricSet, *, max_delay_s: float = MAX_DELAY_S,
                 max_batch: int = MAX_BATCH, max_pending: int = MAX_PENDING) -> None:
        self.db, self.table, self.metrics = db, table, metrics
        self.max_delay_s, self.max_batch, self.max_pending = max_delay_s, max_batch, max_pending
        self._pending: list[dict] = []
        self._lock = threading.Lock()          # guards _pending
        self._writing = threading.Lock()       # one insert at a time: the thread's, or a flush's
        self._wake = threading.Event()
        self._closed = False
        self._dropped_warned = 0.0
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, record: dict) -> None:
        """Queue one row of the audit table (never blocks on the database)."""
        with self._lock:
            if self._closed or len(self._pending) >= self.max_pending:
                dropped = True
            else:
                dropped = False
                self._pending.append(record)
                if len(self._pending) >= self.max_batch:
                    self._wake.set()
        if dropped:
            self.metrics.count(c.AUDIT_RECORDS, outcome="failed")
            now = time.monotonic()
            if now - self._dropped_warned >= DROP_WARNING_EVERY_S:
                self._dropped_warned = now
                log.warning("audit records dropped: the queue is full (the database is not taking them) or "
                            "the service is stopping", extra={"pending": self.max_pending})

    def flush(self, deadline: float | None = None) -> None:
        """Write what is queued now (tests, and the service's stop). Past ``deadline``
        (monotonic), what is left is counted as failed instead: a stopping service must end."""
        with self._writing:
            while batch := self._take():
                if deadline is not None and time.monotonic() > deadline:
                    with self._lock:
                        batch, self._pending = batch + self._pending, []
                    self.metrics.count(c.AUDIT_RECORDS, len(batch), outcome="failed")
                    log.error("audit records not written before the service stopped", extra={"records": len(batch)})
                    return
                self._write(batch)

    def close(self, timeout: float = 2.5) -> None:
        """Stop taking records (later ones are counted as failed) and write the queue, within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.flush(deadline)

    def _take(self) -> list[dict]:
        with self._lock:
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            if len(self._pending) >= self.max_batch:
                self._wake.set()    # another full batch waits: no need to wait for the delay
        return batch

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.max_delay_s)
            self._wake.clear()
            with self._writing:
                self._write(self._take())

    def _write(self, batch: list[dict]) -> None:
        if not batch:
            return
        try:
            self.db.run(lambda conn: conn.execute(insert(self.table), batch))
            self.metrics.count(c.AUDIT_RECORDS, len(batch), outcome="written")
        except Exception:  # the calls already happened; losing their lines is an alert, not a crash
            self.metrics.count(c.AUDIT_RECORDS, len(batch), outcome="failed")
            log.exception("audit records not written", extra={"records": len(batch)})
