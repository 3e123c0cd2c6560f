//! The `syslog` receiver with a real client: util-linux `logger` sends RFC 5424 over TCP (newline
//! framing and octet counting) and RFC 3164 over UDP to a ferrotel process, which sends to the
//! OTLP sink.

mod common;

use std::process::Command;
use std::time::Duration;

use common::sink::Sink;
use common::{Collector, free_port, wait_until};
use opentelemetry_proto::tonic::common::v1::any_value;

use common::{attr_text as attr, value_text as s};

fn logger(args: &[&str]) {
    let st = Command::new("logger")
        .args(args)
        .env("TZ", "UTC")
        .status()
        .expect("util-linux `logger` is installed (scripts/test.sh installs bsdutils)");
    assert!(st.success(), "logger {args:?} failed");
}

fn hostname() -> String {
    let out = Command::new("hostname").output().expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn logger_over_tcp_and_udp_in_both_formats() {
    let sink = Sink::start();
    let (tcp5424, udp3164, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  syslog/5424:
    protocol: rfc5424
    tcp: {{listen_address: "127.0.0.1:{tcp5424}"}}
  syslog/3164:
    protocol: rfc3164
    location: America/New_York
    udp: {{listen_address: "127.0.0.1:{udp3164}"}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics}"}}}}
  pipelines:
    logs:
      receivers: [syslog/5424, syslog/3164]
      exporters: [otlp]
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let p5424 = tcp5424.to_string();
    let p3164 = udp3164.to_string();
    for i in 0..5 {
        logger(&[
            "--server",
            "127.0.0.1",
            "--port",
            &p5424,
            "--tcp",
            "--rfc5424",
            "--sd-id",
            "order@32473",
            "--sd-param",
            &format!("id=\"{i}\""),
            "--sd-param",
            "shop=\"web \\\"eu\\\"\"",
            "--msgid",
            "ORDER",
            "-t",
            "checkout",
            "-p",
            "local3.err",
            &format!("tcp newline message {i}"),
        ]);
    }
    for i in 0..5 {
        logger(&[
            "--server",
            "127.0.0.1",
            "--port",
            &p5424,
            "--tcp",
            "--rfc5424",
            "--octet-count",
            "-t",
            "billing",
            "-p",
            "user.info",
            &format!("tcp octet message {i}"),
        ]);
    }
    for i in 0..5 {
        logger(&[
            "--server",
            "127.0.0.1",
            "--port",
            &p3164,
            "--udp",
            "--rfc3164",
            "-t",
            "legacyd",
            "-p",
            "daemon.warning",
            &format!("udp bsd message {i}"),
        ]);
    }
    // Garbage over UDP: counted, kept raw.
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"this is not syslog", ("127.0.0.1", udp3164))
        .unwrap();

    wait_until("16 records", Duration::from_secs(15), || {
        sink.store.log_count() >= 16
    });
    std::thread::sleep(Duration::from_millis(500));
    let logs = sink.store.logs.lock().unwrap().clone();
    let recs: Vec<_> = logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| sl.log_records.clone())
        .collect();
    assert_eq!(recs.len(), 16, "each message once");
    let host = hostname();
    let find = |needle: &str| {
        let v: Vec<_> = recs
            .iter()
            .filter(|r| s(&r.body).contains(needle))
            .collect();
        assert_eq!(v.len(), 1, "{needle}: {v:?}");
        v[0].clone()
    };
    for i in 0..5 {
        let r = find(&format!("tcp newline message {i}"));
        assert_eq!(r.severity_number, 17, "err → ERROR");
        assert_eq!(r.severity_text, "err");
        assert_eq!(attr(&r.attributes, "appname").as_deref(), Some("checkout"));
        assert_eq!(attr(&r.attributes, "hostname"), Some(host.clone()));
        assert_eq!(attr(&r.attributes, "msg_id").as_deref(), Some("ORDER"));
        assert_eq!(attr(&r.attributes, "facility").as_deref(), Some("19"));
        assert_eq!(attr(&r.attributes, "priority").as_deref(), Some("155"));
        assert_eq!(
            attr(&r.attributes, "message"),
            Some(format!("tcp newline message {i}"))
        );
        assert!(
            attr(&r.attributes, "proc_id").is_some_and(|p| p.parse::<u32>().is_ok())
                || attr(&r.attributes, "proc_id").is_none()
        );
        // Structured data: a map of SD-ID → params.
        let sd = r
            .attributes
            .iter()
            .find(|kv| kv.key == "structured_data")
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value);
        let Some(any_value::Value::KvlistValue(sd)) = sd else {
            panic!("structured_data: {:?}", r.attributes)
        };
        let order = sd
            .values
            .iter()
            .find(|kv| kv.key == "order@32473")
            .expect("our SD-ID");
        let Some(any_value::Value::KvlistValue(params)) = order.value.clone().and_then(|v| v.value)
        else {
            panic!()
        };
        assert_eq!(attr(&params.values, "id"), Some(i.to_string()));
        assert_eq!(attr(&params.values, "shop").as_deref(), Some("web \"eu\""));
        assert!(r.time_unix_nano > 0);
    }
    for i in 0..5 {
        let r = find(&format!("tcp octet message {i}"));
        assert_eq!(r.severity_number, 9);
        assert_eq!(attr(&r.attributes, "appname").as_deref(), Some("billing"));
    }
    for i in 0..5 {
        let r = find(&format!("udp bsd message {i}"));
        assert_eq!(r.severity_number, 13);
        assert_eq!(r.severity_text, "warning");
        assert_eq!(attr(&r.attributes, "appname").as_deref(), Some("legacyd"));
        assert_eq!(attr(&r.attributes, "hostname"), Some(host.clone()));
        assert_eq!(attr(&r.attributes, "facility").as_deref(), Some("3"));
        // RFC 3164 times are local to the sender; `location` says which zone, so the record's
        // time is within a minute of now (logger writes local time, and the test runs in UTC).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let skew = (r.time_unix_nano as i128 - now).abs();
        let hours = (skew + 1_800_000_000_000) / 3_600_000_000_000;
        assert!(
            (4..=5).contains(&hours),
            "New York is 4-5 hours from UTC: {skew}"
        );
    }
    let raw = find("this is not syslog");
    assert!(raw.attributes.is_empty());
    assert_eq!(raw.severity_number, 0);
    assert_eq!(
        c.metric(
            r#"otelcol_receiver_malformed_items_total{receiver="syslog/3164",transport="udp"}"#
        ),
        1.0
    );
    assert_eq!(
        c.metric(
            r#"otelcol_receiver_accepted_log_records_total{receiver="syslog/5424",transport="tcp"}"#
        ),
        10.0
    );
}

