//! `bearertokenauth` extension: a bearer token, as server authenticator (a request must carry
//! `<header>: <scheme> <token>` with one of the configured tokens) and as client authenticator
//! (every outgoing request carries it). `token` / `tokens` inline, or `filename`, read again
//! whenever the file changes (checked at most once a second), so a rotated secret takes effect
//! without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::net::auth::{
    AuthError, AuthInfo, ClientAuthenticator, ServerAuthenticator, constant_time_eq,
};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The header that carries the token. Default `Authorization`.
    pub header: String,
    /// Written before the token, with a space. Default `Bearer`; empty: the token alone.
    pub scheme: String,
    /// The token (a secret).
    pub token: Option<String>,
    /// Server: any of these is accepted (secrets).
    pub tokens: Vec<String>,
    /// A file holding the token (or, for a server, one token per line); read again when it
    /// changes.
    pub filename: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header: "Authorization".into(),
            scheme: "Bearer".into(),
            token: None,
            tokens: Vec::new(),
            filename: None,
        }
    }
}

pub const FACTORY: Factory =
    Factory::extension("bearertokenauth", Stability::Beta, parse).aliases(&["bearer_token_auth"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    let sources = [
        cfg.token.is_some(),
        !cfg.tokens.is_empty(),
        cfg.filename.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources != 1 {
        return Err(key_err(
            node,
            &[],
            "set exactly one of `token`, `tokens` and `filename`",
        ));
    }
    if http::HeaderName::from_bytes(cfg.header.as_bytes()).is_err() {
        return Err(key_err(
            node,
            &["header"],
            format!("{:?} is not a header name", cfg.header),
        ));
    }
    if let Some(f) = &cfg.filename
        && let Err(e) = std::fs::metadata(f)
    {
        return Err(key_err(
            node,
            &["filename"],
            format!("cannot read {}: {e}", f.display()),
        ));
    }
    Ok(Box::new(cfg))
}

/// The tokens, from the config or the file (re-read when its modification time or size
/// changes).
struct Tokens {
    inline: Vec<String>,
    file: Option<PathBuf>,
    cache: Mutex<FileCache>,
}

struct FileCache {
    checked: Option<Instant>,
    stamp: Option<(SystemTime, u64)>,
    tokens: Arc<Vec<String>>,
}

impl Tokens {
    fn current(&self) -> Result<Arc<Vec<String>>, AuthError> {
        let Some(path) = &self.file else {
            return Ok(Arc::new(self.inline.clone()));
        };
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.checked
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            && !c.tokens.is_empty()
        {
            return Ok(c.tokens.clone());
        }
        c.checked = Some(Instant::now());
        let meta = std::fs::metadata(path)
            .map_err(|e| AuthError(format!("token file {}: {e}", path.display())))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if c.stamp != Some(stamp) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| AuthError(format!("token file {}: {e}", path.display())))?;
            let tokens: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            if tokens.is_empty() {
                return Err(AuthError(format!("token file {} is empty", path.display())));
            }
            if c.stamp.is_some() {
                tracing::info!(file = %path.display(), "bearer token file changed; using the new token");
            }
            c.tokens = Arc::new(tokens);
            c.stamp = Some(stamp);
        }
        Ok(c.tokens.clone())
    }
}

pub struct BearerToken {
    header: http::HeaderName,
    scheme: String,
    tokens: Tokens,
}

impl BearerToken {
    pub fn new(cfg: Config) -> Result<Self, String> {
        let header = http::HeaderName::from_bytes(cfg.header.as_bytes())
            .map_err(|_| format!("{:?} is not a header name", cfg.header))?;
        let mut inline = cfg.tokens;
        inline.extend(cfg.token);
        let b = BearerToken {
            header,
            scheme: cfg.scheme,
            tokens: Tokens {
                inline,
                file: cfg.filename,
                cache: Mutex::new(FileCache {
                    checked: None,
                    stamp: None,
                    tokens: Arc::new(Vec::new()),
                }),
            },
        };
        b.tokens.current().map_err(|e| e.0)?;
        Ok(b)
    }

    fn value(&self, token: &str) -> String {
        if self.scheme.is_empty() {
            token.to_owned()
        } else {
            format!("{} {token}", self.scheme)
        }
    }
}

impl ServerAuthenticator for BearerToken {
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>> {
        Box::pin(async move {
            let Some(got) = headers.get(&self.header) else {
                return Err(AuthError(format!("missing `{}` header", self.header)));
            };
            let tokens = self.tokens.current()?;
            let ok = tokens
                .iter()
                .any(|t| constant_time_eq(got.as_bytes(), self.value(t).as_bytes()));
            if ok {
                Ok(AuthInfo::default())
            } else {
                Err(AuthError(format!(
                    "the `{}` header does not hold a valid {} token",
                    self.header,
                    if self.scheme.is_empty() {
                        "bearer"
                    } else {
                        &self.scheme
                    }
                )))
            }
        })
    }
}

impl ClientAuthenticator for BearerToken {
    fn headers(&self) -> BoxFuture<'_, Result<http::HeaderMap, AuthError>> {
        Box::pin(async move {
            let tokens = self.tokens.current()?;
            let t = tokens.first().ok_or_else(|| AuthError("no token".into()))?;
            let mut v = http::HeaderValue::from_str(&self.value(t))
                .map_err(|_| AuthError("the token is not a valid header value".into()))?;
            v.set_sensitive(true);
            let mut h = http::HeaderMap::new();
            h.insert(self.header.clone(), v);
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
            let a = Arc::new(BearerToken::new(*self).map_err(|m| BuildError::new(&ctx.id, m))?);
            ctx.auth.register_server(ctx.id.clone(), a.clone());
            ctx.auth.register_client(ctx.id.clone(), a);
            Ok(Box::new(crate::component::Idle) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(k: &str, v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn the_server_accepts_only_its_tokens_and_never_quotes_one() {
        let b = BearerToken::new(Config {
            tokens: vec!["s3cret".into(), "other".into()],
            ..Default::default()
        })
        .unwrap();
        b.authenticate(&headers("authorization", "Bearer other"))
            .await
            .unwrap();
        for (k, v) in [
            ("authorization", "Bearer wrong"),
            ("authorization", "s3cret"),
            ("x-other", "Bearer s3cret"),
        ] {
            let e = b.authenticate(&headers(k, v)).await.unwrap_err();
            assert!(!e.0.contains("s3cret") && !e.0.contains("wrong"), "{e}");
        }
    }

    #[tokio::test]
    async fn a_token_file_is_read_again_when_it_changes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("token");
        std::fs::write(&f, "one\n").unwrap();
        let b = BearerToken::new(Config {
            filename: Some(f.clone()),
            scheme: "Token".into(),
            header: "X-Auth".into(),
            ..Default::default()
        })
        .unwrap();
        let h = b.headers().await.unwrap();
        assert_eq!(h.get("x-auth").unwrap(), "Token one");
        std::fs::write(&f, "second-token\n").unwrap();
        // Checked at most once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            b.headers().await.unwrap().get("x-auth").unwrap(),
            "Token second-token"
        );
        assert!(
            b.authenticate(&headers("x-auth", "Token one"))
                .await
                .is_err()
        );
    }

    #[test]
    fn exactly_one_source() {
        let n = crate::config::node::parse("token: a\nfilename: /x\n").unwrap();
        assert!(parse(&n).err().unwrap().msg.contains("exactly one"));
        let n = crate::config::node::parse("scheme: Bearer\n").unwrap();
        assert!(parse(&n).is_err());
    }
}
