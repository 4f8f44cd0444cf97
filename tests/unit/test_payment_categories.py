"""The merchant category of a payment: a few label values, whatever merchant a customer names."""

import pytest

from obslab.conventions import MerchantCategory
from obslab.services.loadgen.journeys import MERCHANTS
from obslab.services.payments.categories import MERCHANT_CATEGORIES, merchant_category


@pytest.mark.parametrize("merchant, category", [
    ("Lidl", "groceries"), ("REWE", "groceries"), ("City Power & Light", "utilities"),
    ("Electric Co", "utilities"), ("Netflix", "entertainment"), ("Deutsche Bahn", "travel"),
    ("Shell", "travel"), ("IKEA", "retail"), ("LuckyStar Casino", "gambling"),
    ("lidl", "groceries"), ("deutsche  BAHN", "travel"),                       # case and spacing
    ("Corner Shop", "other"), ("test-decline shop", "other"), ("Crypto Exchange", "other"),
    ("Lidl Express", "other"),                                                  # only whole known names
])
def test_known_merchants_have_their_category_and_any_other_is_other(merchant, category):
    assert merchant_category(merchant) == category


def test_every_merchant_the_load_generator_pays_has_a_category():
    """The lab's traffic lands in real categories; keeps the table in step with journeys.MERCHANTS."""
    assert {m.name: merchant_category(m.name) for m in MERCHANTS if merchant_category(m.name) == "other"} == {}


def test_the_label_has_only_the_declared_values():
    values = {category.value for category in MerchantCategory}
    assert {merchant_category(name) for name in [*MERCHANT_CATEGORIES, "x" * 64, "Anything 1"]} <= values
    assert len(values) <= 8
