"""Real Jaeger clients for tests/jaeger_receiver.rs.

usage: jaeger_send.py <port> <mode> <run>

modes:
  JAEGER_CLIENT      the Jaeger Python client (jaeger-client) reporting to a local agent:
                     UDP, Thrift compact protocol (what the client library speaks)
  THRIFT_BINARY_UDP  jaeger-client's generated Thrift types, sent by the Apache Thrift
                     library in the binary protocol as one UDP datagram (the agent's 6832 form;
                     no Python client library speaks it)
  OTEL_AGENT         the OpenTelemetry SDK's Jaeger Thrift exporter to an agent (UDP, compact)
  OTEL_HTTP          the same exporter to a collector's /api/traces (HTTP, binary Thrift)
  OTEL_GRPC          the OpenTelemetry SDK's Jaeger gRPC exporter (api_v2 PostSpans)

Runs in .venv-jaeger (tests/requirements-jaeger.txt): the exporters' last release, 1.21, with
the SDK of its time.

Each run sends one trace of service "shop": a SERVER span "checkout <run>" with the tags
order.id="42" and retries=3 and a log "cache miss", and a CLIENT child "charge <run>" with
peer.service="db" that failed. Prints the trace id (32 hex digits).
"""

import sys
import time

port, mode, run = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def otel(exporter):
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
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
    return f"{trace_id:032x}"


if mode == "OTEL_AGENT":
    from opentelemetry.exporter.jaeger.thrift import JaegerExporter

    print(otel(JaegerExporter(agent_host_name="127.0.0.1", agent_port=port)))
elif mode == "OTEL_HTTP":
    from opentelemetry.exporter.jaeger.thrift import JaegerExporter

    print(otel(JaegerExporter(collector_endpoint=f"http://127.0.0.1:{port}/api/traces")))
elif mode == "OTEL_GRPC":
    from opentelemetry.exporter.jaeger.proto.grpc import JaegerExporter

    print(otel(JaegerExporter(collector_endpoint=f"127.0.0.1:{port}", insecure=True)))
elif mode == "JAEGER_CLIENT":
    from jaeger_client import Config
    from opentracing.ext import tags

    config = Config(
        config={
            "sampler": {"type": "const", "param": 1},
            "local_agent": {"reporting_host": "127.0.0.1", "reporting_port": port},
            "logging": False,
        },
        service_name="shop",
        validate=True,
    )
    tracer = config.initialize_tracer()
    with tracer.start_span(f"checkout {run}", tags={tags.SPAN_KIND: tags.SPAN_KIND_RPC_SERVER}) as s:
        s.set_tag("order.id", "42")
        s.set_tag("retries", 3)
        s.log_kv({"event": "cache miss"})
        with tracer.start_span(f"charge {run}", child_of=s, tags={tags.SPAN_KIND: tags.SPAN_KIND_RPC_CLIENT}) as c:
            c.set_tag("peer.service", "db")
            c.set_tag(tags.ERROR, True)
        trace_id = s.trace_id
    time.sleep(0.3)
    tracer.close()
    time.sleep(0.5)
    print(f"{trace_id:032x}")
elif mode == "THRIFT_BINARY_UDP":
    import random
    import socket

    from jaeger_client.thrift_gen.agent import Agent
    from jaeger_client.thrift_gen.jaeger import ttypes as j
    from thrift.protocol import TBinaryProtocol
    from thrift.Thrift import TMessageType
    from thrift.transport import TTransport

    trace_low, trace_high = random.getrandbits(63), random.getrandbits(63)
    root, child = random.getrandbits(63), random.getrandbits(63)
    now = int(time.time() * 1e6)

    def tag_str(k, v):
        return j.Tag(key=k, vType=j.TagType.STRING, vStr=v)

    spans = [
        j.Span(
            traceIdLow=trace_low, traceIdHigh=trace_high, spanId=root, parentSpanId=0,
            operationName=f"checkout {run}", flags=1, startTime=now, duration=2000,
            tags=[tag_str("span.kind", "server"), tag_str("order.id", "42"),
                  j.Tag(key="retries", vType=j.TagType.LONG, vLong=3)],
            logs=[j.Log(timestamp=now + 10, fields=[tag_str("event", "cache miss")])],
        ),
        j.Span(
            traceIdLow=trace_low, traceIdHigh=trace_high, spanId=child, parentSpanId=root,
            operationName=f"charge {run}", flags=1, startTime=now + 100, duration=500,
            references=[j.SpanRef(refType=j.SpanRefType.CHILD_OF, traceIdLow=trace_low,
                                  traceIdHigh=trace_high, spanId=root)],
            tags=[tag_str("span.kind", "client"), tag_str("peer.service", "db"),
                  j.Tag(key="error", vType=j.TagType.BOOL, vBool=True)],
        ),
    ]
    batch = j.Batch(process=j.Process(serviceName="shop", tags=[tag_str("host.name", "node-1")]),
                    spans=spans)
    # The agent call as the generated client writes it (Agent.send_emitBatch), on a memory
    # transport: a oneway message `emitBatch` and its argument struct, in the binary protocol.
    buf = TTransport.TMemoryBuffer()
    oprot = TBinaryProtocol.TBinaryProtocol(buf)
    oprot.writeMessageBegin("emitBatch", TMessageType.ONEWAY, 1)
    Agent.emitBatch_args(batch=batch).write(oprot)
    oprot.writeMessageEnd()
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(buf.getvalue(), ("127.0.0.1", port))
    print(f"{trace_high:016x}{trace_low:016x}")
else:
    sys.exit(f"unknown mode {mode}")
