//! A small Kubernetes API client, shared by every component that reads the API server
//! (`k8sattributes`, the prometheus receiver's `kubernetes_sd_configs`, the cluster receivers to
//! come): where the server is and the credentials (the pod's service account or a kubeconfig),
//! the object types read ([`objects`]), and the list-then-watch protocol ([`watch`]). Written on
//! reqwest instead of kube-rs to keep the build small.

pub mod discovery;
pub mod lease;
pub mod objects;
pub mod quantity;
pub mod watch;

use std::time::Duration;

use serde::Deserialize;

pub use objects::*;

/// Where and how to reach the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub server: String,
    pub token: Option<String>,
    pub tls: crate::net::tls::ClientTlsConfig,
}

/// How a component authenticates to the API server (the Collector's `auth_type`); `tls` is the
/// kubelet's client certificate, not an API server option.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum AuthType {
    #[default]
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    #[serde(rename = "kubeConfig")]
    KubeConfig,
    #[serde(rename = "none")]
    None,
    #[serde(rename = "tls")]
    Tls,
}

/// Refuses `auth_type: tls` for a component that reads the API server (only the kubelet takes a
/// client certificate), naming the key (under `at` in `node`).
pub fn api_auth(
    node: &crate::config::Node,
    at: &[&str],
    auth: AuthType,
) -> Result<(), crate::config::DeError> {
    if auth == AuthType::Tls {
        let path: Vec<&str> = at.iter().copied().chain(["auth_type"]).collect();
        return Err(crate::config::key_err(
            node,
            &path,
            "the API server takes serviceAccount, kubeConfig or none",
        ));
    }
    Ok(())
}

/// The Collector's `k8s_api_config` (and the same keys inline in its Kubernetes receivers).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// `serviceAccount` (default), `kubeConfig` or `none`.
    #[serde(default)]
    pub auth_type: AuthType,
    /// With `kubeConfig`: the context to use instead of the current one.
    #[serde(default)]
    pub context: Option<String>,
    /// Accepted: ferrotel's client does not throttle itself (it lists and watches; it does not
    /// poll the API server).
    #[serde(default)]
    pub kube_api_burst: Option<u32>,
    #[serde(default)]
    pub kube_api_qps: Option<f32>,
}

impl ApiSettings {
    /// The settings a component gives inline (`auth_type`, `context`).
    pub fn inline(auth_type: AuthType, context: &Option<String>) -> ApiSettings {
        ApiSettings {
            auth_type,
            context: context.clone(),
            ..Default::default()
        }
    }

    pub fn connect(&self) -> Result<ApiConfig, String> {
        ApiConfig::from_auth(self.auth_type, self.context.as_deref())
    }

    /// Where the API server is, and a client for it.
    pub fn client(&self) -> Result<(ApiConfig, reqwest::Client), String> {
        let api = self.connect()?;
        let client = api.client()?;
        Ok((api, client))
    }
}

/// Where a pod's service account is mounted; `FERROTEL_SERVICE_ACCOUNT_DIR` moves it (a
/// collector run outside a pod with a copied token, and the tests).
pub fn sa_dir() -> String {
    std::env::var("FERROTEL_SERVICE_ACCOUNT_DIR")
        .unwrap_or_else(|_| "/var/run/secrets/kubernetes.io/serviceaccount".into())
}

/// The namespace the collector's pod runs in (its service account's).
pub fn own_namespace() -> Result<String, String> {
    let path = format!("{}/namespace", sa_dir());
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("own namespace: {path}: {e}"))
}