/// RFC 5425 (syslog over TLS) with OpenSSL's `s_client` as the client: a certificate made by
/// `openssl req`, messages over the TLS connection, and a plain-text client refused.
#[test]
fn syslog_over_tls_with_openssl_s_client() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed (scripts/test.sh installs it)");
    assert!(st.success());
    let (port, health) = (free_port(), free_port());
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  syslog:
    protocol: rfc5424
    tcp:
      listen_address: "127.0.0.1:{port}"
      tls: {{cert_file: "{cert}", key_file: "{key}"}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [health_check]
  pipelines:
    logs: {{receivers: [syslog], exporters: [otlp]}}
"#,
        cert = cert.display(),
        key = key.display(),
        sink = sink.port
    );
    let _c = Collector::start(&cfg, &[], Some(health), None);
    // Plain text to the TLS port: the handshake fails, nothing is taken.
    {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(&mut s, b"<13>1 - host plain - - - should not arrive\n").unwrap();
    }
    let mut msgs = String::new();
    for i in 0..3 {
        msgs.push_str(&format!(
            "<86>1 2024-05-01T10:00:0{i}Z vault sshd 77 AUTH [meta@1 n=\"{i}\"] tls message {i}\n"
        ));
    }
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-no_ign_eof", "-verify_return_error"])
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(&cert)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), msgs.as_bytes()).unwrap();
    drop(child.stdin.take());
    wait_until("3 records over TLS", Duration::from_secs(15), || {
        sink.store.log_count() >= 3
    });
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(300));
    let recs: Vec<_> = sink
        .store
        .logs
        .lock()
        .unwrap()
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| sl.log_records.clone())
        .collect();
    assert_eq!(recs.len(), 3, "{recs:?}");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(
            attr(&r.attributes, "message"),
            Some(format!("tls message {i}"))
        );
        assert_eq!(attr(&r.attributes, "hostname").as_deref(), Some("vault"));
        assert_eq!(r.severity_number, 9, "authpriv.info");
    }
}

