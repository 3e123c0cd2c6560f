"""A client that retries until acknowledged, with the official OpenTelemetry Python SDK.

Builds batches of spans with the SDK (each span carries `run.id` and `seq`), exports each batch
with the SDK's OTLP/gRPC exporter and exports it again until the collector acknowledges it
(SUCCESS). After each acknowledgement it appends the batch's sequence numbers to `--acked`, one
per line, flushed: what the collector was told it accepted, even if this process is killed. The
test then checks that every one of them reached the far end.
"""
import argparse
import logging
import sys
import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult


class Collect(SpanProcessor):
    def __init__(self):
        self.spans = []

    def on_end(self, span):
        self.spans.append(span)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--acked", required=True)
    p.add_argument("--give-up-after", type=float, default=300.0)
    p.add_argument("--header", action="append", default=[], help="k=v metadata on every export")
    a = p.parse_args()
    # The SDK logs every failed attempt; the test reads only the summary.
    logging.basicConfig(level=logging.CRITICAL)

    collect = Collect()
    provider = TracerProvider(resource=Resource.create({"service.name": "acked-sender", "run.id": a.run_id}))
    provider.add_span_processor(collect)
    tracer = provider.get_tracer("ferrotel.acked")
    headers = tuple(tuple(h.split("=", 1)) for h in a.header) or None
    exporter = OTLPSpanExporter(endpoint=a.endpoint, insecure=True, timeout=5, headers=headers)

    attempts = 0
    with open(a.acked, "a", buffering=1) as out:
        for b in range(a.batches):
            collect.spans.clear()
            seqs = range(b * a.batch_size, (b + 1) * a.batch_size)
            for s in seqs:
                with tracer.start_as_current_span("acked") as span:
                    span.set_attribute("run.id", a.run_id)
                    span.set_attribute("seq", s)
            batch = list(collect.spans)
            started = time.monotonic()
            while True:
                attempts += 1
                if exporter.export(batch) == SpanExportResult.SUCCESS:
                    out.write("".join(f"{s}\n" for s in seqs))
                    break
                if time.monotonic() - started > a.give_up_after:
                    print(f"batch {b} not acknowledged after {a.give_up_after}s", file=sys.stderr)
                    sys.exit(1)
                time.sleep(0.1)
    print(f"{a.batches} batches acknowledged in {attempts} attempts", file=sys.stderr)


if __name__ == "__main__":
    main()
