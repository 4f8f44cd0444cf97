"""Opaque identifiers: a prefix naming the kind, then 16 random lowercase alphanumerics."""

from __future__ import annotations

import re
import secrets
import string
from typing import Annotated

from pydantic import StringConstraints

from obslab import conventions as c
from obslab.platform.errors import ApiError

_ALPHABET = string.ascii_lowercase + string.digits

# A field that names an account: any plain identifier is well formed (400 otherwise) ...
AccountIdField = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")]
# ... but only the form every customer account id has (openapi.yaml, AccountId) can be one a
# customer names. Anything else is answered 404 at once: never recorded, scored or looked up, so
# never echoed back, and a system account is as unknown as a missing one.
CUSTOMER_ACCOUNT_ID = re.compile(c.ACCOUNT_ID_PATTERN)


def new_id(prefix: str) -> str:
    """``new_id("acc_")`` -> ``"acc_k3v9x0q2m7d1p8zt"`` (82 bits of randomness)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(16))


def require_customer_account(account_id: str, side: str | None = None) -> str:
    """``account_id`` when it has a customer account's form; a 404 (naming ``side``: source,
    destination) otherwise. An ApiError, not a ValueError: pydantic validators let it through."""
    if not CUSTOMER_ACCOUNT_ID.fullmatch(account_id):
        raise ApiError(404, "account_not_found", f"{side + ' ' if side else ''}account not found")
    return account_id
