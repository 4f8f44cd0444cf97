"""Wall-clock helpers: timestamps are stored as integer epoch milliseconds, shown as ISO 8601."""

from __future__ import annotations

import time
from datetime import datetime, timezone


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_utc(ms: int) -> str:
    """``1700000000000`` -> ``"2023-11-14T22:13:20.000Z"``."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
