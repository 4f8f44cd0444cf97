"""What the banking services share: money rules, a money movement's life cycle, idempotency,
customer access tokens and telling customers what happened. What every component is built on
(app factory, database, HTTP client and breaker, errors, service identity) is obslab.platform."""
