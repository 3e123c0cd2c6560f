//! The Kubernetes manifests: each overlay rendered with `kubectl kustomize` (kubectl is on this
//! machine; no cluster is needed) and validated against the Kubernetes API schemas with
//! `kubernetes-validate --strict` (PyPI, offline), then the invariants that keep agent and
//! gateway working: probes on the health_check port, every ConfigMap config accepted by
//! `ferrotel validate`, the agent's gateway endpoint naming the gateway Service, the memory
//! limiter below the container's memory limit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn render(overlay: &str) -> (String, Vec<Value>) {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(common::repo().join("deploy/kubernetes").join(overlay))
        .output()
        .expect("kubectl (on PATH) renders kustomizations without a cluster");
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    (text, docs)
}

fn validator() -> PathBuf {
    let bin = common::python()
        .parent()
        .expect("the venv's bin folder")
        .join("kubernetes-validate");
    assert!(
        bin.exists(),
        "{} is missing: scripts/test.sh installs it from tests/requirements.txt",
        bin.display()
    );
    bin
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// A config's default for `${env:VAR:-default}` unless the container sets VAR.
fn env_or_default(container: &Value, config: &str, var: &str) -> String {
    if let Some(v) = container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["name"] == var))
        .and_then(|x| x["value"].as_str())
    {
        return v.to_string();
    }
    let marker = format!("${{env:{var}:-");
    let start = config
        .find(&marker)
        .unwrap_or_else(|| panic!("{var} is not in the config"))
        + marker.len();
    config[start..].split('}').next().unwrap().to_string()
}

fn mebibytes(q: &str) -> u64 {
    if let Some(n) = q.strip_suffix("Gi") {
        n.parse::<u64>().unwrap() * 1024
    } else if let Some(n) = q.strip_suffix("Mi") {
        n.parse().unwrap()
    } else {
        panic!("unexpected quantity {q}")
    }
}

