//! `target_allocator`: the OpenTelemetry Operator's target allocator hands each collector its
//! jobs and targets. Every `interval` the receiver reads `GET <endpoint>/scrape_configs` (a JSON
//! object of job name → Prometheus scrape config) and runs those jobs, each discovering its
//! targets by HTTP SD at `<endpoint>/jobs/<job>/targets?collector_id=<collector_id>` every
//! `http_sd_config.refresh_interval`. A changed job set replaces the jobs; an allocator that
//! cannot be reached keeps the current ones.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::http::TlsConfig;
use super::sd;
use crate::config::units;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TaTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub insecure: bool,
    pub insecure_skip_verify: bool,
    pub server_name_override: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TaHttpSd {
    /// Default 60s.
    #[serde(deserialize_with = "units::opt_duration")]
    pub refresh_interval: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TaConfig {
    /// The allocator's URL, e.g. `http://my-targetallocator-service`.
    pub endpoint: String,
    /// How often the job list is read. Default 30s.
    #[serde(deserialize_with = "units::opt_duration")]
    pub interval: Option<Duration>,
    /// This collector's id (the Operator sets the pod name).
    pub collector_id: String,
    pub http_sd_config: Option<TaHttpSd>,
    pub tls: Option<TaTls>,
    pub headers: BTreeMap<String, String>,
    #[serde(deserialize_with = "units::opt_duration")]
    pub timeout: Option<Duration>,
}

impl TaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.collector_id.is_empty() {
            return Err("`collector_id` is required".into());
        }
        let u = url::Url::parse(&self.endpoint)
            .map_err(|e| format!("endpoint {:?}: {e}", self.endpoint))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "endpoint {:?}: needs http:// or https://",
                self.endpoint
            ));
        }
        Ok(())
    }

    pub fn tls_config(&self) -> Option<TlsConfig> {
        self.tls.as_ref().map(|t| TlsConfig {
            ca_file: t.ca_file.clone(),
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
            server_name: t.server_name_override.clone(),
            ..Default::default()
        })
    }

    pub fn base(&self) -> &str {
        self.endpoint.trim_end_matches('/')
    }

    /// The HTTP SD of one job: its targets for this collector.
    pub fn targets_sd(&self, job: &str) -> sd::HttpSd {
        let job: String = url::form_urlencoded::byte_serialize(job.as_bytes()).collect();
        let id: String =
            url::form_urlencoded::byte_serialize(self.collector_id.as_bytes()).collect();
        sd::HttpSd {
            url: format!("{}/jobs/{job}/targets?collector_id={id}", self.base()),
            refresh_interval: Some(
                self.http_sd_config
                    .as_ref()
                    .and_then(|h| h.refresh_interval)
                    .unwrap_or(Duration::from_secs(60)),
            ),
            tls_config: self.tls_config(),
            ..Default::default()
        }
    }
}

/// A job as the allocator serves it, reduced to the `known` keys of a scrape config (Prometheus
/// marshals every field, e.g. `track_timestamps_staleness`; those are dropped with a debug
/// line), without its own discovery (the allocator's targets replace it), and named.
pub fn job_json(name: &str, mut v: serde_json::Value, known: &[&str]) -> serde_json::Value {
    if let Some(obj) = v.as_object_mut() {
        let dropped: Vec<String> = obj
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in &dropped {
            obj.remove(k);
        }
        if !dropped.is_empty() {
            tracing::debug!(job = %name, keys = ?dropped, "prometheus: target allocator job keys ferrotel does not use");
        }
        obj.retain(|k, _| !k.ends_with("_sd_configs") && k != "static_configs");
        obj.entry("job_name")
            .or_insert_with(|| serde_json::Value::String(name.into()));
    }
    v
}

/// `GET <endpoint>/scrape_configs`: the job name → scrape config object.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    headers: &BTreeMap<String, String>,
) -> Result<serde_json::Value, String> {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| crate::text::error_chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let text = resp
        .text()
        .await
        .map_err(|e| crate::text::error_chain(&e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("expected a JSON object of job name → scrape config".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_keep_known_keys_and_lose_their_own_discovery() {
        let v = job_json(
            "node exporter",
            serde_json::json!({
                "job_name": "node exporter",
                "scrape_interval": "15s",
                "track_timestamps_staleness": false,
                "static_configs": [{"targets": ["x:1"]}],
                "metric_relabel_configs": [{"action": "drop", "regex": "go_.*", "source_labels": ["__name__"]}]
            }),
            &[
                "job_name",
                "scrape_interval",
                "static_configs",
                "metric_relabel_configs",
            ],
        );
        assert_eq!(
            v,
            serde_json::json!({
                "job_name": "node exporter",
                "scrape_interval": "15s",
                "metric_relabel_configs": [{"action": "drop", "regex": "go_.*", "source_labels": ["__name__"]}]
            })
        );
        let cfg = TaConfig {
            endpoint: "http://ta:8080/".into(),
            collector_id: "collector-0".into(),
            ..Default::default()
        };
        assert_eq!(
            cfg.targets_sd("node exporter").url,
            "http://ta:8080/jobs/node+exporter/targets?collector_id=collector-0"
        );
        assert!(TaConfig::default().validate().is_err());
    }
}
