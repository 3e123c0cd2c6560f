//! The collector's health: its state (starting, ready, stopping) and every component's status
//! in the Collector's component status model (`StatusStarting`, `StatusOK`,
//! `StatusRecoverableError`, `StatusPermanentError`, `StatusStopping`, ...), set by the service
//! and by exporters as their sends succeed or fail, and read by the health extensions.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

/// A component's status, as the Collector names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Starting,
    Stopping,
    Stopped,
    RecoverableError,
    PermanentError,
    FatalError,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "StatusOK",
            Status::Starting => "StatusStarting",
            Status::Stopping => "StatusStopping",
            Status::Stopped => "StatusStopped",
            Status::RecoverableError => "StatusRecoverableError",
            Status::PermanentError => "StatusPermanentError",
            Status::FatalError => "StatusFatalError",
        }
    }
}

/// The most failure times kept per component (for `check_collector_pipeline`'s threshold).
const MAX_FAILURE_TIMES: usize = 1024;

#[derive(Debug, Clone)]
pub struct ComponentHealth {
    pub status: Status,
    pub error: Option<String>,
    /// When the status last changed.
    pub since: SystemTime,
    pub since_mono: Instant,
    /// When recent sends failed, oldest first.
    pub failures: VecDeque<Instant>,
}

/// Each pipeline (`pipeline:traces`) with its components' keys.
pub type Pipelines = Vec<(String, Vec<String>)>;

/// The collector's state as the health extensions report it.
pub struct Health {
    state: AtomicU8,
    since: Mutex<(SystemTime, Instant)>,
    started: SystemTime,
    /// By `kind:id` (`exporter:otlp_grpc/backend`).
    components: Mutex<BTreeMap<String, ComponentHealth>>,
    /// `pipeline:traces` and the components it is made of.
    pipelines: Mutex<Pipelines>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: AtomicU8::new(STARTING),
            since: Mutex::new((SystemTime::now(), Instant::now())),
            started: SystemTime::now(),
            components: Mutex::default(),
            pipelines: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Health {
    pub fn set_ready(&self) {
        *lock(&self.since) = (SystemTime::now(), Instant::now());
        self.state.store(READY, Ordering::SeqCst);
    }
    pub fn set_stopping(&self) {
        self.state.store(STOPPING, Ordering::SeqCst);
        for c in lock(&self.components).values_mut() {
            if c.status < Status::RecoverableError {
                set(c, Status::Stopping, None);
            }
        }
    }
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::SeqCst) == READY
    }
    /// When the collector last became ready (wall clock and monotonic).
    pub fn since(&self) -> (SystemTime, Instant) {
        *lock(&self.since)
    }
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The pipelines now running and their components (`receiver:otlp`, `processor:batch`,
    /// `exporter:otlp_grpc`); each listed component starts at `StatusOK` unless it reported.
    pub fn set_pipelines(&self, pipelines: Pipelines) {
        {
            let mut comps = lock(&self.components);
            let now = (SystemTime::now(), Instant::now());
            for key in pipelines.iter().flat_map(|(_, cs)| cs) {
                comps.entry(key.clone()).or_insert_with(|| ComponentHealth {
                    status: Status::Ok,
                    error: None,
                    since: now.0,
                    since_mono: now.1,
                    failures: VecDeque::new(),
                });
            }
            let listed: std::collections::BTreeSet<&String> =
                pipelines.iter().flat_map(|(_, cs)| cs).collect();
            comps.retain(|k, _| listed.contains(k) || k.starts_with("extension:"));
        }
        *lock(&self.pipelines) = pipelines;
    }

    /// The handle a component reports its status through.
    pub fn reporter(self: &Arc<Self>, kind: &str, id: &str) -> Reporter {
        Reporter {
            health: self.clone(),
            key: format!("{kind}:{id}"),
            failing: AtomicBool::new(false),
        }
    }

    /// An extension has started: listed as running (`extension:<id>`).
    pub fn extension_started(&self, id: &str) {
        self.report(&format!("extension:{id}"), Status::Ok, None, false);
    }

    fn report(&self, key: &str, status: Status, error: Option<String>, failure: bool) {
        let mut comps = lock(&self.components);
        let c = comps
            .entry(key.to_owned())
            .or_insert_with(|| ComponentHealth {
                status,
                error: None,
                since: SystemTime::now(),
                since_mono: Instant::now(),
                failures: VecDeque::new(),
            });
        if failure {
            if c.failures.len() == MAX_FAILURE_TIMES {
                c.failures.pop_front();
            }
            c.failures.push_back(Instant::now());
        }
        if c.status != status {
            set(c, status, error);
        } else if error.is_some() {
            c.error = error;
        }
    }

    /// Every component's status, and the pipelines.
    pub fn snapshot(&self) -> (BTreeMap<String, ComponentHealth>, Pipelines) {
        (
            lock(&self.components).clone(),
            lock(&self.pipelines).clone(),
        )
    }
}

