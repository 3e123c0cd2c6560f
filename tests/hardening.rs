//! Hostile and heavy input against a running collector: a small request must never kill it, and
//! every client that is told "accepted" gets its data delivered.
//!
//! Memory is measured from the outside: the kernel's peak resident set of the collector process
//! (`VmHWM` in /proc/<pid>/status), so a spike between two samples is not missed.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Collector, free_port, sink::Sink, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const MIB: u64 = 1 << 20;

/// Peak resident memory of a process so far.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn wrap(key: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![key];
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// `n` times the two bytes `key 0x00` (an empty message in a repeated field).
fn empties(key: u8, n: usize) -> Vec<u8> {
    [key, 0].repeat(n)
}

/// The amplification requests of the hardening issue, as protobuf: two bytes on the wire per
/// item, 100–400 bytes each once decoded.
fn empty_spans(n: usize) -> Vec<u8> {
    wrap(0x0a, &wrap(0x12, &empties(0x12, n)))
}
fn empty_logs(n: usize) -> Vec<u8> {
    wrap(0x0a, &wrap(0x12, &empties(0x12, n)))
}
fn empty_points(n: usize) -> Vec<u8> {
    // Gauge.data_points (1) in Metric.gauge (5), Scope.metrics (2), Resource.scope_metrics (2).
    wrap(
        0x0a,
        &wrap(0x12, &wrap(0x12, &wrap(0x2a, &empties(0x0a, n)))),
    )
}
fn empty_attributes(n: usize) -> Vec<u8> {
    // Span.attributes (9) on one span.
    wrap(0x0a, &wrap(0x12, &wrap(0x12, &empties(0x4a, n))))
}

fn span_request(name: &str, n: usize, attrs: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: format!("{name}-{i}"),
                        attributes: (0..attrs)
                            .map(|a| KeyValue {
                                key: format!("attribute.number.{a}"),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::StringValue(
                                        "a value of some length".into(),
                                    )),
                                }),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The shipped agent's processing (memory_limiter at 400/80 MiB, batch up to 16384) in front of
/// a sink.
fn agent_like(grpc: u16, http: u16, health: u16, metrics: u16, sink: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
  memory_limiter: {{ check_interval: 1s, limit_mib: 400, spike_limit_mib: 80 }}
  batch: {{ send_batch_size: 8192, send_batch_max_size: 16384, timeout: 200ms }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp_grpc] }}
    metrics: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp_grpc] }}
    logs: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp_grpc] }}
"#
    )
}

async fn post(port: u16, path: &str, ct: &str, body: Vec<u8>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", ct)
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("the collector answers");
    let status = r.status().as_u16();
    (
        status,
        String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned(),
    )
}

/// What a normal client got: accepted, told to retry (429/503: backpressure, which the SDKs
/// honour), or failed.
#[derive(Default)]
struct Outcomes {
    ok: AtomicUsize,
    retry: AtomicUsize,
    failed: AtomicUsize,
}

