//! `zpages` extension: the Collector's in-process debug pages, as HTML, on `localhost:55679`
//! by default (they are for an operator's port-forward, not for the network):
//!
//! - `/debug/servicez`: version, start time, uptime, and links to the others;
//! - `/debug/pipelinez`: each pipeline and its receivers, processors and exporters with their
//!   status (what the health extensions report);
//! - `/debug/extensionz`: the extensions and their status;
//! - `/debug/featurez`: the feature gates ferrotel knows, their stage and description;
//! - `/debug/tracez`: the Collector shows its own recent spans here; ferrotel does not trace
//!   itself, and the page says so.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::response::{Html, IntoResponse};
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::health::Health;
use crate::net::tls::ServerTlsConfig;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default `localhost:55679`.
    pub endpoint: String,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "localhost:55679".into(),
            tls: None,
        }
    }
}

/// `zpages`' identity.
pub const FACTORY: Factory = Factory::extension("zpages", Stability::Beta, parse);

fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    crate::net::server::validate_endpoint(&cfg.endpoint)
        .map_err(|m| key_err(node, &["endpoint"], m))?;
    if let Some(t) = &cfg.tls {
        t.validate().map_err(|m| key_err(node, &["tls"], m))?;
    }
    Ok(Box::new(cfg))
}

/// Text for HTML: names in a config may hold `<` or `&`.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head><body>\n<h1>{t}</h1>\n<p><a href=\"/debug/servicez\">servicez</a> · <a href=\"/debug/pipelinez\">pipelinez</a> · <a href=\"/debug/extensionz\">extensionz</a> · <a href=\"/debug/featurez\">featurez</a> · <a href=\"/debug/tracez\">tracez</a></p>\n{body}</body></html>\n",
        t = esc(title)
    ))
}

fn status_of(health: &Health, key: &str) -> (String, String) {
    let (comps, _) = health.snapshot();
    match comps.get(key) {
        Some(c) => (
            c.status.name().to_string(),
            c.error.clone().unwrap_or_default(),
        ),
        None => ("unknown".into(), String::new()),
    }
}

fn servicez(health: &Health) -> Html<String> {
    let started = health.started();
    let secs = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let start = jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let uptime = SystemTime::now()
        .duration_since(started)
        .map_or(0, |d| d.as_secs());
    let body = format!(
        "<table>\n<tr><td>Service</td><td>ferrotel</td></tr>\n<tr><td>Version</td><td>{}</td></tr>\n<tr><td>Started</td><td>{start}</td></tr>\n<tr><td>Uptime</td><td>{uptime}s</td></tr>\n<tr><td>Ready</td><td>{}</td></tr>\n</table>\n",
        env!("CARGO_PKG_VERSION"),
        health.is_ready()
    );
    page("Service", &body)
}

fn pipelinez(health: &Health) -> Html<String> {
    let (comps, pipelines) = health.snapshot();
    let mut body = String::from(
        "<table border=\"1\">\n<tr><th>Pipeline</th><th>Kind</th><th>Component</th><th>Status</th><th>Error</th></tr>\n",
    );
    for (pipeline, members) in &pipelines {
        let name = pipeline.strip_prefix("pipeline:").unwrap_or(pipeline);
        for m in members {
            let (kind, id) = m.split_once(':').unwrap_or(("", m));
            let (status, error) = comps.get(m).map_or(("unknown".into(), String::new()), |c| {
                (
                    c.status.name().to_string(),
                    c.error.clone().unwrap_or_default(),
                )
            });
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(kind),
                esc(id),
                esc(&status),
                esc(&error)
            );
        }
    }
    body.push_str("</table>\n");
    page("Pipelines", &body)
}

fn extensionz(health: &Health) -> Html<String> {
    let (comps, _) = health.snapshot();
    let mut body = String::from(
        "<table border=\"1\">\n<tr><th>Extension</th><th>Status</th><th>Error</th></tr>\n",
    );
    for key in comps.keys().filter(|k| k.starts_with("extension:")) {
        let (status, error) = status_of(health, key);
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&key["extension:".len()..]),
            esc(&status),
            esc(&error)
        );
    }
    body.push_str("</table>\n");
    page("Extensions", &body)
}

fn featurez() -> Html<String> {
    let mut body = String::from(
        "<p>Gates are set with <code>--feature-gates</code>; the default is on from beta.</p>\n<table border=\"1\">\n<tr><th>ID</th><th>Stage</th><th>On by default</th><th>Description</th></tr>\n",
    );
    for g in crate::featuregate::GATES {
        let stage = format!("{:?}", g.stage);
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(g.id),
            esc(&stage),
            g.stage != crate::featuregate::Stage::Alpha,
            esc(g.description)
        );
    }
    body.push_str("</table>\n");
    page("Feature gates", &body)
}

fn tracez() -> Html<String> {
    page(
        "Traces",
        "<p>ferrotel does not trace itself, so there are no recent spans of its own to show. Its own telemetry is metrics (service::telemetry::metrics) and logs.</p>\n",
    )
}

impl ExtensionConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let tls = self
                .tls
                .as_ref()
                .map(|t| t.build())
                .transpose()
                .map_err(|e| BuildError::new(&ctx.id, e))?;
            let listener = crate::net::server::bind(&self.endpoint)
                .await
                .map_err(|e| {
                    BuildError::new(&ctx.id, format!("cannot listen on {}: {e}", self.endpoint))
                })?;
            let h: Arc<Health> = ctx.health.clone();
            let (h1, h2, h3) = (h.clone(), h.clone(), h);
            let router = axum::Router::new()
                .route(
                    "/debug/servicez",
                    axum::routing::get(move || {
                        let h = h1.clone();
                        async move { servicez(&h).into_response() }
                    }),
                )
                .route(
                    "/debug/pipelinez",
                    axum::routing::get(move || {
                        let h = h2.clone();
                        async move { pipelinez(&h).into_response() }
                    }),
                )
                .route(
                    "/debug/extensionz",
                    axum::routing::get(move || {
                        let h = h3.clone();
                        async move { extensionz(&h).into_response() }
                    }),
                )
                .route(
                    "/debug/featurez",
                    axum::routing::get(|| async { featurez() }),
                )
                .route("/debug/tracez", axum::routing::get(|| async { tracez() }));
            tracing::info!(extension = %ctx.id, endpoint = %self.endpoint, "zPages listening");
            let stop = ctx.shutdown.child_token();
            let task = crate::net::server::serve(listener, tls, router, stop.clone());
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn config_and_pages() {
        let c: Config = from_node(&yaml("{}").unwrap()).unwrap();
        assert_eq!(c.endpoint, "localhost:55679");
        assert_eq!(
            parse(&yaml("endpoint: x\n").unwrap())
                .err()
                .unwrap()
                .path_string(),
            "endpoint"
        );
        let health = Health::default();
        health.set_pipelines(vec![(
            "pipeline:traces/<x>".into(),
            vec!["receiver:otlp".into(), "exporter:debug".into()],
        )]);
        let Html(p) = pipelinez(&health);
        assert!(
            p.contains("<td>traces/&lt;x&gt;</td><td>receiver</td><td>otlp</td><td>StatusOK</td>"),
            "{p}"
        );
        let Html(f) = featurez();
        assert!(f.contains(crate::featuregate::MERGE_APPEND));
        assert!(tracez().0.contains("does not trace itself"));
    }
}
