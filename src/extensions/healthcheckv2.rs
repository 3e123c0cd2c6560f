//! `healthcheckv2` extension (the Collector contrib's Health Check Extension V2), HTTP service:
//! `GET <http.status.path>` answers the collector's aggregate status from the component status
//! model, `?pipeline=traces` one pipeline's, `?verbose` every component's. 200 while healthy,
//! 500 once a component's error counts (`include_recoverable_errors` after
//! `recovery_duration`, `include_permanent_errors`), 503 while starting or stopping.
//!
//! Not here: the gRPC service (`grpc`), the config endpoint (`http.config.enabled`), and the V1
//! mode (`use_v2: false`; use `health_check`). Each is refused at validation.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err, units};
use crate::health::{Health, Policy, query_has, report_json};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Must be true: the V1 mode is `health_check`'s.
    pub use_v2: bool,
    pub component_health: ComponentHealth,
    pub http: Http,
    /// Refused: the gRPC health service is not implemented.
    pub grpc: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentHealth {
    /// A permanent error makes the collector unhealthy. Default false.
    pub include_permanent_errors: bool,
    /// A recoverable error lasting `recovery_duration` makes it unhealthy. Default false.
    pub include_recoverable_errors: bool,
    /// Default 5m.
    #[serde(deserialize_with = "units::duration")]
    pub recovery_duration: Duration,
}

impl Default for ComponentHealth {
    fn default() -> Self {
        ComponentHealth {
            include_permanent_errors: false,
            include_recoverable_errors: false,
            recovery_duration: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Default `localhost:13133`.
    pub endpoint: String,
    pub status: PathSetting,
    /// The config endpoint; `enabled: true` is refused.
    pub config: PathSetting,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            endpoint: "localhost:13133".into(),
            status: PathSetting {
                enabled: true,
                path: "/status".into(),
            },
            config: PathSetting {
                enabled: false,
                path: "/config".into(),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PathSetting {
    pub enabled: bool,
    pub path: String,
}

impl Default for PathSetting {
    fn default() -> Self {
        PathSetting {
            enabled: true,
            path: "/status".into(),
        }
    }
}

/// `healthcheckv2`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::extension("healthcheckv2", Stability::Alpha, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if !cfg.use_v2 {
        return Err(key_err(
            node,
            &["use_v2"],
            "only the V2 mode is implemented: set `use_v2: true`, or use the `health_check` extension for V1",
        ));
    }
    if cfg.grpc.is_some() {
        return Err(key_err(
            node,
            &["grpc"],
            "the gRPC health service is not implemented; use `http`",
        ));
    }
    if cfg.http.config.enabled {
        return Err(key_err(
            node,
            &["http", "config", "enabled"],
            "the config endpoint is not implemented (`ferrotel print-config` shows the config)",
        ));
    }
    crate::net::server::validate_endpoint(&cfg.http.endpoint)
        .map_err(|m| key_err(node, &["http", "endpoint"], m))?;
    if !cfg.http.status.path.starts_with('/') {
        return Err(key_err(
            node,
            &["http", "status", "path"],
            "must start with `/`",
        ));
    }
    Ok(Box::new(cfg))
}

impl Config {
    fn policy(&self) -> Policy {
        let c = &self.component_health;
        Policy {
            recoverable_after: c.include_recoverable_errors.then_some(c.recovery_duration),
            permanent: c.include_permanent_errors,
            failures_within: None,
        }
    }
}

fn pipeline_of(uri: &axum::http::Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("pipeline="))
        .map(str::to_owned)
}

async fn status(
    health: Arc<Health>,
    policy: Arc<Policy>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    let pipeline = pipeline_of(&uri);
    let (_, mut report) = report_json(&health, &policy, pipeline.as_deref());
    if let Some(p) = &pipeline {
        // A pipeline's view is the pipeline's entry, zoomed in.
        let key = if p.starts_with("pipeline:") {
            p.clone()
        } else {
            format!("pipeline:{p}")
        };
        match report["components"].get(&key).cloned() {
            Some(mut pv) => {
                pv["start_time"] = report["start_time"].clone();
                report = pv;
            }
            None => {
                return (StatusCode::NOT_FOUND, format!("no pipeline {p:?}")).into_response();
            }
        }
    }
    if !query_has(&uri, "verbose")
        && let Some(o) = report.as_object_mut()
    {
        o.remove("components");
    }
    let code = if !health.is_ready() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if report["healthy"] == true {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (
        code,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        report.to_string(),
    )
        .into_response()
}

impl ExtensionConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        vec![self.http.endpoint.clone()]
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let endpoint = self.http.endpoint.clone();
            let listener = crate::net::server::bind(&endpoint).await.map_err(|e| {
                BuildError::new(&ctx.id, format!("cannot listen on {endpoint}: {e}"))
            })?;
            let health = ctx.health.clone();
            let policy = Arc::new(self.policy());
            let mut router = axum::Router::new();
            if self.http.status.enabled {
                router = router.route(
                    &self.http.status.path,
                    axum::routing::get(move |uri: axum::http::Uri| {
                        status(health.clone(), policy.clone(), uri)
                    }),
                );
            }
            let stop = tokio_util::sync::CancellationToken::new();
            tracing::info!(extension = %ctx.id, endpoint = %endpoint, "health check (v2) listening");
            let task = crate::net::server::serve(listener, None, router, stop.clone());
            Ok(crate::component::Tasks::new(stop, vec![task]) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_implemented_parts_are_accepted() {
        let p = |t: &str| parse(&crate::config::node::parse(t).unwrap());
        assert!(p("use_v2: true\n").is_ok());
        assert_eq!(
            p("component_health: {}\n").err().unwrap().path_string(),
            "use_v2"
        );
        assert_eq!(
            p("use_v2: true\ngrpc: {endpoint: x}\n")
                .err()
                .unwrap()
                .path_string(),
            "grpc"
        );
        assert_eq!(
            p("use_v2: true\nhttp: {config: {enabled: true}}\n")
                .err()
                .unwrap()
                .path_string(),
            "http.config.enabled"
        );
    }
}
