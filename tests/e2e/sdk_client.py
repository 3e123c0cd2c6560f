"""Sends traces, metrics and logs with the official OpenTelemetry Python SDK.

Used by the Rust end-to-end tests as the real client. Prints one JSON document on stdout that
describes exactly what was sent, so the test can check the far end item by item. Exits 1 if the
SDK reported an export failure.
"""
import argparse
import json
import logging
import sys
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.metrics import Observation
from opentelemetry.trace import Status, StatusCode, SpanKind


class Recording:
    """Wraps an SDK exporter and records every export result."""

    def __init__(self, inner, ok):
        self.inner = inner
        self.ok = ok
        self.results = []

    def export(self, batch, **kw):
        r = self.inner.export(batch, **kw)
        self.results.append(r == self.ok)
        return r

    def shutdown(self, **kw):
        return self.inner.shutdown(**kw)

    def force_flush(self, timeout_millis=30000):
        return True


class RecSpan(Recording, SpanExporter):
    pass


class RecLog(Recording, LogRecordExporter):
    pass


class RecMetric(Recording, MetricExporter):
    def __init__(self, inner, ok):
        Recording.__init__(self, inner, ok)
        MetricExporter.__init__(
            self,
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )


def exporters(protocol, endpoint, compression, ca=None, cert=None, key=None, timeout=10):
    read = lambda p: open(p, "rb").read() if p else None
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from grpc import Compression

        comp = Compression.Gzip if compression == "gzip" else Compression.NoCompression
        kw = dict(endpoint=endpoint, insecure=True, compression=comp, timeout=timeout)
        if ca:
            import grpc

            creds = grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))
            kw.update(insecure=False, credentials=creds)
        return OTLPSpanExporter(**kw), OTLPMetricExporter(**kw), OTLPLogExporter(**kw)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http import Compression

    comp = Compression.Gzip if compression == "gzip" else Compression.NoCompression
    base = endpoint.rstrip("/")
    kw = dict(compression=comp, timeout=timeout)
    if ca:
        kw.update(certificate_file=ca, client_key_file=key, client_certificate_file=cert)
    return (
        OTLPSpanExporter(endpoint=base + "/v1/traces", **kw),
        OTLPMetricExporter(endpoint=base + "/v1/metrics", **kw),
        OTLPLogExporter(endpoint=base + "/v1/logs", **kw),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True, help="host:port for grpc, http://host:port for http")
    ap.add_argument("--protocol", choices=["grpc", "http"], required=True)
    ap.add_argument("--compression", choices=["gzip", "none"], default="gzip")
    ap.add_argument("--signals", default="traces,metrics,logs")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--timeout", type=float, default=10, help="export timeout, seconds")
    ap.add_argument("--service", default="sdk-e2e", help="service.name of the resource")
    ap.add_argument("--max-queue-size", type=int, default=2048,
                    help="the BatchSpanProcessor's queue: spans beyond it are dropped by the SDK")
    ap.add_argument("--ca-file", help="CA to verify the server with (turns TLS on)")
    ap.add_argument("--client-cert", help="client certificate for mTLS")
    ap.add_argument("--client-key", help="client key for mTLS")
    a = ap.parse_args()
    signals = set(a.signals.split(","))

    resource = Resource.create({"service.name": a.service, "run.id": a.run_id, "deployment.environment": "test"})
    span_exp, metric_exp, log_exp = exporters(a.protocol, a.endpoint, a.compression, a.ca_file, a.client_cert, a.client_key, a.timeout)
    out = {"run_id": a.run_id, "spans": [], "logs": [], "metrics": {}}
    ok = True

    if "traces" in signals:
        rec = RecSpan(span_exp, SpanExportResult.SUCCESS)
        tp = TracerProvider(resource=resource)
        tp.add_span_processor(BatchSpanProcessor(rec, max_export_batch_size=64, schedule_delay_millis=100, max_queue_size=a.max_queue_size))
        tracer = tp.get_tracer("ferrotel.e2e", "1.2.3")
        for i in range(a.count):
            with tracer.start_as_current_span("parent-%d" % i, kind=SpanKind.SERVER) as parent:
                parent.set_attribute("seq", i)
                parent.set_attribute("attr.str", "välue-%d ✓" % i)
                parent.set_attribute("attr.double", i + 0.5)
                parent.set_attribute("attr.bool", i % 2 == 0)
                parent.set_attribute("attr.array", ["a", "b", str(i)])
                parent.add_event("ev", {"k": "v"})
                with tracer.start_as_current_span("child-%d" % i, kind=SpanKind.CLIENT) as child:
                    child.set_attribute("seq", i)
                    child.set_status(Status(StatusCode.ERROR, "boom"))
                for s, name in ((parent, "parent-%d" % i), (child, "child-%d" % i)):
                    ctx = s.get_span_context()
                    out["spans"].append({
                        "name": name,
                        "trace_id": "%032x" % ctx.trace_id,
                        "span_id": "%016x" % ctx.span_id,
                        "seq": i,
                    })
        tp.force_flush(30000)
        tp.shutdown()
        ok = ok and len(rec.results) > 0 and all(rec.results)

    if "metrics" in signals:
        rec = RecMetric(metric_exp, MetricExportResult.SUCCESS)
        reader = PeriodicExportingMetricReader(rec, export_interval_millis=3_600_000)
        mp = MeterProvider(resource=resource, metric_readers=[reader])
        meter = mp.get_meter("ferrotel.e2e", "1.2.3")
        counter = meter.create_counter("e2e.requests", unit="1", description="requests")
        hist = meter.create_histogram("e2e.latency", unit="ms")
        gauge_value = {"v": 0.0}
        meter.create_observable_gauge("e2e.temperature", callbacks=[lambda _o: [Observation(gauge_value["v"], {"room": "a"})]])
        total = 0
        for i in range(a.count):
            counter.add(i + 1, {"route": "/r%d" % (i % 3)})
            total += i + 1
            hist.record(float(i * 10), {"route": "/h"})
        gauge_value["v"] = 21.5
        mp.force_flush(30000)
        mp.shutdown()
        out["metrics"] = {"counter_total": total, "histogram_count": a.count, "gauge": 21.5}
        ok = ok and len(rec.results) > 0 and all(rec.results)

    if "logs" in signals:
        rec = RecLog(log_exp, LogRecordExportResult.SUCCESS)
        lp = LoggerProvider(resource=resource)
        lp.add_log_record_processor(BatchLogRecordProcessor(rec, max_export_batch_size=64, schedule_delay_millis=100))
        logger = logging.getLogger("ferrotel.e2e.%s" % a.run_id)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=lp))
        for i in range(a.count):
            msg = "log line %d of %s ü" % (i, a.run_id)
            logger.warning(msg, extra={"seq": i})
            out["logs"].append({"body": msg, "seq": i})
        lp.force_flush(30000)
        lp.shutdown()
        ok = ok and len(rec.results) > 0 and all(rec.results)

    out["ok"] = ok
    print(json.dumps(out))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
