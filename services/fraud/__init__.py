"""fraud: a risk score (0-1) and decision for every transfer and payment."""
