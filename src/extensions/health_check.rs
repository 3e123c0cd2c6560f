//! `health_check` extension: HTTP 200 while every pipeline runs, 503 while starting or stopping,
//! and, with `check_collector_pipeline`, 503 while an exporter has failed
//! `exporter_failure_threshold` times within `interval`. `?verbose` answers every pipeline's
//! and component's status in healthcheckv2's JSON shape.

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node};
use crate::net::tls::ServerTlsConfig;

use crate::health::{Health, Policy, report_json};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default `0.0.0.0:13133`.
    pub endpoint: String,
    /// Default `/`.
    pub path: String,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
    pub check_collector_pipeline: CheckPipeline,
    /// Bodies to answer instead of the JSON status (`healthy`, `unhealthy`).
    pub response_body: Option<ResponseBody>,
    /// The old form of `endpoint`: listen on `0.0.0.0:<port>`. Deprecated (warns).
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckPipeline {
    /// Default false.
    pub enabled: bool,
    /// The window failures are counted in. Default 5m.
    #[serde(deserialize_with = "crate::config::units::duration")]
    pub interval: std::time::Duration,
    /// Failures of one exporter within `interval` that make the collector unhealthy. Default 5.
    pub exporter_failure_threshold: usize,
}

impl Default for CheckPipeline {
    fn default() -> Self {
        CheckPipeline {
            enabled: false,
            interval: std::time::Duration::from_secs(300),
            exporter_failure_threshold: 5,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseBody {
    pub healthy: String,
    pub unhealthy: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "0.0.0.0:13133".into(),
            path: "/".into(),
            tls: None,
            check_collector_pipeline: CheckPipeline::default(),
            response_body: None,
            port: None,
        }
    }
}

impl Config {
    fn policy(&self) -> Policy {
        let c = &self.check_collector_pipeline;
        Policy {
            failures_within: c
                .enabled
                .then_some((c.exporter_failure_threshold, c.interval)),
            ..Default::default()
        }
    }
}

/// `health_check`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::extension("health_check", Stability::Beta, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let mut cfg: Config = from_node(node)?;
    let at = |k: &str, m: String| DeError {
        pos: node.get(k).map(|n| n.pos),
        path: vec![k.into()],
        msg: m,
    };
    if let Some(port) = cfg.port {
        if node.get("endpoint").is_some() {
            return Err(at(
                "port",
                "set either endpoint or the deprecated port, not both".into(),
            ));
        }
        cfg.endpoint = format!("0.0.0.0:{port}");
        crate::config::warn_key(
            node,
            &["port"],
            format!("deprecated: write `endpoint: 0.0.0.0:{port}` instead"),
        );
    }
    crate::net::server::validate_endpoint(&cfg.endpoint).map_err(|m| at("endpoint", m))?;
    if !cfg.path.starts_with('/') {
        return Err(at("path", "must start with `/`".into()));
    }
    if let Some(t) = &cfg.tls {
        t.validate().map_err(|m| at("tls", m))?;
    }
    Ok(Box::new(cfg))
}

fn json(code: StatusCode, body: String) -> axum::response::Response {
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn status(
    health: Arc<Health>,
    policy: Arc<Policy>,
    body: Option<Arc<ResponseBody>>,
    verbose: bool,
) -> axum::response::Response {
    let (healthy, report) = report_json(&health, &policy, None);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if verbose {
        return json(code, report.to_string());
    }
    if let Some(b) = body {
        let text = if healthy { &b.healthy } else { &b.unhealthy };
        return (code, text.clone()).into_response();
    }
    let (since, started) = health.since();
    if healthy {
        let up_since = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = serde_json::json!({
            "status": "Server available",
            "upSince": up_since,
            "uptime": format!("{:.3}s", started.elapsed().as_secs_f64()),
        });
        json(code, body.to_string())
    } else {
        let mut body = serde_json::json!({"status": "Server not available"});
        if let Some(e) = report.get("error") {
            body["error"] = e.clone();
        }
        json(code, body.to_string())
    }
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
            let health = ctx.health.clone();
            let policy = Arc::new(self.policy());
            let body = self.response_body.clone().map(Arc::new);
            let router = axum::Router::new().route(
                &self.path,
                axum::routing::get(move |uri: axum::http::Uri| {
                    status(
                        health.clone(),
                        policy.clone(),
                        body.clone(),
                        crate::health::query_has(&uri, "verbose"),
                    )
                }),
            );
            let stop = tokio_util::sync::CancellationToken::new();
            tracing::info!(extension = %ctx.id, endpoint = %self.endpoint, "health check listening");
            let task = crate::net::server::serve(listener, tls, router, stop.clone());
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unavailable_until_ready_and_again_while_stopping() {
        let h = Arc::new(Health::default());
        let p = Arc::new(Policy::default());
        let st = |h: &Arc<Health>| status(h.clone(), p.clone(), None, false);
        assert_eq!(st(&h).await.status(), StatusCode::SERVICE_UNAVAILABLE);
        h.set_ready();
        assert_eq!(st(&h).await.status(), StatusCode::OK);
        h.set_stopping();
        assert_eq!(st(&h).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn config() {
        let n = crate::config::node::parse("endpoint: 127.0.0.1:1\npath: health\n").unwrap();
        assert_eq!(parse(&n).err().unwrap().path_string(), "path");
        assert!(parse(&crate::config::Node::null(Default::default())).is_ok());
    }
}
