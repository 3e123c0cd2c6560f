//! Prometheus's HTTP client settings (`basic_auth`, `authorization`, `bearer_token[_file]`,
//! `oauth2` client credentials, `proxy_url`, `tls_config`, `follow_redirects`), as scrape
//! configs and `http_sd_configs` write them. Secrets in files are read at each request, as
//! Prometheus does, so a rotated token is picked up without a restart.

use std::time::{Duration, Instant};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub ca_file: Option<String>,
    pub ca: Option<String>,
    pub cert_file: Option<String>,
    pub cert: Option<String>,
    pub key_file: Option<String>,
    pub key: Option<String>,
    pub insecure_skip_verify: bool,
    pub server_name: Option<String>,
    pub min_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    pub username: String,
    pub username_file: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Authorization {
    /// Default `Bearer`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2 {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub token_url: String,
    pub scopes: Vec<String>,
    pub endpoint_params: std::collections::BTreeMap<String, String>,
    pub tls_config: Option<TlsConfig>,
    pub proxy_url: Option<String>,
}

/// The [`ClientSettings`] of a config that has Prometheus's client keys as its own fields
/// (a scrape config, an `http_sd_configs` entry).
macro_rules! client_settings {
    ($c:expr) => {
        $crate::receivers::prometheus::http::ClientSettings {
            basic_auth: $c.basic_auth.clone(),
            authorization: $c.authorization.clone(),
            bearer_token: $c.bearer_token.clone(),
            bearer_token_file: $c.bearer_token_file.clone(),
            oauth2: $c.oauth2.clone(),
            proxy_url: $c.proxy_url.clone(),
            tls_config: $c.tls_config.clone(),
            follow_redirects: $c.follow_redirects,
        }
    };
}
pub(crate) use client_settings;

/// The client settings of one scrape config or SD config, gathered from its keys.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientSettings {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub oauth2: Option<OAuth2>,
    pub proxy_url: Option<String>,
    pub tls_config: Option<TlsConfig>,
    pub follow_redirects: Option<bool>,
}

impl ClientSettings {
    /// Prometheus's rule: at most one way to authenticate.
    pub fn validate(&self) -> Result<(), String> {
        let ways = [
            self.basic_auth.is_some(),
            self.authorization.is_some(),
            self.bearer_token.is_some() || self.bearer_token_file.is_some(),
            self.oauth2.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err("at most one of basic_auth, authorization, bearer_token(_file) and oauth2 may be set".into());
        }
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            return Err("set either bearer_token or bearer_token_file".into());
        }
        if let Some(a) = &self.authorization {
            if a.credentials.is_some() && a.credentials_file.is_some() {
                return Err("authorization: set either credentials or credentials_file".into());
            }
            if a.kind
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case("basic"))
            {
                return Err("authorization: type Basic is what basic_auth is for".into());
            }
        }
        if let Some(b) = &self.basic_auth
            && b.password.is_some()
            && b.password_file.is_some()
        {
            return Err("basic_auth: set either password or password_file".into());
        }
        if let Some(o) = &self.oauth2 {
            if o.client_id.is_empty() || o.token_url.is_empty() {
                return Err("oauth2: client_id and token_url are required".into());
            }
            url::Url::parse(&o.token_url)
                .map_err(|e| format!("oauth2: token_url {:?}: {e}", o.token_url))?;
        }
        if let Some(p) = &self.proxy_url {
            reqwest::Proxy::all(p).map_err(|e| format!("proxy_url {p:?}: {e}"))?;
        }
        Ok(())
    }

    /// A client with these TLS, proxy and redirect settings.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder().timeout(timeout).redirect(
            if self.follow_redirects.unwrap_or(true) {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            },
        );
        if let Some(t) = &self.tls_config {
            b = tls(b, t)?;
        }
        if let Some(p) = &self.proxy_url {
            b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy_url {p:?}: {e}"))?);
        }
        b.build().map_err(|e| crate::text::error_chain(&e))
    }

    pub fn auth(&self) -> Auth {
        if let Some(b) = &self.basic_auth {
            return Auth::Basic(b.clone());
        }
        if let Some(a) = &self.authorization {
            return Auth::Header {
                scheme: a.kind.clone().unwrap_or_else(|| "Bearer".into()),
                credentials: a.credentials.clone(),
                file: a.credentials_file.clone(),
            };
        }
        if self.bearer_token.is_some() || self.bearer_token_file.is_some() {
            return Auth::Header {
                scheme: "Bearer".into(),
                credentials: self.bearer_token.clone(),
                file: self.bearer_token_file.clone(),
            };
        }
        if let Some(o) = &self.oauth2 {
            return Auth::OAuth2 {
                cfg: Box::new(o.clone()),
                token: tokio::sync::Mutex::new(None),
            };
        }
        Auth::None
    }
}

