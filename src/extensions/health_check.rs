//! `health_check` extension: HTTP 200 while every pipeline runs, 503 while starting or stopping.

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

use crate::health::Health;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default `0.0.0.0:13133`.
    pub endpoint: String,
    /// Default `/`.
    pub path: String,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "0.0.0.0:13133".into(),
            path: "/".into(),
            tls: None,
        }
    }
}

/// `health_check`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::extension("health_check", Stability::Beta, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    let at = |k: &str, m: String| DeError {
        pos: node.get(k).map(|n| n.pos),
        path: vec![k.into()],
        msg: m,
    };
    crate::net::server::validate_endpoint(&cfg.endpoint).map_err(|m| at("endpoint", m))?;
    if !cfg.path.starts_with('/') {
        return Err(at("path", "must start with `/`".into()));
    }
    if let Some(t) = &cfg.tls {
        t.validate().map_err(|m| at("tls", m))?;
    }
    Ok(Box::new(cfg))
}

async fn status(health: Arc<Health>) -> axum::response::Response {
    let (since, started) = health.since();
    if health.is_ready() {
        let up_since = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = serde_json::json!({
            "status": "Server available",
            "upSince": up_since,
            "uptime": format!("{:.3}s", started.elapsed().as_secs_f64()),
        });
        (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    } else {
        let body = serde_json::json!({"status": "Server not available"});
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
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
            let router = axum::Router::new().route(
                &self.path,
                axum::routing::get(move || status(health.clone())),
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
        assert_eq!(
            status(h.clone()).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        h.set_ready();
        assert_eq!(status(h.clone()).await.status(), StatusCode::OK);
        h.set_stopping();
        assert_eq!(
            status(h.clone()).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn config() {
        let n = crate::config::node::parse("endpoint: 127.0.0.1:1\npath: health\n").unwrap();
        assert_eq!(parse(&n).err().unwrap().path_string(), "path");
        assert!(parse(&crate::config::Node::null(Default::default())).is_ok());
    }
}
