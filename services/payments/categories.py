"""The merchant category of a payment: the ``merchant_category`` label of ``payments_by_category_total``.

A card network would send a merchant category code; the simulated processor does not, so the
category comes from the merchant's name: the merchants the load generator pays
(services/loadgen/journeys.py ``MERCHANTS``; a test keeps the two in step) and the ones the
docs and tests use. Any other name is ``other``, so the label has the few values of
:class:`~obslab.conventions.MerchantCategory` whatever a customer types.

>>> merchant_category("REWE"), merchant_category("city power &  light"), merchant_category("Corner Shop")
('groceries', 'utilities', 'other')
"""

from __future__ import annotations

from obslab.conventions import MerchantCategory

_G, _U, _E = MerchantCategory.GROCERIES, MerchantCategory.UTILITIES, MerchantCategory.ENTERTAINMENT
_T, _R, _B = MerchantCategory.TRAVEL, MerchantCategory.RETAIL, MerchantCategory.GAMBLING

# Lower-case merchant name, single spaces -> category.
MERCHANT_CATEGORIES: dict[str, MerchantCategory] = {
    "lidl": _G, "rewe": _G, "carrefour": _G,
    "city power & light": _U, "municipal water": _U, "vodafone": _U, "electric co": _U,
    "spotify": _E, "netflix": _E,
    "deutsche bahn": _T, "shell": _T,
    "amazon": _R, "ikea": _R,
    "luckystar casino": _B,
}


def merchant_category(merchant: str) -> str:
    """The category label value of ``merchant`` (case and repeated spaces do not matter)."""
    return MERCHANT_CATEGORIES.get(" ".join(merchant.lower().split()), MerchantCategory.OTHER).value
