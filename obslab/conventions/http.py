"""HTTP header names the lab's components send and read."""

from __future__ import annotations

# --- HTTP headers -------------------------------------------------------------------------------

HEADER_IDEMPOTENCY_KEY = "Idempotency-Key"
HEADER_IDEMPOTENT_REPLAYED = "Idempotent-Replayed"
# Service-to-service trust (obslab/platform/identity.py): every internal call carries the
# caller's short-lived signed service token; a call on behalf of a customer also carries the
# customer assertion the gateway signed, forwarded unchanged by the services in between.
HEADER_SERVICE_TOKEN = "X-Obslab-Service-Token"
HEADER_CUSTOMER_ASSERTION = "X-Obslab-Customer"
# The client address the gateway established (read only from an authenticated gateway call).
HEADER_CLIENT_ADDRESS = "X-Obslab-Client-Address"
# Honoured by the gateway only from a configured proxy (OBSLAB_TRUSTED_PROXIES) or the lab's own
# load generator (it simulates the internet's many clients and proves it with its service token).
HEADER_FORWARDED_FOR = "X-Forwarded-For"
# Who set or cleared a fault, for the fault audit log (free text, e.g. "cli:alice", "drill:db-latency").
HEADER_ACTOR = "X-Obslab-Actor"

API_PREFIX = "/api/v1"
