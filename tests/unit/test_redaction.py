import pytest
from argon2 import PasswordHasher
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import obslab.telemetry
from obslab import conventions as c
from obslab.telemetry import redaction
from obslab.telemetry.redaction import (
    RedactingSpanExporter,
    is_secret_key,
    mask_account,
    mask_customer,
    redact_span,
    redact_text,
)

ACCOUNT = "acc_abcdefgh12345678"
CUSTOMER = "cus_k3v9x0q2m7d1p8zt"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdXNfeCJ9.c2lnbmF0dXJlc2lnbmF0dXJl"


def test_account_ids_keep_only_their_last_four_characters():
    assert mask_account(ACCOUNT) == "acc_****5678"
    assert redact_text(f"/api/v1/transfers?account={ACCOUNT}") == "/api/v1/transfers?account=acc_****5678"


def test_customer_ids_keep_only_their_last_four_characters():
    assert mask_customer(CUSTOMER) == "cus_****p8zt"
    assert mask_customer("") == ""
    assert redact_text(f"/api/v1/accounts?owner={CUSTOMER}&limit=5") == "/api/v1/accounts?owner=cus_****p8zt&limit=5"
    assert redact_text(f"dependency slow: owner={CUSTOMER}") == "dependency slow: owner=cus_****p8zt"


def test_short_test_customer_ids_are_not_customer_ids():
    assert redact_text("owner=cus_test") == "owner=cus_test"


def test_mask_customer_is_exported_with_the_telemetry_bootstrap():
    assert "mask_customer" in obslab.telemetry.__all__
    assert obslab.telemetry.mask_customer is mask_customer


def test_bearer_tokens_and_secret_parameters_are_removed():
    assert TOKEN not in redact_text(f"Authorization: Bearer {TOKEN}")
    assert redact_text("https://x/login?password=hunter2&user=a") == "https://x/login?password=[REDACTED]&user=a"


def test_opaque_bearer_tokens_are_removed_and_prose_about_them_is_kept():
    opaque = "Zx8_q-3lP0aVt9yWm2RkHc7sDf4GjN1bE6uLoIiQw5A"
    assert redact_text(f"Authorization: bearer {opaque}") == "Authorization: bearer [REDACTED_TOKEN]"
    assert redact_text("missing bearer token") == "missing bearer token"


@pytest.mark.parametrize("text, expected", [
    ('{"username": "alice", "password": "hunter2"}', '{"username": "alice", "password": "[REDACTED]"}'),
    ('{"new_password" : "a \\"quoted\\" one"}', '{"new_password" : "[REDACTED]"}'),
    ("{'client_secret': 's3cr3t', 'n': 1}", "{'client_secret': \"[REDACTED]\", 'n': 1}"),
    ('{"Access_Token":"abc","token_type":"Bearer"}', '{"Access_Token":"[REDACTED]","token_type":"[REDACTED]"}'),
])
def test_password_like_fields_in_json_and_dict_reprs_lose_their_whole_value(text, expected):
    assert redact_text(text) == expected


def test_fields_that_only_mention_a_secret_but_hold_no_string_are_kept():
    text = '{"password_changed": true, "tokens": 3}'
    assert redact_text(text) == text


def test_argon2_password_hashes_are_removed_whole():
    password_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("hunter2")
    assert password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    redacted = redact_text(f"[parameters: ('alice', '{password_hash}', 1700000000000)]")
    assert redacted == "[parameters: ('alice', '[REDACTED_PASSWORD_HASH]', *********0000)]"
    assert redact_text("$argon2i$m=4096,t=3,p=1$c2FsdA$aGFzaA") == "[REDACTED_PASSWORD_HASH]"


def test_redacting_twice_changes_nothing_more():
    for text in (f"owner={CUSTOMER}", f"Bearer {TOKEN}", '{"password": "x"}', "$argon2d$v=19$m=8,t=1,p=1$YQ$Yg",
                 f"{ACCOUNT} 4111111111111111 password=x"):
        once = redact_text(text)
        assert once != text and redact_text(once) == once


