//! The official Helm chart's examples (`../shared/helm-chart-examples/*/rendered/`), run as the
//! chart would run ferrotel with `deploy/helm/values-ferrotel.yaml` passed after the example's
//! own values: the rendered config with those values' effect applied (Helm's merge: a null
//! removes a key, a list replaces a list), the container's own args, environment, ports and
//! probes. The pod's filesystem and network are the only stand-ins: the config map's mount path
//! is a temporary directory, and the pod IP is a loopback address of its own per example (so the
//! chart's fixed ports never clash).
//!
//! Each config must validate, or be refused only for component types the README names under
//! "Not yet in ferrotel". One that validates is started: its readiness probe must answer 200 and
//! every TCP port the container declares must accept connections, then SIGTERM stops it cleanly.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A YAML document as JSON, through ferrotel's own YAML reader (the tree `print-config` writes).
fn yaml(text: &str) -> Value {
    let node = ferrotel::config::node::parse(text).unwrap_or_else(|e| panic!("{e:?}:\n{text}"));
    serde_json::from_str(&ferrotel::config::render::json_text(&node)).unwrap()
}

fn documents(dir: &Path) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut cur = String::new();
        for line in text.lines().chain(std::iter::once("---")) {
            if line == "---" {
                if !cur.trim().is_empty() {
                    let v = yaml(&cur);
                    if !v.is_null() {
                        docs.push(v);
                    }
                }
                cur.clear();
            } else {
                cur.push_str(line);
                cur.push('\n');
            }
        }
    }
    docs
}

/// Helm's merge of a later values file: mappings key by key, null deletes, the rest replaces.
fn helm_merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                if v.is_null() {
                    d.remove(k);
                } else if let Some(dv) = d.get_mut(k) {
                    helm_merge(dv, v);
                } else {
                    d.insert(k.clone(), v.clone());
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// The component types listed under "Not yet in ferrotel" in the README.
fn not_yet_listed() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let section = readme
        .split("### Not yet in ferrotel")
        .nth(1)
        .expect("the README has a `### Not yet in ferrotel` section");
    let section = section.split("\n#").next().unwrap_or_default();
    section
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The environment a pod gets from the container's `env`, with the downward API's fields filled
/// as the kubelet would (the pod IP is `ip`).
fn pod_env(container: &Value, ip: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap().to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_owned()
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "status.podIP" | "status.hostIP" => ip.to_owned(),
                "spec.nodeName" => "node-1".into(),
                "metadata.namespace" => "default".into(),
                "metadata.name" => "example-pod-0".into(),
                other => panic!("unexpected fieldRef {other}"),
            }
        } else if e["valueFrom"]["resourceFieldRef"].is_object() {
            "1073741824".into()
        } else {
            panic!("unexpected env source {e}")
        };
        out.push((name, value));
    }
    out
}

/// What every pod has besides its own env: the API server's address (a closed port here: no API
/// server can run, and the Kubernetes components start without one, retrying) and the service
/// account's token, CA certificate and namespace, in a directory of their own.
fn in_pod() -> Vec<(String, String)> {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::write(dir.join("token"), "chart-token").unwrap();
        std::fs::write(dir.join("namespace"), "default").unwrap();
        let st = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
            ])
            .arg("-keyout")
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(dir.join("ca.crt"))
            .output()
            .expect("openssl");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        dir
    });
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
        (
            "KUBERNETES_SERVICE_PORT".into(),
            common::free_port().to_string(),
        ),
        (
            "FERROTEL_SERVICE_ACCOUNT_DIR".into(),
            dir.display().to_string(),
        ),
    ]
}

