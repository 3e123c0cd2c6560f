//! The detectors: each returns the resource attributes it found (possibly none) or why it could
//! not look. Cloud detectors read the metadata services' documented endpoints; their addresses
//! can be moved (the AWS SDKs' `AWS_EC2_METADATA_SERVICE_ENDPOINT`, Google's
//! `GCE_METADATA_HOST`, and `FERROTEL_AZURE_IMDS_ENDPOINT`), which is how the tests reach their
//! stand-ins.

use std::time::Duration;

use serde_json::Value;

/// Attributes as detected: name and string value, in the order found.
pub type Found = Vec<(String, String)>;

/// `OTEL_RESOURCE_ATTRIBUTES` (and the deprecated `OTEL_RESOURCE`): `k=v,k2=v2`, percent-decoded.
pub fn env(vars: &dyn Fn(&str) -> Option<String>) -> Result<Found, String> {
    let Some(text) = vars("OTEL_RESOURCE_ATTRIBUTES").or_else(|| vars("OTEL_RESOURCE")) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value"))?;
        out.push((percent_decode(k.trim())?, percent_decode(v.trim())?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("OTEL_RESOURCE_ATTRIBUTES: bad escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("OTEL_RESOURCE_ATTRIBUTES: {s:?} is not UTF-8"))
}

/// The fully qualified name of `host` (getaddrinfo's canonical name).
fn fqdn(host: &str) -> Result<String, String> {
    let c = std::ffi::CString::new(host).map_err(|e| e.to_string())?;
    // SAFETY: zeroed hints with a flag set, a valid name, and freeaddrinfo on success.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(c.as_ptr(), std::ptr::null(), &hints, &mut res) != 0 || res.is_null() {
            return Err(format!("{host}: no canonical name"));
        }
        let name = (*res).ai_canonname;
        let out = if name.is_null() {
            Err(format!("{host}: no canonical name"))
        } else {
            Ok(std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned())
        };
        libc::freeaddrinfo(res);
        out
    }
}

/// The first processor of `/proc/cpuinfo` as the Collector reports it (gopsutil's fields; the
/// cache size in KiB, as the kernel prints it).
pub fn cpu_info(text: &str) -> Found {
    let first = text.split("\n\n").next().unwrap_or("");
    let mut out = Found::new();
    for line in first.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let attr = match k.trim() {
            "vendor_id" => "host.cpu.vendor.id",
            "cpu family" => "host.cpu.family",
            "model" => "host.cpu.model.id",
            "model name" => "host.cpu.model.name",
            "stepping" => "host.cpu.stepping",
            "cache size" => "host.cpu.cache.l2.size",
            _ => continue,
        };
        let v = if attr == "host.cpu.cache.l2.size" {
            v.trim_end_matches("KB").trim()
        } else {
            v
        };
        if !v.is_empty() {
            out.push((attr.into(), v.to_owned()));
        }
    }
    out
}

/// The addresses (`host.ip`) and hardware addresses (`host.mac`, IEEE RA form: `AA-BB-...`) of
/// the interfaces that are up and not loopback, each list comma-joined.
fn interfaces() -> (Vec<String>, Vec<String>) {
    let mut ips = Vec::new();
    let mut names = Vec::new();
    // SAFETY: getifaddrs fills a list freed below with freeifaddrs; each entry's address is
    // read as the family it declares.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return (ips, Vec::new());
        }
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            let flags = ifa.ifa_flags as libc::c_int;
            if flags & libc::IFF_LOOPBACK != 0 || flags & libc::IFF_UP == 0 {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            if !names.contains(&name) {
                names.push(name);
            }
            if ifa.ifa_addr.is_null() {
                continue;
            }
            match (*ifa.ifa_addr).sa_family as libc::c_int {
                libc::AF_INET => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    ips.push(std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).to_string());
                }
                libc::AF_INET6 => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    ips.push(std::net::Ipv6Addr::from(a.sin6_addr.s6_addr).to_string());
                }
                _ => {}
            }
        }
        libc::freeifaddrs(list);
    }
    let macs = names
        .iter()
        .filter_map(|n| std::fs::read_to_string(format!("/sys/class/net/{n}/address")).ok())
        .map(|m| m.trim().replace(':', "-").to_ascii_uppercase())
        .filter(|m| !m.is_empty() && m != "00-00-00-00-00-00")
        .collect();
    (ips, macs)
}