fn set(c: &mut ComponentHealth, status: Status, error: Option<String>) {
    c.status = status;
    c.error = error;
    c.since = SystemTime::now();
    c.since_mono = Instant::now();
}

/// One component's status reports. `ok` after a success is one atomic load unless the
/// component was failing.
pub struct Reporter {
    health: Arc<Health>,
    key: String,
    failing: AtomicBool,
}

impl Reporter {
    pub fn ok(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            self.health.report(&self.key, Status::Ok, None, false);
        }
    }
    /// A failure that may pass (a retryable send error). The status keeps the time of the first
    /// failure in a row, so "failing for how long" can be told.
    pub fn recoverable(&self, error: &str) {
        self.failing.store(true, Ordering::Release);
        self.health.report(
            &self.key,
            Status::RecoverableError,
            Some(error.to_owned()),
            true,
        );
    }
    /// A failure that will not pass by retrying (data was dropped for it).
    pub fn permanent(&self, error: &str) {
        self.failing.store(true, Ordering::Release);
        self.health.report(
            &self.key,
            Status::PermanentError,
            Some(error.to_owned()),
            true,
        );
    }
}

/// When a component's status makes the collector unhealthy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// healthcheckv2's `include_recoverable_errors` with `recovery_duration`: a recoverable
    /// error lasting longer is unhealthy.
    pub recoverable_after: Option<Duration>,
    /// healthcheckv2's `include_permanent_errors`.
    pub permanent: bool,
    /// health_check's `check_collector_pipeline`: this many failures of one exporter within
    /// the interval are unhealthy.
    pub failures_within: Option<(usize, Duration)>,
}

impl Policy {
    pub fn healthy(&self, c: &ComponentHealth, now: Instant) -> bool {
        match c.status {
            Status::FatalError => return false,
            Status::PermanentError if self.permanent => return false,
            Status::RecoverableError => {
                if let Some(after) = self.recoverable_after
                    && now.duration_since(c.since_mono) >= after
                {
                    return false;
                }
            }
            _ => {}
        }
        if let Some((n, within)) = self.failures_within {
            let recent = c
                .failures
                .iter()
                .filter(|t| now.duration_since(**t) <= within)
                .count();
            if n > 0 && recent >= n {
                return false;
            }
        }
        true
    }
}

/// Whether a request's query has `name` (`?verbose`, `?verbose=true`, `?a=1&verbose`).
pub fn query_has(uri: &http::Uri, name: &str) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some(name) && !kv.ends_with("=false"))
    })
}

