//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! every `retry_period` a candidate reads the Lease; it takes it when it is free or its holder
//! has not renewed for `lease_duration` (measured on the candidate's own clock from when it
//! last saw the record change, so clocks need not agree), and the leader renews it. Writes carry
//! the `resourceVersion` they read, so of two candidates racing only one wins (the other gets
//! 409 Conflict). A leader that cannot renew within `renew_deadline` steps down; one that stops
//! releases the Lease so a successor need not wait out the duration.
//!
//! The components that run on the leader only find the election through [`Registry`] and run
//! their work under [`while_leader`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ApiConfig;
use crate::config::ComponentId;

/// The election's settings.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// This candidate's name in `holderIdentity`.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// The elections running, by extension id; each a view of whether this process leads.
#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<ComponentId, watch::Receiver<bool>>>,
}

impl Registry {
    pub fn register(&self, id: ComponentId, leading: watch::Receiver<bool>) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, leading);
    }

    /// The election a component names in `k8s_leader_elector`, if it names one; an error
    /// when no such extension runs.
    pub fn lookup(self: &std::sync::Arc<Self>, id: &Option<String>) -> Result<Under, String> {
        match id {
            Some(id) => self.get(id).map(|_| Some((self.clone(), id.clone()))),
            None => Ok(None),
        }
    }

    pub fn get(&self, id: &str) -> Result<watch::Receiver<bool>, String> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .find(|(k, _)| k.to_string() == id)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                format!(
                    "no k8s_leader_elector extension `{id}` is running (list it in `service::extensions`)"
                )
            })
    }
}

/// The election a component runs under: the registry and the extension's id, so that when the
/// extension is restarted (a reload that changed it) the component follows the new one.
pub type Under = Option<(std::sync::Arc<Registry>, String)>;

impl Registry {
    /// The election `id` names, once one whose extension runs is registered (a restarted
    /// extension registers anew); `None` if `stop` comes first.
    async fn live(&self, id: &str, stop: &CancellationToken) -> Option<watch::Receiver<bool>> {
        loop {
            if let Ok(rx) = self.get(id)
                && rx.has_changed().is_ok()
            {
                return Some(rx);
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
    }
}

/// Runs `work` while this process leads (always, without an election): started when
/// leadership is gained, cancelled through its token when it is lost, until `stop`. When the
/// election's extension stops (a reload restarting it), the work stops and waits for the new
/// one.
pub async fn while_leader<F, Fut>(under: Under, stop: CancellationToken, mut work: F)
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some((registry, id)) = under else {
        work(stop.clone()).await;
        return;
    };
    'election: loop {
        let Some(mut leading) = registry.live(&id, &stop).await else {
            return;
        };
        loop {
            // Wait to lead.
            while !*leading.borrow_and_update() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = leading.changed() => if changed.is_err() { continue 'election },
                }
            }
            let token = stop.child_token();
            let task = tokio::spawn(work(token.clone()));
            let mut ended = false;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    changed = leading.changed() => {
                        if changed.is_err() {
                            ended = true;
                            break;
                        }
                        if !*leading.borrow_and_update() {
                            break;
                        }
                    }
                }
            }
            token.cancel();
            let _ = task.await;
            if stop.is_cancelled() {
                return;
            }
            if ended {
                continue 'election;
            }
        }
    }
}

/// What was last seen of the Lease.
struct Seen {
    record: serde_json::Value,
    /// When it last changed, on this clock.
    at: Instant,
}

fn micro_time(t: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
        .unwrap_or_default()
}

fn request(
    client: &reqwest::Client,
    api: &ApiConfig,
    method: reqwest::Method,
    url: &str,
) -> reqwest::RequestBuilder {
    let mut r = client
        .request(method, url)
        .header("Accept", "application/json")
        .timeout(Duration::from_secs(10));
    if let Some(t) = &api.token {
        r = r.bearer_auth(t);
    }
    r
}

/// Outcome of one attempt.
enum Attempt {
    Leading,
    Following,
}

