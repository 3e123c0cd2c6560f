//! API discovery: where a resource named by its plural (`pods`, `events`, `deployments`) and,
//! optionally, its group lives — `GET /api/v1` for the core group, `GET /apis` for the others'
//! preferred versions, then `GET /apis/<group>/<version>` for their resources.

use std::time::Duration;

use serde::Deserialize;

use super::ApiConfig;

/// A resource as discovery found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// `v1` or `apps/v1`.
    pub group_version: String,
    pub namespaced: bool,
}

impl Found {
    /// The collection's path, all namespaces or one.
    pub fn path(&self, resource: &str, namespace: Option<&str>) -> String {
        let base = if self.group_version.contains('/') {
            format!("/apis/{}", self.group_version)
        } else {
            format!("/api/{}", self.group_version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{resource}"),
            _ => format!("{base}/{resource}"),
        }
    }
}

#[derive(Deserialize)]
struct ResourceList {
    #[serde(default)]
    resources: Vec<ApiResource>,
}

#[derive(Deserialize)]
struct ApiResource {
    name: String,
    #[serde(default)]
    namespaced: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupList {
    #[serde(default)]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    name: String,
    preferred_version: GroupVersion,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupVersion {
    group_version: String,
}

/// Why a resource could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The API answered, and has no such resource (a config error, or a CRD not installed).
    #[error("the API server has no resource {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Unreachable(String),
}

async fn get<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    api: &ApiConfig,
    path: &str,
) -> Result<Option<T>, DiscoveryError> {
    let url = format!("{}{path}", api.server);
    let mut r = client
        .get(&url)
        .header("Accept", "application/json")
        .timeout(Duration::from_secs(30));
    if let Some(t) = &api.token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.map_err(|e| {
        DiscoveryError::Unreachable(format!("GET {url}: {}", crate::text::error_chain(&e)))
    })?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(DiscoveryError::Unreachable(format!(
            "GET {url}: HTTP {}",
            resp.status()
        )));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| DiscoveryError::Unreachable(format!("GET {url}: {e}")))?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| DiscoveryError::Unreachable(format!("GET {url}: {e}")))
}

async fn in_group_version(
    client: &reqwest::Client,
    api: &ApiConfig,
    gv: &str,
    resource: &str,
) -> Result<Option<Found>, DiscoveryError> {
    let path = if gv.contains('/') {
        format!("/apis/{gv}")
    } else {
        format!("/api/{gv}")
    };
    let list: Option<ResourceList> = get(client, api, &path).await?;
    Ok(list.and_then(|l| {
        l.resources
            .into_iter()
            .find(|r| r.name == resource)
            .map(|r| Found {
                group_version: gv.to_owned(),
                namespaced: r.namespaced,
            })
    }))
}

/// Finds `resource` in `group` (the core group when empty; any group when `None`, the core
/// group first, as `kubectl` resolves a bare name).
pub async fn find(
    client: &reqwest::Client,
    api: &ApiConfig,
    resource: &str,
    group: Option<&str>,
) -> Result<Found, DiscoveryError> {
    let not_found = || {
        DiscoveryError::NotFound(match group {
            Some(g) if !g.is_empty() => format!("{resource}.{g}"),
            _ => resource.to_owned(),
        })
    };
    if group.is_none_or(str::is_empty)
        && let Some(f) = in_group_version(client, api, "v1", resource).await?
    {
        return Ok(f);
    }
    if group == Some("") {
        return Err(not_found());
    }
    let groups: GroupList = get(client, api, "/apis").await?.ok_or_else(not_found)?;
    for g in groups
        .groups
        .iter()
        .filter(|g| group.is_none_or(|want| want == g.name))
    {
        if let Some(f) =
            in_group_version(client, api, &g.preferred_version.group_version, resource).await?
        {
            return Ok(f);
        }
    }
    Err(not_found())
}
