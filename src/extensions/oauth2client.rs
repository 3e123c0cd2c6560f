//! `oauth2client` extension: a client authenticator for the OAuth 2.0 client credentials grant
//! (RFC 6749 §4.4). It asks `token_url` for an access token (`grant_type=client_credentials`,
//! the client authenticated with HTTP Basic as §2.3.1 recommends, falling back to the
//! credentials in the body if the server refuses that, as golang.org/x/oauth2 does), keeps the
//! token until `expiry_buffer` before it expires, and sends `Authorization: <token_type>
//! <access_token>` with every request. One fetch at a time: concurrent requests wait for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err, units};
use crate::net::auth::{AuthError, ClientAuthenticator};
use crate::net::tls::ClientTlsConfig;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The token endpoint.
    pub token_url: String,
    pub client_id: String,
    /// Read again for each new token (takes precedence over `client_id`).
    pub client_id_file: Option<PathBuf>,
    /// A secret.
    pub client_secret: String,
    /// Read again for each new token (takes precedence over `client_secret`).
    pub client_secret_file: Option<PathBuf>,
    /// Extra form parameters of the token request (e.g. `audience`); a value or a list.
    pub endpoint_params: BTreeMap<String, ParamValue>,
    pub scopes: Vec<String>,
    /// Of each token request; 0 = none. Default 0.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// A token is renewed this long before it expires. Default 10s (golang.org/x/oauth2's).
    #[serde(deserialize_with = "units::opt_duration")]
    pub expiry_buffer: Option<Duration>,
    pub tls: ClientTlsConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ParamValue {
    One(String),
    Many(Vec<String>),
}

pub const FACTORY: Factory = Factory::extension("oauth2client", Stability::Beta, parse)
    .aliases(&["oauth2_client", "oauth2clientauth"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    match url::Url::parse(&cfg.token_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(key_err(
                node,
                &["token_url"],
                format!("{:?} is not an http(s) URL", cfg.token_url),
            ));
        }
    }
    if cfg.client_id.is_empty() && cfg.client_id_file.is_none() {
        return Err(key_err(
            node,
            &["client_id"],
            "set `client_id` or `client_id_file`",
        ));
    }
    if cfg.client_secret.is_empty() && cfg.client_secret_file.is_none() {
        return Err(key_err(
            node,
            &["client_secret"],
            "set `client_secret` or `client_secret_file`",
        ));
    }
    cfg.tls.validate().map_err(|m| key_err(node, &["tls"], m))?;
    Ok(Box::new(cfg))
}

/// The RFC 6749 §5.1 access token response (the fields used).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Token {
    header: http::HeaderValue,
    /// None: the server gave no lifetime; kept until a request is refused.
    renew_at: Option<Instant>,
}

pub struct OAuth2Client {
    cfg: Config,
    http: reqwest::Client,
    token: Mutex<Option<Token>>,
}

fn read_trimmed(path: &PathBuf) -> Result<String, AuthError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| AuthError(format!("cannot read {}: {e}", path.display())))
}

impl OAuth2Client {
    pub fn new(cfg: Config) -> Result<Self, String> {
        let http = crate::net::client::http_client_with(
            &cfg.tls,
            &BTreeMap::new(),
            &crate::net::client::HttpOptions::default(),
        )?;
        Ok(OAuth2Client {
            cfg,
            http,
            token: Mutex::new(None),
        })
    }

    fn form(&self, id: &str, secret: Option<&str>) -> Vec<(String, String)> {
        let mut f = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
        if !self.cfg.scopes.is_empty() {
            f.push(("scope".into(), self.cfg.scopes.join(" ")));
        }
        for (k, v) in &self.cfg.endpoint_params {
            match v {
                ParamValue::One(s) => f.push((k.clone(), s.clone())),
                ParamValue::Many(vs) => f.extend(vs.iter().map(|s| (k.clone(), s.clone()))),
            }
        }
        if let Some(secret) = secret {
            f.push(("client_id".into(), id.to_owned()));
            f.push(("client_secret".into(), secret.to_owned()));
        }
        f
    }

