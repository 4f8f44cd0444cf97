import pytest

from obslab.services.fraud.rules import Decision, Facts, assess


@pytest.mark.parametrize("facts, score, decision", [
    (Facts("transfer", 5_000, "acc_x", recent_count=0, counterparty_known=True), 0.0, Decision.APPROVE),
    (Facts("transfer", 5_000, "acc_x", recent_count=0, counterparty_known=False), 0.1, Decision.APPROVE),
    (Facts("transfer", 300_000, "acc_x", recent_count=0, counterparty_known=True), 0.25, Decision.APPROVE),
    (Facts("transfer", 1_500_000, "acc_x", recent_count=0, counterparty_known=False), 0.6, Decision.REVIEW),
    (Facts("transfer", 1_500_000, "acc_x", recent_count=25, counterparty_known=False), 1.0, Decision.DENY),
    (Facts("payment", 1_500_000, "Crypto Exchange", recent_count=0, counterparty_known=True), 0.8, Decision.DENY),
    (Facts("transfer", 100, "crypto-friend", recent_count=0, counterparty_known=True), 0.0, Decision.APPROVE),
    (Facts("payment", 100, "groceries", recent_count=12, counterparty_known=True), 0.2, Decision.APPROVE),
])
def test_rules_score_and_decide(facts, score, decision):
    result = assess(facts)
    assert result.score == pytest.approx(score)
    assert result.decision is decision
    assert bool(result.reasons) == (result.score > 0)


def test_every_point_comes_with_a_reason():
    result = assess(Facts("payment", 1_500_000, "casino royale", recent_count=30, counterparty_known=False))
    assert result.score == 1.0
    assert len(result.reasons) == 4