impl ApiConfig {
    /// The API server as `auth_type` reaches it (`context` overrides a kubeconfig's current one).
    pub fn from_auth(auth: AuthType, context: Option<&str>) -> Result<ApiConfig, String> {
        match auth {
            AuthType::ServiceAccount => ApiConfig::in_cluster(),
            AuthType::KubeConfig => ApiConfig::from_kubeconfig(context),
            AuthType::None => Ok(ApiConfig {
                server: std::env::var("KUBERNETES_SERVICE_HOST")
                    .map(|h| {
                        format!(
                            "http://{h}:{}",
                            std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "80".into())
                        )
                    })
                    .map_err(|_| "auth_type none needs KUBERNETES_SERVICE_HOST".to_string())?,
                token: None,
                tls: Default::default(),
            }),
            AuthType::Tls => Err(
                "auth_type tls is the kubelet's; the API server takes serviceAccount, kubeConfig or none"
                    .into(),
            ),
        }
    }

    /// The pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, token and CA files).
    pub fn in_cluster() -> Result<ApiConfig, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .map_err(|_| "KUBERNETES_SERVICE_HOST is not set: not running in a pod (use auth_type: kubeConfig outside a cluster)".to_string())?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let dir = sa_dir();
        let token = std::fs::read_to_string(format!("{dir}/token"))
            .map_err(|e| format!("{dir}/token: {e}"))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(ApiConfig {
            server: format!("https://{host}:{port}"),
            token: Some(token.trim().to_owned()),
            tls: crate::net::tls::ClientTlsConfig {
                ca_file: Some(format!("{dir}/ca.crt")),
                ..Default::default()
            },
        })
    }

    /// The current context (or `context`) of `$KUBECONFIG` (or `~/.kube/config`).
    pub fn from_kubeconfig(context: Option<&str>) -> Result<ApiConfig, String> {
        let path = std::env::var("KUBECONFIG")
            .ok()
            .and_then(|p| p.split(':').next().map(str::to_owned))
            .or_else(|| {
                std::env::var("HOME")
                    .ok()
                    .map(|h| format!("{h}/.kube/config"))
            })
            .ok_or("no KUBECONFIG and no HOME")?;
        Self::from_kubeconfig_file(&path, context)
    }

    /// The current context (or `context`) of one kubeconfig file.
    pub fn from_kubeconfig_file(path: &str, context: Option<&str>) -> Result<ApiConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let kc: KubeConfig = serde_saphyr::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        let ctx_name = context
            .map(str::to_owned)
            .or_else(|| kc.current_context.clone())
            .unwrap_or_default();
        let ctx = kc
            .contexts
            .iter()
            .find(|c| c.name == ctx_name)
            .ok_or_else(|| format!("{path}: current-context {ctx_name:?} not found"))?;
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| format!("{path}: cluster {:?} not found", ctx.context.cluster))?;
        let user = kc.users.iter().find(|u| u.name == ctx.context.user);
        let dir = std::env::temp_dir().join(format!("ferrotel-kube-{}", std::process::id()));
        let materialize = |data: &Option<String>, name: &str| -> Result<Option<String>, String> {
            use base64::Engine;
            let Some(d) = data else { return Ok(None) };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| format!("{path}: {name}: {e}"))?;
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(|e| e.to_string())?;
            Ok(Some(p.to_string_lossy().into_owned()))
        };
        let c = &cluster.cluster;
        let ca = match &c.certificate_authority {
            Some(f) => Some(f.clone()),
            None => materialize(&c.certificate_authority_data, "ca.crt")?,
        };
        let (mut cert, mut key, mut token) = (None, None, None);
        if let Some(u) = user.map(|u| &u.user) {
            cert = match &u.client_certificate {
                Some(f) => Some(f.clone()),
                None => materialize(&u.client_certificate_data, "client.crt")?,
            };
            key = match &u.client_key {
                Some(f) => Some(f.clone()),
                None => materialize(&u.client_key_data, "client.key")?,
            };
            token = u.token.clone();
        }
        Ok(ApiConfig {
            server: c.server.trim_end_matches('/').to_owned(),
            token,
            tls: crate::net::tls::ClientTlsConfig {
                insecure_skip_verify: c.insecure_skip_tls_verify,
                ca_file: ca,
                cert_file: cert,
                key_file: key,
                ..Default::default()
            },
        })
    }

    pub fn client(&self) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("ferrotel/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10));
        if self.server.starts_with("https://") {
            let tls = self.tls.build(&[b"http/1.1"]).map_err(|e| e.to_string())?;
            b = b.tls_backend_preconfigured(tls);
        }
        b.build().map_err(|e| e.to_string())
    }
}

#[derive(Debug, Deserialize)]
struct KubeConfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    cluster: T,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    context: ContextRef,
}

#[derive(Debug, Deserialize)]
struct ContextRef {
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Debug, Default, Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
struct User {
    token: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_current_context_and_inline_credentials() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\n");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\ncurrent-context: b\nclusters:\n- name: one\n  cluster: {{server: 'https://one:6443'}}\n- name: two\n  cluster:\n    server: https://two:6443/\n    certificate-authority-data: {ca}\ncontexts:\n- {{name: a, context: {{cluster: one, user: u}}}}\n- {{name: b, context: {{cluster: two, user: u}}}}\nusers:\n- name: u\n  user: {{token: abc}}\n"
            ),
        )
        .unwrap();
        let api = ApiConfig::from_kubeconfig_file(&path.to_string_lossy(), None);
        let api = api.unwrap();
        assert_eq!(api.server, "https://two:6443");
        let other = ApiConfig::from_kubeconfig_file(&path.to_string_lossy(), Some("a")).unwrap();
        assert_eq!(other.server, "https://one:6443");
        assert_eq!(api.token.as_deref(), Some("abc"));
        let ca_file = api.tls.ca_file.unwrap();
        assert_eq!(
            std::fs::read_to_string(ca_file).unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
    }
}
