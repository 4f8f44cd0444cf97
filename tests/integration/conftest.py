import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.requests import RequestsInstrumentor


@pytest.fixture(scope="module")
def untraced_client():
    """Talk to a real lab like an uninstrumented client does, so its traces start at the gateway.

    In-process service tests instrument `requests` for this whole process; left on, every test
    request would carry a traceparent of a test span that no lab ever sees.
    """
    instrumentor = RequestsInstrumentor()
    was_instrumented = instrumentor.is_instrumented_by_opentelemetry
    if was_instrumented:
        instrumentor.uninstrument()
    yield
    if was_instrumented:
        instrumentor.instrument(tracer_provider=trace.get_tracer_provider())