/// The verbose view, in healthcheckv2's shape: the collector, each pipeline, each component.
pub fn report_json(
    health: &Health,
    policy: &Policy,
    pipeline: Option<&str>,
) -> (bool, serde_json::Value) {
    let (comps, pipelines) = health.snapshot();
    let now = Instant::now();
    let entry = |c: &ComponentHealth| {
        let mut v = serde_json::json!({
            "healthy": policy.healthy(c, now),
            "status": c.status.name(),
            "status_time": crate::text::rfc3339(c.since),
        });
        if let Some(e) = &c.error {
            v["error"] = e.clone().into();
        }
        v
    };
    let mut all_healthy = health.is_ready();
    let mut worst: Option<&ComponentHealth> = None;
    let mut out = serde_json::Map::new();
    for (name, members) in &pipelines {
        if pipeline.is_some_and(|p| name != &format!("pipeline:{p}") && name != p) {
            continue;
        }
        let mut inner = serde_json::Map::new();
        let mut p_healthy = true;
        let mut p_worst: Option<&ComponentHealth> = None;
        for m in members {
            let Some(c) = comps.get(m) else { continue };
            p_healthy &= policy.healthy(c, now);
            if p_worst.is_none_or(|w| c.status > w.status) {
                p_worst = Some(c);
            }
            inner.insert(m.clone(), entry(c));
        }
        all_healthy &= p_healthy;
        if let Some(w) = p_worst
            && worst.is_none_or(|x| w.status > x.status)
        {
            worst = Some(w);
        }
        let mut pv = serde_json::json!({
            "healthy": p_healthy,
            "status": p_worst.map_or("StatusOK", |w| w.status.name()),
            "status_time": crate::text::rfc3339(p_worst.map_or(health.since().0, |w| w.since)),
            "components": inner,
        });
        if let Some(e) = p_worst.and_then(|w| w.error.clone()) {
            pv["error"] = e.into();
        }
        out.insert(name.clone(), pv);
    }
    let status = if !health.is_ready() {
        if health.state.load(Ordering::SeqCst) == STOPPING {
            "StatusStopping"
        } else {
            "StatusStarting"
        }
    } else {
        worst.map_or("StatusOK", |w| w.status.name())
    };
    let mut v = serde_json::json!({
        "start_time": crate::text::rfc3339(health.started),
        "healthy": all_healthy,
        "status": status,
        "status_time": crate::text::rfc3339(worst.map_or(health.since().0, |w| w.since)),
        "components": out,
    });
    if let Some(e) = worst.and_then(|w| w.error.clone()) {
        v["error"] = e.into();
    }
    (all_healthy, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recoverable_error_is_unhealthy_only_after_its_duration() {
        let h = Arc::new(Health::default());
        h.set_pipelines(vec![(
            "pipeline:traces".into(),
            vec!["receiver:otlp".into(), "exporter:otlp_grpc".into()],
        )]);
        h.set_ready();
        let policy = Policy {
            recoverable_after: Some(Duration::from_millis(50)),
            ..Default::default()
        };
        let r = h.reporter("exporter", "otlp_grpc");
        r.ok();
        assert!(report_json(&h, &policy, None).0);
        r.recoverable("connect: connection refused");
        let (healthy, v) = report_json(&h, &policy, None);
        assert!(healthy, "{v}");
        assert_eq!(v["status"], "StatusRecoverableError");
        std::thread::sleep(Duration::from_millis(60));
        r.recoverable("connect: connection refused");
        let (healthy, v) = report_json(&h, &policy, None);
        assert!(!healthy, "{v}");
        let e = &v["components"]["pipeline:traces"]["components"]["exporter:otlp_grpc"];
        assert_eq!(e["error"], "connect: connection refused");
        assert_eq!(e["healthy"], false);
        assert_eq!(
            v["components"]["pipeline:traces"]["components"]["receiver:otlp"]["status"],
            "StatusOK"
        );
        r.ok();
        assert!(report_json(&h, &policy, None).0);
        // The failure-count policy.
        // The failure-count policy: two failures so far, six within the interval are unhealthy.
        let count = Policy {
            failures_within: Some((6, Duration::from_secs(60))),
            ..Default::default()
        };
        r.recoverable("x");
        r.recoverable("x");
        assert!(report_json(&h, &count, None).0);
        r.recoverable("x");
        r.recoverable("x");
        assert!(!report_json(&h, &count, None).0);
    }
}
