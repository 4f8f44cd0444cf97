"""transactions: transfers between accounts (atomic, idempotent) and their history."""