    async fn fetch(&self) -> Result<Token, AuthError> {
        let id = match &self.cfg.client_id_file {
            Some(p) => read_trimmed(p)?,
            None => self.cfg.client_id.clone(),
        };
        let secret = match &self.cfg.client_secret_file {
            Some(p) => read_trimmed(p)?,
            None => self.cfg.client_secret.clone(),
        };
        // Client authentication in the header first (§2.3.1), then in the body.
        let mut last = String::new();
        for in_body in [false, true] {
            let mut rb = self
                .http
                .post(&self.cfg.token_url)
                .header(http::header::ACCEPT, "application/json")
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(self.form(&id, in_body.then_some(secret.as_str())))
                        .finish(),
                );
            if !in_body {
                // RFC 6749 §2.3.1: both form-urlencoded before the Basic encoding.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                rb = rb.basic_auth(enc(&id), Some(enc(&secret)));
            }
            if !self.cfg.timeout.is_zero() {
                rb = rb.timeout(self.cfg.timeout);
            }
            let resp = rb.send().await.map_err(|e| {
                AuthError(format!(
                    "token request to {}: {}",
                    self.cfg.token_url,
                    crate::text::error_chain(&e)
                ))
            })?;
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
                    AuthError(format!("token response from {}: {e}", self.cfg.token_url))
                })?;
                let kind = t.token_type.unwrap_or_else(|| "Bearer".into());
                // RFC 6750: the scheme is `Bearer` whatever case the server wrote.
                let kind = if kind.eq_ignore_ascii_case("bearer") {
                    "Bearer".to_owned()
                } else {
                    kind
                };
                let mut header = http::HeaderValue::from_str(&format!("{kind} {}", t.access_token))
                    .map_err(|_| {
                        AuthError("the access token is not a valid header value".into())
                    })?;
                header.set_sensitive(true);
                let buffer = self.cfg.expiry_buffer.unwrap_or(Duration::from_secs(10));
                let renew_at = t
                    .expires_in
                    .map(|s| Instant::now() + Duration::from_secs(s).saturating_sub(buffer));
                tracing::debug!(token_url = %self.cfg.token_url, expires_in = ?t.expires_in, "oauth2client: new access token");
                return Ok(Token { header, renew_at });
            }
            // The error response (§5.2) names the error; its description is the server's, not ours.
            let err = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            last = format!(
                "token endpoint {} answered {status} {err}",
                self.cfg.token_url
            );
            if !(status == http::StatusCode::BAD_REQUEST
                || status == http::StatusCode::UNAUTHORIZED)
            {
                break;
            }
        }
        Err(AuthError(last))
    }
}

impl ClientAuthenticator for OAuth2Client {
    fn headers(&self) -> BoxFuture<'_, Result<http::HeaderMap, AuthError>> {
        Box::pin(async move {
            // Held across the fetch on purpose (a tokio mutex): concurrent senders wait for one
            // token request instead of each making their own.
            let mut cur = self.token.lock().await;
            let fresh = cur
                .as_ref()
                .is_some_and(|t| t.renew_at.is_none_or(|at| Instant::now() < at));
            if !fresh {
                *cur = Some(self.fetch().await?);
            }
            let mut h = http::HeaderMap::new();
            if let Some(t) = cur.as_ref() {
                h.insert(http::header::AUTHORIZATION, t.header.clone());
            }
            Ok(h)
        })
    }
}

impl ExtensionConfig for Config {
    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let a = Arc::new(OAuth2Client::new(*self).map_err(|m| BuildError::new(&ctx.id, m))?);
            ctx.auth.register_client(ctx.id.clone(), a);
            Ok(Box::new(crate::component::Idle) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_with_their_names() {
        let n = crate::config::node::parse("token_url: ftp://x\nclient_id: a\nclient_secret: b\n")
            .unwrap();
        assert_eq!(parse(&n).err().unwrap().path_string(), "token_url");
        let n = crate::config::node::parse("token_url: http://x/t\nclient_secret: b\n").unwrap();
        assert_eq!(parse(&n).err().unwrap().path_string(), "client_id");
        let n = crate::config::node::parse(
            "token_url: http://x/t\nclient_id: a\nclient_secret: b\nendpoint_params: {audience: x, resource: [a, b]}\nscopes: [s1, s2]\n",
        )
        .unwrap();
        assert!(parse(&n).is_ok());
    }

    #[test]
    fn the_form_carries_scopes_params_and_body_credentials_only_when_asked() {
        let c = OAuth2Client::new(Config {
            token_url: "http://x/t".into(),
            scopes: vec!["a".into(), "b".into()],
            endpoint_params: [("audience".to_owned(), ParamValue::One("aud".into()))].into(),
            ..Default::default()
        })
        .unwrap();
        let f = c.form("id", None);
        assert!(f.contains(&("scope".into(), "a b".into())));
        assert!(f.contains(&("audience".into(), "aud".into())));
        assert!(!f.iter().any(|(k, _)| k == "client_secret"));
        assert!(
            c.form("id", Some("s"))
                .contains(&("client_secret".into(), "s".into()))
        );
    }
}