/// Checks one workload: its config passes `ferrotel validate` with the container's environment,
/// probes point at the health_check port, the memory limiter sits below the memory limit.
fn check_workload(docs: &[Value], workload: &Value, config_key: &str, dir: &Path) {
    let pod = &workload["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let cm_name = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .expect("a config volume");
    let cm = find(docs, "ConfigMap", cm_name);
    let config = cm["data"][config_key]
        .as_str()
        .expect("the config in the ConfigMap");
    // The container reads its configs (the first is `config_key`, any after it are merged
    // over it) where its args say, each from the ConfigMap.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap();
    let mount = mount["mountPath"].as_str().unwrap();
    assert!(args.len() >= 2 && args.len().is_multiple_of(2), "{args:?}");
    let mut files = Vec::new();
    for pair in args.chunks(2) {
        assert_eq!(pair[0], "--config", "{args:?}");
        let key = pair[1]
            .strip_prefix(&format!("{mount}/"))
            .unwrap_or_else(|| panic!("{} is not in the config mount {mount}", pair[1]));
        let text = cm["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not in the ConfigMap"));
        let path = dir.join(key);
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    assert_eq!(files[0].file_name().unwrap().to_string_lossy(), config_key);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrotel"));
    cmd.arg("validate");
    for f in &files {
        cmd.arg("--config").arg(f);
    }
    for e in c["env"].as_array().unwrap() {
        if let Some(v) = e["value"].as_str() {
            cmd.env(e["name"].as_str().unwrap(), v);
        } else {
            // From the downward API: any value will do for validation.
            cmd.env(e["name"].as_str().unwrap(), "node-1");
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{files:?} from the ConfigMap: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let health: u16 = env_or_default(c, config, "FERROTEL_HEALTH_ENDPOINT")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let port_of = |p: &Value| -> u16 {
        match p {
            Value::String(name) => c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == name.as_str())
                .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
                .as_u64()
                .unwrap() as u16,
            other => other.as_u64().unwrap() as u16,
        }
    };
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(port_of(&c[probe]["httpGet"]["port"]), health, "{probe}");
    }

    let limit = mebibytes(c["resources"]["limits"]["memory"].as_str().unwrap());
    let limiter: u64 = env_or_default(c, config, "FERROTEL_MEMORY_LIMIT_MIB")
        .parse()
        .unwrap();
    let spike: u64 = env_or_default(c, config, "FERROTEL_MEMORY_SPIKE_MIB")
        .parse()
        .unwrap();
    assert!(
        limiter < limit,
        "memory_limiter {limiter} MiB ≥ container limit {limit} MiB"
    );
    assert!(spike < limiter);

    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    if config_key == "agent.yaml" {
        // Root to read the kubelet's 0640 pod logs, with every capability dropped.
        assert_eq!(pod["securityContext"]["runAsUser"], 0);
        let drop = sc["capabilities"]["drop"].as_array().unwrap();
        assert!(drop.iter().any(|d| d == "ALL"));
    } else {
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    }
}

/// `kubernetes-validate --strict` on a rendered overlay.
fn schema_valid(name: &str, text: &str, dir: &Path) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(validator())
        .args(["--strict", "--quiet"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn overlays_render_validate_and_keep_their_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let (agent_text, agent) = render("agent");
    let (gateway_text, gateway) = render("gateway");
    for (name, text) in [("agent", &agent_text), ("gateway", &gateway_text)] {
        schema_valid(name, text, dir.path());
    }

    // Agent: a DaemonSet on every node, OTLP on host ports, node logs mounted read-only.
    let ds = find(&agent, "DaemonSet", "ferrotel-agent");
    check_workload(&agent, ds, "agent.yaml", dir.path());
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let host_ports: Vec<u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["hostPort"].as_u64())
        .collect();
    assert_eq!(host_ports, vec![4317, 4318]);
    assert!(
        pod["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none())
    );
    // The filelog offsets are on a writable hostPath, where agent.yaml's file_storage points.
    let storage = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "storage")
        .expect("storage mount");
    assert_eq!(storage["mountPath"], "/var/lib/ferrotel/file_storage");
    assert!(storage.get("readOnly").is_none_or(|r| r == false));
    let agent_yaml = std::fs::read_to_string(common::repo().join("pipelines/agent.yaml")).unwrap();
    assert!(agent_yaml.contains("/var/lib/ferrotel/file_storage"));
    assert!(agent_yaml.contains("${env:POD_NAMESPACE:-none}_${env:POD_NAME:-none}_*"));
    let env_names: Vec<_> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env_names.contains(&"POD_NAME") && env_names.contains(&"POD_NAMESPACE"));
    for path in ["/var/log/pods", "/var/log/containers"] {
        let m = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap();
        assert_eq!(m["readOnly"], true, "{path}");
    }
    let node_env = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "KUBE_NODE_NAME")
        .unwrap();
    assert_eq!(
        node_env["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(
        find(&agent, "Service", "ferrotel-agent")["spec"]["internalTrafficPolicy"],
        "Local"
    );

    // The agent sends to the gateway Service, on its OTLP gRPC port.
    let svc = find(&gateway, "Service", "ferrotel-gateway");
    let ns = svc["metadata"]["namespace"].as_str().unwrap();
    let endpoint = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "FERROTEL_GATEWAY_ENDPOINT")
        .unwrap()["value"]
        .as_str()
        .unwrap();
    let (host, port) = endpoint.rsplit_once(':').unwrap();
    assert!(
        host == "ferrotel-gateway" || host.starts_with(&format!("ferrotel-gateway.{ns}.")),
        "{endpoint} does not name the gateway Service"
    );
    let grpc = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "otlp-grpc")
        .unwrap();
    assert_eq!(port, grpc["port"].as_u64().unwrap().to_string());

    // Gateway: spread over nodes, autoscaled, protected from voluntary disruption.
    let dep = find(&gateway, "Deployment", "ferrotel-gateway");
    check_workload(&gateway, dep, "gateway.yaml", dir.path());

    // Sizes agree: the agent never sends a request larger than the gateway takes (a larger one
    // was refused and, before requests were split, dropped whole).
    let gateway_yaml =
        std::fs::read_to_string(common::repo().join("pipelines/gateway.yaml")).unwrap();
    let gw_container = &dep["spec"]["template"]["spec"]["containers"][0];
    let agent_max = env_or_default(c, &agent_yaml, "FERROTEL_MAX_REQUEST_SIZE");
    let agent_max = match agent_max.strip_suffix("MiB") {
        Some(n) => n.parse::<u64>().unwrap() << 20,
        None => agent_max.parse::<u64>().unwrap(),
    };
    let gateway_max: u64 = env_or_default(
        gw_container,
        &gateway_yaml,
        "FERROTEL_MAX_RECV_MSG_SIZE_MIB",
    )
    .parse::<u64>()
    .unwrap()
        << 20;
    assert!(
        agent_max > 0 && agent_max <= gateway_max,
        "the agent sends up to {agent_max} bytes, the gateway takes {gateway_max}"
    );
    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    let anti = &dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    assert_eq!(
        anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let hpa = find(&gateway, "HorizontalPodAutoscaler", "ferrotel-gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "ferrotel-gateway");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    for (kind, name) in [
        ("PodDisruptionBudget", "ferrotel-gateway"),
        ("Service", "ferrotel-gateway"),
        ("Service", "ferrotel-gateway-headless"),
    ] {
        let sel = find(&gateway, kind, name);
        let sel = sel["spec"]["selector"]
            .get("matchLabels")
            .unwrap_or(&sel["spec"]["selector"]);
        for (k, v) in sel.as_object().unwrap() {
            assert_eq!(&labels[k], v, "{kind}/{name} selects the gateway pods");
        }
    }
    assert_eq!(
        find(&gateway, "Service", "ferrotel-gateway-headless")["spec"]["clusterIP"],
        "None"
    );

    // RBAC for k8sattributes.
    let role = find(&gateway, "ClusterRole", "ferrotel");
    let rules = role["rules"].as_array().unwrap();
    for res in ["pods", "namespaces", "replicasets"] {
        let rule = rules
            .iter()
            .find(|r| r["resources"].as_array().unwrap().iter().any(|x| x == res))
            .unwrap_or_else(|| panic!("no rule for {res}"));
        for verb in ["get", "list", "watch"] {
            assert!(
                rule["verbs"].as_array().unwrap().iter().any(|v| v == verb),
                "{res} {verb}"
            );
        }
    }
    assert_eq!(
        dep["spec"]["template"]["spec"]["serviceAccountName"],
        "ferrotel"
    );
}

