//! `resourcedetection` end to end. The cloud metadata services cannot run here: each is a
//! strict stand-in written from its published interface (EC2's IMDSv2 with its session token,
//! the GCE metadata server's `Metadata-Flavor: Google`, Azure IMDS's `Metadata: true` and
//! `api-version`), answering 401/403/400 when the request is not as documented. `env` reads the
//! collector's own environment and `system` this machine's host name.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use common::sink::Sink;
use common::{Collector, free_port, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn header(h: &HeaderMap, k: &str) -> Option<String> {
    h.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The three metadata services on one port, each under its documented paths.
fn metadata_standins(rt: &tokio::runtime::Runtime, port: u16) {
    let ec2_doc = r#"{"accountId":"123456789012","architecture":"x86_64","availabilityZone":"eu-west-1b","imageId":"ami-0abcdef","instanceId":"i-0123456789abcdef0","instanceType":"m5.large","pendingTime":"2026-01-01T00:00:00Z","privateIp":"10.0.0.1","region":"eu-west-1","version":"2017-09-30"}"#;
    let app = axum::Router::new()
        // EC2 IMDSv2: a PUT with a TTL gives a token; every read needs it.
        .route(
            "/latest/api/token",
            put(|h: HeaderMap| async move {
                match header(&h, "x-aws-ec2-metadata-token-ttl-seconds") {
                    Some(t) if t.parse::<u32>().is_ok_and(|t| (1..=21600).contains(&t)) => {
                        (StatusCode::OK, "tok-1".to_owned())
                    }
                    _ => (StatusCode::BAD_REQUEST, String::new()),
                }
            }),
        )
        .route(
            "/latest/dynamic/instance-identity/document",
            get(move |h: HeaderMap| async move {
                if header(&h, "x-aws-ec2-metadata-token").as_deref() == Some("tok-1") {
                    (StatusCode::OK, ec2_doc.to_owned())
                } else {
                    (StatusCode::UNAUTHORIZED, String::new())
                }
            }),
        )
        .route(
            "/latest/meta-data/hostname",
            get(|h: HeaderMap| async move {
                if header(&h, "x-aws-ec2-metadata-token").as_deref() == Some("tok-1") {
                    (StatusCode::OK, "ip-10-0-0-1.eu-west-1.compute.internal".to_owned())
                } else {
                    (StatusCode::UNAUTHORIZED, String::new())
                }
            }),
        )
        // GCE: `Metadata-Flavor: Google` or 403; an instance without `cluster-name` is not GKE.
        .route(
            "/computeMetadata/v1/{*path}",
            get(
                |axum::extract::Path(path): axum::extract::Path<String>, h: HeaderMap| async move {
                    if header(&h, "metadata-flavor").as_deref() != Some("Google") {
                        return (StatusCode::FORBIDDEN, String::new());
                    }
                    let v = match path.as_str() {
                        "project/project-id" => "shop-prod",
                        "instance/zone" => "projects/4242/zones/europe-west4-a",
                        "instance/id" => "7312345678901234567",
                        "instance/name" => "gce-node-1",
                        "instance/machine-type" => "projects/4242/machineTypes/e2-standard-4",
                        _ => return (StatusCode::NOT_FOUND, String::new()),
                    };
                    (StatusCode::OK, v.to_owned())
                },
            ),
        )
        // Azure IMDS: `Metadata: true` and an api-version, or 400.
        .route(
            "/metadata/instance/compute",
            get(
                |uri: axum::http::Uri, h: HeaderMap| async move {
                    let versioned = uri
                        .query()
                        .is_some_and(|q| q.split('&').any(|p| p.starts_with("api-version=")));
                    if header(&h, "metadata").as_deref() != Some("true") || !versioned {
                        return (StatusCode::BAD_REQUEST, String::new());
                    }
                    (
                        StatusCode::OK,
                        r#"{"location":"westeurope","name":"az-vm-1","vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6","vmSize":"Standard_D2s_v3","subscriptionId":"8d10da13-8125-4ba9-a717-bf7490507b3d","resourceGroupName":"rg-shop","vmScaleSetName":"","osType":"Linux"}"#
                            .to_owned(),
                    )
                },
            ),
        );
    rt.spawn(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
}

fn send(rt: &tokio::runtime::Runtime, port: u16, service: &str) {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("host.name", "app-says")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: "s".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    rt.block_on(async {
        let mut c = TraceServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        c.export(req).await.unwrap();
    });
}

fn resource_of(sink: &Sink, service: &str) -> Option<BTreeMap<String, String>> {
    sink.store.spans.lock().unwrap().iter().find_map(|rs| {
        let attrs: BTreeMap<String, String> = rs
            .resource
            .as_ref()?
            .attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect();
        (attrs.get("service.name").map(String::as_str) == Some(service)).then_some(attrs)
    })
}

#[test]
fn detectors_against_metadata_standins() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let md = free_port();
    metadata_standins(&rt, md);
    let sink = Sink::start();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let (health, metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp/aws: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{}" }} }} }}
  otlp/gcp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{}" }} }} }}
  otlp/azure: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{}" }} }} }}
  otlp/system: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{}" }} }} }}
processors:
  resourcedetection/aws:
    detectors: [env, ec2]
    timeout: 2s
    ec2: {{ resource_attributes: {{ host.image.id: {{ enabled: false }} }} }}
  resourcedetection/gcp: {{ detectors: [gcp], timeout: 2s }}
  resourcedetection/azure: {{ detectors: [azure], timeout: 2s }}
  resource_detection/system:
    detectors: [system, ec2]
    override: false
    system: {{ hostname_sources: [os], resource_attributes: {{ host.arch: {{ enabled: true }} }} }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces/aws: {{ receivers: [otlp/aws], processors: [resourcedetection/aws], exporters: [otlp_grpc] }}
    traces/gcp: {{ receivers: [otlp/gcp], processors: [resourcedetection/gcp], exporters: [otlp_grpc] }}
    traces/azure: {{ receivers: [otlp/azure], processors: [resourcedetection/azure], exporters: [otlp_grpc] }}
    traces/system: {{ receivers: [otlp/system], processors: [resource_detection/system], exporters: [otlp_grpc] }}
"#,
        ports[0],
        ports[1],
        ports[2],
        ports[3],
        sink = sink.port
    );
    let base = format!("http://127.0.0.1:{md}");
    let c = Collector::start(
        &cfg,
        &[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,team=pay%2Cments".to_owned(),
            ),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", base.clone()),
            ("GCE_METADATA_HOST", format!("127.0.0.1:{md}")),
            ("FERROTEL_AZURE_IMDS_ENDPOINT", base),
        ],
        Some(health),
        Some(metrics),
    );
    for (p, svc) in ports.iter().zip(["aws", "gcp", "azure", "system"]) {
        send(&rt, *p, svc);
    }
    wait_until("four resources", Duration::from_secs(20), || {
        ["aws", "gcp", "azure", "system"]
            .iter()
            .all(|s| resource_of(&sink, s).is_some())
    });
    let get = |svc: &str| resource_of(&sink, svc).unwrap();
    let aws = get("aws");
    for (k, v) in [
        ("deployment.environment", "prod"),
        ("team", "pay,ments"),
        ("cloud.provider", "aws"),
        ("cloud.platform", "aws_ec2"),
        ("cloud.region", "eu-west-1"),
        ("cloud.availability_zone", "eu-west-1b"),
        ("cloud.account.id", "123456789012"),
        ("host.id", "i-0123456789abcdef0"),
        ("host.type", "m5.large"),
        // override (default): the detected name replaces the app's.
        ("host.name", "ip-10-0-0-1.eu-west-1.compute.internal"),
    ] {
        assert_eq!(aws.get(k).map(String::as_str), Some(v), "aws {k}: {aws:?}");
    }
    assert!(!aws.contains_key("host.image.id"), "switched off: {aws:?}");
    let gcp = get("gcp");
    for (k, v) in [
        ("cloud.provider", "gcp"),
        ("cloud.platform", "gcp_compute_engine"),
        ("cloud.account.id", "shop-prod"),
        ("cloud.availability_zone", "europe-west4-a"),
        ("cloud.region", "europe-west4"),
        ("host.id", "7312345678901234567"),
        ("host.name", "gce-node-1"),
        ("host.type", "e2-standard-4"),
    ] {
        assert_eq!(gcp.get(k).map(String::as_str), Some(v), "gcp {k}: {gcp:?}");
    }
    let az = get("azure");
    for (k, v) in [
        ("cloud.provider", "azure"),
        ("cloud.platform", "azure_vm"),
        ("cloud.region", "westeurope"),
        ("host.name", "az-vm-1"),
        ("host.id", "02aab8a4-74ef-476e-8182-f6d2ba4166a6"),
        ("azure.vm.size", "Standard_D2s_v3"),
        ("azure.resourcegroup.name", "rg-shop"),
    ] {
        assert_eq!(az.get(k).map(String::as_str), Some(v), "azure {k}: {az:?}");
    }
    assert!(!az.contains_key("azure.vm.scaleset.name"), "empty: {az:?}");
    // override: false keeps the app's host.name; the system detector comes first, so the
    // EC2 answer fills only what is still missing.
    let sys = get("system");
    assert_eq!(sys["host.name"], "app-says");
    assert_eq!(sys["os.type"], "linux");
    assert_eq!(sys["host.arch"], arch());
    assert_eq!(sys["cloud.provider"], "aws");
    // system's host.id (the machine id) is off by default: EC2's instance id fills it.
    assert_eq!(sys["host.id"], "i-0123456789abcdef0");
    assert!(c.logs().contains("resource detected"), "{}", c.logs());
}

fn arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        a => a.into(),
    }
}
