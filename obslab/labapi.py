"""What the terminal commands that talk to a lab component share: a JSON client whose every
failure is one line that says what to do, and a plain-text table."""

from __future__ import annotations

from typing import Any

import requests

from obslab import conventions as c
from obslab import settings


class LabApiError(Exception):
    """One line that says what to fix."""


class LabApiClient:
    """JSON over HTTP to one lab component (``component``'s URL unless ``url`` is given)."""

    def __init__(self, component: str, url: str | None = None, *, timeout: float = 10.0,
                 actor: str | None = None, token: str | None = None) -> None:
        """``token``: the control-plane token to send (the fault-injector answers nobody else)."""
        self.component = component
        self.url = (url or settings.service_url(component)).rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False   # loopback only; never through a proxy
        if actor:
            self.session.headers[c.HEADER_ACTOR] = actor
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise LabApiError(f"the {self.component} is not reachable at {self.url}; is the lab running? "
                              "(`obslab status`; start it with `obslab up --detach`)") from None
        except requests.Timeout:
            raise LabApiError(f"the {self.component} at {self.url} did not answer within {self.timeout:g} s") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = body.get("message") if isinstance(body, dict) else response.text[:200]
            raise LabApiError(f"{message} (HTTP {response.status_code})")
        return body


def text_table(header: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns two spaces apart, the header first."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])