fn tls(mut b: reqwest::ClientBuilder, t: &TlsConfig) -> Result<reqwest::ClientBuilder, String> {
    if t.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    let read = |inline: &Option<String>,
                file: &Option<String>,
                what: &str|
     -> Result<Option<Vec<u8>>, String> {
        match (inline, file) {
            (Some(v), _) => Ok(Some(v.clone().into_bytes())),
            (None, Some(f)) => std::fs::read(f)
                .map(Some)
                .map_err(|e| format!("tls_config.{what}_file {f}: {e}")),
            (None, None) => Ok(None),
        }
    };
    if let Some(pem) = read(&t.ca, &t.ca_file, "ca")? {
        for c in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("tls_config: the CA is not PEM: {e}"))?
        {
            b = b.add_root_certificate(c);
        }
    }
    if let (Some(mut pem), Some(key)) = (
        read(&t.cert, &t.cert_file, "cert")?,
        read(&t.key, &t.key_file, "key")?,
    ) {
        pem.push(b'\n');
        pem.extend(key);
        b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| format!("tls_config: {e}"))?);
    }
    if let Some(v) = &t.min_version {
        b = b.min_tls_version(match v.as_str() {
            "TLS12" => reqwest::tls::Version::TLS_1_2,
            "TLS13" => reqwest::tls::Version::TLS_1_3,
            other => {
                return Err(format!(
                    "tls_config.min_version {other:?}: expected TLS12 or TLS13"
                ));
            }
        });
    }
    Ok(b)
}

/// How a request authenticates.
#[derive(Debug)]
pub enum Auth {
    None,
    Basic(BasicAuth),
    /// `Authorization: <scheme> <credentials>` (bearer tokens too).
    Header {
        scheme: String,
        credentials: Option<String>,
        file: Option<String>,
    },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): the token is fetched and kept until a
    /// little before it expires.
    OAuth2 {
        cfg: Box<OAuth2>,
        /// An async lock, held across the token request: concurrent scrapes wait for one
        /// request and share its token.
        token: tokio::sync::Mutex<Option<(String, Instant)>>,
    },
}

fn read_secret(file: &str, what: &str) -> Result<String, String> {
    std::fs::read_to_string(file)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{what} {file}: {e}"))
}

impl Auth {
    /// The request with its credentials.
    pub async fn apply(
        &self,
        client: &reqwest::Client,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        Ok(match self {
            Auth::None => req,
            Auth::Basic(b) => {
                let user = match &b.username_file {
                    Some(f) => read_secret(f, "basic_auth.username_file")?,
                    None => b.username.clone(),
                };
                let pass = match (&b.password, &b.password_file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(f)) => read_secret(f, "basic_auth.password_file")?,
                    (None, None) => String::new(),
                };
                req.basic_auth(user, Some(pass))
            }
            Auth::Header {
                scheme,
                credentials,
                file,
            } => {
                let cred = match (credentials, file) {
                    (Some(c), _) => c.clone(),
                    (None, Some(f)) => read_secret(f, "credentials file")?,
                    (None, None) => String::new(),
                };
                req.header("Authorization", format!("{scheme} {cred}"))
            }
            Auth::OAuth2 { cfg, token } => {
                let mut slot = token.lock().await;
                let tok = match slot.as_ref().filter(|(_, until)| Instant::now() < *until) {
                    Some((t, _)) => t.clone(),
                    None => {
                        let (t, life) = fetch_token(client, cfg).await?;
                        // Renewed a little early, so a request never carries an expired one.
                        let until = Instant::now() + life.saturating_sub(life / 10);
                        *slot = Some((t.clone(), until));
                        t
                    }
                };
                drop(slot);
                req.bearer_auth(tok)
            }
        })
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

async fn fetch_token(client: &reqwest::Client, cfg: &OAuth2) -> Result<(String, Duration), String> {
    let secret = match (&cfg.client_secret, &cfg.client_secret_file) {
        (Some(s), _) => s.clone(),
        (None, Some(f)) => read_secret(f, "oauth2.client_secret_file")?,
        (None, None) => String::new(),
    };
    let mut form: Vec<(String, String)> = vec![("grant_type".into(), "client_credentials".into())];
    if !cfg.scopes.is_empty() {
        form.push(("scope".into(), cfg.scopes.join(" ")));
    }
    for (k, v) in &cfg.endpoint_params {
        form.push((k.clone(), v.clone()));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let resp = client
        .post(&cfg.token_url)
        .basic_auth(&cfg.client_id, Some(secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("oauth2 token request: {}", crate::text::error_chain(&e)))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("oauth2 token response: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "oauth2 token request: HTTP {status}: {}",
            crate::text::excerpt(&text, 200)
        ));
    }
    let t: TokenResponse =
        serde_json::from_str(&text).map_err(|e| format!("oauth2 token response: {e}"))?;
    if t.token_type
        .as_deref()
        .is_some_and(|k| !k.eq_ignore_ascii_case("bearer"))
    {
        return Err(format!(
            "oauth2: token type {:?} is not Bearer",
            t.token_type.unwrap_or_default()
        ));
    }
    Ok((
        t.access_token,
        Duration::from_secs(t.expires_in.unwrap_or(3600).max(1)),
    ))
}
