//! Credentials fetched over HTTP: STS web identity, container endpoints, instance metadata
//! (IMDSv2). Each call is one request (or two) on a client with short timeouts.

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use ureq::http::Method;

use super::{Keys, var};
use crate::http::HttpClient;

/// Web identity (EKS IRSA): a token file exchanged at STS for a role's credentials.
#[derive(Debug, Clone)]
pub(crate) struct WebIdentity {
    role_arn: String,
    token_file: PathBuf,
    session_name: String,
    endpoint: String,
}

impl WebIdentity {
    pub(crate) fn from_env() -> Option<WebIdentity> {
        let token_file = PathBuf::from(var("AWS_WEB_IDENTITY_TOKEN_FILE")?);
        let role_arn = var("AWS_ROLE_ARN")?;
        let session_name = var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| {
            let secs = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("haul-{secs}")
        });
        let endpoint = var("AWS_ENDPOINT_URL_STS")
            .or_else(|| {
                var("AWS_REGION")
                    .or_else(|| var("AWS_DEFAULT_REGION"))
                    .map(|r| format!("https://sts.{r}.amazonaws.com"))
            })
            .unwrap_or_else(|| "https://sts.amazonaws.com".to_owned());
        Some(WebIdentity {
            role_arn,
            token_file,
            session_name,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        })
    }

    /// `AssumeRoleWithWebIdentity` with the token file's current token (it is rotated).
    pub(crate) fn load(&self, client: &HttpClient) -> Result<Keys, String> {
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("reading {}: {e}", self.token_file.display()))?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &self.role_arn)
            .append_pair("RoleSessionName", &self.session_name)
            .append_pair("WebIdentityToken", token.trim())
            .finish();
        let headers = [(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        )];
        let url = format!("{}/", self.endpoint);
        let (status, body) = call(client, Method::POST, &url, &headers, form.as_bytes())?;
        if status != 200 {
            let why = tag(&body, "Message").or_else(|| tag(&body, "Code"));
            return Err(format!(
                "STS at {url} answered {status}{}",
                why.map(|w| format!(": {w}")).unwrap_or_default()
            ));
        }
        let field =
            |name: &str| tag(&body, name).ok_or_else(|| format!("STS's answer has no {name}"));
        Ok(Keys {
            access_key: field("AccessKeyId")?,
            secret_key: field("SecretAccessKey")?,
            token: Some(field("SessionToken")?),
            expires: Some(parse_time(&field("Expiration")?)?),
        })
    }
}

/// Container credentials (ECS, EKS Pod Identity).
#[derive(Debug, Clone)]
pub(crate) struct Container {
    url: String,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

impl Container {
    /// From the environment; `Err` for a full URI the SDKs refuse (plain HTTP to a host
    /// that is not loopback or the container agent's).
    pub(crate) fn from_env() -> Result<Option<Container>, String> {
        let url = if let Some(relative) = var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            format!("http://169.254.170.2{relative}")
        } else if let Some(full) = var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            check_full_uri(&full)?;
            full
        } else {
            return Ok(None);
        };
        Ok(Some(Container {
            url,
            token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
        }))
    }

    pub(crate) fn load(&self, client: &HttpClient) -> Result<Keys, String> {
        // The token file is read on every call: EKS rotates it.
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => self.token.clone(),
        };
        let headers: Vec<(String, String)> = token
            .into_iter()
            .map(|t| ("authorization".to_owned(), t))
            .collect();
        let (status, body) = call(client, Method::GET, &self.url, &headers, &[])?;
        if status != 200 {
            return Err(format!("{} answered {status}", self.url));
        }
        keys_from_json(body.as_bytes(), "Token")
    }
}

/// A full URI may be HTTPS, or HTTP to loopback or the container agents' addresses.
fn check_full_uri(full: &str) -> Result<(), String> {
    let parsed = url::Url::parse(full)
        .map_err(|e| format!("AWS_CONTAINER_CREDENTIALS_FULL_URI {full}: {e}"))?;
    if parsed.scheme() == "https" {
        return Ok(());
    }
    let allowed = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => {
            IpAddr::V4(ip).is_loopback()
                || ip.octets() == [169, 254, 170, 2]
                || ip.octets() == [169, 254, 170, 23]
        }
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23]
        }
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if parsed.scheme() == "http" && allowed {
        Ok(())
    } else {
        Err(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI {full}: plain HTTP only to loopback or the container agent"
        ))
    }
}

