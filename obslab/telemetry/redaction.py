"""Scrub banking secrets from telemetry before it leaves the process.

Instrumentation records URLs, SQL and exception messages verbatim, and a log line says whatever
its author wrote; any of them can carry an account or customer id, a bearer token, a password or
its hash, or a card number. Rather than trusting every hook of every instrumentation and every
log call, the span exporter passes each span through :func:`redact_span` once and the JSON log
formatter (:mod:`obslab.telemetry.logs`) passes each record through :func:`redact_text`.

The Collector of the compose runtime applies the same rules again, in the same order
(:func:`obslab.generators.collectorconfig.redactions`); ``tests/unit/test_collector_config.py`` checks that
both produce the same text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from obslab import conventions as c

REDACTED = "[REDACTED]"
REDACTED_TOKEN = "[REDACTED_TOKEN]"
REDACTED_PASSWORD_HASH = "[REDACTED_PASSWORD_HASH]"

# Key names whose values are secrets, wherever they appear (JSON, a dict's repr, ``extra=``).
SECRET_KEY_PATTERN = r"(?i:password|passwd|secret|token)"
# ``"password": "..."`` in JSON (or ``'password': '...'``, a dict's repr) in free text: a request
# body in an exception message, a response logged while debugging. Also ``"new_password"``,
# ``"client_secret"``, ``"access_token"``. Group 1 keeps the key, its quotes and the colon.
SECRET_FIELD_PATTERN = (
    r"""(["'][A-Za-z0-9_-]*""" + SECRET_KEY_PATTERN + r"""[A-Za-z0-9_-]*["']\s*:\s*)"""
    r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
)
# An opaque bearer token (the lab's control tokens are not JWTs) after "Bearer ". Eight
# characters at least, so that prose ("missing bearer token") stays readable.
BEARER_PATTERN = r"\b((?i:bearer)\s+)[A-Za-z0-9._~+/-]{8,}=*"
# An Argon2 PHC string, ``$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>``, whole: a stored
# password hash is an offline brute-force target.
PASSWORD_HASH_PATTERN = r"\$argon2(?:id|i|d)\$[A-Za-z0-9+/=,$]*"

_ACCOUNT = re.compile(c.ACCOUNT_ID_PATTERN)
_CUSTOMER = re.compile(c.CUSTOMER_ID_PATTERN)
_JWT = re.compile(c.JWT_PATTERN)
_BEARER = re.compile(BEARER_PATTERN)
_CARD = re.compile(c.CARD_NUMBER_PATTERN)
_SECRET_PARAM = re.compile(c.SECRET_QUERY_PARAMETER_PATTERN)
_SECRET_FIELD = re.compile(SECRET_FIELD_PATTERN)
_SECRET_KEY = re.compile(SECRET_KEY_PATTERN)
_PASSWORD_HASH = re.compile(PASSWORD_HASH_PATTERN)

# What each rule needs to find in a text before it can match (compared case-folded, as the rules'
# ``(?i:...)`` parts compare): the JWT header, "bearer", the secret key names ("passw" covers
# password and passwd), the Argon2 marker, the id prefixes and a card's shortest digit run.
_TRIGGERS = ("eyj", "bearer", "passw", "secret", "token", "$argon2", c.ACCOUNT_ID_PREFIX, c.CUSTOMER_ID_PREFIX)
_SHORTEST_CARD = 13
# One search decides whether any rule may apply: almost no attribute or log line needs
# redaction, and eight substitutions per attribute of every span (and per string of every log
# record) cost more than the rest of the export. The search is for the triggers, a necessary
# condition: an alternation of literals, searched in the case-folded text, is about four times
# cheaper than the eight rules joined into one regex (Python's engine tries every branch at every
# position), and twice as cheap as the four rules of old were. A text it lets
# through for nothing merely pays for the substitutions. A new rule needs its trigger here;
# tests/unit/test_redaction.py checks that whatever a rule changes gets past this search.
_ANY = re.compile("|".join(re.escape(t) for t in _TRIGGERS) + rf"|\d{{{_SHORTEST_CARD}}}")


def _mask_id(prefix: str, identifier: str) -> str:
    return f"{prefix}****{identifier[-4:]}" if identifier else ""


def mask_account(account_id: str) -> str:
    """``acc_abcdefgh12345678`` -> ``acc_****5678``: enough to correlate, not to reuse."""
    return _mask_id(c.ACCOUNT_ID_PREFIX, account_id)


def mask_customer(customer_id: str) -> str:
    """``cus_abcdefgh12345678`` -> ``cus_****5678``, as :func:`mask_account` does for accounts."""
    return _mask_id(c.CUSTOMER_ID_PREFIX, customer_id)


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """A field or ``extra=`` name whose value is a secret whatever it looks like (``password``).

    Cached: a process logs the same few dozen ``extra=`` names over and over.
    """
    return _SECRET_KEY.search(key) is not None


def _mask_card(match: re.Match[str]) -> str:
    return "*" * (len(match.group(0)) - 4) + match.group(0)[-4:]


# In the order they run, which the Collector follows (obslab/generators/collectorconfig.py): tokens before
# the digit runs they contain, key-named secrets before values that would be masked piecemeal.
RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (_JWT, lambda m: REDACTED_TOKEN),
    (_BEARER, lambda m: m.group(1) + REDACTED_TOKEN),
    (_SECRET_FIELD, lambda m: f'{m.group(1)}"{REDACTED}"'),
    (_SECRET_PARAM, lambda m: f"{m.group(1)}={REDACTED}"),
    (_PASSWORD_HASH, lambda m: REDACTED_PASSWORD_HASH),
    (_ACCOUNT, lambda m: mask_account(m.group(0))),
    (_CUSTOMER, lambda m: mask_customer(m.group(0))),
    (_CARD, _mask_card),
)


def redact_text(text: str) -> str:
    """``text`` with every secret masked (the very same object when there is none).

    Redacting twice changes nothing more.
    """
    if not text or not _ANY.search(text.casefold()):
        return text
    for pattern, replace in RULES:
        text = pattern.sub(replace, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], str):
        return tuple(redact_text(v) for v in value)
    return value


def _redact_attributes(attributes: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    if not attributes:
        return None, False
    redacted = {key: _redact_value(value) for key, value in attributes.items()}
    changed = any(redacted[k] != attributes[k] for k in redacted)
    return redacted, changed


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """The span itself when it holds nothing sensitive, else a scrubbed copy.

    Name, attributes, event attributes and status message: what the Collector redacts too.
    """
    attributes, changed = _redact_attributes(span.attributes)
    name = redact_text(span.name)
    changed |= name != span.name
    events: list[Event] = []
    for event in span.events:
        event_attributes, event_changed = _redact_attributes(event.attributes)
        changed |= event_changed
        events.append(Event(event.name, event_attributes, event.timestamp))
    description = span.status.description
    redacted_description = redact_text(description) if description else description
    changed |= redacted_description != description
    if not changed:
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, redacted_description),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Wraps the real exporter; runs on the batch processor's thread, off the request path."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redact_span(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)
