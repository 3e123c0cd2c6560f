//! The `prometheus` receiver scraping real targets: Debian's `prometheus-node-exporter` on
//! 127.0.0.1 (text format) and a ferrotel's own self-metrics (OpenMetrics), plus a target that
//! is down, one that serves garbage and one that serves a histogram, and pod discovery through a
//! stand-in Kubernetes API (a small HTTP server answering the pod list in the API's JSON; no
//! cluster runs here) whose pod points at the node exporter through the usual
//! `prometheus.io/*` annotations and relabel rules.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::sink::Sink;
use common::{Collector, free_port, http_get, wait_until};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tiny HTTP/1.1 server answering fixed bodies by path.
fn serve(routes: Vec<(&'static str, &'static str, String)>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let path = path.split('?').next().unwrap_or("/").to_string();
            let (ct, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, ct, b)| (*ct, b.clone()))
                .unwrap_or(("text/plain", "not found".into()));
            let status = if body == "not found" {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn str_attr(kvs: &[KeyValue], k: &str) -> Option<String> {
    kvs.iter()
        .find(|kv| kv.key == k)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

fn resources(sink: &Sink) -> Vec<ResourceMetrics> {
    sink.store.metrics.lock().unwrap().clone()
}

/// Metrics of the scrapes of one instance, newest scrape last.
fn of_instance(all: &[ResourceMetrics], instance: &str) -> Vec<Vec<Metric>> {
    all.iter()
        .filter(|r| {
            str_attr(
                &r.resource.as_ref().unwrap().attributes,
                "service.instance.id",
            )
            .as_deref()
                == Some(instance)
        })
        .map(|r| {
            r.scope_metrics
                .iter()
                .flat_map(|s| s.metrics.clone())
                .collect()
        })
        .collect()
}

fn find<'a>(ms: &'a [Metric], name: &str) -> Option<&'a Metric> {
    ms.iter().find(|m| m.name == name)
}

fn gauge(ms: &[Metric], name: &str) -> f64 {
    match find(ms, name).and_then(|m| m.data.as_ref()) {
        Some(metric::Data::Gauge(g)) => match g.data_points[0].value {
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                v,
            )) => v,
            _ => f64::NAN,
        },
        other => panic!("{name}: not a gauge: {other:?}"),
    }
}

