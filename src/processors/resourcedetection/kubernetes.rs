//! The detectors that need Kubernetes: `k8s_api` (old name `k8snode`: this node's name and
//! UID, the cluster's UID), `openshift` (the cluster's `Infrastructure`), `eks` (an EKS
//! cluster's node: IMDS or the node's `providerID`, and the cluster name from the instance's
//! tags through EC2 `DescribeInstances`) and `aks` (the AKS node's IMDS answer). Each answers
//! nothing, without error, when not on the platform it knows.

use std::time::Duration;

use serde_json::Value;

use super::config::{EksConfig, K8sApiConfig, OpenshiftConfig};
use super::detectors::{self, Found};
use crate::kube::{ApiConfig, ApiSettings};
use crate::net::aws;

fn on_kubernetes() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty())
}

/// `GET <server><path>` as JSON: `Ok(None)` for 401/403 (no permission), an error otherwise.
async fn api_get(
    c: &reqwest::Client,
    server: &str,
    token: Option<&str>,
    path: &str,
    timeout: Duration,
) -> Result<Option<Value>, String> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let mut rb = c
        .get(&url)
        .header("Accept", "application/json")
        .timeout(timeout);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", crate::text::error_chain(&e)))?;
    let status = r.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    let body = r
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: {}", crate::text::error_chain(&e)))?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| format!("GET {url}: {e}"))
}

async fn get_node(
    c: &reqwest::Client,
    api: &ApiConfig,
    node: &str,
    timeout: Duration,
) -> Result<Value, String> {
    api_get(
        c,
        &api.server,
        api.token.as_deref(),
        &format!("/api/v1/nodes/{node}"),
        timeout,
    )
    .await?
    .ok_or_else(|| format!("no permission to get node {node} (RBAC: get nodes)"))
}

fn node_name(var: &str) -> Result<String, String> {
    std::env::var(var)
        .ok()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            format!("the node name is not in ${var}: set it from the downward API (spec.nodeName)")
        })
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `k8s_api`: `k8s.node.name` and `k8s.node.uid` of the node named in `node_from_env_var`,
/// `k8s.cluster.uid` (the `kube-system` namespace's UID; skipped with a warning without
/// permission to read it).
pub async fn k8s_api(
    cfg: &K8sApiConfig,
    wanted: &dyn Fn(&str) -> bool,
    timeout: Duration,
) -> Result<Found, String> {
    let node = node_name(&cfg.node_from_env_var)?;
    let (api, c) = ApiSettings::inline(cfg.auth_type, &cfg.context).client()?;
    let mut out = Found::new();
    if wanted("k8s.node.name") || wanted("k8s.node.uid") {
        let n = get_node(&c, &api, &node, timeout).await?;
        if let Some(name) = text(&n["metadata"]["name"]) {
            out.push(("k8s.node.name".into(), name));
        }
        if let Some(uid) = text(&n["metadata"]["uid"]) {
            out.push(("k8s.node.uid".into(), uid));
        }
    }
    if wanted("k8s.cluster.uid") {
        match api_get(
            &c,
            &api.server,
            api.token.as_deref(),
            "/api/v1/namespaces/kube-system",
            timeout,
        )
        .await?
        {
            Some(ns) => {
                if let Some(uid) = text(&ns["metadata"]["uid"]) {
                    out.push(("k8s.cluster.uid".into(), uid));
                }
            }
            None => tracing::warn!(
                "k8s_api: no permission to get namespace kube-system; k8s.cluster.uid skipped \
                 (grant get on namespaces, or turn the attribute off)"
            ),
        }
    }
    Ok(out)
}

