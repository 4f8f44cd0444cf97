from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from obslab.services.common.money import Amount, Currency, amount_bucket, to_decimal_string, to_minor


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount
    currency: Currency


@pytest.mark.parametrize("raw, minor", [
    ('"0.01"', 1), ("0.1", 10), ('"12.34"', 1234), ("1000000", 100_000_000), ('"1e2"', 10_000),
    ("12345678.12", None),
])
def test_amounts_parse_exactly_from_json_numbers_and_strings(raw, minor):
    if minor is None:  # above the per-movement maximum
        with pytest.raises(ValidationError):
            Body.model_validate_json(f'{{"amount": {raw}, "currency": "EUR"}}')
        return
    body = Body.model_validate_json(f'{{"amount": {raw}, "currency": "EUR"}}')
    assert to_minor(body.amount) == minor


@pytest.mark.parametrize("raw, problem", [
    ("0", "greater than 0"),
    ("-5", "greater than 0"),
    ("0.001", "decimal places"),
    ('"NaN"', "finite"),
    ('"Infinity"', "finite"),
    ("true", "Decimal"),
    ('"ten"', "valid decimal"),
    ("1000000.01", "less than or equal"),
])
def test_bad_amounts_are_refused_with_a_reason(raw, problem):
    with pytest.raises(ValidationError) as info:
        Body.model_validate_json(f'{{"amount": {raw}, "currency": "EUR"}}')
    assert problem in str(info.value)


@pytest.mark.parametrize("currency", ["XXX", "eur", "EURO", ""])
def test_unknown_currencies_are_refused(currency):
    with pytest.raises(ValidationError):
        Body.model_validate_json(f'{{"amount": 1, "currency": "{currency}"}}')


def test_minor_units_round_trip_to_decimal_strings():
    assert to_decimal_string(1234) == "12.34"
    assert to_decimal_string(5) == "0.05"
    assert to_decimal_string(-5) == "-0.05"
    assert to_decimal_string(0) == "0.00"
    assert to_minor(Decimal(to_decimal_string(987654321))) == 987654321


def test_to_minor_refuses_sub_cent_amounts():
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        to_minor(Decimal("1.005"))


@pytest.mark.parametrize("minor, bucket", [
    (999, "lt_10"), (1000, "lt_100"), (99_999, "lt_1k"), (100_000, "lt_10k"),
    (9_999_999, "lt_100k"), (10_000_000, "ge_100k"),
])
def test_amount_buckets_are_bounded_descriptions(minor, bucket):
    assert amount_bucket(minor) == bucket
