//! Service discovery beyond static targets and Kubernetes: `file_sd_configs` (JSON or YAML
//! files of target groups), `http_sd_configs` (a URL answering target groups in JSON, as
//! Prometheus's HTTP SD documents them, which is also what the OpenTelemetry Operator's target
//! allocator serves) and `dns_sd_configs` (SRV, MX and NS records from the DNS servers, A and
//! AAAA through the system resolver), each with Prometheus's `__meta_*` labels.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::http::{Auth, Authorization, BasicAuth, ClientSettings, OAuth2, TlsConfig};
use super::relabel::Labels;
use crate::config::units;

/// One target group: `{"targets": [...], "labels": {...}}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl TargetGroup {
    fn into_labels(self, extra: &[(&str, &str)], out: &mut Vec<Labels>) {
        for t in self.targets {
            let mut l: Labels = self.labels.clone();
            for (k, v) in extra {
                l.insert((*k).into(), (*v).into());
            }
            l.insert("__address__".into(), t);
            out.push(l);
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FileSd {
    /// Paths, the last element may be a glob (`*.json`, `*.yml`, `*.yaml`).
    pub files: Vec<String>,
    /// Default 5m (files are also re-read then; Prometheus watches them too).
    #[serde(deserialize_with = "units::opt_duration")]
    pub refresh_interval: Option<Duration>,
}

impl FileSd {
    pub fn refresh(&self) -> Duration {
        self.refresh_interval.unwrap_or(Duration::from_secs(300))
    }

    /// Every target of every matching file; a file that does not read or parse is skipped with
    /// a warning (Prometheus keeps the other files' targets too).
    pub fn discover(&self) -> Vec<Labels> {
        let mut out = Vec::new();
        for pattern in &self.files {
            let paths: Vec<std::path::PathBuf> = match glob::glob(pattern) {
                Ok(p) => p.filter_map(Result::ok).collect(),
                Err(e) => {
                    tracing::warn!(pattern = %pattern, error = %e, "prometheus: file_sd pattern is not a glob");
                    continue;
                }
            };
            for p in paths {
                let path = p.display().to_string();
                match read_groups(&p) {
                    Ok(groups) => {
                        for g in groups {
                            g.into_labels(&[("__meta_filepath", &path)], &mut out);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(file = %path, error = %e, "prometheus: file_sd file skipped")
                    }
                }
            }
        }
        out
    }
}

fn read_groups(p: &std::path::Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(p).map_err(|e| e.to_string())?;
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "json" => serde_json::from_str(&text).map_err(|e| e.to_string()),
        "yml" | "yaml" => {
            let node = crate::config::node::parse(&text).map_err(|e| format!("{e:?}"))?;
            crate::config::from_node(&node).map_err(|e| e.msg)
        }
        other => Err(format!(
            "extension `.{other}`: file_sd reads .json, .yml and .yaml"
        )),
    }
}

/// `http_sd_configs`: its URL and the HTTP client keys of Prometheus's `HTTPClientConfig`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSd {
    pub url: String,
    /// Default 60s.
    #[serde(deserialize_with = "units::opt_duration")]
    pub refresh_interval: Option<Duration>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub oauth2: Option<OAuth2>,
    pub proxy_url: Option<String>,
    pub tls_config: Option<TlsConfig>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
}

impl HttpSd {
    pub fn settings(&self) -> ClientSettings {
        super::http::client_settings!(self)
    }

    pub fn refresh(&self) -> Duration {
        self.refresh_interval.unwrap_or(Duration::from_secs(60))
    }

    pub fn validate(&self) -> Result<(), String> {
        let u = url::Url::parse(&self.url).map_err(|e| format!("url {:?}: {e}", self.url))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("url {:?}: needs http:// or https://", self.url));
        }
        self.settings().validate()
    }
}

/// A running HTTP discovery: its client and credentials.
pub struct HttpDiscovery {
    pub url: String,
    client: reqwest::Client,
    auth: Auth,
}

impl HttpDiscovery {
    pub fn new(sd: &HttpSd) -> Result<HttpDiscovery, String> {
        let s = sd.settings();
        Ok(HttpDiscovery {
            url: sd.url.clone(),
            client: s.client(Duration::from_secs(30))?,
            auth: s.auth(),
        })
    }

