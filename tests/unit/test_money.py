import itertools
import random
import re
from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from obslab.services.common.idempotency import request_fingerprint
from obslab.services.common.money import (
    AMOUNT_PATTERN,
    AMOUNT_SCHEMA_PATTERN,
    MAX_AMOUNT,
    Amount,
    Currency,
    amount_bucket,
    parse_amount,
    to_decimal_string,
    to_minor,
)
from obslab.services.common.movement import fingerprint_payload


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount
    currency: Currency


def amount_of(raw_json: str) -> Decimal:
    return Body.model_validate_json(f'{{"amount": {raw_json}, "currency": "EUR"}}').amount


@pytest.mark.parametrize("text, minor", [
    ("0.01", 1), ("0.1", 10), ("0.5", 50), ("5", 500), ("5.0", 500), ("12.34", 1234), ("999999.99", 99_999_999),
    ("1000000", 100_000_000), ("1000000.00", 100_000_000),
])
def test_amounts_are_decimal_strings_parsed_exactly(text, minor):
    assert to_minor(amount_of(f'"{text}"')) == minor


@pytest.mark.parametrize("raw", [
    '"1_000"', '" 5"', '"5 "', '"5."', '".5"', '"1e6"', '"1E2"', '"+5"', '"-5"', '"05"', '"00.50"', '"1.005"',
    '"1,000"', '"NaN"', '"Infinity"', '"-0"', '""', '"5\\n"', '"\\u00b2"', '"\\u0665"', '"\\uff15"', '"0x10"',
    '"5\\u00a0"', '"1000000000"',
])
def test_strings_outside_the_grammar_are_refused(raw):
    with pytest.raises(ValidationError, match="decimal string such as"):
        amount_of(raw)


@pytest.mark.parametrize("raw", ["1", "0.1", "1e2", "12.34", "1e999999", "true", "null", "[]", '{"v": "1"}'])
def test_anything_but_a_json_string_is_refused(raw):
    with pytest.raises(ValidationError, match='must be a JSON string such as "12.34"'):
        amount_of(raw)


@pytest.mark.parametrize("raw, problem", [
    ('"0"', "greater than 0"), ('"0.00"', "greater than 0"), ('"0.0"', "greater than 0"),
    ('"1000000.01"', "at most 1000000.00"), ('"999999999.99"', "at most 1000000.00"),
])
def test_amounts_out_of_bounds_are_refused_with_a_reason(raw, problem):
    with pytest.raises(ValidationError, match=problem):
        amount_of(raw)


def test_the_grammar_is_the_one_the_security_review_asked_for():
    assert AMOUNT_PATTERN == r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$"
    assert MAX_AMOUNT == Decimal("1000000.00")


def _accepted(text: str) -> bool:
    try:
        parse_amount(text)
        return True
    except ValueError:
        return False


def _candidates() -> list[str]:
    """Every integer part near a boundary with every kind of decimal part, and random junk."""
    integers = [str(n) for n in range(0, 1001)] + [
        f"{n}" for base in (10**5, 10**6, 10**7, 10**8, 10**9) for n in range(base - 3, base + 4)
    ] + ["00", "01", "000001", "0000000", "", "-1", "+1", " 1", "1 ", "1_0", "²", "٥"]
    decimals = ["", ".", ".0", ".00", ".000", ".01", ".1", ".10", ".5", ".9", ".99", ".999", ".05", "e1", ".0 "]
    texts = [i + d for i, d in itertools.product(integers, decimals)]
    rng = random.Random(7)
    alphabet = "0123456789.0123456789-+eE_ ,\n"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(20_000)]
    return texts


def test_the_documents_pattern_accepts_exactly_what_the_api_accepts():
    """AMOUNT_SCHEMA_PATTERN (the OpenAPI Amount schema) is the grammar *and* 0 < amount <= MAX_AMOUNT."""
    schema_pattern = re.compile(AMOUNT_SCHEMA_PATTERN)
    disagreements = [text for text in _candidates()
                     if bool(schema_pattern.fullmatch(text)) != _accepted(text)]
    assert disagreements == []


def test_request_models_describe_amounts_with_the_documents_pattern():
    schema = Body.model_json_schema()["properties"]["amount"]
    assert schema["type"] == "string" and schema["pattern"] == AMOUNT_SCHEMA_PATTERN


def test_amounts_serialize_back_as_two_decimal_strings():
    assert Body.model_validate_json('{"amount": "2", "currency": "EUR"}').model_dump(mode="json") == {
        "amount": "2.00", "currency": "EUR"}


@pytest.mark.parametrize("currency", ["XXX", "eur", "EURO", ""])
def test_unknown_currencies_are_refused(currency):
    with pytest.raises(ValidationError):
        Body.model_validate_json(f'{{"amount": "1", "currency": "{currency}"}}')


def test_the_same_amount_written_two_ways_is_one_request_for_an_idempotency_key():
    two = fingerprint_payload(Body.model_validate_json('{"amount": "2", "currency": "EUR"}'))
    two_00 = fingerprint_payload(Body.model_validate_json('{"amount": "2.00", "currency": "EUR"}'))
    two_01 = fingerprint_payload(Body.model_validate_json('{"amount": "2.01", "currency": "EUR"}'))
    assert two == two_00 == {"amount_minor": 200, "currency": "EUR"}
    assert request_fingerprint("transfer", two) == request_fingerprint("transfer", two_00)
    assert request_fingerprint("transfer", two) != request_fingerprint("transfer", two_01)


def test_a_fingerprint_refuses_a_decimal_that_could_be_written_two_ways():
    with pytest.raises(TypeError, match="minor units"):
        request_fingerprint("transfer", {"amount": Decimal("2.00")})


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