/// A normal client sending a small valid request every 20 ms until told to stop.
fn normal_client(http: u16, stop: Arc<AtomicBool>) -> (tokio::task::JoinHandle<()>, Arc<Outcomes>) {
    let outcomes = Arc::new(Outcomes::default());
    let o = outcomes.clone();
    let task = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let body = span_request(&format!("normal{i}"), 5, 2).encode_to_vec();
            let r = client
                .post(format!("http://127.0.0.1:{http}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match r.map(|r| r.status().as_u16()) {
                Ok(200) => o.ok.fetch_add(1, Ordering::SeqCst),
                Ok(429 | 503) => o.retry.fetch_add(1, Ordering::SeqCst),
                other => {
                    println!("normal client: {other:?}");
                    o.failed.fetch_add(1, Ordering::SeqCst)
                }
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (task, outcomes)
}

/// 19 KiB of gzip that inflate to 10 million empty spans (and the same for logs, points and
/// attributes; JSON; six concurrent gRPC requests at the 4 MiB limit; a 4 GiB length prefix):
/// each is answered, the collector stays up and within its memory bound, and a normal client
/// is served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplified_requests_are_refused_before_they_cost_memory() {
    let sink = Sink::start();
    let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let c = Collector::start(
        &agent_like(grpc, http, health, metrics, sink.port),
        &[],
        Some(health),
        Some(metrics),
    );
    let baseline = peak_rss(c.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let (normal, outcomes) = normal_client(http, stop.clone());

    // HTTP protobuf: 20 MB bodies (under the 20 MiB limit) that are gigabytes decoded.
    for (path, body, items) in [
        ("/v1/traces", empty_spans(10_000_000), "10000000 spans"),
        ("/v1/logs", empty_logs(10_000_000), "10000000 log_records"),
        (
            "/v1/metrics",
            empty_points(10_000_000),
            "10000000 metric_points",
        ),
        ("/v1/traces", empty_attributes(10_000_000), "1 spans"),
    ] {
        let zipped = gzip(&body);
        assert!(zipped.len() < 40 << 10, "{} bytes of gzip", zipped.len());
        let (status, text) = post(http, path, "application/x-protobuf", zipped).await;
        assert_eq!(status, 413, "{path}: {text}");
        assert!(
            text.contains(items) && text.contains("max_decoded_size"),
            "{text}"
        );
    }
    // HTTP JSON: 6.9 million `{}` spans.
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        vec!["{}"; 6_900_000].join(",")
    );
    let (status, text) = post(
        http,
        "/v1/traces",
        "application/json",
        gzip(json.as_bytes()),
    )
    .await;
    assert_eq!(status, 413, "{text}");

    // gRPC: six concurrent 4 MB requests of 2 million empty spans each, sent gzip-compressed.
    let spans = empty_spans(2_000_000);
    let mut calls = Vec::new();
    for _ in 0..6 {
        let body = spans.clone();
        calls.push(tokio::spawn(
            async move { raw_grpc(grpc, &body, true).await },
        ));
    }
    for call in calls {
        let (code, msg, retry) = call.await.unwrap();
        assert_eq!(code, 8, "RESOURCE_EXHAUSTED: {msg}");
        assert!(!retry, "no retry info: it can never fit");
        assert!(msg.contains("2000000 spans"), "{msg}");
    }
    // A length prefix of 4 GiB: refused at once, for good.
    let (code, msg, retry) = raw_grpc_prefix(grpc, u32::MAX).await;
    assert_eq!((code, retry), (8, false), "{msg}");

    let sequential_peak = peak_rss(c.pid());
    // Through everything so far, one request at a time: the normal client is served, never
    // even told to retry.
    let sequential = (
        outcomes.ok.load(Ordering::SeqCst),
        outcomes.retry.load(Ordering::SeqCst),
        outcomes.failed.load(Ordering::SeqCst),
    );
    assert!(
        sequential.0 > 10 && sequential.1 == 0 && sequential.2 == 0,
        "{sequential:?}"
    );

    // 24 bombs at once, each inflating to the 20 MiB body limit: without reservations that is
    // 480 MiB of inflated bodies, above the 400 MiB limit. Each is refused (413 for its decoded
    // size, or 429 while memory is in use), and together they stay under memory_limiter's limit.
    let bomb = gzip(&empty_spans(10_000_000));
    let mut calls = Vec::new();
    for _ in 0..24 {
        let body = bomb.clone();
        calls.push(tokio::spawn(async move {
            post(http, "/v1/traces", "application/x-protobuf", body).await
        }));
    }
    for call in calls {
        let (status, text) = call.await.unwrap();
        assert!(status == 413 || status == 429, "{status}: {text}");
    }
    let concurrent_peak = peak_rss(c.pid());
    // The limit plus the allocator's slack and what reservations do not see (thread stacks,
    // the compressed bodies).
    assert!(
        concurrent_peak < 400 * MIB + 64 * MIB,
        "24 concurrent bombs took RSS to {} MiB",
        concurrent_peak / MIB
    );

    // A large request that does fit is taken and delivered whole.
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    let big = span_request("big", 6000, 12);
    assert!(big.encoded_len() > 3 << 20);
    // Retried while the server says so (RESOURCE_EXHAUSTED with RetryInfo from admission,
    // UNAVAILABLE from memory_limiter while RSS is above its soft limit), as the SDKs do.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match client.export(big.clone()).await {
            Ok(_) => break,
            Err(st)
                if matches!(
                    st.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                ) && tonic_types::StatusExt::get_details_retry_info(&st).is_some()
                    && attempts < 30 =>
            {
                println!("attempt {attempts}: {}", st.message());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(st) => panic!("a real 3+ MB request is admitted: {st:?}"),
        }
    }

    stop.store(true, Ordering::SeqCst);
    normal.await.unwrap();
    let peak = sequential_peak;
    let grown = peak.saturating_sub(baseline);
    println!("24 concurrent bombs: peak {} MiB", concurrent_peak / MIB);
    let ok = outcomes.ok.load(Ordering::SeqCst);
    let retried = outcomes.retry.load(Ordering::SeqCst);
    println!(
        "baseline {} MiB, peak {} MiB, grown {} MiB; normal client: {ok} ok, {retried} told to retry during the concurrent bombs, {} failed; the big request took {attempts} attempt(s)",
        baseline / MIB,
        peak / MIB,
        grown / MIB,
        outcomes.failed.load(Ordering::SeqCst)
    );
    // While the bombs hold memory the normal client may be told to retry (backpressure), never
    // failed; and it is served again once they are gone.
    assert_eq!(
        outcomes.failed.load(Ordering::SeqCst),
        0,
        "the normal client failed"
    );
    assert!(ok > sequential.0, "served again after the concurrent bombs");
    // The bound documented in RELIABILITY.md: a refused request costs its buffers (the body as
    // received and inflated, at most the 20 MiB limit; twice that while JSON is transcoded), the
    // admitted one its decoded size (~20 MiB here). Everything above, with the six gRPC requests
    // at once, stays under five times the body limit.
    assert!(
        grown < 100 * MIB,
        "peak RSS grew by {} MiB (from {} MiB)",
        grown / MIB,
        baseline / MIB
    );
    assert!(
        c.self_metrics().contains("otelcol_process_uptime"),
        "still up"
    );
    let refused =
        c.metric("otelcol_receiver_refused_spans_total{receiver=\"otlp\",transport=\"http\"}");
    // Counted as the scan found them (the JSON one is stopped before its count is known).
    assert!(
        refused >= 10_000_001.0,
        "refused spans are counted: {refused}"
    );
    let refused_grpc =
        c.metric("otelcol_receiver_refused_spans_total{receiver=\"otlp\",transport=\"grpc\"}");
    // The six bombs, plus the big request each time it was told to retry.
    assert_eq!(
        refused_grpc,
        12_000_000.0 + 6000.0 * f64::from(attempts - 1),
        "six bombs of 2M spans and {} refused attempt(s) of 6000",
        attempts - 1
    );
    let want = 6000 + 5 * ok;
    wait_until(
        "every accepted span at the sink",
        Duration::from_secs(20),
        || sink.store.span_count() == want,
    );
}

