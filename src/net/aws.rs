//! Calling AWS APIs without the AWS SDK: the default credential chain (environment, web
//! identity as IRSA sets it, container credentials as EKS Pod Identity and ECS set them, the
//! instance role from IMDSv2), Signature Version 4, and reading the few fields wanted out of
//! an EC2 or STS XML answer. Endpoints move with the SDKs' `AWS_ENDPOINT_URL_<SERVICE>` and
//! `AWS_ENDPOINT_URL`, which is how the tests reach their stand-ins. The shared config and
//! credentials files (`~/.aws/...`) are not read: a collector in a pod gets its identity from
//! the environment or the node.

use std::time::Duration;

use aws_lc_rs::hmac;
use sha2::{Digest, Sha256};

/// A signing identity.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("no AWS credentials: {0}")]
    NoCredentials(String),
    #[error("{0}")]
    Request(String),
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
}

/// The endpoint of `service` (`ec2`, `sts`): `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`,
/// or the regional public one.
pub fn endpoint(service: &str, region: &str) -> String {
    std::env::var(format!("AWS_ENDPOINT_URL_{}", service.to_ascii_uppercase()))
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .map(|e| e.trim_end_matches('/').to_owned())
        .unwrap_or_else(|_| format!("https://{service}.{region}.amazonaws.com"))
}

/// The IMDS base address (`AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it).
pub fn imds_endpoint() -> String {
    std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .map(|e| e.trim_end_matches('/').to_owned())
        .unwrap_or_else(|_| "http://169.254.169.254".into())
}

fn request_error(what: &str, e: &reqwest::Error) -> AwsError {
    AwsError::Request(format!("{what}: {}", crate::text::error_chain(e)))
}

async fn text_of(what: &str, r: reqwest::Response) -> Result<String, AwsError> {
    let status = r.status().as_u16();
    let body = r.text().await.map_err(|e| request_error(what, &e))?;
    if !(200..300).contains(&status) {
        let mut body = body;
        body.truncate(512);
        return Err(AwsError::Status {
            what: what.to_owned(),
            status,
            body,
        });
    }
    Ok(body)
}

/// An IMDSv2 session token.
pub async fn imds_token(c: &reqwest::Client, base: &str) -> Result<String, AwsError> {
    let what = format!("IMDS token at {base}");
    let r = c
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .map_err(|e| request_error(&what, &e))?;
    text_of(&what, r).await
}

/// `GET <IMDS>/latest/<path>` with a session token.
pub async fn imds_get(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
) -> Result<String, AwsError> {
    let what = format!("IMDS {path}");
    let r = c
        .get(format!("{base}/latest/{path}"))
        .header("X-aws-ec2-metadata-token", token)
        .send()
        .await
        .map_err(|e| request_error(&what, &e))?;
    text_of(&what, r).await
}

fn from_json_document(what: &str, text: &str) -> Result<Credentials, AwsError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| AwsError::Request(format!("{what}: {e}")))?;
    let field = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    match (field("AccessKeyId"), field("SecretAccessKey")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: field("Token"),
        }),
        _ => Err(AwsError::Request(format!(
            "{what}: no AccessKeyId/SecretAccessKey in the answer"
        ))),
    }
}