/// Runs the election until `stop`, publishing whether this process leads; on stop, a leader
/// releases the Lease.
pub async fn run(
    client: reqwest::Client,
    api: ApiConfig,
    e: Election,
    leading: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let coll = format!(
        "{}/apis/coordination.k8s.io/v1/namespaces/{}/leases",
        api.server, e.namespace
    );
    let url = format!("{coll}/{}", e.name);
    let mut seen: Option<Seen> = None;
    let mut last_renew = Instant::now();
    loop {
        let r = try_acquire_or_renew(&client, &api, &e, &coll, &url, &mut seen).await;
        let is_leader = *leading.borrow();
        match r {
            Ok(Attempt::Leading) => {
                last_renew = Instant::now();
                if !is_leader {
                    tracing::info!(lease = %e.name, identity = %e.identity, "became the leader");
                    leading.send_replace(true);
                }
            }
            Ok(Attempt::Following) => {
                if is_leader {
                    tracing::warn!(lease = %e.name, "another candidate holds the lease: no longer the leader");
                    leading.send_replace(false);
                }
            }
            Err(err) => {
                tracing::warn!(lease = %e.name, error = %err, "lease not read or renewed");
                if is_leader && last_renew.elapsed() >= e.renew_deadline {
                    tracing::warn!(lease = %e.name, "not renewed within renew_deadline: no longer the leader");
                    leading.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(e.retry_period) => {}
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        if let Err(err) = release(&client, &api, &e, &url, &seen).await {
            tracing::warn!(lease = %e.name, error = %err, "lease not released");
        }
    }
}

async fn try_acquire_or_renew(
    client: &reqwest::Client,
    api: &ApiConfig,
    e: &Election,
    coll: &str,
    url: &str,
    seen: &mut Option<Seen>,
) -> Result<Attempt, String> {
    let now = std::time::SystemTime::now();
    let resp = request(client, api, reqwest::Method::GET, url)
        .send()
        .await
        .map_err(|err| format!("GET {url}: {}", crate::text::error_chain(&err)))?;
    let spec = |acquire: String, transitions: u64| {
        json!({
            "holderIdentity": e.identity,
            "leaseDurationSeconds": e.lease_duration.as_secs().max(1),
            "acquireTime": acquire,
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        })
    };
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        let body = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": e.name, "namespace": e.namespace},
            "spec": spec(micro_time(now), 0),
        });
        return write(client, api, reqwest::Method::POST, coll, &body, seen).await;
    }
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|err| format!("GET {url}: {err}"))?;
    let lease: serde_json::Value =
        serde_json::from_slice(&body).map_err(|err| format!("GET {url}: {err}"))?;
    let record = lease.get("spec").cloned().unwrap_or_default();
    if seen.as_ref().is_none_or(|s| s.record != record) {
        *seen = Some(Seen {
            record: record.clone(),
            at: Instant::now(),
        });
    }
    let holder = record
        .get("holderIdentity")
        .and_then(|h| h.as_str())
        .unwrap_or("");
    let duration = record
        .get("leaseDurationSeconds")
        .and_then(|d| d.as_u64())
        .map_or(e.lease_duration, Duration::from_secs);
    let expired = seen.as_ref().is_none_or(|s| s.at.elapsed() >= duration);
    if !holder.is_empty() && holder != e.identity && !expired {
        return Ok(Attempt::Following);
    }
    let transitions = record
        .get("leaseTransitions")
        .and_then(|t| t.as_u64())
        .unwrap_or(0);
    let (acquire, transitions) = if holder == e.identity {
        (
            record
                .get("acquireTime")
                .and_then(|t| t.as_str())
                .map_or_else(|| micro_time(now), str::to_owned),
            transitions,
        )
    } else {
        (micro_time(now), transitions + 1)
    };
    let mut updated = lease.clone();
    updated["spec"] = spec(acquire, transitions);
    write(client, api, reqwest::Method::PUT, url, &updated, seen).await
}