/// One gRPC unary call to TraceService/Export with `message` as the body (gzip-compressed when
/// `zip`): the grpc-status, its message, and whether it carries RetryInfo.
async fn raw_grpc(port: u16, message: &[u8], zip: bool) -> (i32, String, bool) {
    let payload = if zip { gzip(message) } else { message.to_vec() };
    let mut framed = vec![u8::from(zip)];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    grpc_call(port, framed, zip).await
}

/// A gRPC frame whose length prefix says `len` but carries only a few bytes.
async fn raw_grpc_prefix(port: u16, len: u32) -> (i32, String, bool) {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&[0x0a, 0x00]);
    grpc_call(port, framed, false).await
}

async fn grpc_call(port: u16, framed: Vec<u8>, zip: bool) -> (i32, String, bool) {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://127.0.0.1:{port}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if zip {
        req = req.header("grpc-encoding", "gzip");
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(framed)))
        .unwrap();
    let resp = client.request(req).await.expect("an answer");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.map(|c| c.trailers().cloned());
    let trailers = collected.ok().flatten();
    let headers = trailers.as_ref().unwrap_or(&parts.headers);
    let status = tonic::Status::from_header_map(headers)
        .or_else(|| tonic::Status::from_header_map(&parts.headers))
        .expect("a grpc-status");
    let retry = tonic_types::StatusExt::get_details_retry_info(&status).is_some();
    (status.code() as i32, status.message().to_owned(), retry)
}

