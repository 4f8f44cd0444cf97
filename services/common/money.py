"""Money rules shared by every service: integer minor units inside, decimal strings outside.

Floats never touch an amount: JSON numbers are parsed straight into ``Decimal`` and stored as
integer minor units (cents). Every supported currency has two decimal places.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field

from obslab import conventions as c

CURRENCIES: frozenset[str] = frozenset({"EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK"})
MINOR_UNITS_PER_MAJOR = 100
# Largest single movement the platform accepts (major units): a guard against fat fingers.
MAX_AMOUNT = Decimal("1000000.00")


def _known_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"unknown currency {code!r}; supported: {', '.join(sorted(CURRENCIES))}")
    return code


Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_known_currency)]
# Positive, at most 2 decimal places, at most MAX_AMOUNT; accepts a JSON number or a string.
Amount = Annotated[Decimal, Field(gt=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False)]


def to_minor(amount: Decimal) -> int:
    """``Decimal("12.34")`` -> ``1234``; raises if the amount has more than 2 decimal places."""
    minor = amount * MINOR_UNITS_PER_MAJOR
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more than 2 decimal places")
    return int(minor)


def to_decimal_string(minor: int) -> str:
    """``1234`` -> ``"12.34"``, ``-5`` -> ``"-0.05"``: the form balances and amounts take in JSON."""
    return str((Decimal(minor) / MINOR_UNITS_PER_MAJOR).quantize(Decimal("0.01")))


def amount_bucket(minor: int) -> str:
    """A bounded, non-identifying description of an amount for span attributes."""
    major = abs(minor) // MINOR_UNITS_PER_MAJOR
    for name, upper in c.AMOUNT_BUCKETS:
        if major < upper:
            return name
    return c.AMOUNT_BUCKET_LARGEST