/// Silent TCP connections beyond `tcp.max_connections` cannot lock senders out: the longest
/// silent one is closed for each new one (counted), and util-linux `logger` still delivers.
#[test]
fn silent_connections_past_the_cap_do_not_lock_out_logger() {
    let sink = Sink::start();
    let (tcp, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  syslog:
    protocol: rfc5424
    tcp: {{listen_address: "127.0.0.1:{tcp}", max_connections: 5}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics}"}}}}
  pipelines:
    logs:
      receivers: [syslog]
      exporters: [otlp]
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let silent: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let port = tcp.to_string();
    for i in 0..3 {
        logger(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--tcp",
            "--rfc5424",
            &format!("past the cap {i}"),
        ]);
    }
    wait_until("the three messages", Duration::from_secs(10), || {
        sink.store.log_count() == 3
    });
    let shed = c.metric(&format!(
        "otelcol_server_connections_closed_total{{endpoint=\"127.0.0.1:{tcp}\",reason=\"shed\"}}"
    ));
    assert!(shed >= 15.0, "{shed} connections shed");
    drop(silent);
}

/// Corpus file 21's pattern: stanza operators after the syslog parser (`add`, and here a
/// `router` and `move` too), applied to what util-linux `logger` sends.
#[test]
fn operators_after_the_parser_apply_to_logger_messages() {
    let sink = Sink::start();
    let (tcp, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  syslog:
    protocol: rfc5424
    tcp: {{listen_address: "127.0.0.1:{tcp}"}}
    operators:
      - type: add
        field: attributes.log.source
        value: syslog
      - type: router
        routes:
          - expr: 'attributes.appname == "billing"'
            output: billing
        default: tagged
      - type: move
        id: billing
        from: attributes.appname
        to: resource["service.name"]
      - type: add
        id: tagged
        field: attributes.device.type
        value: EXPR("host-" + attributes.appname)
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics}"}}}}
  pipelines:
    logs:
      receivers: [syslog]
      exporters: [otlp]
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let port = tcp.to_string();
    for tag in ["billing", "web"] {
        logger(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--tcp",
            "--rfc5424",
            "-t",
            tag,
            "-p",
            "user.info",
            "hello",
        ]);
    }
    wait_until("2 records", Duration::from_secs(15), || {
        sink.store.log_count() >= 2
    });
    let logs = sink.store.logs.lock().unwrap().clone();
    let mut seen = Vec::new();
    for rl in &logs {
        let service = attr(
            &rl.resource.clone().unwrap_or_default().attributes,
            "service.name",
        );
        for r in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
            let log = r.attributes.iter().find(|kv| kv.key == "log").cloned();
            let Some(any_value::Value::KvlistValue(m)) = log.and_then(|kv| kv.value?.value) else {
                panic!("`attributes.log.source` is a nested map: {r:?}")
            };
            assert_eq!(attr(&m.values, "source").as_deref(), Some("syslog"));
            seen.push((
                service.clone(),
                attr(&r.attributes, "appname"),
                r.attributes
                    .iter()
                    .find(|kv| kv.key == "device")
                    .map(|kv| format!("{:?}", kv.value)),
            ));
        }
    }
    seen.sort();
    assert_eq!(seen.len(), 2, "{seen:?}");
    // billing: routed to `move`, which took appname into the resource, then on to `tagged`.
    assert_eq!(seen[0].0, None);
    assert_eq!(seen[0].1.as_deref(), Some("web"));
    assert!(
        seen[0].2.as_deref().unwrap_or("").contains("host-web"),
        "{seen:?}"
    );
    assert_eq!(seen[1].0.as_deref(), Some("billing"));
    assert_eq!(seen[1].1, None, "moved out of the attributes");
    let mut c = c;
    assert!(c.terminate().success());
}
