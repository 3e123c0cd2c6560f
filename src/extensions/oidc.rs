//! `oidc` extension: a server authenticator for OpenID Connect ID tokens (JWTs). At start it
//! reads the issuer's discovery document (`<issuer_url>/.well-known/openid-configuration`) and
//! its JWKS; each request's `<attribute>: Bearer <jwt>` must be signed by one of those keys
//! (RS256/384/512, PS256/384/512, ES256/384; never `none` or a shared-secret HMAC), name the
//! issuer (`iss`) and the `audience` (`aud`), and be within its `nbf`/`exp`. A token signed
//! with a key id the set lacks makes it fetch the set again (at most every 10 s): keys rotate
//! without a restart. The `username_claim` becomes `auth.subject`, the `groups_claim`
//! `auth.membership` (comma-separated), and every string claim is there by its name.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::signature;
use base64::Engine;
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::net::auth::{AuthError, AuthInfo, ServerAuthenticator};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The issuer; its discovery document is at `<issuer_url>/.well-known/openid-configuration`.
    pub issuer_url: String,
    /// A CA file to verify the issuer's TLS certificate with (else the system's roots).
    pub issuer_ca_path: Option<PathBuf>,
    /// Required in `aud`.
    pub audience: String,
    /// The claim that names the user (`auth.subject`). Default `sub`.
    pub username_claim: Option<String>,
    /// The claim that lists the user's groups (`auth.membership`).
    pub groups_claim: Option<String>,
    /// The header carrying the token. Default `authorization`.
    pub attribute: Option<String>,
}

pub const FACTORY: Factory = Factory::extension("oidc", Stability::Beta, parse);

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    match url::Url::parse(&cfg.issuer_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(key_err(
                node,
                &["issuer_url"],
                format!("{:?} is not an http(s) URL", cfg.issuer_url),
            ));
        }
    }
    if cfg.audience.is_empty() {
        return Err(key_err(node, &["audience"], "must be set"));
    }
    if let Some(a) = &cfg.attribute
        && http::HeaderName::from_bytes(a.as_bytes()).is_err()
    {
        return Err(key_err(
            node,
            &["attribute"],
            format!("{a:?} is not a header name"),
        ));
    }
    Ok(Box::new(cfg))
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// A verification key from the set.
#[derive(Clone)]
enum Key {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { curve: String, point: Vec<u8> },
}

fn b64url(s: &str) -> Result<Vec<u8>, AuthError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| AuthError("the token is not base64url".into()))
}

fn keys_of(set: Jwks) -> HashMap<String, Key> {
    let mut out = HashMap::new();
    for (i, k) in set.keys.into_iter().enumerate() {
        if k.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let kid = k.kid.clone().unwrap_or_else(|| format!("#{i}"));
        let key = match k.kty.as_str() {
            "RSA" => match (k.n.as_deref().map(b64url), k.e.as_deref().map(b64url)) {
                (Some(Ok(n)), Some(Ok(e))) => Key::Rsa { n, e },
                _ => continue,
            },
            "EC" => match (k.x.as_deref().map(b64url), k.y.as_deref().map(b64url)) {
                (Some(Ok(x)), Some(Ok(y))) => {
                    let mut point = vec![4u8];
                    point.extend(x);
                    point.extend(y);
                    Key::Ec {
                        curve: k.crv.unwrap_or_default(),
                        point,
                    }
                }
                _ => continue,
            },
            _ => continue,
        };
        out.insert(kid, key);
    }
    out
}

