//! Every registered component type, as the Collector's generated component tests do: its minimal
//! config validates under each of its names, the service builds and starts it, and it shuts
//! down before the deadline. A new factory without an entry in `minimal` fails here.

mod common;

use std::time::{Duration, Instant};

use common::free_port;
use ferrotel::component::Kind;
use ferrotel::registry::FACTORIES;

/// The smallest config of a component type that does something (listeners on free local ports,
/// backends on ports nothing listens on: exporters connect lazily).
fn minimal(kind: Kind, name: &str, dir: &str) -> Option<String> {
    let port = free_port();
    Some(match (kind, name) {
        (Kind::Connector, "forward" | "count" | "otlpjson" | "spanmetrics") => "{}".into(),
        (Kind::Connector, "routing") => {
            "{table: [{condition: 'attributes[\"t\"] == \"a\"', pipelines: [traces/out]}], default_pipelines: [traces/out]}".into()
        }
        (Kind::Receiver, "otlp") => format!(
            "protocols: {{grpc: {{endpoint: '127.0.0.1:{port}'}}, http: {{endpoint: '127.0.0.1:{}'}}}}",
            free_port()
        ),
        (Kind::Receiver, "filelog") => format!("include: ['{dir}/*.log']"),
        (Kind::Receiver, "syslog") => {
            format!("protocol: rfc5424\ntcp: {{listen_address: '127.0.0.1:{port}'}}")
        }
        (Kind::Receiver, "zipkin" | "fluentforward") => format!("{{endpoint: '127.0.0.1:{port}'}}"),
        (Kind::Receiver, "jaeger") => format!(
            "protocols: {{grpc: {{endpoint: '127.0.0.1:{port}'}}, thrift_http: {{endpoint: '127.0.0.1:{}'}}, thrift_compact: {{endpoint: '127.0.0.1:0'}}}}",
            free_port()
        ),
        (Kind::Receiver, "hostmetrics") => "{collection_interval: 1h, scrapers: {memory: }}".into(),
        // A kubelet that never answers: the receiver starts and stops all the same.
        (Kind::Receiver, "kubeletstats") => {
            format!("{{auth_type: none, endpoint: '127.0.0.1:{port}', collection_interval: 1h}}")
        }
        // An API server that never answers (see `kube_env`): they start, retry, and stop.
        (Kind::Receiver, "k8sobjects") => "{auth_type: kubeConfig, objects: [{name: pods}]}".into(),
        (Kind::Receiver, "k8s_events") => "{auth_type: kubeConfig}".into(),
        (Kind::Receiver, "k8s_cluster") => "{auth_type: kubeConfig}".into(),
        (Kind::Receiver, "prometheus") => format!(
            "config: {{scrape_configs: [{{job_name: x, scrape_interval: 1h, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]}}"
        ),
        (Kind::Processor, "batch" | "filter") => "{}".into(),
        (Kind::Processor, "groupbyattrs") => "{keys: [host.name]}".into(),
        (Kind::Processor, "groupbytrace") => "{wait_duration: 1s}".into(),
        (Kind::Processor, "redaction") => "{allow_all_keys: true, blocked_values: ['x']}".into(),
        (Kind::Processor, "metricstransform") => {
            "{transforms: [{include: a, action: update, new_name: b}]}".into()
        }
        (Kind::Processor, "transform") => {
            r#"{trace_statements: ['set(span.attributes["a"], "b")'], log_statements: [{context: log, statements: ['delete_key(attributes, "x")']}]}"#.into()
        }
        (Kind::Processor, "memory_limiter") => "{check_interval: 1s, limit_mib: 4000}".into(),
        (Kind::Processor, "attributes") => "{actions: [{key: a, value: b, action: insert}]}".into(),
        (Kind::Processor, "cumulativetodelta" | "deltatocumulative") => "{}".into(),
        (Kind::Processor, "resourcedetection") => "{detectors: [env, system]}".into(),
        (Kind::Processor, "resource") => {
            "{attributes: [{key: a, value: b, action: insert}]}".into()
        }
        (Kind::Processor, "probabilistic_sampler") => "{sampling_percentage: 50}".into(),
        (Kind::Processor, "tail_sampling") => {
            "{policies: [{name: all, type: always_sample}]}".into()
        }
        // No API server here: passthrough watches nothing.
        (Kind::Processor, "k8sattributes") => "{passthrough: true}".into(),
        (Kind::Exporter, "otlp_grpc" | "jaeger") => {
            format!("{{endpoint: '127.0.0.1:{port}', tls: {{insecure: true}}}}")
        }
        (Kind::Exporter, "otlp_http") => format!("{{endpoint: 'http://127.0.0.1:{port}'}}"),
        (Kind::Exporter, "debug" | "nop") => "{}".into(),
        (Kind::Receiver, "nop") => "{}".into(),
        (Kind::Exporter, "file") => format!("{{path: '{dir}/file-exporter.json'}}"),
        (Kind::Receiver, "otlpjsonfile") => format!("{{include: ['{dir}/*.json']}}"),
        // No journal there: journalctl fails, is retried, and the receiver stops all the same.
        (Kind::Receiver, "journald") => format!("{{directory: '{dir}/no-journal'}}"),
        (Kind::Exporter, "loki") => {
            format!("{{endpoint: 'http://127.0.0.1:{port}/loki/api/v1/push'}}")
        }
        (Kind::Exporter, "prometheus") => format!("{{endpoint: '127.0.0.1:{port}'}}"),
        (Kind::Exporter, "prometheus_remote_write") => {
            format!("{{endpoint: 'http://127.0.0.1:{port}/api/v1/write'}}")
        }
        (Kind::Exporter, "zipkin") => {
            format!("{{endpoint: 'http://127.0.0.1:{port}/api/v2/spans'}}")
        }
        (Kind::Exporter, "load_balancing") => format!(
            "{{protocol: {{otlp: {{tls: {{insecure: true}}}}}}, resolver: {{static: {{hostnames: ['127.0.0.1:{port}']}}}}}}"
        ),
        (Kind::Extension, "zpages") => format!("{{endpoint: '127.0.0.1:{port}'}}"),
        (Kind::Extension, "pprof") => format!("{{endpoint: '127.0.0.1:{port}'}}"),
        (Kind::Extension, "tap") => format!("{{endpoint: '127.0.0.1:{port}'}}"),
        (Kind::Extension, "file_storage") => format!("{{directory: '{dir}'}}"),
        (Kind::Extension, "basicauth") => "{htpasswd: {inline: 'u:p'}}".into(),
        (Kind::Extension, "bearertokenauth") => "{token: t}".into(),
        (Kind::Extension, "headers_setter") => "{headers: [{key: X-A, value: b}]}".into(),
        (Kind::Extension, "oauth2client") => format!(
            "{{token_url: 'http://127.0.0.1:{port}/token', client_id: a, client_secret: b}}"
        ),
        (Kind::Extension, "oidc") => {
            format!(
                "{{issuer_url: 'http://127.0.0.1:{}', audience: a}}",
                issuer()
            )
        }
        (Kind::Extension, "k8s_leader_elector") => {
            "{auth_type: kubeConfig, lease_name: l, lease_namespace: n}".into()
        }
        (Kind::Extension, "health_check") => format!("{{endpoint: '127.0.0.1:{port}'}}"),
        (Kind::Extension, "healthcheckv2") => {
            format!("{{use_v2: true, http: {{endpoint: '127.0.0.1:{port}'}}}}")
        }
        _ => return None,
    })
}