/// `openshift`: the `Infrastructure` named `cluster` (`config.openshift.io/v1`): the cloud it
/// runs on, its region and the infrastructure name as `k8s.cluster.name`.
pub async fn openshift(cfg: &OpenshiftConfig, timeout: Duration) -> Result<Found, String> {
    let sa = crate::kube::sa_dir();
    let address = match &cfg.address {
        Some(a) => a.trim_end_matches('/').to_owned(),
        None => {
            let host = std::env::var("KUBERNETES_SERVICE_HOST")
                .map_err(|_| "no `address` and KUBERNETES_SERVICE_HOST is not set".to_string())?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            format!("https://{host}:{port}")
        }
    };
    let token = match &cfg.token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(format!("{sa}/token"))
            .map(|t| t.trim().to_owned())
            .map_err(|e| format!("{sa}/token: {e}"))?,
    };
    let mut tls = cfg.tls.clone();
    if !tls.insecure && !tls.insecure_skip_verify && tls.ca_file.is_none() && tls.ca_pem.is_none() {
        tls.ca_file = Some(format!("{sa}/ca.crt"));
    }
    let api = ApiConfig {
        server: address,
        token: Some(token),
        tls,
    };
    let c = api.client()?;
    let infra = api_get(
        &c,
        &api.server,
        api.token.as_deref(),
        "/apis/config.openshift.io/v1/infrastructures/cluster/status",
        timeout,
    )
    .await?
    .ok_or("no permission to get infrastructures/cluster (RBAC: config.openshift.io)")?;
    let status = &infra["status"];
    let ps = &status["platformStatus"];
    let platform_type = ps["type"].as_str().unwrap_or("").to_ascii_lowercase();
    let (provider, platform, region) = match platform_type.as_str() {
        "aws" => (Some("aws"), Some("aws_openshift"), &ps["aws"]["region"]),
        "azure" => (
            Some("azure"),
            Some("azure_openshift"),
            &ps["azure"]["cloudName"],
        ),
        "gcp" => (Some("gcp"), Some("gcp_openshift"), &ps["gcp"]["region"]),
        "ibmcloud" => (
            Some("ibm_cloud"),
            Some("ibm_cloud_openshift"),
            &ps["ibmcloud"]["location"],
        ),
        "openstack" => (None, None, &ps["openstack"]["cloudName"]),
        _ => (None, None, &Value::Null),
    };
    let mut out = Found::new();
    if let Some(name) = text(&status["infrastructureName"]) {
        out.push(("k8s.cluster.name".into(), name));
    }
    if let Some(p) = provider {
        out.push(("cloud.provider".into(), p.into()));
    }
    if let Some(p) = platform {
        out.push(("cloud.platform".into(), p.into()));
    }
    if let Some(r) = text(region) {
        out.push(("cloud.region".into(), r.to_ascii_lowercase()));
    }
    Ok(out)
}

/// An EC2 instance as `DescribeInstances` describes it.
#[derive(Debug, Default, PartialEq)]
pub struct Instance {
    pub account_id: Option<String>,
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    pub private_dns_name: Option<String>,
    pub cluster_name: Option<String>,
}

/// Reads a `DescribeInstancesResponse`: the first reservation's owner and instance, and the
/// EKS cluster from the instance's tags (`aws:eks:cluster-name`, `eks:cluster-name`, or a
/// `kubernetes.io/cluster/<name>` key).
pub fn parse_describe_instances(xml: &str) -> Instance {
    let mut out = Instance::default();
    let Some(reservation) = aws::xml_block(xml, "reservationSet")
        .and_then(|set| aws::xml_blocks(set, "item").into_iter().next())
    else {
        return out;
    };
    out.account_id = aws::xml_text(reservation, "ownerId");
    let Some(instance) = aws::xml_block(reservation, "instancesSet")
        .and_then(|set| aws::xml_blocks(set, "item").into_iter().next())
    else {
        return out;
    };
    out.image_id = aws::xml_text(instance, "imageId");
    out.instance_type = aws::xml_text(instance, "instanceType");
    out.private_dns_name = aws::xml_text(instance, "privateDnsName").filter(|s| !s.is_empty());
    // The instance's own tag set: not one inside a nested item (a network interface's).
    let depth_at = |p: usize| {
        let head = &instance[..p];
        head.matches("<item>").count() as isize - head.matches("</item>").count() as isize
    };
    let tags: Vec<&str> = instance
        .match_indices("<tagSet>")
        .find(|(p, _)| depth_at(*p) == 0)
        .and_then(|(p, _)| aws::xml_block(&instance[p..], "tagSet"))
        .into_iter()
        .collect();
    for tag in tags.iter().flat_map(|t| aws::xml_blocks(t, "item")) {
        let key = aws::xml_text(tag, "key").unwrap_or_default();
        if key == "aws:eks:cluster-name" || key == "eks:cluster-name" {
            out.cluster_name = aws::xml_text(tag, "value");
            break;
        }
        if let Some(name) = key.strip_prefix("kubernetes.io/cluster/") {
            out.cluster_name = Some(name.to_owned());
            break;
        }
    }
    out
}