fn http_status(ip: &str, port: u64, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((ip, port as u16)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

struct Outcome {
    example: String,
    workload: String,
    result: Result<(), String>,
    ran: bool,
}

#[test]
fn the_charts_examples_run_ferrotel_with_values_ferrotel() {
    let examples = common::repo().join("../shared/helm-chart-examples");
    let values = yaml(
        &std::fs::read_to_string(common::repo().join("deploy/helm/values-ferrotel.yaml")).unwrap(),
    );
    let overlay = &values["config"];
    let disabled_ports: BTreeSet<String> = values["ports"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, p)| p["enabled"] == json!(false))
        .map(|(n, _)| n.clone())
        .collect();
    let not_yet = not_yet_listed();
    let mut dirs: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("rendered").is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 20, "the chart's examples: {}", dirs.len());
    let mut outcomes = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let example = dir.file_name().unwrap().to_string_lossy().into_owned();
        let own_values = std::fs::read_to_string(dir.join("values.yaml")).unwrap_or_default();
        let uses_alternate_config = yaml(&own_values).get("alternateConfig").is_some();
        let docs = documents(&dir.join("rendered"));
        let config_maps: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
        let workloads: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                matches!(
                    d["kind"].as_str(),
                    Some("DaemonSet" | "Deployment" | "StatefulSet")
                )
            })
            .collect();
        assert!(!workloads.is_empty(), "{example}: no workload");
        for (w, workload) in workloads.iter().enumerate() {
            let kind = workload["kind"].as_str().unwrap();
            let spec = &workload["spec"]["template"]["spec"];
            let container = spec["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "opentelemetry-collector")
                .unwrap_or_else(|| panic!("{example}: no collector container"));
            // The chart's own image, replaced by the values' image: what runs is this binary.
            let args: Vec<String> = container["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            // Where the config map is mounted, and which map with which key.
            let mount = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| {
                    args.iter()
                        .any(|a| a.contains(m["mountPath"].as_str().unwrap()))
                })
                .unwrap_or_else(|| panic!("{example}: no mount holds the --config file"));
            let volume = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            let map_name = volume["configMap"]["name"].as_str().unwrap();
            let items = volume["configMap"]["items"].as_array().unwrap();
            let Some(map) = config_maps
                .iter()
                .find(|m| m["metadata"]["name"] == map_name)
            else {
                // The user's own config map (existingName): nothing rendered to run.
                outcomes.push(Outcome {
                    example: example.clone(),
                    workload: kind.into(),
                    result: Err(format!(
                        "uses the user's own config map `{map_name}`, not rendered"
                    )),
                    ran: false,
                });
                continue;
            };
            // The pod's hostPath mounts (the hostMetrics preset mounts the node's `/` at
            // `/hostfs`): what the container reads there is that path of this machine.
            let host_mounts: Vec<(String, String)> = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    let v = spec["volumes"]
                        .as_array()?
                        .iter()
                        .find(|v| v["name"] == m["name"])?;
                    let host = v["hostPath"]["path"].as_str()?;
                    Some((m["mountPath"].as_str()?.to_owned(), host.to_owned()))
                })
                .filter(|(m, h)| m != h)
                .collect();
            let tmp = tempfile::tempdir().unwrap();
            let mount_path = mount["mountPath"].as_str().unwrap();
            // Whether the config serves the chart's probe and ports. An `alternateConfig` is the
            // user's whole config (alternate-config's has no health_check and no otlp receiver):
            // otelcol would not serve them either, so only its start and stop are checked.
            let probe_served = !uses_alternate_config;
            for item in items {
                let key = item["key"].as_str().unwrap();
                let mut cfg = yaml(map["data"][key].as_str().unwrap());
                // With `alternateConfig` the chart renders that instead of `config`: the
                // values' `config` does not touch it.
                if !uses_alternate_config && !overlay.is_null() {
                    helm_merge(&mut cfg, overlay);
                }
                // Written back as YAML (JSON is YAML, read by the same reader), one key a line.
                let node = ferrotel::config::node::parse(&cfg.to_string()).unwrap();
                let mut text = ferrotel::config::render::yaml_text(&node);
                for (mount, host) in &host_mounts {
                    text = text.replace(&format!(": {mount}\n"), &format!(": {host}\n"));
                }
                std::fs::write(tmp.path().join(item["path"].as_str().unwrap()), text).unwrap();
            }
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace(mount_path, &tmp.path().display().to_string()))
                .collect();
            let ip = format!("127.77.{}.{}", n + 1, w + 1);
            let mut env = pod_env(container, &ip);
            env.extend(in_pod());
            let result = check(&example, &args, &env, &not_yet).and_then(|valid| {
                if valid {
                    run(container, &args, &env, &ip, &disabled_ports, probe_served).map(|()| true)
                } else {
                    Ok(false)
                }
            });
            outcomes.push(Outcome {
                example: example.clone(),
                workload: kind.into(),
                ran: result.as_ref().is_ok_and(|r| *r),
                result: result.map(|_| ()),
            });
        }
    }
    let mut report = String::new();
    for o in &outcomes {
        report.push_str(&format!(
            "{} ({}): {}\n",
            o.example,
            o.workload,
            match (&o.result, o.ran) {
                (Ok(()), true) =>
                    "ran: ready, ports open (those its config serves), clean stop".to_string(),
                (Ok(()), false) =>
                    "refused only for what the README lists as not yet in ferrotel".to_string(),
                (Err(e), _) => e.clone(),
            }
        ));
    }
    println!("{report}");
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| {
            o.result
                .as_ref()
                .is_err_and(|e| !e.contains("not rendered"))
        })
        .collect();
    assert!(failed.is_empty(), "{report}");
    let ran = outcomes.iter().filter(|o| o.ran).count();
    // The examples without a component ferrotel lacks: they all start.
    // 19 workloads of 18 examples (daemonset-and-deployment has two).
    assert!(ran >= 19, "only {ran} workloads ran:\n{report}");
}

