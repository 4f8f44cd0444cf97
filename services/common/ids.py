"""Opaque identifiers: a prefix naming the kind, then 16 random lowercase alphanumerics."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str) -> str:
    """``new_id("acc_")`` -> ``"acc_k3v9x0q2m7d1p8zt"`` (82 bits of randomness)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(16))
