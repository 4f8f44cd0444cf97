"""accounts: accounts, balances and the double-entry ledger that moves money atomically."""
