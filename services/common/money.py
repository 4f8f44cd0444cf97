"""Money rules shared by every service: integer minor units inside, decimal strings outside.

A customer sends an amount as a JSON *string* in one strict grammar (:data:`AMOUNT_PATTERN`):
plain ASCII digits, no sign, no leading zeros, at most two decimals, nothing else. JSON numbers
(``1e6``, ``2.50`` as a float), exponents, digit separators (``1_000``), spaces and a bare
trailing point (``5.``), which Python's ``Decimal`` or pydantic would happily read, are refused.
Inside, an amount is integer minor units (cents): every supported currency has two decimals.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainSerializer, PlainValidator, WithJsonSchema


CURRENCIES: frozenset[str] = frozenset({"EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK"})
MINOR_UNITS_PER_MAJOR = 100
# Largest single movement the platform accepts (major units): a guard against fat fingers.
MAX_AMOUNT = Decimal("1000000.00")

# Upper bounds (major units) of the amount buckets used on spans.
AMOUNT_BUCKETS: tuple[tuple[str, int], ...] = (
    ("lt_10", 10), ("lt_100", 100), ("lt_1k", 1_000), ("lt_10k", 10_000), ("lt_100k", 100_000),
)
AMOUNT_BUCKET_LARGEST = "ge_100k"

SYSTEM_ACCOUNT_CASH = "cash"              # where deposits come from (may go negative)
SYSTEM_ACCOUNT_SETTLEMENT = "settlement"  # where card payments go before the merchant is paid


def system_account_id(purpose: str, currency: str) -> str:
    """The bank's own account for ``purpose`` in ``currency``, e.g. ``sys_settlement_eur``."""
    return f"sys_{purpose}_{currency.lower()}"


def _known_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"unknown currency {code!r}; supported: {', '.join(sorted(CURRENCIES))}")
    return code


Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_known_currency)]
# The one grammar of an amount a customer sends (a JSON string), here and in the public API
# document. On top of it an amount is greater than 0 and at most MAX_AMOUNT (parse_amount).
AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$"
# The same set of strings as AMOUNT_PATTERN *and* 0 < amount <= MAX_AMOUNT, in one regular
# expression, for documents that cannot compare numbers in strings (the OpenAPI ``Amount``
# schema says exactly this; tests/unit/test_money.py proves both definitions agree).
AMOUNT_SCHEMA_PATTERN = r"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,5}(\.[0-9]{1,2})?|1000000(\.00?)?)$"
_AMOUNT = re.compile(AMOUNT_PATTERN)
AMOUNT_RULE = ('a decimal string such as "12.34": digits, optionally a point and one or two decimals; '
               "no sign, spaces, exponent, separators or leading zeros")


def parse_amount(value: Any) -> Decimal:
    """A customer's amount (the JSON value as sent) as an exact ``Decimal``; ``ValueError`` says why not.

    >>> parse_amount("12.5"), parse_amount("0.01")
    (Decimal('12.5'), Decimal('0.01'))
    """
    if not isinstance(value, str):
        kind = "a number" if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) \
            else "null" if value is None else f"a {type(value).__name__}"
        raise ValueError(f'must be a JSON string such as "12.34", not {kind}')
    # fullmatch: with match(), "$" would also accept a trailing newline.
    if _AMOUNT.fullmatch(value) is None:
        raise ValueError(f"must be {AMOUNT_RULE}")
    amount = Decimal(value)
    if amount <= 0:
        raise ValueError("must be greater than 0")
    if amount > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}")
    return amount


# What request models declare: the JSON string in, an exact Decimal inside, "12.50" out again.
Amount = Annotated[
    Decimal,
    PlainValidator(parse_amount),
    PlainSerializer(lambda amount: to_decimal_string(to_minor(amount)), return_type=str),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_SCHEMA_PATTERN,
                    "description": f"greater than 0, at most {MAX_AMOUNT}; {AMOUNT_RULE}"}),
]


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
    for name, upper in AMOUNT_BUCKETS:
        if major < upper:
            return name
    return AMOUNT_BUCKET_LARGEST
