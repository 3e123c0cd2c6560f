//! `headers_setter` extension: a client authenticator that sets request headers on an
//! exporter's requests, each from a fixed `value` or `from_context`: a header of the incoming
//! request that this data came with (the receiver's `include_metadata: true`), or
//! `auth.<key>` (what the receiver's authenticator found), with `default_value` when the
//! request had none. The typical use: the tenant header of a multi-tenant backend
//! (`X-Scope-OrgID`) copied from the client's own.
//!
//! The request context travels with the data from the receiver into the exporter's queue, as
//! the Collector's client info does; a `batch` processor in between groups data of several
//! requests, and what it sends has no context (the Collector's `metadata_keys` is not supported
//! yet), so only `value` and `default_value` apply behind one. Records restored from a
//! persistent queue have no context either.

use std::sync::Arc;

use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::net::auth::{AuthError, ClientAuthenticator};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub headers: Vec<HeaderConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderConfig {
    /// The header to set.
    pub key: String,
    /// A fixed value (a secret).
    pub value: Option<String>,
    /// A metadata key of the incoming request (case-insensitive), or `auth.<key>`.
    pub from_context: Option<String>,
    /// When `from_context` finds nothing.
    pub default_value: Option<String>,
    /// `upsert` (default), `insert` and `update` set the header (the outgoing request carries
    /// only the exporter's own `headers`, which it replaces). `delete` is refused.
    pub action: Option<String>,
}

pub const FACTORY: Factory =
    Factory::extension("headers_setter", Stability::Alpha, parse).aliases(&["headerssetter"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.headers.is_empty() {
        return Err(key_err(node, &["headers"], "list at least one header"));
    }
    for (i, h) in cfg.headers.iter().enumerate() {
        let at = |k: &str, m: String| key_err(node, &["headers", &format!("[{i}]"), k], m);
        if http::HeaderName::from_bytes(h.key.as_bytes()).is_err() {
            return Err(at("key", format!("{:?} is not a header name", h.key)));
        }
        if h.value.is_some() == h.from_context.is_some() {
            return Err(at(
                "value",
                "set exactly one of `value` and `from_context`".into(),
            ));
        }
        match h.action.as_deref() {
            None | Some("insert" | "update" | "upsert" | "INSERT" | "UPDATE" | "UPSERT") => {}
            Some(a) => {
                return Err(at(
                    "action",
                    format!("{a:?}: only insert, update and upsert are supported"),
                ));
            }
        }
    }
    Ok(Box::new(cfg))
}

struct Header {
    name: http::HeaderName,
    value: Option<http::HeaderValue>,
    from_context: Option<String>,
    default: Option<http::HeaderValue>,
}

pub struct HeadersSetter {
    headers: Vec<Header>,
}

impl HeadersSetter {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let value = |v: &Option<String>| -> Result<Option<http::HeaderValue>, String> {
            v.as_deref()
                .map(|s| {
                    let mut v = http::HeaderValue::from_str(s)
                        .map_err(|_| "a value that is not a valid header value".to_owned())?;
                    v.set_sensitive(true);
                    Ok(v)
                })
                .transpose()
        };
        let headers = cfg
            .headers
            .iter()
            .map(|h| {
                Ok(Header {
                    name: http::HeaderName::from_bytes(h.key.as_bytes())
                        .map_err(|e| e.to_string())?,
                    value: value(&h.value)?,
                    from_context: h.from_context.clone(),
                    default: value(&h.default_value)?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(HeadersSetter { headers })
    }
}

impl ClientAuthenticator for HeadersSetter {
    fn headers(&self) -> BoxFuture<'_, Result<http::HeaderMap, AuthError>> {
        let mut out = http::HeaderMap::new();
        // Read here, in the send's scope, before the future is boxed.
        crate::client::with(|client| {
            for h in &self.headers {
                let from = h.from_context.as_deref().and_then(|k| {
                    let c = client?;
                    let v = match k.strip_prefix("auth.") {
                        Some(a) => c.auth(a),
                        None => c.metadata(k),
                    }?;
                    http::HeaderValue::from_str(v).ok()
                });
                if let Some(v) = h.value.clone().or(from).or_else(|| h.default.clone()) {
                    out.insert(h.name.clone(), v);
                }
            }
        });
        Box::pin(async move { Ok(out) })
    }
}

impl ExtensionConfig for Config {
    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let a = Arc::new(HeadersSetter::new(&self).map_err(|m| BuildError::new(&ctx.id, m))?);
            ctx.auth.register_client(ctx.id.clone(), a);
            Ok(Box::new(crate::component::Idle) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_come_from_the_request_context_or_the_default() {
        let n = crate::config::node::parse(
            "headers:\n  - {key: X-Scope-OrgID, from_context: x-tenant, default_value: anonymous}\n  - {key: X-Fixed, value: v1}\n  - {key: X-User, from_context: auth.username}\n",
        )
        .unwrap();
        parse(&n).unwrap();
        let cfg: Config = from_node(&n).unwrap();
        let s = HeadersSetter::new(&cfg).unwrap();
        let h = s.headers().await.unwrap();
        assert_eq!(h.get("x-scope-orgid").unwrap(), "anonymous");
        assert_eq!(h.get("x-fixed").unwrap(), "v1");
        assert!(h.get("x-user").is_none());
        let client = crate::client::ClientInfo {
            addr: None,
            metadata: vec![("x-tenant".into(), "acme".into())],
            auth: vec![("username".into(), "alice".into())],
        };
        let h = crate::client::scope(client, async { s.headers().await.unwrap() }).await;
        assert_eq!(h.get("x-scope-orgid").unwrap(), "acme");
        assert_eq!(h.get("x-user").unwrap(), "alice");
    }

    #[test]
    fn delete_and_a_missing_source_are_refused_with_their_key() {
        let n = crate::config::node::parse("headers:\n  - {key: a, action: delete, value: x}\n")
            .unwrap();
        assert_eq!(parse(&n).err().unwrap().path_string(), "headers[0].action");
        let n = crate::config::node::parse("headers:\n  - {key: a}\n").unwrap();
        assert!(parse(&n).is_err());
    }
}