    /// One poll: the groups as Prometheus's HTTP SD reads them (HTTP 200, a JSON list).
    pub async fn discover(&self) -> Result<Vec<Labels>, String> {
        let req = self
            .auth
            .apply(&self.client, self.client.get(&self.url))
            .await?;
        let resp = req.send().await.map_err(|e| crate::text::error_chain(&e))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("{}: HTTP {}", self.url, resp.status()));
        }
        let body = resp
            .text()
            .await
            .map_err(|e| format!("{}: {}", self.url, crate::text::error_chain(&e)))?;
        let groups: Vec<TargetGroup> = serde_json::from_str(&body)
            .map_err(|e| format!("{}: not a JSON list of target groups: {e}", self.url))?;
        let mut out = Vec::new();
        for g in groups {
            g.into_labels(&[("__meta_url", &self.url)], &mut out);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSd {
    pub names: Vec<String>,
    /// `SRV` (default), `A`, `AAAA`, `MX` or `NS`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub port: Option<u16>,
    /// Default 30s.
    #[serde(deserialize_with = "units::opt_duration")]
    pub refresh_interval: Option<Duration>,
}

impl DnsSd {
    pub fn validate(&self) -> Result<(), String> {
        if self.names.is_empty() {
            return Err("`names` is required".into());
        }
        match self.kind.as_deref() {
            None | Some("SRV") => {}
            Some("A" | "AAAA" | "MX" | "NS") => {
                if self.port.is_none() {
                    return Err("`port` is required for every record type but SRV".into());
                }
            }
            Some(o) => return Err(format!("type {o:?}: expected SRV, A, AAAA, MX or NS")),
        }
        Ok(())
    }

    pub fn refresh(&self) -> Duration {
        self.refresh_interval.unwrap_or(Duration::from_secs(30))
    }

    /// Every record of each name, as Prometheus labels them: `__meta_dns_name`, and the SRV
    /// (`__meta_dns_srv_record_target`, `_port`), MX or NS target. A and AAAA go through the
    /// system resolver (so `/etc/hosts` answers too); SRV, MX and NS through
    /// [`crate::net::dns`]. A name that fails keeps no targets (and is logged).
    pub async fn discover(&self) -> Vec<Labels> {
        use crate::net::dns::{self, Record, RecordType};
        let port = self.port.unwrap_or(0);
        let mut out = Vec::new();
        let kind = match self.kind.as_deref() {
            Some("A") => None,
            Some("AAAA") => None,
            Some("MX") => Some(RecordType::Mx),
            Some("NS") => Some(RecordType::Ns),
            _ => Some(RecordType::Srv),
        };
        let rc = kind.map(|_| dns::ResolvConf::system());
        for name in &self.names {
            let mut add = |address: String, extra: &[(&str, String)]| {
                let mut l = Labels::new();
                l.insert("__address__".into(), address);
                l.insert("__meta_dns_name".into(), name.clone());
                for (k, v) in extra {
                    l.insert((*k).into(), v.clone());
                }
                out.push(l);
            };
            let (Some(kind), Some(rc)) = (kind, &rc) else {
                let v6 = self.kind.as_deref() == Some("AAAA");
                match tokio::net::lookup_host((name.as_str(), port)).await {
                    Ok(addrs) => {
                        let mut seen: Vec<std::net::SocketAddr> =
                            addrs.filter(|a| a.is_ipv6() == v6).collect();
                        seen.sort();
                        seen.dedup();
                        for a in seen {
                            add(a.to_string(), &[]);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(name = %name, error = %e, "prometheus: dns_sd lookup failed")
                    }
                }
                continue;
            };
            let records = match dns::lookup(rc, name, kind).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(name = %name, error = %e, "prometheus: dns_sd lookup failed");
                    continue;
                }
            };
            let host_port = |host: &str, port: u16| {
                let host = host.trim_end_matches('.');
                if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            };
            for r in records {
                match r {
                    Record::Srv {
                        port: p, target, ..
                    } => add(
                        host_port(&target, p),
                        &[
                            ("__meta_dns_srv_record_target", target.clone()),
                            ("__meta_dns_srv_record_port", p.to_string()),
                        ],
                    ),
                    Record::Mx { exchange, .. } => add(
                        host_port(&exchange, port),
                        &[("__meta_dns_mx_record_target", exchange.clone())],
                    ),
                    Record::Ns(ns) => add(
                        host_port(&ns, port),
                        &[("__meta_dns_ns_record_target", ns.clone())],
                    ),
                    Record::A(_) | Record::Aaaa(_) => {}
                }
            }
        }
        out
    }
}
