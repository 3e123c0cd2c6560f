//! The list-then-watch protocol: list a collection (following `continue`, 500 at a time), then
//! `GET ...?watch=1&resourceVersion=N&allowWatchBookmarks=true` and read newline-delimited
//! `WatchEvent`s; resume from the last version seen when a watch ends, relist when the version
//! is too old (410 Gone), back off while the API cannot be reached. What the events mean is the
//! caller's: it gets them as [`Event`]s.

use std::time::Duration;

use super::ApiConfig;
use super::objects::{List, WatchEvent};

/// A collection to watch.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Its path on the API server (`/api/v1/pods`, `/apis/apps/v1/namespaces/ns/replicasets`).
    pub path: String,
    /// Added to every list and watch (`fieldSelector`, `labelSelector`).
    pub query: Vec<(String, String)>,
}

/// A listed collection, held as each object's JSON text (a tenth of the memory of parsed
/// values): iterating parses one object at a time, so a consumer that reduces what it keeps
/// never holds the whole list parsed.
#[derive(Debug, Default)]
pub struct Items(Vec<Box<serde_json::value::RawValue>>);

impl Items {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for Items {
    type Item = serde_json::Value;
    type IntoIter = std::iter::FilterMap<
        std::vec::IntoIter<Box<serde_json::value::RawValue>>,
        fn(Box<serde_json::value::RawValue>) -> Option<serde_json::Value>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0
            .into_iter()
            .filter_map(|r| serde_json::from_str(r.get()).ok())
    }
}

/// What the watch reports, in order.
#[derive(Debug)]
pub enum Event {
    /// The whole collection (at start and after each relist): replaces what was known.
    Listed(Items),
    /// An object was modified.
    Applied(serde_json::Value),
    /// An object was added (a cache treats it as [`Event::Applied`]).
    Added(serde_json::Value),
    Deleted(serde_json::Value),
    /// Whether the API server answers (false while it cannot be reached).
    Reachable(bool),
}

/// Lists and watches `resource` until the future is dropped, handing every event to `on`.
pub async fn run(
    client: &reqwest::Client,
    api: &ApiConfig,
    resource: &Resource,
    mut on: impl FnMut(Event) + Send,
) {
    run_async(client, api, resource, None, move |e| {
        on(e);
        std::future::ready(())
    })
    .await
}

