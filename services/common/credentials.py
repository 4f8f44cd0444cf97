"""What a login body is: auth judges logins by it, and the gateway's edge refuses a body that
cannot be one without a hop to auth (services/gateway/guard.py). One model, so both refuse alike."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class LoginRequest(BaseModel):
    # No length rules on login: a wrong password of any length is just a wrong password.
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=64)]
    password: Annotated[str, StringConstraints(max_length=1024)]