/// `aws:///<zone>/<instance id>` → region, zone, instance id.
pub fn parse_provider_id(id: &str) -> Option<(String, String, String)> {
    let rest = id.strip_prefix("aws:///")?;
    let (zone, instance) = rest.split_once('/')?;
    let instance = instance.trim_end_matches('/');
    if zone.len() < 2 || instance.is_empty() || instance.contains('/') {
        return None;
    }
    let region = zone[..zone.len() - 1].to_owned();
    Some((region, zone.to_owned(), instance.to_owned()))
}

async fn describe_instance(
    c: &reqwest::Client,
    cfg: &EksConfig,
    region: &str,
    instance_id: &str,
    timeout: Duration,
) -> Result<Instance, String> {
    let mut last = String::new();
    let mut backoff = Duration::from_millis(200);
    for attempt in 1..=cfg.max_attempts.max(1) {
        let r = async {
            let creds = aws::credentials(c, region).await?;
            aws::query_api(
                c,
                &creds,
                "ec2",
                region,
                &[
                    ("Action", "DescribeInstances"),
                    ("InstanceId.1", instance_id),
                    ("Version", "2016-11-15"),
                ],
                timeout,
            )
            .await
        }
        .await;
        match r {
            Ok(xml) => return Ok(parse_describe_instances(&xml)),
            // A refusal (no permission, bad credentials) does not get better with retries.
            Err(
                e @ (aws::AwsError::Status {
                    status: 400..=499, ..
                }
                | aws::AwsError::NoCredentials(_)),
            ) => {
                return Err(format!("EC2 DescribeInstances {instance_id}: {e}"));
            }
            Err(e) => last = e.to_string(),
        }
        if attempt < cfg.max_attempts {
            tokio::time::sleep(backoff.min(cfg.max_backoff)).await;
            backoff *= 2;
        }
    }
    Err(format!("EC2 DescribeInstances {instance_id}: {last}"))
}

/// `eks`: on an EKS cluster (in a pod, the API server's version has `-eks-`): the provider and
/// platform; the instance from IMDS when it answers (else from the node's `providerID` and
/// `DescribeInstances`); `k8s.cluster.name` from the instance's tags when wanted.
pub async fn eks(
    cfg: &EksConfig,
    wanted: &dyn Fn(&str) -> bool,
    timeout: Duration,
) -> Result<Found, String> {
    if !on_kubernetes() {
        return Ok(Found::new());
    }
    let api = ApiConfig::in_cluster()?;
    let kc = api.client()?;
    let version = api_get(&kc, &api.server, api.token.as_deref(), "/version", timeout)
        .await?
        .ok_or("no permission to read the API server's /version")?;
    let git = version["gitVersion"].as_str().unwrap_or("");
    if !git.contains("-eks-") {
        tracing::debug!(version = git, "eks: not an EKS cluster");
        return Ok(Found::new());
    }
    let mut out: Found = vec![
        ("cloud.provider".into(), "aws".into()),
        ("cloud.platform".into(), "aws_eks".into()),
    ];
    let c = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let imds = aws::imds_endpoint();
    let from_imds = match aws::imds_token(&c, &imds).await {
        Ok(t) => aws::imds_get(&c, &imds, &t, "meta-data/instance-id")
            .await
            .ok()
            .map(|_| t),
        Err(_) => None,
    };
    let (region, instance_id) = if let Some(token) = from_imds {
        let found = detectors::ec2_with(&c, &imds, &token).await?;
        let get = |k: &str| found.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (region, id) = (get("cloud.region"), get("host.id"));
        out.extend(
            found
                .into_iter()
                .filter(|(k, _)| k != "cloud.provider" && k != "cloud.platform"),
        );
        if !wanted("k8s.cluster.name") {
            return Ok(out);
        }
        match (region, id) {
            (Some(r), Some(i)) => (r, i),
            _ => return Err("IMDS gave no region or instance id".into()),
        }
    } else {
        let node = node_name(&cfg.node_from_env_var)?;
        let n = get_node(&kc, &api, &node, timeout).await?;
        let pid = n["spec"]["providerID"].as_str().unwrap_or("");
        let (region, zone, id) = parse_provider_id(pid)
            .ok_or_else(|| format!("node {node}: providerID {pid:?} is not aws:///<zone>/<id>"))?;
        out.push(("cloud.region".into(), region.clone()));
        out.push(("cloud.availability_zone".into(), zone));
        out.push(("host.id".into(), id.clone()));
        (region, id)
    };
    let inst = describe_instance(&c, cfg, &region, &instance_id, timeout).await?;
    let have = |out: &Found, k: &str| out.iter().any(|(n, _)| n == k);
    for (k, v) in [
        ("cloud.account.id", inst.account_id),
        ("host.image.id", inst.image_id),
        ("host.type", inst.instance_type),
        ("host.name", inst.private_dns_name),
        ("k8s.cluster.name", inst.cluster_name),
    ] {
        if let Some(v) = v
            && !have(&out, k)
        {
            out.push((k.into(), v));
        }
    }
    Ok(out)
}

