//! `basicauth` extension: HTTP Basic authentication (RFC 7617). As a server authenticator it
//! checks `Authorization: Basic …` against `htpasswd` (`file` and/or `inline` lines
//! `user:hash`, the hash bcrypt `$2y$…`, `{SHA}` or `{SSHA}` base64, or the password as is); the
//! user name is passed on as `auth.username`. As a client authenticator (`client_auth`) it sends
//! `username`/`password` with every request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;
use sha1::Digest;

use crate::component::{
    BoxFuture, BuildError, Context, ExtensionConfig, Factory, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::net::auth::{
    AuthError, AuthInfo, ClientAuthenticator, ServerAuthenticator, constant_time_eq,
};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Server: the accepted users.
    #[serde(deserialize_with = "crate::config::present")]
    pub htpasswd: Option<Htpasswd>,
    /// Client: the credentials sent.
    #[serde(deserialize_with = "crate::config::present")]
    pub client_auth: Option<ClientAuth>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Htpasswd {
    /// An htpasswd file.
    pub file: Option<PathBuf>,
    /// htpasswd lines (a secret), added to the file's.
    pub inline: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuth {
    pub username: String,
    /// A secret.
    pub password: String,
}

pub const FACTORY: Factory =
    Factory::extension("basicauth", Stability::Beta, parse).aliases(&["basic_auth"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExtensionConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.htpasswd.is_none() && cfg.client_auth.is_none() {
        return Err(key_err(
            node,
            &[],
            "set `htpasswd` (server) or `client_auth` (client)",
        ));
    }
    if let Some(h) = &cfg.htpasswd {
        if h.file.is_none() && h.inline.is_none() {
            return Err(key_err(node, &["htpasswd"], "set `file` or `inline`"));
        }
        users(h).map_err(|m| key_err(node, &["htpasswd"], m))?;
    }
    if let Some(c) = &cfg.client_auth
        && c.username.contains(':')
    {
        return Err(key_err(
            node,
            &["client_auth", "username"],
            "a Basic user name cannot contain `:`",
        ));
    }
    Ok(Box::new(cfg))
}

/// How one user's password is checked.
#[derive(Clone)]
enum Hash {
    Bcrypt(String),
    Sha1([u8; 20]),
    Ssha { digest: [u8; 20], salt: Vec<u8> },
    Plain(String),
}

impl Hash {
    fn parse(h: &str) -> Result<Hash, String> {
        if h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$") {
            return Ok(Hash::Bcrypt(h.to_owned()));
        }
        let b64 = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| "a {SHA}/{SSHA} hash that is not base64".to_owned())
        };
        if let Some(s) = h.strip_prefix("{SHA}") {
            let d = b64(s)?;
            return d
                .try_into()
                .map(Hash::Sha1)
                .map_err(|_| "a {SHA} hash of the wrong length".to_owned());
        }
        if let Some(s) = h.strip_prefix("{SSHA}") {
            let d = b64(s)?;
            if d.len() < 21 {
                return Err("an {SSHA} hash too short".into());
            }
            let mut digest = [0u8; 20];
            digest.copy_from_slice(&d[..20]);
            return Ok(Hash::Ssha {
                digest,
                salt: d[20..].to_vec(),
            });
        }
        if h.starts_with("$apr1$")
            || h.starts_with("$1$")
            || h.starts_with("$5$")
            || h.starts_with("$6$")
        {
            return Err(
                "MD5 and SHA-crypt hashes are not supported; use bcrypt (`htpasswd -B`)".into(),
            );
        }
        Ok(Hash::Plain(h.to_owned()))
    }

    fn verify(&self, password: &str) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Sha1(d) => constant_time_eq(&sha1::Sha1::digest(password.as_bytes()), d),
            Hash::Ssha { digest, salt } => {
                let mut s = sha1::Sha1::new();
                s.update(password.as_bytes());
                s.update(salt);
                constant_time_eq(&s.finalize(), digest)
            }
            Hash::Plain(p) => constant_time_eq(p.as_bytes(), password.as_bytes()),
        }
    }
}

/// The users of `htpasswd`, the file's then the inline lines' (a later line wins). Errors name
/// the line, never its content.
fn users(h: &Htpasswd) -> Result<HashMap<String, Hash>, String> {
    let mut text = String::new();
    if let Some(f) = &h.file {
        text =
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        text.push('\n');
    }
    if let Some(i) = &h.inline {
        text.push_str(i);
    }
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("htpasswd line {} is not `user:password`", n + 1));
        };
        let hash = Hash::parse(hash).map_err(|m| format!("htpasswd line {}: {m}", n + 1))?;
        out.insert(user.to_owned(), hash);
    }
    if out.is_empty() {
        return Err("htpasswd names no user".into());
    }
    Ok(out)
}

