"""The shape of a bank's week: how busy the estate is at a given moment, relative to base load.

One definition for everything that makes traffic (the load generator, the IIS mock, history),
so that live traffic, simulated IIS load and generated history share the same day and week.

Seeds: base load outside business hours, 2-2.5x during business hours. Weekdays rise from
07:00, peak late morning and mid-afternoon (2.5x) with a lunch dip (2.0x), fall after 18:00;
weekends carry 80 % of base load and no business-hour peak. Times are in the lab's time zone,
UTC unless ``OBSLAB_UTC_OFFSET_HOURS`` says otherwise.

>>> import datetime as dt
>>> round(float(multiplier(dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc).timestamp())), 2)
1.0
>>> 2.0 <= float(multiplier(dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.timezone.utc).timestamp())) <= 2.5
True
"""

from __future__ import annotations

import numpy as np

from obslab import settings

BUSINESS_START_HOUR = 8.0
BUSINESS_END_HOUR = 18.0
RAMP_HOURS = 1.0            # 07:00-08:00 up, 18:00-19:00 down
WEEKEND_LEVEL = 0.8
PEAK_LEVEL = 2.5
LUNCH_LEVEL = 2.0
SECONDS_PER_DAY = 86_400


def utc_offset_seconds() -> float:
    return settings.UTC_OFFSET_HOURS.get() * 3600.0


def _business_level(hour: np.ndarray) -> np.ndarray:
    """Level inside business hours: 2.5x at 10:30 and 15:00, 2.0x at 12:45 (lunch)."""
    # A smooth curve through the peaks and the lunch dip: cosine between consecutive anchors.
    anchors_h = np.array([BUSINESS_START_HOUR, 10.5, 12.75, 15.0, BUSINESS_END_HOUR])
    anchors_v = np.array([2.1, PEAK_LEVEL, LUNCH_LEVEL, PEAK_LEVEL, 2.1])
    idx = np.clip(np.searchsorted(anchors_h, hour, side="right") - 1, 0, len(anchors_h) - 2)
    h0, h1 = anchors_h[idx], anchors_h[idx + 1]
    v0, v1 = anchors_v[idx], anchors_v[idx + 1]
    t = np.clip((hour - h0) / (h1 - h0), 0.0, 1.0)
    return v0 + (v1 - v0) * (1 - np.cos(np.pi * t)) / 2


def multiplier(timestamps: float | np.ndarray) -> np.ndarray:
    """Load relative to base load (1.0) at each Unix timestamp (seconds)."""
    ts = np.asarray(timestamps, dtype=float) + utc_offset_seconds()
    days = np.floor(ts / SECONDS_PER_DAY)
    hour = (ts - days * SECONDS_PER_DAY) / 3600.0
    weekday = (days.astype(np.int64) + 3) % 7          # 1970-01-01 was a Thursday; Monday = 0
    business = _business_level(np.clip(hour, BUSINESS_START_HOUR, BUSINESS_END_HOUR))
    ramp_up = np.clip((hour - (BUSINESS_START_HOUR - RAMP_HOURS)) / RAMP_HOURS, 0, 1)
    ramp_down = np.clip(((BUSINESS_END_HOUR + RAMP_HOURS) - hour) / RAMP_HOURS, 0, 1)
    inside = np.minimum(ramp_up, ramp_down)
    smooth = (1 - np.cos(np.pi * inside)) / 2
    weekday_level = 1.0 + (business - 1.0) * smooth
    return np.where(weekday >= 5, WEEKEND_LEVEL, weekday_level)


def is_business_hours(timestamp: float) -> bool:
    ts = timestamp + utc_offset_seconds()
    days = int(ts // SECONDS_PER_DAY)
    hour = (ts - days * SECONDS_PER_DAY) / 3600.0
    return (days + 3) % 7 < 5 and BUSINESS_START_HOUR <= hour < BUSINESS_END_HOUR