/// The Prometheus Operator monitors select the agent pods and the gateway Service, on a port
/// named `metrics` that each has.
#[test]
fn monitors_select_the_workloads_metrics_ports() {
    let (_, mon) = render("monitoring");
    let (_, agent) = render("agent");
    let (_, gateway) = render("gateway");
    let pm = find(&mon, "PodMonitor", "ferrotel-agent");
    let ds = find(&agent, "DaemonSet", "ferrotel-agent");
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v);
    }
    let port = pm["spec"]["podMetricsEndpoints"][0]["port"]
        .as_str()
        .unwrap();
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let metrics_port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port)
        .unwrap();
    assert_eq!(metrics_port["containerPort"], 8888);

    let sm = find(&mon, "ServiceMonitor", "ferrotel-gateway");
    let svc = find(&gateway, "Service", "ferrotel-gateway");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v);
    }
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port)
    );
    // Generated, so its name ends in a content hash.
    let dash = mon
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("ferrotel-dashboard-"))
        })
        .expect("the dashboard ConfigMap");
    assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = dash["data"]["ferrotel-dashboard.json"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(json).is_ok());
}

/// The dashboard parses and every metric it queries is one a running ferrotel exports.
#[test]
fn dashboard_queries_only_exported_metrics() {
    let text = std::fs::read_to_string(
        common::repo().join("deploy/kubernetes/monitoring/ferrotel-dashboard.json"),
    )
    .unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queried = std::collections::BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("otelcol_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");

    // A collector with every kind of component, to list what it exports.
    let (grpc, health, metrics, dead) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let c = common::Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
processors:
  batch:
  filter: {{ traces: {{ span: ['name == "x"'] }} }}
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{dead}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ enabled: false }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [filter, batch], exporters: [otlp_grpc] }}
"#
        ),
        &[],
        Some(health),
        Some(metrics),
    );
    // One span the backend (down) does not take: dropped and counted, so every family shows.
    let (ok, _, stderr) = common::sdk_send(
        &format!("127.0.0.1:{grpc}"),
        "grpc",
        "traces",
        1,
        "dash",
        &[],
    );
    assert!(ok, "{stderr}");
    common::wait_until(
        "the drop to be counted",
        std::time::Duration::from_secs(20),
        || {
            c.self_metrics()
                .contains("otelcol_exporter_dropped_items_total")
        },
    );
    let exposition = c.self_metrics();
    let mut exported = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            exported.insert(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            });
        }
    }
    let missing: Vec<&String> = queried.iter().filter(|q| !exported.contains(*q)).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\nexported: {exported:?}"
    );
}

#[test]
fn the_cluster_overlay_renders_validates_and_elects_a_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (text, docs) = render("cluster");
    schema_valid("cluster", &text, dir.path());
    let dep = find(&docs, "Deployment", "ferrotel-cluster");
    check_workload(&docs, dep, "cluster.yaml", dir.path());
    // Two replicas, of which the Lease lets one run the cluster receivers.
    assert_eq!(dep["spec"]["replicas"], 2);
    let config = std::fs::read_to_string(common::repo().join("pipelines/cluster.yaml")).unwrap();
    let config: Value = serde_saphyr::from_str(&config).unwrap();
    for receiver in ["k8s_cluster", "k8s_events"] {
        assert_eq!(
            config["receivers"][receiver]["k8s_leader_elector"], "k8s_leader_elector",
            "{receiver} must run under the election"
        );
    }
    assert!(
        config["service"]["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "k8s_leader_elector")
    );
    // The service account may read what the receivers watch and write its Lease.
    let sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    let role = find(&docs, "ClusterRole", "ferrotel-cluster");
    let rules = serde_json::to_string(&role["rules"]).unwrap();
    for r in [
        "nodes",
        "pods",
        "events",
        "deployments",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
        "horizontalpodautoscalers",
        "resourcequotas",
    ] {
        assert!(
            rules.contains(&format!("\"{r}\"")),
            "the ClusterRole lacks {r}"
        );
    }
    let leases = find(&docs, "Role", "ferrotel-cluster-leases");
    let verbs = serde_json::to_string(&leases["rules"][0]["verbs"]).unwrap();
    for v in ["get", "create", "update"] {
        assert!(verbs.contains(v), "leases: {verbs}");
    }
    let binding = find(&docs, "RoleBinding", "ferrotel-cluster-leases");
    assert_eq!(binding["subjects"][0]["name"], sa);
    assert_eq!(
        find(&docs, "ClusterRoleBinding", "ferrotel-cluster")["subjects"][0]["name"],
        sa
    );
}
