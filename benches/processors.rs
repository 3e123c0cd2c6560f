//! Criterion benches of the processors (spans per second on one core, through the processor's
//! whole consume path into a consumer that discards; copying the input is outside the timing)
//! and of OTTL condition evaluation.
//! Run: `cargo bench --bench processors`.

use std::hint::black_box;
use std::sync::{Arc, Mutex};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrotel::component::{BoxFuture, ConsumeResult, Consumer, DynConsumer, Processor};
use ferrotel::config::node::parse;
use ferrotel::ottl::eval::{Outer, SpanCtx};
use ferrotel::ottl::mutate::{Env, SpanMut};
use ferrotel::ottl::{Condition, Context as OttlContext, Statement};
use ferrotel::signal::{Batch, Signal};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

// The allocator the `ferrotel` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps what comes out; the next iteration's setup (outside the timing) frees it, so freeing
/// the batch (the exporter's cost in a real pipeline) is not counted as the processor's.
struct Keep(Arc<Mutex<Vec<Batch>>>);
impl Consumer for Keep {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        self.0.lock().unwrap().push(batch);
        Box::pin(async { Ok(()) })
    }
}

type Out = Arc<Mutex<Vec<Batch>>>;

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// 1000 spans of 100 traces, ten attributes each, one resource.
fn spans() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", s("checkout")),
                kv("host.name", s("node-1")),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: (0..1000u64)
                .map(|i| Span {
                    trace_id: [(i / 10).to_be_bytes(), 42u64.to_be_bytes()].concat(),
                    span_id: (i + 1).to_be_bytes().to_vec(),
                    name: if i % 10 == 0 {
                        "GET /health".into()
                    } else {
                        "GET /api/items".into()
                    },
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000 + i,
                    end_time_unix_nano: 1_700_000_000_001_000_000 + i * 1000,
                    status: Some(Status {
                        code: if i % 50 == 0 { 2 } else { 0 },
                        ..Default::default()
                    }),
                    attributes: (0..8)
                        .map(|a| kv(&format!("attr.{a}"), s("value")))
                        .chain([
                            kv(
                                "http.route",
                                s(if i % 10 == 0 { "/health" } else { "/api/items" }),
                            ),
                            kv("user.email", s("someone@example.com")),
                        ])
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn build(kind: &str, yaml: &str) -> (Arc<dyn Processor>, Out) {
    let node = parse(yaml).unwrap();
    let factory = ferrotel::registry::FACTORIES
        .iter()
        .find(|f| f.name == kind)
        .unwrap();
    let ferrotel::component::Parse::Processor(p) = factory.parse else {
        panic!("{kind} is a processor")
    };
    let cfg = p(&node).unwrap();
    let out: Out = Arc::default();
    let next: DynConsumer = Arc::new(Keep(out.clone()));
    let p = cfg
        .build(ferrotel::pipeline::test_context(kind), Signal::Traces, next)
        .unwrap();
    (p, out)
}

fn benches(c: &mut Criterion) {
    let input = spans();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut g = c.benchmark_group("ottl");
    let cond = Condition::parse(
        r#"attributes["http.route"] == "/health" and kind == SPAN_KIND_SERVER or status.code == STATUS_CODE_ERROR"#,
        OttlContext::Span,
    )
    .unwrap();
    let regex = Condition::parse(r#"IsMatch(name, ".*health.*")"#, OttlContext::Span).unwrap();
    let outer = Outer {
        resource: &input[0].resource.as_ref().unwrap().attributes,
        resource_dropped: 0,
        scope: None,
    };
    let spans = &input[0].scope_spans[0].spans;
    g.throughput(Throughput::Elements(spans.len() as u64));
    g.bench_function("eval_compare_and_or_1000_spans", |b| {
        b.iter(|| {
            spans
                .iter()
                .filter(|span| {
                    cond.eval(&SpanCtx {
                        outer: &outer,
                        span,
                    })
                    .unwrap()
                })
                .count()
        })
    });
    g.bench_function("eval_ismatch_1000_spans", |b| {
        b.iter(|| {
            spans
                .iter()
                .filter(|span| {
                    regex
                        .eval(&SpanCtx {
                            outer: &outer,
                            span,
                        })
                        .unwrap()
                })
                .count()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("ottl_parse");
    g.bench_function("parse_condition", |b| {
        b.iter(|| {
            Condition::parse(
                black_box(r#"attributes["http.route"] == "/health" and kind == SPAN_KIND_SERVER"#),
                OttlContext::Span,
            )
            .unwrap()
        })
    });
    g.finish();

    // OTTL statements per span, run straight on the decoded spans (the transform processor's
    // loop without its shell); the decoding and the freeing are outside the timing. The input
    // is decoded from the wire as the processor gets it (a clone would size every list and
    // string exactly, which decoding does not).
    let wire = ExportTraceServiceRequest {
        resource_spans: input.clone(),
    }
    .encode_to_vec();
    let decoded = || {
        ExportTraceServiceRequest::decode(wire.as_slice())
            .unwrap()
            .resource_spans
    };
    let mut g = c.benchmark_group("ottl_statements");
    g.throughput(Throughput::Elements(1000));
    let sets: [(&str, &[&str]); 5] = [
        ("set_attribute", &[r#"set(attributes["env"], "prod")"#]),
        (
            "replace_pattern",
            &[r#"replace_pattern(attributes["http.route"], "^/api/(\\w+)$", "/api/{item}")"#],
        ),
        ("delete_key", &[r#"delete_key(attributes, "user.email")"#]),
        (
            "where_false",
            &[r#"set(attributes["x"], "y") where attributes["http.route"] == "/nothing""#],
        ),
        (
            "four_statements",
            &[
                r#"set(attributes["env"], "prod")"#,
                r#"replace_pattern(attributes["http.route"], "^/api/(\\w+)$", "/api/{item}")"#,
                r#"delete_key(attributes, "user.email")"#,
                r#"set(attributes["x"], "y") where attributes["http.route"] == "/nothing""#,
            ],
        ),
    ];
    for (name, texts) in sets {
        let stmts: Vec<Statement> = texts
            .iter()
            .map(|t| Statement::parse(t, OttlContext::Span).unwrap())
            .collect();
        g.bench_function(format!("{name}_1000_spans"), |b| {
            b.iter_batched(
                decoded,
                |mut batch| {
                    let mut cache = Vec::new();
                    for rs in &mut batch {
                        for ss in &mut rs.scope_spans {
                            for span in &mut ss.spans {
                                cache.clear();
                                let mut item = SpanMut {
                                    env: Env {
                                        resource: &mut rs.resource,
                                        scope: Some(&mut ss.scope),
                                        cache: &mut cache,
                                    },
                                    span,
                                };
                                for st in &stmts {
                                    st.exec(&mut item).unwrap();
                                }
                            }
                        }
                    }
                    batch
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    let mut g = c.benchmark_group("ottl_parse");
    g.bench_function("parse_statement", |b| {
        b.iter(|| {
            Statement::parse(
                black_box(r#"replace_pattern(attributes["http.route"], "^/api/(\\w+)$", "/api/{item}") where kind == SPAN_KIND_SERVER"#),
                OttlContext::Span,
            )
            .unwrap()
        })
    });
    g.finish();

    let procs = [
        (
            "transform_4_statements",
            "transform",
            "trace_statements:\n  - context: span\n    statements:\n      - 'set(attributes[\"env\"], \"prod\")'\n      - 'replace_pattern(attributes[\"http.route\"], \"^/api/(\\\\w+)$\", \"/api/{item}\")'\n      - 'delete_key(attributes, \"user.email\")'\n      - 'set(attributes[\"x\"], \"y\") where attributes[\"http.route\"] == \"/nothing\"'\n",
        ),
        (
            "filter_3_conditions_keep_all",
            "filter",
            "error_mode: ignore\ntraces:\n  span:\n    - 'attributes[\"http.route\"] == \"/metrics\"'\n    - 'kind == SPAN_KIND_CLIENT and status.code == STATUS_CODE_ERROR'\n    - 'resource.attributes[\"service.name\"] == \"noisy\"'\n",
        ),
        (
            "filter_3_conditions_drop_10pct",
            "filter",
            "error_mode: ignore\ntraces:\n  span:\n    - 'attributes[\"http.route\"] == \"/health\"'\n    - 'kind == SPAN_KIND_CLIENT and status.code == STATUS_CODE_ERROR'\n    - 'resource.attributes[\"service.name\"] == \"noisy\"'\n",
        ),
        (
            "attributes",
            "attributes",
            "actions:\n  - {key: env, value: prod, action: upsert}\n  - {key: user.email, action: hash}\n  - {key: attr.0, action: delete}\n",
        ),
        (
            "resource",
            "resource",
            "attributes:\n  - {key: team, value: payments, action: insert}\n  - {key: host.name, action: delete}\n",
        ),
        (
            "probabilistic_sampler",
            "probabilistic_sampler",
            "hash_seed: 22\nsampling_percentage: 25\n",
        ),
    ];
    let mut g = c.benchmark_group("processors");
    g.throughput(Throughput::Elements(1000));
    for (name, kind, yaml) in procs {
        let (p, out) = rt.block_on(async { build(kind, yaml) });
        g.bench_function(format!("{name}_1000_spans"), |b| {
            b.iter_batched(
                || {
                    out.lock().unwrap().clear();
                    input.clone()
                },
                |batch| rt.block_on(p.consume(Batch::Traces(batch))).unwrap(),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    // Tail sampling holds spans: each iteration is a fresh processor (built outside the timing)
    // that takes 1000 spans of 100 traces, then decides all of them at shutdown and passes on
    // the sampled ones.
    let tail = "decision_wait: 1h\npolicies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n";
    g.bench_function("tail_sampling_hold_decide_1000_spans", |b| {
        b.iter_batched(
            || {
                (
                    rt.block_on(async { build("tail_sampling", tail) }),
                    input.clone(),
                )
            },
            |((p, _out), batch)| {
                rt.block_on(async {
                    p.consume(Batch::Traces(batch)).await.unwrap();
                    p.shutdown(tokio::time::Instant::now() + std::time::Duration::from_secs(5))
                        .await;
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// A stand-in API server for the `k8sattributes` bench: lists 1000 pods (IPs 10.0.<i/250>.<i%250>,
/// owned by ReplicaSets of Deployments) and holds every watch open.
fn fake_kubernetes_api() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let pods: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            serde_json::json!({
                "metadata": {"name": format!("web-{i}"), "namespace": "shop", "uid": format!("uid-{i}"),
                    "labels": {"app": "web"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": format!("web-{}-rs", i % 10)}]},
                "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "shop/web:1.0"}]},
                "status": {"podIP": format!("10.0.{}.{}", i / 250, i % 250), "startTime": "2026-11-27T05:00:00Z",
                    "containerStatuses": [{"name": "app", "containerID": format!("containerd://c{i}")}]}
            })
        })
        .collect();
    let pod_list =
        serde_json::json!({"metadata": {"resourceVersion": "1"}, "items": pods}).to_string();
    let rs_list = serde_json::json!({"metadata": {"resourceVersion": "1"}, "items": (0..10).map(|i| serde_json::json!({
        "metadata": {"name": format!("web-{i}-rs"), "namespace": "shop", "ownerReferences": [{"kind": "Deployment", "name": "web"}]}
    })).collect::<Vec<_>>()})
    .to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let (pod_list, rs_list) = (pod_list.clone(), rs_list.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let n = c.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if head.contains("watch=1") {
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                    return;
                }
                let body = if head.contains("/api/v1/pods") {
                    pod_list
                } else if head.contains("replicasets") {
                    rs_list
                } else {
                    "{}".to_string()
                };
                let _ = c.write_all(
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                        .as_bytes(),
                );
            });
        }
    });
    port
}

/// 1000 spans under 100 resources, each naming one pod by IP and its container.
fn spans_of_pods() -> Vec<ResourceSpans> {
    let mut rs = spans();
    let template = rs.remove(0);
    (0..100)
        .map(|i| {
            let mut r = template.clone();
            r.scope_spans[0].spans.truncate(10);
            let attrs = &mut r.resource.as_mut().unwrap().attributes;
            attrs.push(kv(
                "k8s.pod.ip",
                s(&format!("10.0.{}.{}", i / 250, i % 250)),
            ));
            attrs.push(kv("k8s.container.name", s("app")));
            r
        })
        .collect()
}

fn bench_k8sattributes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (p, out) = rt.block_on(async {
        let built = build(
            "k8sattributes",
            "auth_type: none\nextract:\n  metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.pod.start_time, k8s.deployment.name, k8s.node.name, container.image.name, container.image.tag]\n  labels: [{key: app}]\n",
        );
        // Let the list arrive.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        built
    });
    let input = spans_of_pods();
    rt.block_on(p.consume(Batch::Traces(input.clone())))
        .unwrap();
    let enriched = {
        let got = out.lock().unwrap();
        matches!(&got[0], Batch::Traces(rs) if rs[7].resource.as_ref().unwrap().attributes.iter().any(|kv| kv.key == "k8s.deployment.name"))
    };
    assert!(enriched, "the bench must measure enrichment, not a miss");
    let mut g = c.benchmark_group("processors");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("k8sattributes_100_resources_1000_spans", |b| {
        b.iter_batched(
            || {
                out.lock().unwrap().clear();
                input.clone()
            },
            |batch| rt.block_on(p.consume(Batch::Traces(batch))).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn k8s_env() {
    let port = fake_kubernetes_api();
    // SAFETY: set once, first thing, before any runtime or bench starts a thread (the stand-in
    // server's thread does not read the environment).
    unsafe {
        std::env::set_var("KUBERNETES_SERVICE_HOST", "127.0.0.1");
        std::env::set_var("KUBERNETES_SERVICE_PORT", port.to_string());
    }
}

/// Discards what it takes.
struct Discard;
impl Consumer for Discard {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        drop(batch);
        Box::pin(async { Ok(()) })
    }
}

/// What a tap point costs a batch: no `tap` extension (no wrapper at all), the extension on and
/// nobody tapping (the wrapper's atomic load), and one tap attached (a clone of the batch into
/// its queue, drained outside the timing). The batch is an encoded 1000-span request, so the
/// batch's own cost is small and the wrapper's shows.
fn bench_tap(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = bytes::Bytes::from(
        ExportTraceServiceRequest {
            resource_spans: spans(),
        }
        .encode_to_vec(),
    );
    let batch = Batch::Encoded(ferrotel::signal::Encoded::new(Signal::Traces, bytes, 1000));
    let off = ferrotel::tap::Taps::default();
    let on = ferrotel::tap::Taps::default();
    on.enable();
    let direct =
        ferrotel::pipeline::tapped::wrap(&off, "traces", "processor:batch", Arc::new(Discard));
    let idle =
        ferrotel::pipeline::tapped::wrap(&on, "traces", "processor:batch", Arc::new(Discard));
    let mut g = c.benchmark_group("tap");
    g.throughput(Throughput::Elements(1));
    for (name, consumer) in [("no_extension", &direct), ("enabled_idle", &idle)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || batch.clone(),
                |batch| rt.block_on(consumer.consume(batch)).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    let mut sub = on.subscribe("traces", "processor:batch").unwrap();
    g.bench_function("one_tap_attached", |b| {
        b.iter_batched(
            || {
                while sub.rx.try_recv().is_ok() {}
                batch.clone()
            },
            |batch| rt.block_on(idle.consume(batch)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    k8s_env();
    bench_tap(c);
    benches(c);
    bench_k8sattributes(c);
}

criterion_group!(processors, all);
criterion_main!(processors);
