"""alert-receiver: where notifications are stored, how they are read, and how long they are kept.

Every notification is stored with its payload exactly as Alertmanager sent it (the evidence), one
row per alert beside it for filtering. Every read goes through the views, which filter the links
again (:class:`.links.LinkPolicy`): a foreign link is stored, never shown.

Notifications are kept by count (``$OBSLAB_RECEIVER_MAX_NOTIFICATIONS``, 10000) and age
(``$OBSLAB_RECEIVER_RETENTION_HOURS``, 168), pruned oldest first with the insert that overflows
them (:class:`NotificationStore`). The drills' tables (:mod:`.drills`) share the metadata.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.mysql import LONGTEXT

from obslab import conventions as c
from obslab import settings
from obslab.platform.clock import now_ms
from obslab.platform.db import Database
from obslab.services.alert_receiver import drills
from obslab.services.alert_receiver.links import LinkPolicy
from obslab.services.alert_receiver.schema import _ALERTNAME, WebhookPayload

log = logging.getLogger(__name__)


# --- storage ----------------------------------------------------------------------------------

metadata = MetaData()
# MySQL's TEXT stops at 64 KiB; a group of many alerts with long descriptions can exceed it.
_PAYLOAD = Text().with_variant(LONGTEXT(), "mysql", "mariadb")

notifications_table = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at_ms", BigInteger, nullable=False),
    Column("receiver", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("group_key", Text, nullable=False),
    Column("alertnames", Text, nullable=False),     # comma-separated, for people reading the table
    Column("payload", _PAYLOAD, nullable=False),    # exactly what Alertmanager sent
    Index("ix_notifications_receiver", "receiver"),
)
alerts_table = Table(
    "notification_alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", Integer, ForeignKey("notifications.id"), nullable=False),
    Column("alertname", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(32), nullable=False),
    Column("service", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Index("ix_notification_alerts_notification", "notification_id"),
    Index("ix_notification_alerts_alertname", "alertname"),
)
drill_tables = drills.define_tables(metadata)



# --- the views --------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _alert_view(alert: dict[str, Any], links: LinkPolicy) -> dict[str, Any]:
    labels = alert.get("labels", {})
    annotations = dict(alert.get("annotations", {}))
    removed = links.removed(annotations)
    for name in removed:
        annotations[name] = ""
    # The payload is stored as sent: a time validated from a number is still a number here.
    starts, ends = (_text(alert.get(field)) for field in ("startsAt", "endsAt"))
    # Alertmanager sends Go's zero time (0001-01-01T00:00:00Z) as endsAt of an alert still firing.
    if ends and ends.startswith("0001-"):
        ends = None
    return {
        "alertname": labels.get(_ALERTNAME, ""),
        "status": alert.get("status", ""),
        "severity": labels.get(c.L_SEVERITY, ""),
        "service": labels.get(c.L_SERVICE, ""),
        "summary": annotations.get(c.A_SUMMARY, ""),
        "description": annotations.get(c.A_DESCRIPTION, ""),
        "runbook_url": annotations.get(c.A_RUNBOOK_URL, ""),
        "dashboard_url": annotations.get(c.A_DASHBOARD_URL, ""),
        # Links this receiver would not show (not to a lab host): shown empty, named here.
        "links_removed": removed,
        "starts_at": starts,
        "ends_at": ends,
        "labels": labels,
        "annotations": annotations,
    }


def _notification_view(row: Any, links: LinkPolicy) -> dict[str, Any]:
    payload = json.loads(row.payload)
    alerts = [_alert_view(a, links) for a in payload.get("alerts", [])]
    return {
        "id": row.id,
        "received_at": row.received_at_ms / 1000,
        "receiver": row.receiver,
        "status": row.status,
        "group_key": row.group_key,
        "alerts": alerts,
        # Which link annotations were removed from any of its alerts (details per alert).
        "links_removed": sorted({name for a in alerts for name in a["links_removed"]}),
    }


# --- storage: kept by count and age -------------------------------------------------------------

# The age check reads the oldest rows by primary key, this many at most per check.
_AGE_BATCH = 1000
# An expired notification outlives the retention by at most this share of it (or a minute).
_AGE_CHECK_SHARE = 0.01
_AGE_CHECK_MAX_S = 60.0


@dataclass
class _PruneState:
    """What one process knows between inserts (never trusted beyond a hint: ids are global)."""

    floor: int | None = None          # the lowest id that may still exist; None: unknown yet
    next_age_check_ms: int = 0


class NotificationStore:
    """Notifications and their alerts in the receiver's own database, kept by count and age.

    Pruning runs in the insert's transaction and costs nothing on most inserts: ids only grow, so
    ``new id - lowest id that may exist + 1`` bounds the count from above without a COUNT(*)
    (also across processes: another one's inserts raise the id, its prunes only lower the real
    count). When the bound passes the maximum, the oldest are deleted down to the maximum less a
    1% batch (one index walk per ~1% of inserts). Age is checked on the oldest rows by primary key
    (ids follow arrival), at most every 1% of the retention (a minute at most). A notification's
    alert rows go with it.
    """

    def __init__(self, db: Database, links: LinkPolicy | None = None, *, max_notifications: int | None = None,
                 retention_seconds: float | None = None) -> None:
        self.db = db
        self.links = links or LinkPolicy.from_settings()
        self.max_notifications = max_notifications or settings.RECEIVER_MAX_NOTIFICATIONS.get()
        self.retention_ms = int(1000 * (retention_seconds or 3600 * settings.RECEIVER_RETENTION_HOURS.get()))
        self._batch = max(1, self.max_notifications // 100)
        self._age_check_ms = int(min(_AGE_CHECK_MAX_S * 1000, self.retention_ms * _AGE_CHECK_SHARE))
        self._state = _PruneState()

    def add(self, receiver: str, payload: WebhookPayload, raw: dict[str, Any]) -> int:
        received = now_ms()
        state = self._state

        def unit(conn: Connection) -> tuple[int, int | None, bool]:
            result = conn.execute(insert(notifications_table).values(
                received_at_ms=received, receiver=receiver, status=payload.status,
                group_key=payload.groupKey,
                alertnames=",".join(sorted({a.labels[_ALERTNAME] for a in payload.alerts})),
                payload=json.dumps(raw, sort_keys=True),
            ))
            notification_id = result.inserted_primary_key[0]
            conn.execute(insert(alerts_table), [{
                "notification_id": notification_id,
                "alertname": a.labels[_ALERTNAME][:200],
                "status": a.status,
                "severity": a.labels.get(c.L_SEVERITY, "")[:32],
                "service": a.labels.get(c.L_SERVICE, "")[:64],
                "fingerprint": a.fingerprint[:64],
            } for a in payload.alerts])
            floor, checked_age = self._prune(conn, notification_id, received, state)
            return notification_id, floor, checked_age

        notification_id, floor, checked_age = self.db.run(unit)
        # Only after the commit: a transaction run again must not start from a state it never kept.
        state.floor = floor
        if checked_age:
            state.next_age_check_ms = received + self._age_check_ms
        return notification_id

    def _prune(self, conn: Connection, newest: int, now: int, state: _PruneState) -> tuple[int | None, bool]:
        """Delete what is over the count or the age; returns (new floor, whether age was checked)."""
        ids = notifications_table.c.id
        floor = state.floor
        if floor is None:
            floor = conn.execute(select(func.min(ids))).scalar() or newest
        cutoff = 0
        if newest - floor + 1 > self.max_notifications:
            keep = max(1, self.max_notifications - self._batch)
            cutoff = conn.execute(select(ids).order_by(ids.desc()).offset(keep).limit(1)).scalar() or 0
        checked_age = now >= state.next_age_check_ms
        if checked_age:
            oldest = conn.execute(select(ids, notifications_table.c.received_at_ms).where(ids > cutoff)
                                  .order_by(ids).limit(_AGE_BATCH)).all()
            for row in oldest:
                if row.received_at_ms >= now - self.retention_ms:
                    break
                cutoff = row.id
        if cutoff:
            conn.execute(delete(alerts_table).where(alerts_table.c.notification_id <= cutoff))
            deleted = conn.execute(delete(notifications_table).where(ids <= cutoff)).rowcount
            if deleted:
                log.info("notifications pruned", extra={"deleted": deleted, "up_to_id": cutoff})
            floor = max(floor, cutoff + 1)
        return floor, checked_age

    def list(self, *, receiver: str | None = None, status: str | None = None,
             alertname: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(notifications_table)
        if receiver:
            query = query.where(notifications_table.c.receiver == receiver)
        if status:
            query = query.where(notifications_table.c.status == status)
        if alertname:
            query = query.where(notifications_table.c.id.in_(
                select(alerts_table.c.notification_id).where(alerts_table.c.alertname == alertname)))
        # Ids grow with arrival; received_at can tie within a millisecond.
        query = query.order_by(notifications_table.c.id.desc()).limit(limit)
        with self.db.connect() as conn:
            rows = conn.execute(query).all()
        return [_notification_view(r, self.links) for r in rows]