/// A stand-in OpenID Connect issuer (discovery document and a JWKS with one RSA key, as the
/// specifications define them) for `oidc` to start against; no real issuer runs here.
fn issuer() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        use std::io::{BufRead, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut conn in l.incoming().flatten() {
                let mut line = String::new();
                let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
                let _ = r.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                        break;
                    }
                }
                let body = if line.contains("/jwks") {
                    format!(
                        r#"{{"keys":[{{"kty":"RSA","kid":"k","use":"sig","n":"{}","e":"AQAB"}}]}}"#,
                        "A".repeat(342)
                    )
                } else {
                    format!(
                        r#"{{"issuer":"http://127.0.0.1:{port}","jwks_uri":"http://127.0.0.1:{port}/jwks"}}"#
                    )
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        port
    })
}

/// A whole collector config with the component of type `type_name` in a pipeline of `signal`.
fn service(kind: Kind, type_name: &str, body: &str, signal: &str) -> String {
    let otlp = format!(
        "otlp/in: {{protocols: {{grpc: {{endpoint: '127.0.0.1:{}'}}}}}}",
        free_port()
    );
    let indent = |s: &str| s.replace('\n', "\n    ");
    if kind == Kind::Connector {
        // Between a pipeline of `signal` and one of the first signal it turns that into.
        let to = FACTORIES
            .iter()
            .find(|f| f.kind == Kind::Connector && f.names().any(|n| n == type_name))
            .and_then(|f| f.pairs.iter().find(|(from, _)| from.to_string() == signal))
            .map_or(signal.to_string(), |(_, to)| to.to_string());
        return format!(
            "receivers:\n  {otlp}\nconnectors:\n  {type_name}: {body}\nexporters:\n  debug: {{}}\nservice:\n  shutdown_timeout: 5s\n  pipelines:\n    {signal}/in:\n      {{receivers: [otlp/in], exporters: [{type_name}]}}\n    {to}/out:\n      {{receivers: [{type_name}], exporters: [debug]}}\n"
        );
    }
    let (receivers, processors, exporters, extensions, pipeline, service_ext) = match kind {
        Kind::Receiver => (
            format!("  {type_name}:\n    {}", indent(body)),
            String::new(),
            "  debug: {}".to_string(),
            String::new(),
            format!("receivers: [{type_name}], exporters: [debug]"),
            "[]".to_string(),
        ),
        Kind::Processor => (
            format!("  {otlp}"),
            format!("  {type_name}: {body}"),
            "  debug: {}".to_string(),
            String::new(),
            format!("receivers: [otlp/in], processors: [{type_name}], exporters: [debug]"),
            "[]".to_string(),
        ),
        Kind::Exporter => (
            format!("  {otlp}"),
            String::new(),
            format!("  {type_name}: {body}"),
            String::new(),
            format!("receivers: [otlp/in], exporters: [{type_name}]"),
            "[]".to_string(),
        ),
        Kind::Connector => unreachable!("returned above"),
        Kind::Extension => (
            format!("  {otlp}"),
            String::new(),
            "  debug: {}".to_string(),
            format!("  {type_name}: {body}"),
            "receivers: [otlp/in], exporters: [debug]".to_string(),
            format!("[{type_name}]"),
        ),
    };
    let section = |name: &str, body: &str| {
        if body.is_empty() {
            String::new()
        } else {
            format!("{name}:\n{body}\n")
        }
    };
    format!(
        "{}{}{}{}service:\n  shutdown_timeout: 5s\n  extensions: {service_ext}\n  pipelines:\n    {signal}:\n      {{{pipeline}}}\n",
        section("receivers", &receivers),
        section("processors", &processors),
        section("exporters", &exporters),
        section("extensions", &extensions),
    )
}

