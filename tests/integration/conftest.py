import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor


@pytest.fixture(scope="module")
def untraced_client():
    """Talk to a real lab like an uninstrumented client does, so its traces start at the gateway.

    In-process service tests instrument `requests` and urllib3 for this whole process; left on,
    every test request would carry a traceparent of a test span that no lab ever sees.
    """
    instrumentors = [i for i in (RequestsInstrumentor(), URLLib3Instrumentor()) if i.is_instrumented_by_opentelemetry]
    for instrumentor in instrumentors:
        instrumentor.uninstrument()
    yield
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=trace.get_tracer_provider())