/// Creates or replaces the Lease; a conflict means another candidate wrote first.
async fn write(
    client: &reqwest::Client,
    api: &ApiConfig,
    method: reqwest::Method,
    url: &str,
    body: &serde_json::Value,
    seen: &mut Option<Seen>,
) -> Result<Attempt, String> {
    let resp = request(client, api, method.clone(), url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|err| format!("{method} {url}: {}", crate::text::error_chain(&err)))?;
    match resp.status() {
        s if s.is_success() => {
            *seen = Some(Seen {
                record: body.get("spec").cloned().unwrap_or_default(),
                at: Instant::now(),
            });
            Ok(Attempt::Leading)
        }
        reqwest::StatusCode::CONFLICT => Ok(Attempt::Following),
        s => Err(format!("{method} {url}: HTTP {s}")),
    }
}

/// Gives the Lease up (holder cleared, duration 1s), as client-go's `ReleaseOnCancel`.
async fn release(
    client: &reqwest::Client,
    api: &ApiConfig,
    e: &Election,
    url: &str,
    seen: &Option<Seen>,
) -> Result<(), String> {
    let resp = request(client, api, reqwest::Method::GET, url)
        .send()
        .await
        .map_err(|err| format!("GET {url}: {}", crate::text::error_chain(&err)))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let body = resp.bytes().await.map_err(|err| err.to_string())?;
    let mut lease: serde_json::Value =
        serde_json::from_slice(&body).map_err(|err| err.to_string())?;
    if lease
        .pointer("/spec/holderIdentity")
        .and_then(|h| h.as_str())
        != Some(&e.identity)
    {
        return Ok(());
    }
    let now = micro_time(std::time::SystemTime::now());
    let transitions = seen
        .as_ref()
        .and_then(|s| s.record.get("leaseTransitions"))
        .cloned()
        .unwrap_or(json!(0));
    lease["spec"] = json!({
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": now,
        "renewTime": now,
        "leaseTransitions": transitions,
    });
    let resp = request(client, api, reqwest::Method::PUT, url)
        .header("Content-Type", "application/json")
        .body(lease.to_string())
        .send()
        .await
        .map_err(|err| format!("PUT {url}: {}", crate::text::error_chain(&err)))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("PUT {url}: HTTP {}", resp.status()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    async fn eventually(what: &str, f: impl Fn() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}");
    }

    #[tokio::test]
    async fn work_follows_leadership_and_a_restarted_election() {
        let registry = Arc::new(Registry::default());
        let id = ComponentId::parse("k8s_leader_elector").unwrap();
        let (tx, rx) = watch::channel(false);
        registry.register(id.clone(), rx);
        let (running, started) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let stop = CancellationToken::new();
        let under = registry.lookup(&Some("k8s_leader_elector".into())).unwrap();
        let (r, s) = (running.clone(), started.clone());
        let task = tokio::spawn(while_leader(under, stop.clone(), move |token| {
            let (r, s) = (r.clone(), s.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                r.fetch_add(1, Ordering::SeqCst);
                token.cancelled().await;
                r.fetch_sub(1, Ordering::SeqCst);
            }
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            0,
            "not leading: not running"
        );
        tx.send_replace(true);
        eventually("runs when leading", || running.load(Ordering::SeqCst) == 1).await;
        tx.send_replace(false);
        eventually("stops when not", || running.load(Ordering::SeqCst) == 0).await;
        tx.send_replace(true);
        eventually("runs again", || started.load(Ordering::SeqCst) == 2).await;
        // The extension restarts: its old election ends, a new one registers and leads.
        drop(tx);
        eventually("stops with its election", || {
            running.load(Ordering::SeqCst) == 0
        })
        .await;
        let (tx2, rx2) = watch::channel(true);
        registry.register(id, rx2);
        eventually("runs under the new election", || {
            started.load(Ordering::SeqCst) == 3 && running.load(Ordering::SeqCst) == 1
        })
        .await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(running.load(Ordering::SeqCst), 0);
        drop(tx2);
        assert!(registry.lookup(&Some("nope".into())).is_err());
    }
}
