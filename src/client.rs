//! Who sent a batch: the connection's peer address and, when the receiver has
//! `include_metadata: true`, the request's headers (gRPC metadata). It travels with the consume
//! call as a task-local, as the Collector's `client.Info` travels in its `context.Context`: the
//! processors up to the first stage that buffers (`batch`) see it, later stages do not.

use std::future::Future;
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientInfo {
    pub addr: Option<IpAddr>,
    /// Lower-cased header names with their values (only with `include_metadata`).
    pub metadata: Vec<(String, String)>,
    /// What the receiver's authenticator said about the client (`auth.<key>`).
    pub auth: Vec<(String, String)>,
}

impl ClientInfo {
    /// The first value of a metadata key (case-insensitive).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// From HTTP headers (or gRPC metadata, which travels as headers).
    pub fn from_headers(addr: Option<IpAddr>, headers: &http::HeaderMap, include: bool) -> Self {
        let metadata = if include {
            headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect()
        } else {
            Vec::new()
        };
        ClientInfo {
            addr,
            metadata,
            auth: Vec::new(),
        }
    }

    /// With what the authenticator found (`auth.subject`, `auth.username`, claims).
    pub fn with_auth(mut self, info: Option<&crate::net::auth::AuthInfo>) -> Self {
        if let Some(i) = info {
            self.auth = i.attributes.clone();
        }
        self
    }

    /// An `auth.<key>` value.
    pub fn auth(&self, key: &str) -> Option<&str> {
        self.auth
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

tokio::task_local! {
    static CLIENT: ClientInfo;
}

/// Runs `f` (a consume call) with `info` as the current client.
pub async fn scope<F: Future>(info: ClientInfo, f: F) -> F::Output {
    CLIENT.scope(info, f).await
}

/// Calls `f` with the current client, if the caller runs inside [`scope`].
pub fn with<R>(f: impl FnOnce(Option<&ClientInfo>) -> R) -> R {
    let mut f = Some(f);
    match CLIENT.try_with(|c| (f.take().expect("called once"))(Some(c))) {
        Ok(r) => r,
        Err(_) => (f.take().expect("not called"))(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn visible_inside_the_scope_only() {
        assert_eq!(with(|c| c.cloned()), None);
        let info = ClientInfo {
            addr: Some("10.0.0.7".parse().unwrap()),
            metadata: vec![("x-tenant".into(), "acme".into())],
            auth: vec![],
        };
        let seen = scope(info.clone(), async {
            tokio::task::yield_now().await;
            with(|c| c.cloned())
        })
        .await;
        assert_eq!(seen, Some(info.clone()));
        assert_eq!(info.metadata("X-Tenant"), Some("acme"));
    }
}