def test_secret_looking_keys_are_recognised_whatever_their_case():
    assert all(is_secret_key(k) for k in ("password", "new_password", "X-Api-Token", "CLIENT_SECRET", "passwd"))
    assert not any(is_secret_key(k) for k in ("owner", "username", "amount_bucket", "account"))


PRE_CHECK_SAMPLES = [
    ACCOUNT, CUSTOMER, TOKEN, f"Bearer {TOKEN}", "BEARER Zx8_q-3lP0aVt9y", "x?PassWD=1&y", "TOKEN=abc",
    "access_token=abc", "{'Client_Secret': 'x'}", '{"refresh_token":"x"}', "$argon2id$v=19$m=8,t=1,p=1$YQ$Yg",
    "4111111111111111", "1" * 13, "\u0661" * 16,   # Arabic-Indic digits are digits to the card rule too
    "pa\u017f\u017fword=x", "to\u212aen=x",      # long s and the Kelvin sign match s and k case-insensitively
    "POST /api/v1/transfers 201 in 12 ms", "order 123456789012", "owner=cus_test", "missing bearer token",
]


@pytest.mark.parametrize("sample", PRE_CHECK_SAMPLES)
def test_the_single_pre_check_lets_through_everything_any_rule_would_change(sample):
    changed_by = [pattern.pattern for pattern, replace in redaction.RULES if pattern.sub(replace, sample) != sample]
    if changed_by:
        assert redaction._ANY.search(sample.casefold()), changed_by
        assert redact_text(sample) != sample


def test_the_pre_check_looks_for_a_digit_run_as_short_as_the_shortest_card():
    assert f"\\d{{{redaction._SHORTEST_CARD}," in c.CARD_NUMBER_PATTERN


def test_card_numbers_keep_only_the_last_four_digits():
    assert redact_text("card 4111111111111111 charged") == "card ************1111 charged"


def test_text_without_secrets_is_unchanged_and_not_even_copied():
    text = "POST /api/v1/transfers 201 in 12 ms for cus_test, trace 4bf92f3577b34da6a3ce929d0e0e4736"
    assert redact_text(text) is text


def _span(attributes, event_attributes=None, name="s"):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span(name, attributes=attributes) as span:
        if event_attributes:
            span.add_event("exception", event_attributes)
    return exporter.get_finished_spans()[0]


def test_spans_with_secrets_are_copied_scrubbed_and_clean_spans_pass_untouched():
    dirty = _span({"url.full": f"http://x/accounts/{ACCOUNT}", "http.status": 200},
                  {"exception.message": f"no funds in {ACCOUNT}"})
    scrubbed = redact_span(dirty)
    assert scrubbed is not dirty
    assert scrubbed.attributes["url.full"] == "http://x/accounts/acc_****5678"
    assert scrubbed.attributes["http.status"] == 200
    assert ACCOUNT not in scrubbed.events[0].attributes["exception.message"]
    assert scrubbed.context == dirty.context and scrubbed.parent == dirty.parent
    clean = _span({"http.route": "/accounts/<account_id>"})
    assert redact_span(clean) is clean


def test_customer_ids_are_masked_in_span_names_attributes_and_events():
    dirty = _span({"url.query": f"owner={CUSTOMER}", "http.request.header.x": (f"id {CUSTOMER}", "plain")},
                  {"exception.message": f"no accounts for {CUSTOMER}"}, name=f"lookup {CUSTOMER}")
    scrubbed = redact_span(dirty)
    assert scrubbed.name == "lookup cus_****p8zt"
    assert scrubbed.attributes["url.query"] == "owner=cus_****p8zt"
    assert scrubbed.attributes["http.request.header.x"] == ("id cus_****p8zt", "plain")
    assert scrubbed.events[0].attributes["exception.message"] == "no accounts for cus_****p8zt"


def test_the_redacting_exporter_hands_only_scrubbed_spans_to_the_real_exporter():
    inner = InMemorySpanExporter()
    RedactingSpanExporter(inner).export([_span({"q": f"token={TOKEN}"})])
    exported = inner.get_finished_spans()
    assert len(exported) == 1 and TOKEN not in str(exported[0].attributes)