/// `system`: `host.name` from the first `hostname_sources` that answers (`dns`, `os`, `cname`,
/// `lookup`), `os.type`, `host.arch`, `host.id` (the machine id), `os.description`, the CPU
/// (`host.cpu.*`), `host.ip` and `host.mac` (comma-joined lists).
pub fn system(sources: &[String]) -> Result<Found, String> {
    let os = crate::net::dns::hostname()?;
    let mut name = None;
    let mut errors = Vec::new();
    for s in sources {
        let r = match s.as_str() {
            "os" => Ok(os.clone()),
            "dns" | "cname" | "lookup" => fqdn(&os),
            other => Err(format!("unknown hostname source {other:?}")),
        };
        match r {
            Ok(n) if !n.is_empty() => {
                name = Some(n);
                break;
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    let name = name.ok_or_else(|| format!("no hostname source answered: {}", errors.join("; ")))?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        other => other,
    };
    let mut out = vec![
        ("host.name".into(), name),
        ("os.type".into(), std::env::consts::OS.into()),
        ("host.arch".into(), arch.into()),
    ];
    for f in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if let Ok(id) = std::fs::read_to_string(f)
            && !id.trim().is_empty()
        {
            out.push(("host.id".into(), id.trim().to_owned()));
            break;
        }
    }
    if let Ok(rel) = std::fs::read_to_string("/etc/os-release")
        && let Some(pretty) = rel.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))
    {
        out.push(("os.description".into(), pretty.trim_matches('"').to_owned()));
    }
    if let Ok(t) = std::fs::read_to_string("/proc/cpuinfo") {
        out.extend(cpu_info(&t));
    }
    let (ips, macs) = interfaces();
    if !ips.is_empty() {
        out.push(("host.ip".into(), ips.join(",")));
    }
    if !macs.is_empty() {
        out.push(("host.mac".into(), macs.join(",")));
    }
    Ok(out)
}

/// `docker`: the Docker daemon's `/info` over its Unix socket: `host.name`, `os.type`.
pub async fn docker(socket: &str, timeout: Duration) -> Result<Found, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let talk = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("{socket}: {e}"))?;
        s.write_all(b"GET /info HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(1 << 20)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(buf)
    };
    let buf = tokio::time::timeout(timeout, talk)
        .await
        .map_err(|_| format!("{socket}: no answer in {timeout:?}"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the Docker API answered without headers")?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        return Err(format!(
            "the Docker API answered {:?}",
            head.lines().next().unwrap_or("")
        ));
    }
    let v: Value = serde_json::from_str(body).map_err(|e| format!("Docker /info: {e}"))?;
    let mut out = Vec::new();
    if let Some(n) = v["Name"].as_str() {
        out.push(("host.name".into(), n.to_owned()));
    }
    if let Some(t) = v["OSType"].as_str() {
        out.push(("os.type".into(), t.to_owned()));
    }
    Ok(out)
}

fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

async fn get_text(
    c: &reqwest::Client,
    url: String,
    headers: &[(&str, &str)],
) -> Result<String, String> {
    let mut rb = c.get(&url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", r.status()));
    }
    r.text().await.map_err(|e| format!("GET {url}: {e}"))
}

/// `ec2`: IMDSv2 (a session token, then the instance identity document and the hostname).
pub async fn ec2(endpoint: &str, timeout: Duration) -> Result<Found, String> {
    let c = client(timeout)?;
    let token = crate::net::aws::imds_token(&c, endpoint)
        .await
        .map_err(|e| format!("not on EC2 ({e})"))?;
    ec2_with(&c, endpoint, &token).await
}

/// The instance identity document and hostname, given an IMDS session token.
pub async fn ec2_with(c: &reqwest::Client, endpoint: &str, token: &str) -> Result<Found, String> {
    use crate::net::aws::imds_get;
    let doc = imds_get(c, endpoint, token, "dynamic/instance-identity/document")
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&doc).map_err(|e| format!("identity document: {e}"))?;
    let mut out: Found = vec![
        ("cloud.provider".into(), "aws".into()),
        ("cloud.platform".into(), "aws_ec2".into()),
    ];
    for (attr, key) in [
        ("cloud.region", "region"),
        ("cloud.availability_zone", "availabilityZone"),
        ("cloud.account.id", "accountId"),
        ("host.id", "instanceId"),
        ("host.image.id", "imageId"),
        ("host.type", "instanceType"),
    ] {
        if let Some(s) = v[key].as_str() {
            out.push((attr.into(), s.to_owned()));
        }
    }
    if let Ok(name) = imds_get(c, endpoint, token, "meta-data/hostname").await {
        out.push(("host.name".into(), name.trim().to_owned()));
    }
    Ok(out)
}