/// A kubeconfig whose API server is a closed port, for the components that read the API.
/// Set once, before anything in this binary reads the environment (each test calls it first).
fn kube_env() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("ferrotel-lifecycle-{}.kubeconfig", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:{}'}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n",
                free_port()
            ),
        )
        .unwrap();
        // SAFETY: called first in every test of this binary, under the OnceLock, so no other
        // thread reads the environment meanwhile.
        unsafe { std::env::set_var("KUBECONFIG", &path) };
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_factory_validates_starts_and_stops_before_the_deadline() {
    kube_env();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_string_lossy().into_owned();
    let mut checked = 0;
    for f in FACTORIES {
        let body = minimal(f.kind, f.name, &dir).unwrap_or_else(|| {
            panic!(
                "{} `{}` has no minimal config here",
                f.kind.section(),
                f.name
            )
        });
        let signal = f
            .signals
            .first()
            .map_or("traces".into(), ToString::to_string);
        for name in f.names() {
            let yaml = service(f.kind, name, &body, &signal);
            let v = ferrotel::pipeline::validate_str(&yaml, "lifecycle.yaml", &|_| None)
                .unwrap_or_else(|e| panic!("`{name}` does not validate: {e:?}\n{yaml}"));
            let warned = v.warnings.iter().any(|w| w.contains(&format!("`{name}`")));
            assert_eq!(warned, name != f.name, "`{name}`: {:?}", v.warnings);
            if name != f.name {
                // Other names only need to resolve; the component runs once, below.
                continue;
            }
            let running = ferrotel::pipeline::start(v)
                .await
                .unwrap_or_else(|e| panic!("`{name}` does not start: {e}"));
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            tokio::time::timeout(Duration::from_secs(7), running.shutdown())
                .await
                .unwrap_or_else(|_| panic!("`{name}` did not stop within the 5s deadline"));
            assert!(
                t.elapsed() < Duration::from_secs(6),
                "`{name}`: {:?}",
                t.elapsed()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, FACTORIES.len());
}

#[test]
fn a_factory_refuses_an_unknown_key_under_each_of_its_names() {
    kube_env();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_string_lossy().into_owned();
    for f in FACTORIES {
        let body = minimal(f.kind, f.name, &dir).expect("minimal config");
        // A flow mapping gets one more key; a block mapping one more line.
        let body = match body.strip_suffix('}') {
            Some(b) if b.trim() == "{" => "{no_such_key: 1}".to_string(),
            Some(b) => format!("{b}, no_such_key: 1}}"),
            None => format!("{body}\nno_such_key: 1"),
        };
        let signal = f
            .signals
            .first()
            .map_or("traces".into(), ToString::to_string);
        for name in f.names() {
            let yaml = service(f.kind, name, &body, &signal);
            let errors = match ferrotel::pipeline::validate_str(&yaml, "lifecycle.yaml", &|_| None)
            {
                Ok(_) => panic!("`{name}` took an unknown key:\n{yaml}"),
                Err(e) => e,
            };
            assert!(
                errors.iter().any(|e| {
                    let e = e.to_string();
                    e.contains("lifecycle.yaml:") && e.contains("no_such_key")
                }),
                "`{name}`: {errors:?}"
            );
        }
    }
}
