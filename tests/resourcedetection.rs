//! `resourcedetection` end to end. The cloud metadata services cannot run here: each is a
//! strict stand-in written from its published interface (EC2's IMDSv2 with its session token,
//! the GCE metadata server's `Metadata-Flavor: Google`, Azure IMDS's `Metadata: true` and
//! `api-version`), answering 401/403/400 when the request is not as documented. `env` reads the
//! collector's own environment and `system` this machine's host name.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
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
        .route(
            "/latest/meta-data/instance-id",
            get(|h: HeaderMap| async move {
                if header(&h, "x-aws-ec2-metadata-token").as_deref() == Some("tok-1") {
                    (StatusCode::OK, "i-0123456789abcdef0".to_owned())
                } else {
                    (StatusCode::UNAUTHORIZED, String::new())
                }
            }),
        )
        // The instance role: its name, then its temporary credentials.
        .route(
            "/latest/meta-data/iam/security-credentials/",
            get(|h: HeaderMap| async move {
                if header(&h, "x-aws-ec2-metadata-token").as_deref() == Some("tok-1") {
                    (StatusCode::OK, "eks-node-role".to_owned())
                } else {
                    (StatusCode::UNAUTHORIZED, String::new())
                }
            }),
        )
        .route(
            "/latest/meta-data/iam/security-credentials/eks-node-role",
            get(|h: HeaderMap| async move {
                if header(&h, "x-aws-ec2-metadata-token").as_deref() != Some("tok-1") {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                let (id, secret, token) = KEYS[0];
                (
                    StatusCode::OK,
                    serde_json::json!({"Code":"Success","LastUpdated":"2026-12-01T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":id,"SecretAccessKey":secret,"Token":token,"Expiration":"2030-01-01T00:00:00Z"}).to_string(),
                )
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
                        r#"{"location":"westeurope","name":"az-vm-1","vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6","vmSize":"Standard_D2s_v3","subscriptionId":"8d10da13-8125-4ba9-a717-bf7490507b3d","resourceGroupName":"MC_rg-shop_aks-prod_westeurope","vmScaleSetName":"","osType":"Linux"}"#
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
    system:
      hostname_sources: [os]
      resource_attributes:
        host.arch: {{ enabled: true }}
        host.cpu.vendor.id: {{ enabled: true }}
        host.cpu.family: {{ enabled: true }}
        host.cpu.model.id: {{ enabled: true }}
        host.cpu.model.name: {{ enabled: true }}
        host.cpu.stepping: {{ enabled: true }}
        host.cpu.cache.l2.size: {{ enabled: true }}
        host.ip: {{ enabled: true }}
        host.mac: {{ enabled: true }}
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
        ("azure.resourcegroup.name", "MC_rg-shop_aks-prod_westeurope"),
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
    // The CPU as util-linux's lscpu reads it, and the interfaces as iproute2's ip lists them.
    let lscpu = std::process::Command::new("lscpu").output().expect("lscpu");
    let lscpu = String::from_utf8_lossy(&lscpu.stdout).into_owned();
    let field = |k: &str| {
        lscpu
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    for (attr, key) in [
        ("host.cpu.vendor.id", "Vendor ID"),
        ("host.cpu.family", "CPU family"),
        ("host.cpu.model.id", "Model"),
        ("host.cpu.model.name", "Model name"),
        ("host.cpu.stepping", "Stepping"),
    ] {
        if let Some(v) = field(key) {
            assert_eq!(sys.get(attr), Some(&v), "{attr} (lscpu {key})");
        }
    }
    assert!(
        sys["host.cpu.cache.l2.size"].contains("IntValue"),
        "{sys:?}"
    );
    let ip = std::process::Command::new("ip")
        .args(["-j", "addr"])
        .output()
        .expect("ip");
    let links: serde_json::Value = serde_json::from_slice(&ip.stdout).unwrap();
    for link in links.as_array().unwrap() {
        let flags = link["flags"].as_array().unwrap();
        let is = |f: &str| flags.iter().any(|x| x == f);
        if is("LOOPBACK") || !is("UP") {
            continue;
        }
        for a in link["addr_info"].as_array().unwrap() {
            let local = a["local"].as_str().unwrap();
            assert!(
                sys["host.ip"].contains(&format!("\"{local}\"")),
                "{local}: {}",
                sys["host.ip"]
            );
        }
        let mac = link["address"]
            .as_str()
            .unwrap()
            .replace(':', "-")
            .to_uppercase();
        assert!(sys["host.mac"].contains(&mac), "{mac}: {}", sys["host.mac"]);
    }
    assert!(c.logs().contains("resource detected"), "{}", c.logs());
}

fn arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        a => a.into(),
    }
}

/// What the EC2 and STS stand-in saw.
#[derive(Default)]
struct AwsCalls {
    describe: Mutex<Vec<String>>,
    sts: Mutex<Vec<String>>,
}

/// The access keys the stand-in issues (IMDS instance role, STS web identity) and their secret
/// and session token.
const KEYS: &[(&str, &str, &str)] = &[
    (
        "ASIANODEROLEEXAMPLE",
        "node-secret/key+1",
        "node-session-token",
    ),
    ("ASIAIRSAEXAMPLE", "irsa-secret/key+2", "irsa-session-token"),
];

/// Whether botocore, signing the same request with the same credentials at its `X-Amz-Date`,
/// computes the same Authorization header.
fn botocore_agrees(method: &str, url: &str, headers: &HeaderMap, body: &str) -> Result<(), String> {
    let h: BTreeMap<String, String> = [
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "authorization",
    ]
    .iter()
    .filter_map(|k| header(headers, k).map(|v| (k.to_string(), v)))
    .collect();
    let auth = h.get("authorization").ok_or("no Authorization header")?;
    let key = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .ok_or("no Credential in Authorization")?;
    let (_, secret, token) = KEYS
        .iter()
        .find(|(k, _, _)| *k == key)
        .ok_or_else(|| format!("unknown access key {key}"))?;
    let region = auth.split('/').nth(2).unwrap_or("");
    let input = serde_json::json!({
        "method": method, "url": url, "headers": h, "body": body,
        "secret": secret, "token": token, "region": region, "service": "ec2",
    });
    let mut child = std::process::Command::new(common::python())
        .arg(common::repo().join("tests/e2e/sigv4_verify.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if said == "ok" { Ok(()) } else { Err(said) }
}

/// EC2's Query API (`DescribeInstances`, SigV4-signed, the signature checked by botocore;
/// 403 `AuthFailure` otherwise) and STS's `AssumeRoleWithWebIdentity` (form POST, the token
/// file's content and the role), answering the XML documents of their API references.
fn aws_api_standin(rt: &tokio::runtime::Runtime, port: u16, calls: Arc<AwsCalls>) {
    let (c1, c2) = (Arc::clone(&calls), calls);
    let app = axum::Router::new().route(
        "/",
        get(move |uri: axum::http::Uri, h: HeaderMap| {
            let calls = Arc::clone(&c1);
            async move {
                let q: BTreeMap<String, String> = url::form_urlencoded::parse(
                    uri.query().unwrap_or("").as_bytes(),
                )
                .into_owned()
                .collect();
                let url = format!("http://127.0.0.1:{port}{uri}");
                let verdict = tokio::task::spawn_blocking(move || botocore_agrees("GET", &url, &h, ""))
                    .await
                    .unwrap();
                if let Err(e) = verdict {
                    calls.describe.lock().unwrap().push(format!("refused: {e}"));
                    return (StatusCode::FORBIDDEN, format!("<Response><Errors><Error><Code>AuthFailure</Code><Message>{e}</Message></Error></Errors></Response>"));
                }
                if q.get("Action").map(String::as_str) != Some("DescribeInstances")
                    || q.get("Version").map(String::as_str) != Some("2016-11-15")
                {
                    return (StatusCode::BAD_REQUEST, "<Response><Errors><Error><Code>InvalidAction</Code></Error></Errors></Response>".into());
                }
                let id = q.get("InstanceId.1").cloned().unwrap_or_default();
                calls.describe.lock().unwrap().push(id.clone());
                (StatusCode::OK, format!(r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
    <reservationSet>
        <item>
            <reservationId>r-1234567890abcdef0</reservationId>
            <ownerId>123456789012</ownerId>
            <groupSet/>
            <instancesSet>
                <item>
                    <instanceId>{id}</instanceId>
                    <imageId>ami-0eks0node</imageId>
                    <instanceState><code>16</code><name>running</name></instanceState>
                    <privateDnsName>ip-10-0-0-1.eu-west-1.compute.internal</privateDnsName>
                    <dnsName/>
                    <instanceType>m6i.xlarge</instanceType>
                    <placement><availabilityZone>eu-west-1b</availabilityZone><tenancy>default</tenancy></placement>
                    <networkInterfaceSet>
                        <item>
                            <networkInterfaceId>eni-0123</networkInterfaceId>
                            <privateDnsName>ip-10-0-0-9.eu-west-1.compute.internal</privateDnsName>
                            <tagSet><item><key>kubernetes.io/cluster/not-this</key><value>owned</value></item></tagSet>
                        </item>
                    </networkInterfaceSet>
                    <tagSet>
                        <item><key>Name</key><value>shop-prod-eu-ng-1</value></item>
                        <item><key>aws:eks:cluster-name</key><value>shop-prod-eu</value></item>
                        <item><key>eks:nodegroup-name</key><value>ng-1</value></item>
                    </tagSet>
                </item>
            </instancesSet>
        </item>
    </reservationSet>
</DescribeInstancesResponse>"#))
            }
        })
        .post(move |h: HeaderMap, body: String| {
            let calls = Arc::clone(&c2);
            async move {
                let f: BTreeMap<String, String> =
                    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                let ok = header(&h, "content-type")
                    .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
                    && f.get("Action").map(String::as_str) == Some("AssumeRoleWithWebIdentity")
                    && f.get("Version").map(String::as_str) == Some("2011-06-15")
                    && f.get("RoleArn").map(String::as_str) == Some("arn:aws:iam::123456789012:role/ferrotel-irsa")
                    && f.get("WebIdentityToken").map(String::as_str) == Some("eyJ.projected.token")
                    && f.get("RoleSessionName").is_some_and(|s| !s.is_empty());
                calls.sts.lock().unwrap().push(body);
                if !ok {
                    return (StatusCode::BAD_REQUEST, "<ErrorResponse><Error><Code>InvalidParameterValue</Code></Error></ErrorResponse>".to_owned());
                }
                (StatusCode::OK, format!(r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:observability:ferrotel</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/ferrotel-irsa/ferrotel</Arn><AssumedRoleId>AROA:ferrotel</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <SessionToken>{}</SessionToken>
      <SecretAccessKey>{}</SecretAccessKey>
      <Expiration>2030-01-01T00:00:00Z</Expiration>
      <AccessKeyId>{}</AccessKeyId>
    </Credentials>
    <Audience>sts.amazonaws.com</Audience>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#, KEYS[1].2, KEYS[1].1, KEYS[1].0))
            }
        }),
    );
    rt.spawn(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
}

const NODE: &str = "ip-10-0-0-1.eu-west-1.compute.internal";

/// The API server as these detectors read it, over HTTPS with the service account's token:
/// `/version` (an EKS build), the node (with its AWS `providerID`), `kube-system` (403 for the
/// token without that permission) and OpenShift's `Infrastructure` status.
fn api_standin(rt: &tokio::runtime::Runtime, port: u16, pki: &common::https::Pki) {
    let auth = |h: &HeaderMap| match header(h, "authorization").as_deref() {
        Some("Bearer sa-token") => Some(true),
        Some("Bearer limited-token") => Some(false),
        _ => None,
    };
    let json = |v: serde_json::Value| {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            v.to_string(),
        )
    };
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}"#.to_owned(),
        )
    };
    let app = axum::Router::new()
        .route(
            "/version",
            get(move |h: HeaderMap| async move {
                if auth(&h).is_none() {
                    return unauthorized();
                }
                json(serde_json::json!({"major":"1","minor":"30+","gitVersion":"v1.30.4-eks-a737599","gitCommit":"6b2d1a1","platform":"linux/amd64"}))
            }),
        )
        .route(
            "/api/v1/nodes/{name}",
            get(move |axum::extract::Path(name): axum::extract::Path<String>, h: HeaderMap| async move {
                if auth(&h).is_none() {
                    return unauthorized();
                }
                if name != NODE {
                    return (StatusCode::NOT_FOUND, [("content-type", "application/json")], r#"{"kind":"Status","code":404,"reason":"NotFound"}"#.to_owned());
                }
                json(serde_json::json!({"kind":"Node","apiVersion":"v1","metadata":{"name":NODE,"uid":"6b0e6a43-2d3c-4c8e-9f5e-0d2f4a1b7c11","labels":{"kubernetes.io/hostname":NODE}},"spec":{"providerID":"aws:///eu-west-1b/i-0123456789abcdef0"},"status":{}}))
            }),
        )
        .route(
            "/api/v1/namespaces/kube-system",
            get(move |h: HeaderMap| async move {
                match auth(&h) {
                    None => unauthorized(),
                    Some(false) => (StatusCode::FORBIDDEN, [("content-type", "application/json")], r#"{"kind":"Status","status":"Failure","reason":"Forbidden","code":403}"#.to_owned()),
                    Some(true) => json(serde_json::json!({"kind":"Namespace","apiVersion":"v1","metadata":{"name":"kube-system","uid":"c1a2b3d4-0000-4000-8000-00000000c1u5"}})),
                }
            }),
        )
        .route(
            "/apis/config.openshift.io/v1/infrastructures/cluster/status",
            get(move |h: HeaderMap| async move {
                if auth(&h).is_none() {
                    return unauthorized();
                }
                json(serde_json::json!({"apiVersion":"config.openshift.io/v1","kind":"Infrastructure","metadata":{"name":"cluster"},"spec":{"platformSpec":{"type":"AWS"}},"status":{"apiServerURL":"https://api.ocp.example.com:6443","controlPlaneTopology":"HighlyAvailable","infrastructureName":"ocp-prod-x7k2p","infrastructureTopology":"HighlyAvailable","platform":"AWS","platformStatus":{"type":"AWS","aws":{"region":"EU-West-1"}}}}))
            }),
        );
    common::https::serve_https(rt, port, pki, false, app);
}

#[test]
fn kubernetes_detectors_against_standins() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pki = common::https::pki();
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), "sa-token\n").unwrap();
    std::fs::write(sa.join("ca.crt"), &pki.ca).unwrap();
    let limited = dir.path().join("limited");
    std::fs::create_dir_all(&limited).unwrap();
    std::fs::write(limited.join("token"), "limited-token\n").unwrap();
    std::fs::write(limited.join("ca.crt"), &pki.ca).unwrap();
    let web_identity = dir.path().join("web-identity-token");
    std::fs::write(&web_identity, "eyJ.projected.token\n").unwrap();
    let (api, md, aws) = (free_port(), free_port(), free_port());
    api_standin(&rt, api, &pki);
    metadata_standins(&rt, md);
    let calls = Arc::new(AwsCalls::default());
    aws_api_standin(&rt, aws, Arc::clone(&calls));
    let sink = Sink::start();

    // A node with IMDS (the node role's credentials), as the chart's resourceDetection
    // preset configures the processor, next to k8s_api + openshift and aks.
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let (h1, h2) = (free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp/eks: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{}" }} }} }}
  otlp/ocp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{}" }} }} }}
  otlp/aks: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{}" }} }} }}
processors:
  resourcedetection/env:
    detectors: [env, k8s_api, eks]
    eks:
      resource_attributes:
        k8s.cluster.name:
          enabled: true
    timeout: 15s
  resourcedetection/ocp:
    detectors: [k8snode, openshift]
    k8snode: {{ node_from_env_var: MY_NODE_NAME, resource_attributes: {{ k8s.cluster.uid: {{ enabled: false }} }} }}
  resourcedetection/aks:
    detectors: [aks]
    aks: {{ resource_attributes: {{ k8s.cluster.name: {{ enabled: true }} }} }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{h1}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{m1}" }} }}
  pipelines:
    traces/eks: {{ receivers: [otlp/eks], processors: [resourcedetection/env], exporters: [otlp_grpc] }}
    traces/ocp: {{ receivers: [otlp/ocp], processors: [resourcedetection/ocp], exporters: [otlp_grpc] }}
    traces/aks: {{ receivers: [otlp/aks], processors: [resourcedetection/aks], exporters: [otlp_grpc] }}
"#,
        ports[0],
        ports[1],
        ports[2],
        sink = sink.port,
        m1 = free_port(),
        h1 = h1,
    );
    let k8s_env = |dir: &std::path::Path| {
        vec![
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
            ("KUBERNETES_SERVICE_PORT", api.to_string()),
            ("FERROTEL_SERVICE_ACCOUNT_DIR", dir.display().to_string()),
            ("AWS_ENDPOINT_URL_EC2", format!("http://127.0.0.1:{aws}")),
            ("AWS_ENDPOINT_URL_STS", format!("http://127.0.0.1:{aws}")),
        ]
    };
    let mut env = k8s_env(&sa);
    env.extend([
        ("K8S_NODE_NAME", NODE.to_owned()),
        ("MY_NODE_NAME", NODE.to_owned()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{md}"),
        ),
        (
            "FERROTEL_AZURE_IMDS_ENDPOINT",
            format!("http://127.0.0.1:{md}"),
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod".to_owned(),
        ),
    ]);
    let with_imds = Collector::start(&cfg, &env, Some(h1), None);
    for (p, svc) in ports.iter().zip(["eks", "ocp", "aks"]) {
        send(&rt, *p, svc);
    }

    // A Fargate-like pod: no IMDS, credentials by IRSA's web identity, the instance from the
    // node's providerID; a token without permission on kube-system.
    let port_b = free_port();
    let cfg_b = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{port_b}" }} }} }}
processors:
  resourcedetection:
    detectors: [k8s_api, eks]
    timeout: 5s
    eks:
      max_attempts: 2
      max_backoff: 100ms
      resource_attributes:
        k8s.cluster.name: {{ enabled: true }}
        cloud.account.id: {{ enabled: true }}
        cloud.region: {{ enabled: true }}
        cloud.availability_zone: {{ enabled: true }}
        host.id: {{ enabled: true }}
        host.name: {{ enabled: true }}
        host.type: {{ enabled: true }}
        host.image.id: {{ enabled: true }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{h2}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{m2}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [resourcedetection], exporters: [otlp_grpc] }}
"#,
        sink = sink.port,
        m2 = free_port(),
        h2 = h2,
    );
    let mut env_b = k8s_env(&limited);
    env_b.extend([
        ("K8S_NODE_NAME", NODE.to_owned()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://127.0.0.1:{}", free_port()),
        ),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            web_identity.display().to_string(),
        ),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/ferrotel-irsa".to_owned(),
        ),
    ]);
    let without_imds = Collector::start(&cfg_b, &env_b, Some(h2), None);
    send(&rt, port_b, "fargate");

    wait_until("four resources", Duration::from_secs(30), || {
        ["eks", "ocp", "aks", "fargate"]
            .iter()
            .all(|s| resource_of(&sink, s).is_some())
    });
    let logs = format!("{}\n{}", with_imds.logs(), without_imds.logs());
    let describe = calls.describe.lock().unwrap().clone();
    assert_eq!(
        describe,
        ["i-0123456789abcdef0", "i-0123456789abcdef0"],
        "one signed DescribeInstances per EKS collector, both signatures as botocore computes them\n{logs}"
    );
    assert_eq!(
        calls.sts.lock().unwrap().len(),
        1,
        "one web identity exchange"
    );

    let eks = resource_of(&sink, "eks").unwrap();
    for (k, v) in [
        ("deployment.environment", "prod"),
        ("k8s.node.name", NODE),
        ("k8s.node.uid", "6b0e6a43-2d3c-4c8e-9f5e-0d2f4a1b7c11"),
        ("k8s.cluster.uid", "c1a2b3d4-0000-4000-8000-00000000c1u5"),
        ("cloud.provider", "aws"),
        ("cloud.platform", "aws_eks"),
        ("k8s.cluster.name", "shop-prod-eu"),
    ] {
        assert_eq!(
            eks.get(k).map(String::as_str),
            Some(v),
            "eks {k}: {eks:?}\n{logs}"
        );
    }
    // The Collector's eks detector has the instance attributes off by default.
    for off in ["host.id", "cloud.region", "host.type", "cloud.account.id"] {
        assert!(!eks.contains_key(off), "{off} is off by default: {eks:?}");
    }
    assert_eq!(
        eks["host.name"], "app-says",
        "host.name off by default: {eks:?}"
    );

    let ocp = resource_of(&sink, "ocp").unwrap();
    for (k, v) in [
        ("k8s.node.name", NODE),
        ("k8s.cluster.name", "ocp-prod-x7k2p"),
        ("cloud.provider", "aws"),
        ("cloud.platform", "aws_openshift"),
        ("cloud.region", "eu-west-1"),
    ] {
        assert_eq!(
            ocp.get(k).map(String::as_str),
            Some(v),
            "ocp {k}: {ocp:?}\n{logs}"
        );
    }
    assert!(
        !ocp.contains_key("k8s.cluster.uid"),
        "switched off: {ocp:?}"
    );

    let aks = resource_of(&sink, "aks").unwrap();
    for (k, v) in [
        ("cloud.provider", "azure"),
        ("cloud.platform", "azure_aks"),
        ("k8s.cluster.name", "aks-prod"),
    ] {
        assert_eq!(
            aks.get(k).map(String::as_str),
            Some(v),
            "aks {k}: {aks:?}\n{logs}"
        );
    }

    let fg = resource_of(&sink, "fargate").unwrap();
    for (k, v) in [
        ("k8s.node.name", NODE),
        ("cloud.platform", "aws_eks"),
        ("cloud.region", "eu-west-1"),
        ("cloud.availability_zone", "eu-west-1b"),
        ("host.id", "i-0123456789abcdef0"),
        ("cloud.account.id", "123456789012"),
        ("host.image.id", "ami-0eks0node"),
        ("host.type", "m6i.xlarge"),
        ("host.name", NODE),
        ("k8s.cluster.name", "shop-prod-eu"),
    ] {
        assert_eq!(
            fg.get(k).map(String::as_str),
            Some(v),
            "fargate {k}: {fg:?}\n{logs}"
        );
    }
    assert!(!fg.contains_key("k8s.cluster.uid"), "no permission: {fg:?}");
    assert!(
        without_imds
            .logs()
            .contains("no permission to get namespace kube-system"),
        "{}",
        without_imds.logs()
    );
}