/// A Jaeger collector's gRPC API (api_v2 `PostSpans`), counting spans. No Jaeger runs here: it is
/// a server generated from the published protos, with tonic's 4 MiB message limit, which is
/// Jaeger's default too.
#[derive(Clone, Default)]
struct JaegerCount(Arc<std::sync::Mutex<std::collections::HashSet<Vec<u8>>>>);

#[tonic::async_trait]
impl ferrotel::proto::jaeger::collector_service_server::CollectorService for JaegerCount {
    async fn post_spans(
        &self,
        r: tonic::Request<ferrotel::proto::jaeger::PostSpansRequest>,
    ) -> Result<tonic::Response<ferrotel::proto::jaeger::PostSpansResponse>, tonic::Status> {
        let mut seen = self.0.lock().unwrap();
        for s in r.into_inner().batch.into_iter().flat_map(|b| b.spans) {
            seen.insert([s.trace_id, s.span_id].concat());
        }
        Ok(tonic::Response::new(
            ferrotel::proto::jaeger::PostSpansResponse {},
        ))
    }
}

/// Zipkin's v2 HTTP API, counting spans (a JSON list of spans per POST, answered 202). No Zipkin
/// runs here: a stand-in written from the API's schema.
fn zipkin_counter(
    rt: &tokio::runtime::Runtime,
    port: u16,
    seen: Arc<std::sync::Mutex<std::collections::HashSet<Vec<u8>>>>,
) {
    rt.spawn(async move {
        let app = axum::Router::new().route(
            "/api/v2/spans",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    match serde_json::from_slice::<Vec<serde_json::Value>>(&body) {
                        Ok(spans) => {
                            let mut seen = seen.lock().unwrap();
                            for s in spans {
                                let id = |k: &str| {
                                    hex::decode(s[k].as_str().unwrap_or("")).unwrap_or_default()
                                };
                                seen.insert([id("traceId"), id("id")].concat());
                            }
                            axum::http::StatusCode::ACCEPTED
                        }
                        Err(_) => axum::http::StatusCode::BAD_REQUEST,
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
}

/// The shipped agent → gateway pair (`pipelines/agent.yaml` and `pipelines/gateway.yaml` as
/// they are) under load with large spans (~1 KB, 30 attributes: the agent's batches of up to
/// 16,384 spans are ~16 MB): every span a client was told was accepted reaches the gateway,
/// and from it Jaeger and Zipkin. Before requests were split to the peer's size, the gateway
/// refused such batches and the agent dropped them whole.
#[test]
fn the_shipped_pair_delivers_every_large_span_under_load() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (jport, zport) = (free_port(), free_port());
    let (jaeger, zipkin) = (
        JaegerCount::default(),
        Arc::new(std::sync::Mutex::new(std::collections::HashSet::new())),
    );
    let svc = jaeger.clone();
    rt.spawn(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", jport))
            .await
            .unwrap();
        tonic::transport::Server::builder()
            .add_service(
                ferrotel::proto::jaeger::collector_service_server::CollectorServiceServer::new(svc),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
            .await
            .unwrap();
    });
    zipkin_counter(&rt, zport, zipkin.clone());

    let gw = common::Ports::new();
    let gateway = Collector::shipped(
        "gateway.yaml",
        &gw,
        &[
            ("FERROTEL_JAEGER_ENDPOINT", format!("127.0.0.1:{jport}")),
            (
                "FERROTEL_ZIPKIN_ENDPOINT",
                format!("http://127.0.0.1:{zport}/api/v2/spans"),
            ),
        ],
    );
    let ap = common::Ports::new();
    let agent = Collector::shipped(
        "agent.yaml",
        &ap,
        &[(
            "FERROTEL_GATEWAY_ENDPOINT",
            format!("127.0.0.1:{}", gw.grpc),
        )],
    );

    // Four clients, each sending requests of 1000 large spans back to back; every span has its
    // own ids, and the ids of every accepted request are kept.
    let accepted = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let template = span_request("large", 1000, 30);
    assert!(template.encoded_len() > 900_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    let clients: Vec<_> = (0..4u64)
        .map(|client| {
            let (mut req, accepted) = (template.clone(), accepted.clone());
            let port = ap.grpc;
            rt.spawn(async move {
                let mut c = TraceServiceClient::connect(format!("http://127.0.0.1:{port}"))
                    .await
                    .unwrap()
                    .send_compressed(tonic::codec::CompressionEncoding::Gzip);
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    n += 1;
                    let ids: Vec<Vec<u8>> = req.resource_spans[0].scope_spans[0]
                        .spans
                        .iter_mut()
                        .map(|sp| {
                            sp.trace_id[..8].copy_from_slice(&((client << 48) | n).to_be_bytes());
                            [sp.trace_id.clone(), sp.span_id.clone()].concat()
                        })
                        .collect();
                    if c.export(req.clone()).await.is_ok() {
                        accepted.lock().unwrap().extend(ids);
                    }
                }
            })
        })
        .collect();
    for c in clients {
        rt.block_on(c).unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    let sent = accepted.len();
    // That load happened at all (two requests per client), not a speed: a busy machine takes
    // fewer in the six seconds, and speed is measured in BENCHMARKS.md.
    assert!(sent >= 8_000, "only {sent} spans accepted");
    // At least once: a send whose answer was lost to a timeout is sent again, so the backends
    // may see a span twice; each must have every one.
    let missing = |seen: &std::sync::Mutex<std::collections::HashSet<Vec<u8>>>| {
        let seen = seen.lock().unwrap();
        accepted.iter().filter(|id| !seen.contains(*id)).count()
    };
    let counts = || {
        (
            gateway.metric(
                "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"}",
            ) as usize,
            missing(&jaeger.0),
            missing(&zipkin),
        )
    };
    let waited = std::time::Instant::now();
    while !matches!(counts(), (n, 0, 0) if n >= sent) {
        assert!(
            waited.elapsed() < Duration::from_secs(90),
            "sent {sent}; gateway accepted, missing at jaeger, at zipkin: {:?}\nagent:\n{}\ngateway:\n{}",
            counts(),
            agent.logs(),
            gateway.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dropped = |c: &Collector| {
        c.self_metrics()
            .lines()
            .filter(|l| l.starts_with("otelcol_exporter_dropped_items_total"))
            .map(|l| common::parse_metric(l, l.rsplit_once(' ').unwrap().0))
            .sum::<f64>()
    };
    assert_eq!(dropped(&agent), 0.0, "{}", agent.self_metrics());
    assert_eq!(dropped(&gateway), 0.0, "{}", gateway.self_metrics());
    assert!(
        agent.metric("otelcol_exporter_sent_spans_total{exporter=\"otlp_grpc/gateway\"}") as usize
            >= sent
    );
    println!("{sent} spans, every one delivered");
}

/// Slowloris on both OTLP ports: three times the connection cap held open by clients that send
/// their headers a byte at a time (HTTP/1) or only the HTTP/2 preface (gRPC), more than the
/// process has file descriptors (its limit is 400 here). Fresh clients are served all along:
/// the longest idle connection is shed for each new one, and the stragglers are closed by the
/// header and idle timeouts. What was shed is counted. (Without the cap the attackers take every
/// descriptor and a fresh client's connection is never accepted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_beyond_the_connection_cap_does_not_lock_out_fresh_clients() {
    use tokio::io::AsyncWriteExt;
    let sink = Sink::start();
    let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "127.0.0.1:{grpc}"
        max_connections: 100
        keepalive: {{ server_parameters: {{ max_connection_idle: 3s }} }}
      http:
        endpoint: "127.0.0.1:{http}"
        max_connections: 100
        read_header_timeout: 3s
        idle_timeout: 3s
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start_nofile(&cfg, 400, Some(health), Some(metrics));
    let stop = Arc::new(AtomicBool::new(false));
    // 300 slow HTTP/1 clients and 300 silent HTTP/2 ones.
    let mut attackers = Vec::new();
    for i in 0..600 {
        let stop = stop.clone();
        let port = if i % 2 == 0 { http } else { grpc };
        attackers.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            if port == grpc {
                // The HTTP/2 preface and an empty SETTINGS frame, then silence.
                let _ = s
                    .write_all(
                        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
                    )
                    .await;
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                return;
            }
            let head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            if s.write_all(head).await.is_err() {
                return;
            }
            while !stop.load(Ordering::SeqCst) {
                if s.write_all(b"a").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Fresh clients, each on a new connection, for several seconds.
    let started = std::time::Instant::now();
    let (mut ok, mut failed) = (0, 0);
    while started.elapsed() < Duration::from_secs(6) {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let r = client
            .post(format!("http://127.0.0.1:{http}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(span_request("fresh-http", 2, 1).encode_to_vec())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 200 => ok += 1,
            other => {
                failed += 1;
                println!("fresh HTTP client failed: {other:?}");
            }
        }
        let g = async {
            let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
                .await
                .map_err(|e| e.to_string())?;
            client
                .export(span_request("fresh-grpc", 2, 1))
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), g).await {
            Ok(Ok(_)) => ok += 1,
            other => {
                failed += 1;
                println!("fresh gRPC client failed: {other:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for a in attackers {
        let _ = a.await;
    }
    println!("fresh clients: {ok} served, {failed} failed");
    assert_eq!(failed, 0, "fresh clients were locked out");
    assert!(ok > 20);
    let closed = |endpoint: u16, reason: &str| {
        c.metric(&format!(
            "otelcol_server_connections_closed_total{{endpoint=\"127.0.0.1:{endpoint}\",reason=\"{reason}\"}}"
        ))
    };
    let (shed_http, shed_grpc) = (closed(http, "shed"), closed(grpc, "shed"));
    let idle_grpc = closed(grpc, "idle");
    println!("shed: http {shed_http}, grpc {shed_grpc}; idle-closed grpc {idle_grpc}");
    assert!(
        shed_http >= 100.0 && shed_grpc >= 100.0,
        "the slow connections were shed"
    );
    let open = c.metric(&format!(
        "otelcol_server_connections{{endpoint=\"127.0.0.1:{http}\"}}"
    ));
    assert!(open <= 101.0, "{open} open HTTP connections");
    wait_until("the fresh clients' spans", Duration::from_secs(10), || {
        sink.store.span_count() == 2 * ok
    });
}

/// Config values and conditions that once validated and then exhausted memory or overflowed the
/// stack: each is now a located error from `ferrotel validate` (the same checks start-up runs),
/// and the process exits 1 without crashing.
#[test]
fn hostile_configs_get_located_errors() {
    let base = |exporter_extra: &str, processors: &str, pipeline_procs: &str| {
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n{processors}exporters:\n  otlp_grpc:\n    endpoint: 127.0.0.1:1\n{exporter_extra}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n{pipeline_procs}      exporters: [otlp_grpc]\n"
        )
    };
    let filter = |cond: &str| {
        base(
            "",
            &format!("processors:\n  filter:\n    traces:\n      span:\n        - '{cond}'\n"),
            "      processors: [filter]\n",
        )
    };
    let deep_parens = format!("{}name == \"x\"{}", "(".repeat(10_000), ")".repeat(10_000));
    let deep_not = format!("{}name == \"x\"", "not ".repeat(12_000));
    let cases: Vec<(String, &str, &str)> = vec![
        (
            base("    sending_queue:\n      queue_size: 4000000000\n", "", ""),
            ":10:19: exporters::otlp_grpc: `sending_queue.queue_size`",
            "must be between 1 and 10000000",
        ),
        (
            base(
                "    sending_queue:\n      num_consumers: 10000000\n",
                "",
                "",
            ),
            ":10:22: exporters::otlp_grpc: `sending_queue.num_consumers`",
            "must be between 1 and 10000",
        ),
        (
            filter(&deep_parens),
            ":10:11: processors::filter: `traces.span[0]`",
            "nesting deeper than 100 levels",
        ),
        (
            filter(&deep_not),
            ":10:11: processors::filter: `traces.span[0]`",
            "nesting deeper than 100 levels",
        ),
        (
            base("", "processors:\n  batch:\n    send_batch_size: -1\n", ""),
            ":8:22: processors::batch: `send_batch_size`",
            "-1 is out of range",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (yaml, at, msg)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrotel"))
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "case {i}: {text}");
        assert!(text.contains(at) && text.contains(msg), "case {i}: {text}");
        assert!(
            text.len() < 4096,
            "case {i}: the message quotes, it does not dump"
        );
    }
    // A mapping of 100,000 keys (under an exporter's headers): read in linear time, validated.
    let headers: String = (0..100_000).map(|i| format!("      h{i}: v\n")).collect();
    let yaml = base(&format!("    headers:\n{headers}"), "", "");
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, yaml).unwrap();
    let t0 = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("100,000 keys validated in {:?}", t0.elapsed());
}