/// As [`run`], with a handler that may wait (a receiver pushing into its pipeline holds the
/// watch back while the pipeline pushes back), and an optional version to start watching from
/// without a list first (`resource_version` of the Collector's k8sobjects).
pub async fn run_async<F: std::future::Future<Output = ()> + Send>(
    client: &reqwest::Client,
    api: &ApiConfig,
    resource: &Resource,
    from: Option<String>,
    mut on: impl FnMut(Event) -> F + Send,
) {
    let url = format!("{}{}", api.server, resource.path);
    let mut backoff = Duration::from_millis(200);
    let mut rv: Option<String> = from;
    loop {
        let started = std::time::Instant::now();
        let result = match &rv {
            None => list(client, api, &url, &resource.query, &mut on)
                .await
                .map(Some),
            Some(v) => watch(client, api, &url, &resource.query, v, &mut on).await,
        };
        match result {
            Ok(Some(next)) => {
                let watched = rv.is_some();
                rv = Some(next);
                // A watch the server ends at once (a proxy, a server that does not stream)
                // is retried with backoff rather than in a tight loop.
                if watched && started.elapsed() < Duration::from_secs(1) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                } else {
                    backoff = Duration::from_millis(200);
                }
            }
            // 410 Gone: the version is too old; relist.
            Ok(None) => rv = None,
            Err(e) => {
                on(Event::Reachable(false)).await;
                tracing::warn!(resource = %resource.path, error = %e, retry_in = ?backoff, "Kubernetes API unreachable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn request(
    client: &reqwest::Client,
    api: &ApiConfig,
    url: &str,
    query: &[(String, String)],
) -> Result<reqwest::RequestBuilder, String> {
    let url = reqwest::Url::parse_with_params(url, query).map_err(|e| format!("{url}: {e}"))?;
    let mut r = client.get(url).header("Accept", "application/json");
    if let Some(t) = &api.token {
        r = r.bearer_auth(t);
    }
    Ok(r)
}

/// Lists `resource` once (following `continue`): its objects, for a receiver that pulls.
pub async fn list_all(
    client: &reqwest::Client,
    api: &ApiConfig,
    resource: &Resource,
) -> Result<Items, String> {
    let url = format!("{}{}", api.server, resource.path);
    list_items(client, api, &url, &resource.query)
        .await
        .map(|(items, _)| items)
}

/// Every item of a collection (following `continue`, 500 at a time) and the list's version.
async fn list_items(
    client: &reqwest::Client,
    api: &ApiConfig,
    url: &str,
    query: &[(String, String)],
) -> Result<(Items, String), String> {
    let mut items: Vec<Box<serde_json::value::RawValue>> = Vec::new();
    let mut cont: Option<String> = None;
    loop {
        let mut q = query.to_vec();
        q.push(("limit".into(), "500".into()));
        if let Some(c) = &cont {
            q.push(("continue".into(), c.clone()));
        }
        let resp = request(client, api, url, &q)?
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::text::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        let list: List<Box<serde_json::value::RawValue>> =
            serde_json::from_slice(&resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?)
                .map_err(|e| format!("GET {url}: {}", crate::text::error_chain(&e)))?;
        items.extend(list.items);
        match list.metadata.cont.filter(|c| !c.is_empty()) {
            Some(c) => cont = Some(c),
            None => return Ok((Items(items), list.metadata.resource_version)),
        }
    }
}

/// Lists everything and reports it; returns the list's version.
async fn list<F: std::future::Future<Output = ()> + Send>(
    client: &reqwest::Client,
    api: &ApiConfig,
    url: &str,
    query: &[(String, String)],
    on: &mut (impl FnMut(Event) -> F + Send),
) -> Result<String, String> {
    let (items, version) = list_items(client, api, url, query).await?;
    on(Event::Listed(items)).await;
    on(Event::Reachable(true)).await;
    Ok(version)
}

/// Watches from `rv` until the server ends the stream; returns the last version seen, or
/// `None` when it is too old (410) and a relist is needed.
async fn watch<F: std::future::Future<Output = ()> + Send>(
    client: &reqwest::Client,
    api: &ApiConfig,
    url: &str,
    query: &[(String, String)],
    rv: &str,
    on: &mut (impl FnMut(Event) -> F + Send),
) -> Result<Option<String>, String> {
    let mut q = query.to_vec();
    q.extend([
        ("watch".to_string(), "1".to_string()),
        ("resourceVersion".into(), rv.to_owned()),
        ("allowWatchBookmarks".into(), "true".into()),
        ("timeoutSeconds".into(), "300".into()),
    ]);
    let resp = request(client, api, url, &q)?
        .send()
        .await
        .map_err(|e| format!("watch {url}: {}", crate::text::error_chain(&e)))?;
    if resp.status() == reqwest::StatusCode::GONE {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(format!("watch {url}: HTTP {}", resp.status()));
    }
    on(Event::Reachable(true)).await;
    let mut last = rv.to_owned();
    let mut buf: Vec<u8> = Vec::new();
    let mut body = http::Response::from(resp).into_body();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let frame = frame.map_err(|e| format!("watch {url}: {}", crate::text::error_chain(&e)))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let ev: WatchEvent = match serde_json::from_slice(&line) {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable watch event skipped");
                    continue;
                }
            };
            if ev.kind == "ERROR" {
                // A Status object; 410 means the version expired.
                let code = ev.object.get("code").and_then(|c| c.as_u64());
                if code == Some(410) {
                    return Ok(None);
                }
                return Err(format!("watch {url}: error event {}", ev.object));
            }
            if let Some(v) = ev
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(|v| v.as_str())
            {
                last = v.to_owned();
            }
            match ev.kind.as_str() {
                "BOOKMARK" => {}
                "DELETED" => on(Event::Deleted(ev.object)).await,
                "ADDED" => on(Event::Added(ev.object)).await,
                _ => on(Event::Applied(ev.object)).await,
            }
        }
    }
    Ok(Some(last))
}