/// The SDKs' default chain, first that answers: the environment, web identity (IRSA), the
/// container credentials endpoint (EKS Pod Identity, ECS), the instance role (IMDS). `region`
/// is where STS is asked for web identity.
pub async fn credentials(c: &reqwest::Client, region: &str) -> Result<Credentials, AwsError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: var("AWS_SESSION_TOKEN"),
        });
    }
    if let (Some(file), Some(role)) = (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN")) {
        let token = std::fs::read_to_string(&file)
            .map_err(|e| AwsError::NoCredentials(format!("{file}: {e}")))?;
        let session = var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "ferrotel".into());
        return assume_role_with_web_identity(c, region, &role, &session, token.trim()).await;
    }
    let container = var("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
        var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|p| format!("http://169.254.170.2{p}"))
    });
    if let Some(uri) = container {
        let what = format!("container credentials at {uri}");
        let mut rb = c.get(&uri);
        let auth = match var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(f) => Some(
                std::fs::read_to_string(&f)
                    .map_err(|e| AwsError::NoCredentials(format!("{f}: {e}")))?
                    .trim()
                    .to_owned(),
            ),
            None => var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        let r = rb.send().await.map_err(|e| request_error(&what, &e))?;
        return from_json_document(&what, &text_of(&what, r).await?);
    }
    let base = imds_endpoint();
    let token = imds_token(c, &base)
        .await
        .map_err(|e| AwsError::NoCredentials(format!("none in the environment, and {e}")))?;
    let roles = imds_get(c, &base, &token, "meta-data/iam/security-credentials/").await?;
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| AwsError::NoCredentials("the instance has no IAM role".into()))?;
    let doc = imds_get(
        c,
        &base,
        &token,
        &format!("meta-data/iam/security-credentials/{role}"),
    )
    .await?;
    from_json_document("instance role credentials", &doc)
}

/// STS `AssumeRoleWithWebIdentity` (unsigned: the web identity token is the proof).
async fn assume_role_with_web_identity(
    c: &reqwest::Client,
    region: &str,
    role: &str,
    session: &str,
    token: &str,
) -> Result<Credentials, AwsError> {
    let what = format!("STS AssumeRoleWithWebIdentity for {role}");
    let r = c
        .post(format!("{}/", endpoint("sts", region)))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            [
                ("Action", "AssumeRoleWithWebIdentity"),
                ("Version", "2011-06-15"),
                ("RoleArn", role),
                ("RoleSessionName", session),
                ("WebIdentityToken", token),
            ]
            .iter()
            .map(|(k, v)| format!("{k}={}", uri_encode(v)))
            .collect::<Vec<_>>()
            .join("&"),
        )
        .send()
        .await
        .map_err(|e| request_error(&what, &e))?;
    let xml = text_of(&what, r).await?;
    let creds = xml_block(&xml, "Credentials").unwrap_or("");
    match (
        xml_text(creds, "AccessKeyId"),
        xml_text(creds, "SecretAccessKey"),
    ) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: xml_text(creds, "SessionToken"),
        }),
        _ => Err(AwsError::Request(format!(
            "{what}: no Credentials in the answer"
        ))),
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 wants.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// The headers that sign a request: `x-amz-date`, `x-amz-security-token` if any, and
/// `Authorization`. `headers` are the other headers sent (their names lowercase), `host`
/// among them; `query` the (name, value) pairs not yet encoded; `amz_date` `YYYYMMDDTHHMMSSZ`.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    creds: &Credentials,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    payload: &[u8],
    region: &str,
    service: &str,
    amz_date: &str,
) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    h.push(("x-amz-date".into(), amz_date.into()));
    if let Some(t) = &creds.session_token {
        h.push(("x-amz-security-token".into(), t.clone()));
    }
    h.sort();
    let canonical_headers: String = h.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = h
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed}\n{}",
        hex::encode(Sha256::digest(payload))
    );
    let date = &amz_date[..amz_date.len().min(8)];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(format!("AWS4{}", creds.secret_access_key).as_bytes(), date);
    for part in [region, service, "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    let signature = hex::encode(hmac_sha256(&key, &to_sign));
    let mut out = vec![("x-amz-date".to_owned(), amz_date.to_owned())];
    if let Some(t) = &creds.session_token {
        out.push(("x-amz-security-token".into(), t.clone()));
    }
    out.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    out
}