/// `gcp`: the GCE metadata server (`Metadata-Flavor: Google`); on GKE (a `cluster-name`
/// instance attribute inside a pod) the platform is `gcp_kubernetes_engine`.
pub async fn gcp(host: &str, in_kubernetes: bool, timeout: Duration) -> Result<Found, String> {
    let c = client(timeout)?;
    let base = format!("http://{}/computeMetadata/v1", host.trim_end_matches('/'));
    let h = [("Metadata-Flavor", "Google")];
    let get = |p: &str| get_text(&c, format!("{base}/{p}"), &h);
    let project = get("project/project-id")
        .await
        .map_err(|e| format!("not on GCP ({e})"))?;
    let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    let zone = last(&get("instance/zone").await?);
    let region = zone
        .rsplit_once('-')
        .map_or(zone.clone(), |(r, _)| r.to_owned());
    let cluster = get("instance/attributes/cluster-name").await.ok();
    let platform = if in_kubernetes && cluster.is_some() {
        "gcp_kubernetes_engine"
    } else {
        "gcp_compute_engine"
    };
    let mut out: Found = vec![
        ("cloud.provider".into(), "gcp".into()),
        ("cloud.platform".into(), platform.into()),
        ("cloud.account.id".into(), project),
        ("cloud.availability_zone".into(), zone),
        ("cloud.region".into(), region),
        ("host.id".into(), get("instance/id").await?),
        ("host.name".into(), get("instance/name").await?),
    ];
    if let Ok(t) = get("instance/machine-type").await {
        out.push(("host.type".into(), last(&t)));
    }
    if let (true, Some(c)) = (in_kubernetes, cluster) {
        out.push(("k8s.cluster.name".into(), c));
    }
    Ok(out)
}

/// The Azure Instance Metadata Service's compute document (`Metadata: true`).
pub async fn azure_compute(endpoint: &str, timeout: Duration) -> Result<Value, String> {
    let c = client(timeout)?;
    let url = format!(
        "{}/metadata/instance/compute?api-version=2020-09-01&format=json",
        endpoint.trim_end_matches('/')
    );
    let doc = get_text(&c, url, &[("Metadata", "true")])
        .await
        .map_err(|e| format!("not on Azure ({e})"))?;
    serde_json::from_str(&doc).map_err(|e| format!("Azure IMDS: {e}"))
}

/// `azure`: the compute document's VM, region, subscription and resource group.
pub async fn azure(endpoint: &str, timeout: Duration) -> Result<Found, String> {
    let v = azure_compute(endpoint, timeout).await?;
    let mut out: Found = vec![
        ("cloud.provider".into(), "azure".into()),
        ("cloud.platform".into(), "azure_vm".into()),
    ];
    for (attr, key) in [
        ("host.name", "name"),
        ("cloud.region", "location"),
        ("host.id", "vmId"),
        ("cloud.account.id", "subscriptionId"),
        ("azure.vm.name", "name"),
        ("azure.vm.size", "vmSize"),
        ("azure.vm.scaleset.name", "vmScaleSetName"),
        ("azure.resourcegroup.name", "resourceGroupName"),
    ] {
        if let Some(s) = v[key].as_str().filter(|s| !s.is_empty()) {
            out.push((attr.into(), s.to_owned()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_attributes_are_split_and_percent_decoded() {
        let vars = |k: &str| {
            (k == "OTEL_RESOURCE_ATTRIBUTES")
                .then(|| "service.name=shop, team=a%2Cb ,deployment.environment=prod".to_owned())
        };
        assert_eq!(
            env(&vars).unwrap(),
            [
                ("service.name".to_owned(), "shop".to_owned()),
                ("team".into(), "a,b".into()),
                ("deployment.environment".into(), "prod".into())
            ]
        );
        let bad = |_: &str| Some("novalue".to_owned());
        assert!(env(&bad).unwrap_err().contains("key=value"));
        let pct = |_: &str| Some("a=%zz".to_owned());
        assert!(env(&pct).is_err());
        assert!(env(&|_: &str| None).unwrap().is_empty());
    }

    #[test]
    fn cpu_info_of_the_first_processor() {
        let t = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nstepping\t: 1\ncache size\t: 1024 KB\n\nprocessor\t: 1\nvendor_id\t: Other\n";
        assert_eq!(
            cpu_info(t),
            [
                ("host.cpu.vendor.id".to_owned(), "AuthenticAMD".to_owned()),
                ("host.cpu.family".into(), "26".into()),
                ("host.cpu.model.id".into(), "2".into()),
                ("host.cpu.model.name".into(), "AMD EPYC".into()),
                ("host.cpu.stepping".into(), "1".into()),
                ("host.cpu.cache.l2.size".into(), "1024".into()),
            ]
        );
    }

    #[test]
    fn system_names_this_host() {
        let found = system(&["os".into()]).unwrap();
        let name = found.iter().find(|(k, _)| k == "host.name").unwrap();
        assert_eq!(name.1, crate::net::dns::hostname().unwrap());
        assert!(found.contains(&("os.type".into(), "linux".into())));
    }
}