#[test]
fn scrapes_node_exporter_self_metrics_pods_and_bad_targets() {
    let sink = Sink::start();
    let ne_port = free_port();
    let _ne = Proc(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter is installed (scripts/test.sh installs it)"),
    );
    wait_until("node exporter up", Duration::from_secs(15), || {
        http_get(ne_port, "/metrics").is_some_and(|(c, _)| c == 200)
    });
    let hist = "# HELP req_seconds Request latency.\n# TYPE req_seconds histogram\nreq_seconds_bucket{le=\"0.1\"} 3\nreq_seconds_bucket{le=\"1\"} 5\nreq_seconds_bucket{le=\"+Inf\"} 6\nreq_seconds_sum 2.5\nreq_seconds_count 6\n".to_string();
    let pods = serde_json::json!({
        "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
        "items": [
            {
                "metadata": {"name": "node-exporter-x", "namespace": "monitoring", "uid": "u-1",
                    "labels": {"app": "node-exporter"},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": ne_port.to_string()}},
                "spec": {"nodeName": "n1", "containers": [{"name": "ne", "ports": [{"containerPort": 9999, "name": "web"}]}]},
                "status": {"podIP": "127.0.0.1", "phase": "Running"}
            },
            {
                "metadata": {"name": "not-annotated", "namespace": "default", "uid": "u-2"},
                "spec": {"containers": [{"name": "c"}]},
                "status": {"podIP": "127.0.0.2", "phase": "Running"}
            }
        ]
    })
    .to_string();
    let web = serve(vec![
        (
            "/garbage",
            "text/plain",
            "<html><body>Welcome to nginx!</body></html>".into(),
        ),
        ("/hist", "text/plain; version=0.0.4", hist),
        ("/api/v1/pods", "application/json", pods),
    ]);
    let down = free_port();
    let (health, metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: node
          scrape_interval: 1s
          static_configs:
            - targets: ["127.0.0.1:{ne_port}"]
          metric_relabel_configs:
            - source_labels: [__name__]
              regex: "node_scrape_collector_.*"
              action: drop
        - job_name: ferrotel
          scrape_interval: 1s
          static_configs:
            - targets: ["127.0.0.1:{metrics}"]
              labels: {{team: platform}}
        - job_name: broken
          scrape_interval: 1s
          static_configs:
            - targets: ["127.0.0.1:{down}", "127.0.0.1:{web}"]
          relabel_configs:
            - source_labels: [__address__]
              regex: "127.0.0.1:{web}"
              target_label: __metrics_path__
              replacement: /garbage
        - job_name: app
          scrape_interval: 1s
          metrics_path: /hist
          static_configs:
            - targets: ["localhost:{web}"]
        - job_name: limited
          scrape_interval: 1s
          metrics_path: /hist
          body_size_limit: 50
          static_configs:
            - targets: ["localhost:{web}"]
        - job_name: kubernetes-pods
          scrape_interval: 1s
          kubernetes_sd_configs:
            - role: pod
              api_server: http://127.0.0.1:{web}
          relabel_configs:
            - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
              action: keep
              regex: "true"
            - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
              action: replace
              regex: '([^:]+)(?::\d+)?;(\d+)'
              replacement: $$1:$$2
              target_label: __address__
            - action: labelmap
              regex: __meta_kubernetes_pod_label_(.+)
            - source_labels: [__meta_kubernetes_pod_name]
              target_label: pod
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics}"}}}}
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [otlp]
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let ne_inst = format!("127.0.0.1:{ne_port}");
    wait_until(
        "three scrapes of every target",
        Duration::from_secs(20),
        || {
            let all = resources(&sink);
            of_instance(&all, &ne_inst).len() >= 6 // static + pod discovery, 3 each
            && of_instance(&all, &format!("127.0.0.1:{metrics}")).len() >= 3
            && of_instance(&all, &format!("127.0.0.1:{down}")).len() >= 2
            && of_instance(&all, &format!("127.0.0.1:{web}")).len() >= 2
            && of_instance(&all, &format!("localhost:{web}")).len() >= 2
        },
    );
    let all = resources(&sink);

    // Node exporter, text format: counters as cumulative monotonic sums with a start time that
    // stays put across scrapes, gauges, summaries; resource from job/instance.
    let node: Vec<_> = all
        .iter()
        .filter(|r| {
            str_attr(&r.resource.as_ref().unwrap().attributes, "service.name").as_deref()
                == Some("node")
        })
        .collect();
    assert!(node.len() >= 3);
    let res = &node[0].resource.as_ref().unwrap().attributes;
    assert_eq!(str_attr(res, "service.instance.id"), Some(ne_inst.clone()));
    assert_eq!(str_attr(res, "server.port"), Some(ne_port.to_string()));
    let scrapes: Vec<Vec<Metric>> = node
        .iter()
        .map(|r| {
            r.scope_metrics
                .iter()
                .flat_map(|s| s.metrics.clone())
                .collect()
        })
        .collect();
    let mut starts = Vec::new();
    for ms in &scrapes {
        assert_eq!(gauge(ms, "up"), 1.0);
        assert!(gauge(ms, "scrape_duration_seconds") > 0.0);
        assert!(
            gauge(ms, "scrape_samples_scraped")
                > gauge(ms, "scrape_samples_post_metric_relabeling"),
            "the drop rule removed samples"
        );
        assert!(
            find(ms, "node_scrape_collector_success").is_none(),
            "metric_relabel_configs drop"
        );
        let cpu = find(ms, "node_cpu_seconds_total").expect("node_cpu_seconds_total");
        let Some(metric::Data::Sum(sum)) = &cpu.data else {
            panic!("{cpu:?}")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, 2, "cumulative");
        let p = sum
            .data_points
            .iter()
            .find(|p| {
                str_attr(&p.attributes, "mode").as_deref() == Some("idle")
                    && str_attr(&p.attributes, "cpu").as_deref() == Some("0")
            })
            .expect("cpu=0 mode=idle");
        assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano);
        assert!(
            str_attr(&p.attributes, "job").is_none()
                && str_attr(&p.attributes, "instance").is_none()
        );
        starts.push(p.start_time_unix_nano);
        let Some(metric::Data::Gauge(_)) = &find(ms, "node_memory_MemTotal_bytes").unwrap().data
        else {
            panic!()
        };
        let Some(metric::Data::Summary(s)) = &find(ms, "go_gc_duration_seconds").unwrap().data
        else {
            panic!()
        };
        assert!(!s.data_points[0].quantile_values.is_empty());
        assert_eq!(
            find(ms, "node_cpu_seconds_total").unwrap().description,
            "Seconds the CPUs spent in each mode."
        );
    }
    assert!(
        starts.windows(2).all(|w| w[0] == w[1]),
        "start time stays: {starts:?}"
    );

    // ferrotel's self-metrics, OpenMetrics: counters keep `_total`, target labels on points.
    let own = of_instance(&all, &format!("127.0.0.1:{metrics}"));
    let last = own.last().unwrap();
    assert_eq!(gauge(last, "up"), 1.0);
    let acc =
        find(last, "otelcol_receiver_accepted_metric_points_total").expect("a self-metric counter");
    let Some(metric::Data::Sum(sum)) = &acc.data else {
        panic!("{acc:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        str_attr(&sum.data_points[0].attributes, "team").as_deref(),
        Some("platform")
    );
    let Some(metric::Data::Gauge(_)) =
        &find(last, "otelcol_process_memory_rss_bytes").unwrap().data
    else {
        panic!()
    };
    let Some(metric::Data::Sum(_)) = &find(last, "otelcol_process_uptime_seconds_total")
        .unwrap()
        .data
    else {
        panic!()
    };

    // A histogram: cumulative buckets become per-bucket counts.
    let app: Vec<Vec<Metric>> = all
        .iter()
        .filter(|r| {
            str_attr(&r.resource.as_ref().unwrap().attributes, "service.name").as_deref()
                == Some("app")
        })
        .map(|r| {
            r.scope_metrics
                .iter()
                .flat_map(|s| s.metrics.clone())
                .collect()
        })
        .collect();
    let h = find(app.last().unwrap(), "req_seconds").unwrap();
    let Some(metric::Data::Histogram(h)) = &h.data else {
        panic!()
    };
    assert_eq!(h.data_points[0].explicit_bounds, [0.1, 1.0]);
    assert_eq!(h.data_points[0].bucket_counts, [3, 2, 1]);
    assert_eq!(h.data_points[0].count, 6);

    // Down and garbage targets: up = 0, no other metric; garbage is counted.
    for inst in [format!("127.0.0.1:{down}"), format!("127.0.0.1:{web}")] {
        for ms in of_instance(&all, &inst) {
            assert_eq!(gauge(&ms, "up"), 0.0, "{inst}");
            assert_eq!(ms.len(), 4, "only the scrape's own metrics: {inst}");
        }
    }
    assert!(
        c.metric(
            r#"otelcol_receiver_malformed_items_total{receiver="prometheus",transport="http"}"#
        ) >= 2.0
    );

    // A body over `body_size_limit` fails the scrape.
    let limited: Vec<_> = all
        .iter()
        .filter(|r| {
            str_attr(&r.resource.as_ref().unwrap().attributes, "service.name").as_deref()
                == Some("limited")
        })
        .collect();
    assert!(!limited.is_empty());
    for r in limited {
        let ms: Vec<Metric> = r
            .scope_metrics
            .iter()
            .flat_map(|s| s.metrics.clone())
            .collect();
        assert_eq!(gauge(&ms, "up"), 0.0);
    }

    // Pod discovery: the annotated pod only, at the annotated port, with its label mapped.
    let pod = all
        .iter()
        .filter(|r| {
            str_attr(&r.resource.as_ref().unwrap().attributes, "service.name").as_deref()
                == Some("kubernetes-pods")
        })
        .collect::<Vec<_>>();
    assert!(!pod.is_empty());
    for r in &pod {
        assert_eq!(
            str_attr(
                &r.resource.as_ref().unwrap().attributes,
                "service.instance.id"
            ),
            Some(ne_inst.clone())
        );
        let ms: Vec<Metric> = r
            .scope_metrics
            .iter()
            .flat_map(|s| s.metrics.clone())
            .collect();
        assert_eq!(gauge(&ms, "up"), 1.0);
        let Some(metric::Data::Sum(sum)) = &find(&ms, "node_cpu_seconds_total").unwrap().data
        else {
            panic!()
        };
        assert_eq!(
            str_attr(&sum.data_points[0].attributes, "app").as_deref(),
            Some("node-exporter")
        );
        assert_eq!(
            str_attr(&sum.data_points[0].attributes, "pod").as_deref(),
            Some("node-exporter-x")
        );
    }
}

/// OpenMetrics exemplars from a real client library: the Python `prometheus_client` serves a
/// counter and a histogram whose observations carry a trace and span id (it answers
/// OpenMetrics because the scrape asks for it). They arrive as OTLP exemplars with the ids
/// decoded and the other exemplar labels as filtered attributes.
#[test]
fn exemplars_from_the_python_prometheus_client() {
    use opentelemetry_proto::tonic::metrics::v1::exemplar;
    let port = free_port();
    let script = format!(
        r#"
import time
from prometheus_client import Counter, Histogram, start_http_server
c = Counter("checkout", "Checkouts.", ["code"])
c.labels("200").inc(3, exemplar={{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "user": "u1"}})
h = Histogram("latency_seconds", "Latency.", buckets=[0.1, 1.0])
h.observe(0.05, exemplar={{"trace_id": "0af7651916cd43dd8448eb211c80319c"}})
start_http_server({port}, addr="127.0.0.1")
while True:
    time.sleep(1)
"#
    );
    let _py = Proc(
        Command::new(common::python())
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("python"),
    );
    wait_until("the client serves", Duration::from_secs(15), || {
        http_get(port, "/metrics").is_some_and(|(c, _)| c == 200)
    });
    let sink = Sink::start();
    let (health, metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: py
          scrape_interval: 500ms
          static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics}"}}}}
  pipelines:
    metrics: {{receivers: [prometheus], exporters: [otlp]}}
"#,
        sink = sink.port
    );
    let _c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let inst = format!("127.0.0.1:{port}");
    wait_until("a scrape with the counter", Duration::from_secs(20), || {
        of_instance(&resources(&sink), &inst)
            .iter()
            .any(|ms| find(ms, "checkout_total").is_some())
    });
    let scrape = of_instance(&resources(&sink), &inst)
        .into_iter()
        .find(|ms| find(ms, "checkout_total").is_some())
        .unwrap();
    let Some(metric::Data::Sum(sum)) = &find(&scrape, "checkout_total").unwrap().data else {
        panic!("checkout_total is not a sum");
    };
    let e = &sum.data_points[0].exemplars;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        hex::encode(&e[0].trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(hex::encode(&e[0].span_id), "00f067aa0ba902b7");
    assert_eq!(
        str_attr(&e[0].filtered_attributes, "user").as_deref(),
        Some("u1")
    );
    assert_eq!(e[0].value, Some(exemplar::Value::AsDouble(3.0)));
    assert!(e[0].time_unix_nano > 1_600_000_000_000_000_000);
    let Some(metric::Data::Histogram(h)) = &find(&scrape, "latency_seconds").unwrap().data else {
        panic!("latency_seconds is not a histogram");
    };
    let e = &h.data_points[0].exemplars;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        hex::encode(&e[0].trace_id),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(e[0].value, Some(exemplar::Value::AsDouble(0.05)));
}