/// `ferrotel validate` with the container's args: Ok(true) valid, Ok(false) refused only for
/// component types the README lists as not yet there.
fn check(
    example: &str,
    args: &[String],
    env: &[(String, String)],
    not_yet: &BTreeSet<String>,
) -> Result<bool, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .arg("validate")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("FERROTEL_CONFIG")
        .output()
        .unwrap();
    if out.status.success() {
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    for line in err.lines().filter(|l| l.starts_with("error:")) {
        // The example's own mistake, which otelcol refuses as well.
        if BROKEN_EXAMPLES
            .iter()
            .any(|(e, msg)| *e == example && line.contains(msg))
        {
            continue;
        }
        // A part of a component that is not built yet (a `resourcedetection` detector), listed.
        if let Some(name) = line
            .split("detector `")
            .nth(1)
            .and_then(|r| r.split('`').next())
            && line.contains("is not built in ferrotel yet")
            && not_yet.contains(name)
        {
            continue;
        }
        if let Some(list) = line.split("unsupported component types: ").nth(1) {
            unsupported_listed(example, list, not_yet, &err)?;
            continue;
        }
        // An unknown key of a component or of `service::telemetry` that the README lists.
        let key_listed = line.contains(": unknown field `")
            && not_yet
                .iter()
                .any(|k| k.contains('.') && line.contains(&format!("`{k}`: unknown field")));
        if !key_listed {
            return Err(format!("{example}: refused:\n{err}"));
        }
    }
    Ok(false)
}

/// Examples that the chart ships broken: the error otelcol gives them too.
const BROKEN_EXAMPLES: &[(&str, &str)] = &[
    // Its values list a `resource` processor in the traces pipeline without defining it.
    (
        "kubernetesAttributes",
        "service::pipelines::traces: `processors`: `resource` is not defined in `processors`",
    ),
];

/// Every type in an "unsupported component types" message is listed in the README.
fn unsupported_listed(
    example: &str,
    list: &str,
    not_yet: &BTreeSet<String>,
    err: &str,
) -> Result<(), String> {
    // `receivers: hostmetrics (line 3), kubeletstats (line 9); processors: ...`
    let list = list
        .split(". `ferrotel components`")
        .next()
        .unwrap_or_default();
    for section in list.split("; ") {
        let names = section.split_once(": ").map_or("", |(_, n)| n);
        for name in names.split(", ") {
            let name = name.split(" (line").next().unwrap_or_default();
            if !not_yet.contains(name) {
                return Err(format!(
                    "{example}: refused for `{name}`, which the README does not list under \"Not yet in ferrotel\":\n{err}"
                ));
            }
        }
    }
    Ok(())
}

fn run(
    container: &Value,
    args: &[String],
    env: &[(String, String)],
    ip: &str,
    disabled_ports: &BTreeSet<String>,
    probe_served: bool,
) -> Result<(), String> {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("FERROTEL_CONFIG")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let logs = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let probe = &container["readinessProbe"]["httpGet"];
    let (path, port) = (
        probe["path"].as_str().unwrap_or("/"),
        probe["port"].as_u64().unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = false;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("exited with {st} at start:\n{}", logs()));
        }
        let up = if probe_served {
            http_status(ip, port, path) == Some(200)
        } else {
            logs().contains("everything is ready")
        };
        if up {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut result = Ok(());
    if !ready {
        result = Err(format!(
            "the readiness probe {ip}:{port}{path} never answered 200:\n{}",
            logs()
        ));
    }
    if result.is_ok() && probe_served {
        let closed: Vec<String> = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !disabled_ports.contains(p["name"].as_str().unwrap_or_default()))
            .filter(|p| {
                let port = p["containerPort"].as_u64().unwrap() as u16;
                if p["protocol"] == "UDP" {
                    // Bound by the collector when we cannot bind it.
                    std::net::UdpSocket::bind((ip, port)).is_ok()
                } else {
                    std::net::TcpStream::connect((ip, port)).is_err()
                }
            })
            .map(|p| format!("{} ({})", p["name"], p["containerPort"]))
            .collect();
        if !closed.is_empty() {
            result = Err(format!(
                "declared ports not listening: {}:\n{}",
                closed.join(", "),
                logs()
            ));
        }
    }
    let _ = Command::new("kill")
        .args(["-15", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                if !st.success() && result.is_ok() {
                    result = Err(format!("exit {st} after SIGTERM:\n{}", logs()));
                }
                break;
            }
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                result = result.and(Err("no exit within 30 s of SIGTERM".into()));
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    result
}