/// Checks a compact JWS against `keys`; returns its claims.
fn verify(
    token: &str,
    keys: &HashMap<String, Key>,
) -> Result<serde_json::Map<String, serde_json::Value>, VerifyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Bad("the token is not a signed JWT".into()));
    };
    let header: serde_json::Value = serde_json::from_slice(&b64url(h).map_err(VerifyError::from)?)
        .map_err(|_| VerifyError::Bad("the token's header is not JSON".into()))?;
    let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
    let kid = header.get("kid").and_then(|k| k.as_str());
    let key = match kid {
        Some(k) => keys.get(k).ok_or(VerifyError::UnknownKey)?,
        // No key id: the set must hold exactly one key.
        None if keys.len() == 1 => keys.values().next().ok_or(VerifyError::UnknownKey)?,
        None => return Err(VerifyError::Bad("the token names no key id".into())),
    };
    let sig = b64url(s).map_err(VerifyError::from)?;
    let msg = &token.as_bytes()[..h.len() + 1 + p.len()];
    let ok = match (alg, key) {
        ("RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512", Key::Rsa { n, e }) => {
            let params: &signature::RsaParameters = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            signature::RsaPublicKeyComponents { n, e }
                .verify(params, msg, &sig)
                .is_ok()
        }
        ("ES256", Key::Ec { curve, point }) if curve == "P-256" => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, &sig)
                .is_ok()
        }
        ("ES384", Key::Ec { curve, point }) if curve == "P-384" => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(msg, &sig)
                .is_ok()
        }
        _ => {
            return Err(VerifyError::Bad(format!(
                "signature algorithm {alg:?} is not accepted for this key"
            )));
        }
    };
    if !ok {
        return Err(VerifyError::Bad(
            "the token's signature does not verify".into(),
        ));
    }
    match serde_json::from_slice(&b64url(p).map_err(VerifyError::from)?) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(VerifyError::Bad(
            "the token's claims are not a JSON object".into(),
        )),
    }
}

enum VerifyError {
    Bad(String),
    UnknownKey,
}

impl From<AuthError> for VerifyError {
    fn from(e: AuthError) -> Self {
        VerifyError::Bad(e.0)
    }
}

type KeySet = Arc<HashMap<String, Key>>;

pub struct Oidc {
    cfg: Config,
    issuer: String,
    jwks_uri: String,
    http: reqwest::Client,
    header: http::HeaderName,
    /// The key set by key id, and when it was last fetched.
    keys: Mutex<(KeySet, Option<Instant>)>,
    /// One refresh of the key set at a time.
    refresh: tokio::sync::Mutex<()>,
}

impl Oidc {
    pub async fn start(cfg: Config) -> Result<Self, String> {
        let mut tls = crate::net::tls::ClientTlsConfig::default();
        if let Some(ca) = &cfg.issuer_ca_path {
            tls.ca_file = Some(ca.display().to_string());
        }
        let http = crate::net::client::http_client_with(
            &tls,
            &Default::default(),
            &crate::net::client::HttpOptions::default(),
        )?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            cfg.issuer_url.trim_end_matches('/')
        );
        let d: Discovery = get_json(&http, &url).await?;
        if d.issuer.trim_end_matches('/') != cfg.issuer_url.trim_end_matches('/') {
            return Err(format!(
                "the discovery document at {url} names issuer {:?}, not {:?}",
                d.issuer, cfg.issuer_url
            ));
        }
        let set: Jwks = get_json(&http, &d.jwks_uri).await?;
        let keys = keys_of(set);
        if keys.is_empty() {
            return Err(format!(
                "the key set at {} holds no usable signing key",
                d.jwks_uri
            ));
        }
        let header = http::HeaderName::from_bytes(
            cfg.attribute
                .as_deref()
                .unwrap_or("authorization")
                .as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        Ok(Oidc {
            issuer: d.issuer,
            jwks_uri: d.jwks_uri,
            http,
            header,
            keys: Mutex::new((Arc::new(keys), Some(Instant::now()))),
            refresh: tokio::sync::Mutex::new(()),
            cfg,
        })
    }

