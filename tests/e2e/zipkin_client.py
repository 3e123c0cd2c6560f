"""Real Zipkin clients for tests/zipkin.rs.

usage: zipkin_client.py <port> <encoding> <run>

<encoding> is one of py_zipkin's encodings (V1_THRIFT, V1_JSON, V2_JSON, V2_PROTO3), sent by
py_zipkin's own SimpleHTTPTransport (its paths and content types; it asserts the 202 answer),
or OTEL_ZIPKIN_JSON: the OpenTelemetry SDK with its Zipkin JSON exporter.

Each run sends one trace: a SERVER span "checkout <run>" of service "shop" with the tags
order.id and retries, an annotation "cache miss", and a CLIENT child "charge <run>" whose
remote endpoint is db at 10.0.0.9:5432. Prints the trace id (hex) on stdout.
"""

import sys

port, encoding, run = int(sys.argv[1]), sys.argv[2], sys.argv[3]

if encoding == "OTEL_ZIPKIN_JSON":
    from opentelemetry import trace
    from opentelemetry.exporter.zipkin.json import ZipkinExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(
        SimpleSpanProcessor(ZipkinExporter(endpoint=f"http://127.0.0.1:{port}/api/v2/spans"))
    )
    tracer = provider.get_tracer("checkout-lib", "2.0")
    with tracer.start_as_current_span(f"checkout {run}", kind=trace.SpanKind.SERVER) as s:
        s.set_attribute("order.id", "42")
        s.set_attribute("retries", 3)
        s.add_event("cache miss")
        with tracer.start_as_current_span(f"charge {run}", kind=trace.SpanKind.CLIENT) as c:
            c.set_attribute("peer.service", "db")
            c.set_status(trace.Status(trace.StatusCode.ERROR, "card declined"))
        trace_id = s.get_span_context().trace_id
    provider.shutdown()
    print(f"{trace_id:032x}")
    sys.exit(0)

from py_zipkin import Kind
from py_zipkin.encoding import Encoding
from py_zipkin.transport import SimpleHTTPTransport
from py_zipkin.zipkin import zipkin_span

failures = []


class Transport(SimpleHTTPTransport):
    """py_zipkin logs transport errors and carries on: record them to fail the run."""

    def send(self, payload):
        try:
            super().send(payload)
        except Exception as e:  # noqa: BLE001 - any failure fails the run
            failures.append(repr(e))
            raise


with zipkin_span(
    service_name="shop",
    span_name=f"checkout {run}",
    transport_handler=Transport("127.0.0.1", port),
    sample_rate=100.0,
    kind=Kind.SERVER,
    encoding=Encoding[encoding],
) as server:
    server.update_binary_annotations({"order.id": "42", "retries": "3"})
    server.add_annotation("cache miss")
    with zipkin_span(service_name="shop", span_name=f"charge {run}", kind=Kind.CLIENT) as client:
        client.add_sa_binary_annotation(port=5432, service_name="db", host="10.0.0.9")
    trace_id = server.zipkin_attrs.trace_id

if failures:
    sys.exit(f"send failed: {failures}")
print(trace_id.rjust(32, "0"))
