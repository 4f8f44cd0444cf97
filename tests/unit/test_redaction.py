from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from obslab.telemetry.redaction import RedactingSpanExporter, mask_account, redact_span, redact_text

ACCOUNT = "acc_abcdefgh12345678"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdXNfeCJ9.c2lnbmF0dXJlc2lnbmF0dXJl"


def test_account_ids_keep_only_their_last_four_characters():
    assert mask_account(ACCOUNT) == "acc_****5678"
    assert redact_text(f"/api/v1/transfers?account={ACCOUNT}") == "/api/v1/transfers?account=acc_****5678"


def test_bearer_tokens_and_secret_parameters_are_removed():
    assert TOKEN not in redact_text(f"Authorization: Bearer {TOKEN}")
    assert redact_text("https://x/login?password=hunter2&user=a") == "https://x/login?password=[REDACTED]&user=a"


def test_card_numbers_keep_only_the_last_four_digits():
    assert redact_text("card 4111111111111111 charged") == "card ************1111 charged"


def test_text_without_secrets_is_unchanged():
    text = "POST /api/v1/transfers 201 in 12 ms"
    assert redact_text(text) == text


def _span(attributes, event_attributes=None):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("s", attributes=attributes) as span:
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


def test_the_redacting_exporter_hands_only_scrubbed_spans_to_the_real_exporter():
    inner = InMemorySpanExporter()
    RedactingSpanExporter(inner).export([_span({"q": f"token={TOKEN}"})])
    exported = inner.get_finished_spans()
    assert len(exported) == 1 and TOKEN not in str(exported[0].attributes)
