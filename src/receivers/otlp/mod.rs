//! `otlp` receiver: OTLP over gRPC (default 0.0.0.0:4317) and HTTP (default 0.0.0.0:4318).

mod admit;
mod config;
mod grpc;
mod http;

use admit::Entry;
pub(crate) use admit::{Refused, admit_json, admit_protobuf};
pub use config::*;

use std::sync::Arc;

use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, ReceiverConfig, SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node};

fn de_err(path: &[&str], node: &Node, msg: impl Into<String>) -> DeError {
    let mut pos = Some(node.pos);
    let mut cur = node;
    for p in path {
        match cur.get(p) {
            Some(n) => {
                cur = n;
                pos = Some(n.pos);
            }
            None => break,
        }
    }
    DeError {
        pos,
        path: path.iter().map(|s| s.to_string()).collect(),
        msg: msg.into(),
    }
}

/// `otlp`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory =
    Factory::receiver("otlp", crate::signal::WITH_PROFILES, Stability::Beta, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    let p = &cfg.protocols;
    if p.grpc.is_none() && p.http.is_none() {
        return Err(de_err(
            &["protocols"],
            node,
            "must enable at least one protocol (grpc or http)",
        ));
    }
    if let Some(g) = &p.grpc {
        crate::net::server::validate_endpoint(&g.endpoint)
            .map_err(|m| de_err(&["protocols", "grpc", "endpoint"], node, m))?;
        if g.transport != "tcp" {
            return Err(de_err(
                &["protocols", "grpc", "transport"],
                node,
                "only `tcp` is supported",
            ));
        }
        if !(1..=4095).contains(&g.max_recv_msg_size_mib) {
            return Err(de_err(
                &["protocols", "grpc", "max_recv_msg_size_mib"],
                node,
                "must be between 1 and 4095 (a gRPC message length is 32 bits)",
            ));
        }
        if !(1..=1_000_000).contains(&g.max_connections) {
            return Err(de_err(
                &["protocols", "grpc", "max_connections"],
                node,
                "must be between 1 and 1000000",
            ));
        }
        if g.max_decoded_size_mib == Some(0) {
            return Err(de_err(
                &["protocols", "grpc", "max_decoded_size_mib"],
                node,
                "must be at least 1",
            ));
        }
        if let Some(t) = &g.tls {
            t.validate()
                .map_err(|m| de_err(&["protocols", "grpc", "tls"], node, m))?;
        }
        for (key, set) in [
            ("read_buffer_size", g.read_buffer_size.is_some()),
            ("write_buffer_size", g.write_buffer_size.is_some()),
        ] {
            if set {
                crate::config::warn_key(
                    node,
                    &["protocols", "grpc", key],
                    crate::net::server::BUFFER_SIZE_IGNORED,
                );
            }
        }
    }
    if let Some(h) = &p.http {
        crate::net::server::validate_endpoint(&h.endpoint)
            .map_err(|m| de_err(&["protocols", "http", "endpoint"], node, m))?;
        if let Some(t) = &h.tls {
            t.validate()
                .map_err(|m| de_err(&["protocols", "http", "tls"], node, m))?;
        }
        for (k, v) in &h.response_headers {
            if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || axum::http::HeaderValue::from_str(v).is_err()
            {
                return Err(de_err(
                    &["protocols", "http", "response_headers", k],
                    node,
                    "not a valid header name and value",
                ));
            }
        }
        for a in h.compression_algorithms.iter().flatten() {
            if !matches!(
                a.as_str(),
                "gzip" | "zstd" | "zlib" | "deflate" | "snappy" | "x-snappy-framed" | ""
            ) {
                return Err(de_err(
                    &["protocols", "http", "compression_algorithms"],
                    node,
                    format!(
                        "{a:?}: expected gzip, zstd, zlib, deflate, snappy or x-snappy-framed (lz4 is not supported)"
                    ),
                ));
            }
        }
        for (key, path) in [
            ("traces_url_path", &h.traces_url_path),
            ("metrics_url_path", &h.metrics_url_path),
            ("logs_url_path", &h.logs_url_path),
        ] {
            if !path.starts_with('/') {
                return Err(de_err(
                    &["protocols", "http", key],
                    node,
                    "must start with `/`",
                ));
            }
        }
        if !(1..=(4 << 30)).contains(&h.max_request_body_size) {
            return Err(de_err(
                &["protocols", "http", "max_request_body_size"],
                node,
                "must be between 1 and 4294967296 (4 GiB)",
            ));
        }
        if !(1..=1_000_000).contains(&h.max_connections) {
            return Err(de_err(
                &["protocols", "http", "max_connections"],
                node,
                "must be between 1 and 1000000",
            ));
        }
        if h.max_decoded_size == Some(0) {
            return Err(de_err(
                &["protocols", "http", "max_decoded_size"],
                node,
                "must be positive",
            ));
        }
    }
    Ok(Box::new(cfg))
}