/// IMDSv2's session token: the PUT that proves haul is not a forwarded request.
pub(crate) fn instance_metadata_token(
    client: &HttpClient,
    endpoint: &str,
) -> Result<String, String> {
    let headers = [(
        "x-aws-ec2-metadata-token-ttl-seconds".to_owned(),
        "21600".to_owned(),
    )];
    let url = format!("{endpoint}/latest/api/token");
    let (status, body) = call(client, Method::PUT, &url, &headers, &[])?;
    if status != 200 {
        return Err(format!("{url} answered {status}"));
    }
    Ok(body.trim().to_owned())
}

/// The instance role's credentials, through IMDSv2.
pub(crate) fn instance_metadata(client: &HttpClient, endpoint: &str) -> Result<Keys, String> {
    let token = instance_metadata_token(client, endpoint)?;
    let headers = [("x-aws-ec2-metadata-token".to_owned(), token)];
    let base = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let (status, roles) = call(client, Method::GET, &base, &headers, &[])?;
    if status != 200 {
        return Err(format!(
            "{base} answered {status} (no role attached to the instance?)"
        ));
    }
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("the instance has no role")?;
    let url = format!("{base}{role}");
    let (status, body) = call(client, Method::GET, &url, &headers, &[])?;
    if status != 200 {
        return Err(format!("{url} answered {status}"));
    }
    keys_from_json(body.as_bytes(), "Token")
}

/// One request; the status and the body as text (at most 64 KiB).
fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let response = client
        .send(method, url, headers, body)
        .map_err(|e| format!("{}: {e}", crate::source::url::redact_url(url)))?;
    let status = response.status().as_u16();
    let mut text = String::new();
    response
        .into_body()
        .into_reader()
        .take(64 << 10)
        .read_to_string(&mut text)
        .map_err(|e| format!("{url}: reading the answer: {e}"))?;
    Ok((status, text))
}

/// Keys from the JSON the container endpoints, IMDS and `credential_process` print;
/// `token_field` names the session token (`Token`, or `SessionToken`).
pub(crate) fn keys_from_json(json: &[u8], token_field: &str) -> Result<Keys, String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not JSON credentials: {e}"))?;
    let text = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if let Some(code) = text("Code").filter(|c| *c != "Success") {
        return Err(format!("{code}: {}", text("Message").unwrap_or("")));
    }
    let field = |name: &str| {
        text(name)
            .map(str::to_owned)
            .ok_or_else(|| format!("no {name} in the credentials"))
    };
    Ok(Keys {
        access_key: field("AccessKeyId")?,
        secret_key: field("SecretAccessKey")?,
        token: text(token_field).map(str::to_owned),
        expires: text("Expiration").map(parse_time).transpose()?,
    })
}

/// An RFC 3339 time (`2026-12-01T12:00:00Z`).
fn parse_time(text: &str) -> Result<SystemTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("expiration {text:?}: {e}"))
}

/// The text of the first `<name>…</name>` element.
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    let text = xml[start..end].trim();
    (!text.is_empty()).then(|| {
        text.replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_uris_over_plain_http_only_to_loopback_or_the_agent() {
        assert!(check_full_uri("http://127.0.0.1:9/creds").is_ok());
        assert!(check_full_uri("http://169.254.170.23/v1/credentials").is_ok());
        assert!(check_full_uri("https://creds.example.com/x").is_ok());
        assert!(check_full_uri("http://creds.example.com/x").is_err());
    }

    #[test]
    fn credential_json_and_sts_xml_are_read() {
        let keys = keys_from_json(
            br#"{"Code":"Success","AccessKeyId":"A","SecretAccessKey":"S","Token":"T","Expiration":"2026-12-01T12:00:00Z"}"#,
            "Token",
        )
        .unwrap();
        assert_eq!(
            (keys.access_key.as_str(), keys.token.as_deref()),
            ("A", Some("T"))
        );
        assert!(keys.expires.is_some());
        assert!(keys_from_json(br#"{"Code":"Expired","Message":"m"}"#, "Token").is_err());
        let xml = "<R><Credentials><AccessKeyId>AK</AccessKeyId><SessionToken>a&amp;b</SessionToken></Credentials></R>";
        assert_eq!(tag(xml, "AccessKeyId").as_deref(), Some("AK"));
        assert_eq!(tag(xml, "SessionToken").as_deref(), Some("a&b"));
        assert_eq!(tag(xml, "Expiration"), None);
    }
}
