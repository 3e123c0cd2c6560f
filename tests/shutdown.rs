//! Graceful shutdown: SIGTERM during steady load; everything acknowledged to clients is
//! delivered before the process exits 0.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Collector, Ports, sink::Sink, wait_until};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

const PER_REQUEST: u64 = 50;

fn request(first: u64) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (first..first + PER_REQUEST)
                    .map(|i| LogRecord {
                        time_unix_nano: i,
                        severity_text: "INFO".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn sigterm_under_load_delivers_everything_acknowledged() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink = Sink::start();
    let p = Ports::new();
    let mut env = p.env();
    env.push((
        "FERROTEL_GATEWAY_ENDPOINT",
        format!("127.0.0.1:{}", sink.port),
    ));
    // The ready agent config as shipped (memory_limiter, batch, otlp_grpc with a queue).
    let mut agent = Collector::start_file(
        &common::repo().join("pipelines/agent.yaml"),
        &env,
        Some(p.health),
        Some(p.metrics),
        tempfile::tempdir().unwrap(),
    );

    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (acked, stop, next) = (acked.clone(), stop.clone(), next.clone());
        let url = format!("http://127.0.0.1:{}", p.grpc);
        tasks.push(rt.spawn(async move {
            let Ok(mut client) = LogsServiceClient::connect(url).await else {
                return;
            };
            while !stop.load(Ordering::SeqCst) {
                let first = next.fetch_add(PER_REQUEST, Ordering::SeqCst);
                match client.export(request(first)).await {
                    Ok(_) => acked.lock().unwrap().extend(first..first + PER_REQUEST),
                    // After SIGTERM the receiver stops accepting: expected, and not acknowledged.
                    Err(_) => return,
                }
            }
        }));
    }
    wait_until("steady load", Duration::from_secs(10), || {
        acked.lock().unwrap().len() > 2000
    });
    let status = agent.terminate();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    assert!(status.success(), "exit status {status}:\n{}", agent.logs());
    let acked = acked.lock().unwrap().clone();
    let mut delivered = HashSet::new();
    for l in sink
        .store
        .logs
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
    {
        assert!(
            delivered.insert(l.time_unix_nano),
            "record {} delivered twice",
            l.time_unix_nano
        );
    }
    let missing: Vec<_> = acked.difference(&delivered).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost, e.g. {missing:?}:\n{}",
        acked.difference(&delivered).count(),
        agent.logs()
    );
    assert!(agent.logs().contains("shutdown complete"));
    rt.shutdown_background();
}