impl ReceiverConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(g) = &self.protocols.grpc {
            v.push(g.endpoint.clone());
        }
        if let Some(h) = &self.protocols.http {
            v.push(h.endpoint.clone());
        }
        v
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
        consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let stop = ctx.shutdown.child_token();
            let mut tasks = Vec::new();
            if let Some(g) = &self.protocols.grpc {
                let entries = entries(&ctx, "grpc", &consumers);
                let (listener, tls) =
                    crate::receivers::listen(&ctx, &g.endpoint, g.tls.as_ref(), "grpc").await?;
                let router = crate::receivers::protect(
                    &ctx,
                    "grpc",
                    g.auth.as_ref(),
                    grpc::router(g, entries),
                )?;
                tracing::info!(receiver = %ctx.id, endpoint = %g.endpoint, tls = tls.is_some(), auth = g.auth.is_some(), "OTLP gRPC listening");
                tasks.push(crate::net::server::serve_with(
                    listener,
                    tls,
                    router,
                    stop.clone(),
                    crate::net::server::Limits::grpc(
                        g.keepalive.as_ref(),
                        g.max_concurrent_streams,
                        g.max_connections,
                    ),
                    ctx.telemetry.connection_metrics(&g.endpoint),
                ));
            }
            if let Some(h) = &self.protocols.http {
                let entries = entries(&ctx, "http", &consumers);
                let (listener, tls) =
                    crate::receivers::listen(&ctx, &h.endpoint, h.tls.as_ref(), "http").await?;
                let router = crate::receivers::protect(
                    &ctx,
                    "http",
                    h.auth.as_ref(),
                    http::router(h, entries),
                )?;
                tracing::info!(receiver = %ctx.id, endpoint = %h.endpoint, tls = tls.is_some(), auth = h.auth.is_some(), "OTLP HTTP listening");
                tasks.push(crate::net::server::serve_with(
                    listener,
                    tls,
                    router,
                    stop.clone(),
                    crate::net::server::Limits::http(
                        h.read_header_timeout,
                        h.idle_timeout,
                        h.max_connections,
                    ),
                    ctx.telemetry.connection_metrics(&h.endpoint),
                ));
            }
            Ok(crate::component::Tasks::new(stop, tasks) as Box<dyn Lifecycle>)
        })
    }
}

fn entries(
    ctx: &Context,
    transport: &str,
    consumers: &SignalConsumers,
) -> [Option<Arc<Entry>>; crate::signal::Signal::COUNT] {
    std::array::from_fn(|i| {
        consumers[i]
            .as_ref()
            .map(|c| Arc::new(Entry::new(ctx, transport, c.clone())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::Batch;
    use admit::reject_invalid;

    #[test]
    fn empty_protocols_get_defaults() {
        let n = yaml("protocols:\n  grpc:\n  http:\n").unwrap();
        let c: Config = from_node(&n).unwrap();
        assert_eq!(c.protocols.grpc.unwrap(), GrpcConfig::default());
        assert_eq!(
            c.protocols.http.unwrap().max_request_body_size,
            20 * 1024 * 1024
        );
    }

    #[test]
    fn validation_names_the_key() {
        let n = yaml("protocols:\n  grpc:\n    endpoint: localhost\n").unwrap();
        let e = parse(&n).err().unwrap();
        assert_eq!(e.path_string(), "protocols.grpc.endpoint");
        assert_eq!(e.pos.unwrap().line, 3);
        let n = yaml("protocols: {}\n").unwrap();
        assert!(
            parse(&n)
                .err()
                .unwrap()
                .msg
                .contains("at least one protocol")
        );
        let n = yaml("protocols:\n  http:\n    max_request_body_size: 1k\n").unwrap();
        assert_eq!(
            parse(&n).err().unwrap().path_string(),
            "protocols.http.max_request_body_size"
        );
    }

    #[test]
    fn invalid_ids_are_rejected_individually() {
        let mut b = crate::signal::testdata::spans("a", 1, 3);
        if let Batch::Traces(rs) = &mut b {
            rs[0].scope_spans[0].spans[1].span_id = vec![1, 2, 3];
        }
        let (n, why) = reject_invalid(&mut b);
        assert_eq!((n, b.item_count()), (1, 2));
        assert!(why.contains("\"s2\""), "{why}");
    }
}