/// AKS names a cluster's node resource group `MC_<group>_<cluster>_<location>`; a custom node
/// resource group is unique to its cluster and stands for the name.
pub fn aks_cluster_name(resource_group: &str) -> String {
    let parts: Vec<&str> = resource_group.split('_').collect();
    if parts.len() == 4 && parts[0].eq_ignore_ascii_case("mc") {
        parts[2].to_owned()
    } else {
        resource_group.to_owned()
    }
}

/// `aks`: in a pod on an Azure VM: provider, `azure_aks`, and the cluster name from the node
/// resource group.
pub async fn aks(endpoint: &str, timeout: Duration) -> Result<Found, String> {
    if !on_kubernetes() {
        return Ok(Found::new());
    }
    let compute = detectors::azure_compute(endpoint, timeout).await?;
    let mut out: Found = vec![
        ("cloud.provider".into(), "azure".into()),
        ("cloud.platform".into(), "azure_aks".into()),
    ];
    if let Some(rg) = text(&compute["resourceGroupName"]) {
        out.push(("k8s.cluster.name".into(), aks_cluster_name(&rg)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids() {
        assert_eq!(
            parse_provider_id("aws:///us-west-2a/i-049ca2df511bec762"),
            Some((
                "us-west-2".into(),
                "us-west-2a".into(),
                "i-049ca2df511bec762".into()
            ))
        );
        for bad in [
            "gce://p/z/n",
            "aws:///us-west-2a/",
            "aws://us-west-2a/i-1",
            "",
        ] {
            assert_eq!(parse_provider_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn aks_cluster_names() {
        assert_eq!(aks_cluster_name("MC_my-rg_my-cluster_eastus"), "my-cluster");
        assert_eq!(aks_cluster_name("mc_rg_c_westeurope"), "c");
        // Underscores in the group or cluster name: the whole group name.
        assert_eq!(aks_cluster_name("MC_my_rg_c_eastus"), "MC_my_rg_c_eastus");
        assert_eq!(aks_cluster_name("custom-infra"), "custom-infra");
    }

    #[test]
    fn describe_instances_fields_and_cluster_tags() {
        let xml = |tags: &str| {
            format!(
                "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
                 <requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId>\
                 <ownerId>123456789012</ownerId><instancesSet><item><instanceId>i-1</instanceId>\
                 <imageId>ami-1</imageId><privateDnsName>ip-10-0-0-1.ec2.internal</privateDnsName>\
                 <instanceType>m5.large</instanceType><networkInterfaceSet><item>\
                 <privateDnsName>eni.internal</privateDnsName><tagSet><item><key>kubernetes.io/cluster/eni</key>\
                 <value>owned</value></item></tagSet></item></networkInterfaceSet>\
                 <tagSet>{tags}</tagSet></item></instancesSet></item></reservationSet>\
                 </DescribeInstancesResponse>"
            )
        };
        let i = parse_describe_instances(&xml("<item><key>Name</key><value>n</value></item>\
             <item><key>aws:eks:cluster-name</key><value>prod-eu</value></item>"));
        assert_eq!(
            i,
            Instance {
                account_id: Some("123456789012".into()),
                image_id: Some("ami-1".into()),
                instance_type: Some("m5.large".into()),
                private_dns_name: Some("ip-10-0-0-1.ec2.internal".into()),
                cluster_name: Some("prod-eu".into()),
            }
        );
        let k = parse_describe_instances(&xml(
            "<item><key>kubernetes.io/cluster/old-style</key><value>owned</value></item>",
        ));
        assert_eq!(k.cluster_name.as_deref(), Some("old-style"));
        assert_eq!(parse_describe_instances(&xml("")).cluster_name, None);
        assert_eq!(parse_describe_instances("<Response/>"), Instance::default());
    }
}
