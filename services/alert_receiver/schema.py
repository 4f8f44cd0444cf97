"""alert-receiver: the Alertmanager webhook payload it accepts (version 4).

A post is validated against these models before anything is written, so a malformed one is
refused with a 400 and leaves the stored notifications as they were. Only what the receiver
uses is declared; anything else Alertmanager sends is ignored (and still stored as received).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

STATUSES = ("firing", "resolved")
_ALERTNAME = "alertname"


# --- the Alertmanager webhook payload, version 4 ----------------------------------------------

Status = Literal["firing", "resolved"]


class WebhookAlert(BaseModel):
    """One alert in a notification, as Alertmanager's webhook notifier sends it."""

    model_config = ConfigDict(extra="ignore")

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime
    generatorURL: str = ""
    fingerprint: str = ""

    @field_validator("labels")
    @classmethod
    def _named(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get(_ALERTNAME):
            raise ValueError("every alert needs an 'alertname' label")
        return labels


class WebhookPayload(BaseModel):
    """A notification (one alert group), ``version`` "4"."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str = Field(min_length=1)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Status
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[WebhookAlert] = Field(min_length=1)