pub struct BasicAuth {
    users: HashMap<String, Hash>,
    client: Option<http::HeaderValue>,
}

impl BasicAuth {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let users = match &cfg.htpasswd {
            Some(h) => users(h)?,
            None => HashMap::new(),
        };
        let client = match &cfg.client_auth {
            Some(c) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password));
                let mut v = http::HeaderValue::from_str(&format!("Basic {raw}"))
                    .map_err(|_| "client_auth: not a valid header value".to_owned())?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(BasicAuth { users, client })
    }
}

impl ServerAuthenticator for BasicAuth {
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>> {
        Box::pin(async move {
            let v = headers
                .get(http::header::AUTHORIZATION)
                .ok_or_else(|| AuthError("missing `authorization` header".into()))?;
            let bad = || AuthError("the `authorization` header is not Basic credentials".into());
            let v = v.to_str().map_err(|_| bad())?;
            let (scheme, rest) = v.split_once(' ').ok_or_else(bad)?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(bad());
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| bad())?;
            let raw = String::from_utf8(raw).map_err(|_| bad())?;
            let (user, password) = raw.split_once(':').ok_or_else(bad)?;
            let hash = self.users.get(user).cloned();
            // bcrypt is slow on purpose: off the async workers.
            let password = password.to_owned();
            let ok = tokio::task::spawn_blocking(move || hash.is_some_and(|h| h.verify(&password)))
                .await
                .unwrap_or(false);
            if !ok {
                return Err(AuthError("unknown user or wrong password".into()));
            }
            Ok(AuthInfo {
                attributes: vec![("username".into(), user.to_owned())],
            })
        })
    }
}

impl ClientAuthenticator for BasicAuth {
    fn headers(&self) -> BoxFuture<'_, Result<http::HeaderMap, AuthError>> {
        Box::pin(async move {
            let v = self
                .client
                .clone()
                .ok_or_else(|| AuthError("basicauth has no `client_auth`".into()))?;
            let mut h = http::HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, v);
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
            let a = Arc::new(BasicAuth::new(&self).map_err(|m| BuildError::new(&ctx.id, m))?);
            if self.htpasswd.is_some() {
                ctx.auth.register_server(ctx.id.clone(), a.clone());
            }
            if self.client_auth.is_some() {
                ctx.auth.register_client(ctx.id.clone(), a);
            }
            Ok(Box::new(crate::component::Idle) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        let raw = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Basic {raw}")).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn every_hash_kind_checks_and_wrong_credentials_are_refused() {
        let bc = bcrypt::hash("bpass", 4).unwrap();
        let sha = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"spass"));
        let cfg = Config {
            htpasswd: Some(Htpasswd {
                file: None,
                inline: Some(format!("alice:{bc}\nbob:{{SHA}}{sha}\ncarol:plain\n")),
            }),
            client_auth: None,
        };
        let a = BasicAuth::new(&cfg).unwrap();
        for (u, p) in [("alice", "bpass"), ("bob", "spass"), ("carol", "plain")] {
            let info = a.authenticate(&basic(u, p)).await.unwrap();
            assert_eq!(info.attributes, vec![("username".into(), u.into())]);
        }
        for (u, p) in [("alice", "x"), ("dave", "plain"), ("carol", "plai")] {
            let e = a.authenticate(&basic(u, p)).await.unwrap_err();
            assert!(!e.0.contains(p), "{e}");
        }
        assert!(a.authenticate(&http::HeaderMap::new()).await.is_err());
    }

    #[test]
    fn a_bad_line_is_named_without_its_content() {
        let n = crate::config::node::parse("htpasswd:\n  inline: \"alice:$apr1$xyz\"\n").unwrap();
        let e = parse(&n).err().unwrap();
        assert!(
            e.msg.contains("line 1") && !e.msg.contains("xyz"),
            "{}",
            e.msg
        );
    }

    #[tokio::test]
    async fn the_client_sends_its_credentials() {
        let cfg = Config {
            htpasswd: None,
            client_auth: Some(ClientAuth {
                username: "u".into(),
                password: "p".into(),
            }),
        };
        let h = BasicAuth::new(&cfg).unwrap().headers().await.unwrap();
        assert_eq!(h.get("authorization").unwrap(), "Basic dTpw");
    }
}