/// A signed `GET` of an AWS Query API (`Action=...&Version=...`), returning the XML body.
pub async fn query_api(
    c: &reqwest::Client,
    creds: &Credentials,
    service: &str,
    region: &str,
    params: &[(&str, &str)],
    timeout: Duration,
) -> Result<String, AwsError> {
    let base = endpoint(service, region);
    let url = url::Url::parse(&format!("{base}/"))
        .map_err(|e| AwsError::Request(format!("{service} endpoint {base}: {e}")))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err(AwsError::Request(format!("{base}: no host"))),
    };
    let amz_date = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let signed = sign(
        creds,
        "GET",
        url.path(),
        params,
        &[("host", &host)],
        b"",
        region,
        service,
        &amz_date,
    );
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let what = format!("{service} {}", params.first().map_or("", |p| p.1));
    let mut rb = c.get(format!("{url}?{query}")).timeout(timeout);
    for (k, v) in &signed {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let r = rb.send().await.map_err(|e| request_error(&what, &e))?;
    text_of(&what, r).await
}

/// The first `<tag>...</tag>` block in `xml` (nested ones of the same name matched) and what
/// follows it.
fn next_block<'a>(xml: &'a str, tag: &str) -> Option<(&'a str, &'a str)> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let body = &xml[xml.find(&open)? + open.len()..];
    let (mut depth, mut at) = (1usize, 0usize);
    loop {
        let c = body[at..].find(&close)?;
        match body[at..].find(&open) {
            Some(o) if o < c => {
                depth += 1;
                at += o + open.len();
            }
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Some((&body[..at + c], &body[at + c + close.len()..]));
                }
                at += c + close.len();
            }
        }
    }
}

/// The text inside the first `<tag>` of `xml`.
pub fn xml_block<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    next_block(xml, tag).map(|(b, _)| b)
}

/// Every `<tag>...</tag>` block at the top of `xml` (those nested in them not separately).
pub fn xml_blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some((b, r)) = next_block(rest, tag) {
        out.push(b);
        rest = r;
    }
    out
}

/// The decoded text of the first `<tag>` in `xml`.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let raw = xml_block(xml, tag)?;
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of AWS's "Create a signed AWS API request" guide (IAM ListUsers
    /// with the documentation's example key, 2015-08-30T12:36:00Z), whose signature the guide
    /// publishes.
    #[test]
    fn signature_matches_the_documented_example() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let h = sign(
            &creds,
            "GET",
            "/",
            &[("Action", "ListUsers"), ("Version", "2010-05-08")],
            &[
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("Host", "iam.amazonaws.com"),
            ],
            b"",
            "us-east-1",
            "iam",
            "20150830T123600Z",
        );
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn session_token_is_signed_and_sent() {
        let creds = Credentials {
            access_key_id: "AK".into(),
            secret_access_key: "S".into(),
            session_token: Some("T".into()),
        };
        let h = sign(
            &creds,
            "GET",
            "/",
            &[],
            &[("host", "ec2.eu-west-1.amazonaws.com")],
            b"",
            "eu-west-1",
            "ec2",
            "20260101T000000Z",
        );
        assert!(h.contains(&("x-amz-security-token".into(), "T".into())));
        assert!(
            h[2].1
                .contains("SignedHeaders=host;x-amz-date;x-amz-security-token")
        );
    }

    #[test]
    fn encoding_keeps_only_unreserved() {
        assert_eq!(uri_encode("a b/c~d=e&f"), "a%20b%2Fc~d%3De%26f");
        assert_eq!(uri_encode("é"), "%C3%A9");
    }

    #[test]
    fn xml_fields_and_nested_items() {
        let x = "<r><set><item><k>a</k><set><item><k>inner</k></item></set></item>\
                 <item><k>b &amp; c</k></item></set></r>";
        let set = xml_block(x, "set").unwrap();
        let items = xml_blocks(set, "item");
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(xml_text(items[0], "k").as_deref(), Some("a"));
        assert_eq!(xml_text(items[1], "k").as_deref(), Some("b & c"));
        assert_eq!(xml_text(x, "missing"), None);
        // An unclosed block is not read.
        assert!(xml_blocks("<item>open", "item").is_empty());
    }
}
