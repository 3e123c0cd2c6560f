//! Authentication plumbing shared by receivers, exporters and the auth extensions: the
//! Collector's `auth: { authenticator: <extension id> }` key, the two roles an extension can
//! play (checking a server's incoming requests, adding credentials to a client's outgoing
//! ones), and the registry through which components reach the extensions the service started.
//!
//! Secrets never leave an authenticator: its errors say what is wrong (missing, malformed,
//! expired, not matching) and never quote a credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::config::ComponentId;

/// The same type as `component::BoxFuture`, declared here so that the contracts (which hold
/// the registry) and this module do not import each other.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// `auth:` on a server or a client.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The id of an authenticator extension listed in `service::extensions`.
    pub authenticator: String,
}

impl AuthConfig {
    pub fn id(&self) -> Result<ComponentId, String> {
        ComponentId::parse(&self.authenticator)
    }
}

/// Why a request was refused (receivers answer 401 / `UNAUTHENTICATED` with it) or why a
/// client could not get credentials (exporters retry).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Who an authenticated request comes from: passed to processors as `auth.<key>`
/// (`auth.subject`, `auth.membership`, or any claim by name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthInfo {
    pub attributes: Vec<(String, String)>,
}

pub trait ServerAuthenticator: Send + Sync {
    /// Checks an incoming request by its headers (gRPC metadata travels as headers).
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>>;
}

pub trait ClientAuthenticator: Send + Sync {
    /// The headers to add to the next outgoing request (a token is fetched or refreshed here
    /// when needed).
    fn headers(&self) -> BoxFuture<'_, Result<http::HeaderMap, AuthError>>;
}

/// The authenticators the service has started, by extension id.
#[derive(Default)]
pub struct Registry {
    servers: Mutex<HashMap<ComponentId, Arc<dyn ServerAuthenticator>>>,
    clients: Mutex<HashMap<ComponentId, Arc<dyn ClientAuthenticator>>>,
}

impl Registry {
    pub fn register_server(&self, id: ComponentId, a: Arc<dyn ServerAuthenticator>) {
        self.servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, a);
    }

    pub fn register_client(&self, id: ComponentId, a: Arc<dyn ClientAuthenticator>) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, a);
    }

    pub fn server(&self, cfg: &AuthConfig) -> Result<Arc<dyn ServerAuthenticator>, String> {
        let id = cfg.id()?;
        self.servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "auth: no server authenticator `{id}` is running (an extension such as basicauth, bearertokenauth or oidc, listed in `service::extensions`)"
                )
            })
    }

    pub fn client(&self, cfg: &AuthConfig) -> Result<Arc<dyn ClientAuthenticator>, String> {
        let id = cfg.id()?;
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "auth: no client authenticator `{id}` is running (an extension such as basicauth with client_auth, bearertokenauth or oauth2client, listed in `service::extensions`)"
                )
            })
    }
}

/// Adds a client authenticator's headers to `into` (replacing headers of the same name).
pub async fn apply(
    auth: Option<&Arc<dyn ClientAuthenticator>>,
    into: &mut http::HeaderMap,
) -> Result<(), AuthError> {
    if let Some(a) = auth {
        for (k, v) in a.headers().await? {
            if let Some(k) = k {
                into.insert(k, v);
            }
        }
    }
    Ok(())
}

/// Puts `auth` in front of a server's routes: a request it refuses gets 401 (or gRPC
/// `UNAUTHENTICATED` when `grpc`), is counted in `refused`, and reaches no handler; one it
/// accepts carries its [`AuthInfo`] in the request's extensions. CORS preflights pass (they
/// carry no credentials by design).
pub fn protect(
    router: axum::Router,
    auth: Arc<dyn ServerAuthenticator>,
    grpc: bool,
    refused: prometheus_client::metrics::counter::Counter,
    receiver: String,
) -> axum::Router {
    use axum::response::IntoResponse;
    let layer = axum::middleware::from_fn(
        move |mut req: axum::extract::Request, next: axum::middleware::Next| {
            let (auth, refused, receiver) = (auth.clone(), refused.clone(), receiver.clone());
            async move {
                if req.method() == http::Method::OPTIONS {
                    return next.run(req).await;
                }
                match auth.authenticate(req.headers()).await {
                    Ok(info) => {
                        req.extensions_mut().insert(info);
                        next.run(req).await
                    }
                    Err(e) => {
                        refused.inc();
                        tracing::debug!(%receiver, error = %e, "request refused: not authenticated");
                        if grpc {
                            tonic::Status::unauthenticated(e.0)
                                .into_http::<axum::body::Body>()
                                .into_response()
                        } else {
                            (
                                http::StatusCode::UNAUTHORIZED,
                                [(http::header::CONTENT_TYPE, "text/plain")],
                                format!("unauthenticated: {e}"),
                            )
                                .into_response()
                        }
                    }
                }
            }
        },
    );
    router.layer(layer)
}

/// Equal bytes, in time that depends only on the lengths: a credential check must not tell an
/// attacker how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_missing_authenticator_is_named() {
        let r = Registry::default();
        let cfg = AuthConfig {
            authenticator: "basicauth/x".into(),
        };
        let e = r.server(&cfg).err().unwrap();
        assert!(e.contains("`basicauth/x`"), "{e}");
        let e = r.client(&cfg).err().unwrap();
        assert!(e.contains("client authenticator"), "{e}");
    }
}
