"""alert-receiver: the Alertmanager webhook receiver every route points at in the lab.

Kept light to import: the CLI needs these names without Flask or SQLAlchemy.
"""

from __future__ import annotations

from obslab import conventions as c
from obslab import topology

ALERT_RECEIVER_PORT = topology.DEFAULT_PORTS[c.ALERT_RECEIVER]

# Alertmanager's webhook payload version this receiver understands.
WEBHOOK_VERSION = "4"
NOTIFICATIONS_PATH = f"{c.API_PREFIX}/notifications"