    fn keys(&self) -> KeySet {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Fetches the key set again, unless it was fetched in the last 10 s.
    async fn refresh_keys(&self) {
        let _one = self.refresh.lock().await;
        let recent = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if recent {
            return;
        }
        match get_json::<Jwks>(&self.http, &self.jwks_uri).await {
            Ok(set) => {
                let keys = keys_of(set);
                tracing::info!(jwks_uri = %self.jwks_uri, keys = keys.len(), "oidc: key set fetched again");
                *self.keys.lock().unwrap_or_else(|p| p.into_inner()) =
                    (Arc::new(keys), Some(Instant::now()));
            }
            Err(e) => {
                tracing::warn!(jwks_uri = %self.jwks_uri, error = %e, "oidc: cannot fetch the key set");
                self.keys.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(Instant::now());
            }
        }
    }

    fn check_claims(
        &self,
        c: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<AuthInfo, AuthError> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as f64;
        if c.get("iss").and_then(|v| v.as_str()) != Some(self.issuer.as_str()) {
            return Err(AuthError("the token is from another issuer".into()));
        }
        let aud_ok = match c.get("aud") {
            Some(serde_json::Value::String(a)) => *a == self.cfg.audience,
            Some(serde_json::Value::Array(a)) => {
                a.iter().any(|x| x.as_str() == Some(&self.cfg.audience))
            }
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError("the token is for another audience".into()));
        }
        match c.get("exp").and_then(|v| v.as_f64()) {
            Some(exp) if exp > now => {}
            Some(_) => return Err(AuthError("the token has expired".into())),
            None => return Err(AuthError("the token has no expiry (`exp`)".into())),
        }
        if c.get("nbf")
            .and_then(|v| v.as_f64())
            .is_some_and(|nbf| nbf > now)
        {
            return Err(AuthError("the token is not valid yet (`nbf`)".into()));
        }
        let user_claim = self.cfg.username_claim.as_deref().unwrap_or("sub");
        let Some(subject) = c.get(user_claim).and_then(|v| v.as_str()) else {
            return Err(AuthError(format!("the token has no `{user_claim}` claim")));
        };
        let mut attributes = vec![("subject".to_owned(), subject.to_owned())];
        if let Some(g) = &self.cfg.groups_claim {
            let groups = match c.get(g) {
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            attributes.push(("membership".into(), groups));
        }
        for (k, v) in c {
            if let serde_json::Value::String(s) = v {
                attributes.push((k.clone(), s.clone()));
            }
        }
        Ok(AuthInfo { attributes })
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", crate::text::error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET {url}: {status}"));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: {}", crate::text::error_chain(&e)))?;
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))
}

impl ServerAuthenticator for Oidc {
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>> {
        Box::pin(async move {
            let v = headers
                .get(&self.header)
                .ok_or_else(|| AuthError(format!("missing `{}` header", self.header)))?;
            let v = v
                .to_str()
                .map_err(|_| AuthError("the token is not text".into()))?;
            let token = match v.split_once(' ') {
                Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
                _ => return Err(AuthError("expected `Bearer <token>`".into())),
            };
            let claims = match verify(token, &self.keys()) {
                Ok(c) => c,
                Err(VerifyError::UnknownKey) => {
                    self.refresh_keys().await;
                    match verify(token, &self.keys()) {
                        Ok(c) => c,
                        Err(VerifyError::UnknownKey) => {
                            return Err(AuthError(
                                "the token is signed with an unknown key".into(),
                            ));
                        }
                        Err(VerifyError::Bad(m)) => return Err(AuthError(m)),
                    }
                }
                Err(VerifyError::Bad(m)) => return Err(AuthError(m)),
            };
            self.check_claims(&claims)
        })
    }
}

impl ExtensionConfig for Config {
    fn start(
        self: Box<Self>,
        ctx: Context,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let a = Arc::new(
                Oidc::start(*self)
                    .await
                    .map_err(|m| BuildError::new(&ctx.id, m))?,
            );
            ctx.auth.register_server(ctx.id.clone(), a);
            Ok(Box::new(crate::component::Idle) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_tokens_are_refused_without_a_panic() {
        let keys = HashMap::from([(
            "k".to_owned(),
            Key::Rsa {
                n: vec![1; 256],
                e: vec![1, 0, 1],
            },
        )]);
        for t in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.??.**",
            "eyJhbGciOiJub25lIn0.e30.",
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsifQ.e30.c2ln",
            "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.e30.c2ln",
        ] {
            assert!(verify(t, &keys).is_err(), "{t:?}");
        }
    }

    #[test]
    fn the_audience_is_required() {
        let n = crate::config::node::parse("issuer_url: http://x\n").unwrap();
        assert_eq!(parse(&n).err().unwrap().path_string(), "audience");
    }
}
