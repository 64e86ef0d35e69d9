//! A bucket's region, followed when the store says it is another: what signs a bucket's
//! requests and where they go.
//!
//! S3 answers a request signed for the wrong region (or sent to the wrong regional
//! endpoint) with a 301 `PermanentRedirect` or a 400 (`AuthorizationHeaderMalformed`,
//! `AuthorizationQueryParametersError`), naming the bucket's region in an
//! `x-amz-bucket-region` header or a `<Region>` in the error document. haul then signs for
//! that region (and, on AWS itself, sends to `s3.REGION.amazonaws.com`) from then on, for
//! every clone of the bucket, says so once at warn, and makes the call once more, as the AWS
//! SDKs do, instead of failing a job over a region a user did not know.

use std::sync::Arc;

use parking_lot::RwLock;

use super::S3Error;

/// The statuses S3 names a bucket's region with when a request went to the wrong one.
const WRONG_REGION_STATUSES: [u16; 3] = [301, 400, 403];

/// What signs a bucket's requests and says where they go: rust-s3's bucket (URL building
/// only), replaced when the store names another region. Shared by a bucket's clones.
pub(crate) struct Signer {
    name: String,
    /// The custom endpoint, or `None` for AWS itself.
    endpoint: Option<String>,
    path_style: bool,
    current: RwLock<Arc<::s3::Bucket>>,
    /// The URL as configured (before any region was followed): the bucket's stable identity.
    configured_url: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("region", &self.region())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer of bucket `name` in `region` (parsed from the configuration).
    pub(crate) fn new(
        name: &str,
        endpoint: Option<String>,
        region: ::s3::Region,
        path_style: bool,
    ) -> Result<Signer, S3Error> {
        let bucket = build(name, region, path_style)?;
        Ok(Signer {
            name: name.to_owned(),
            endpoint,
            path_style,
            configured_url: bucket.url(),
            current: RwLock::new(bucket),
        })
    }

    /// What signs now (a snapshot: the lock is not held while it is used).
    pub(crate) fn current(&self) -> Arc<::s3::Bucket> {
        Arc::clone(&self.current.read())
    }

    /// The region requests are signed for now.
    pub(crate) fn region(&self) -> String {
        self.current.read().region().to_string()
    }

    /// The bucket's URL as configured.
    pub(crate) fn configured_url(&self) -> &str {
        &self.configured_url
    }

    /// Follows the region a failed reply names (`status`, its headers and its body), when it
    /// is another than the one signed for now; whether requests now go elsewhere.
    pub(crate) fn follow(&self, status: u16, headers: &ureq::http::HeaderMap, body: &str) -> bool {
        if !WRONG_REGION_STATUSES.contains(&status) {
            return false;
        }
        let named = headers
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .or_else(|| region_in_error(body));
        let Some(region) = named.filter(|r| valid_region(r)) else {
            return false;
        };
        let mut current = self.current.write();
        let was = current.region().to_string();
        if was == region {
            return false; // another call followed it first
        }
        let next = match &self.endpoint {
            Some(endpoint) => ::s3::Region::Custom {
                region: region.clone(),
                endpoint: endpoint.trim_end_matches('/').to_owned(),
            },
            None => ::s3::Region::Custom {
                region: region.clone(),
                endpoint: format!("https://s3.{region}.amazonaws.com"),
            },
        };
        match build(&self.name, next, self.path_style) {
            Ok(bucket) => {
                log::warn!(
                    "s3://{}: the bucket is in region {region}, not {was}: following it \
                     (--region {region} or AWS_REGION={region} saves a request)",
                    self.name
                );
                *current = bucket;
                true
            }
            Err(e) => {
                log::debug!(
                    "s3://{}: region {region} cannot be followed: {e}",
                    self.name
                );
                false
            }
        }
    }
}

fn build(name: &str, region: ::s3::Region, path_style: bool) -> Result<Arc<::s3::Bucket>, S3Error> {
    let anonymous =
        ::s3::creds::Credentials::anonymous().map_err(|e| S3Error::Config(e.to_string()))?;
    let mut bucket =
        ::s3::Bucket::new(name, region, anonymous).map_err(|e| S3Error::Config(e.to_string()))?;
    if path_style {
        bucket = bucket.with_path_style();
    }
    Ok(Arc::from(bucket))
}

/// A region name as S3 writes them (`eu-west-1`, `us-gov-west-1`): lowercase letters,
/// digits and hyphens, so it can go into a host name.
fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An S3 `<Error>` document's `<Region>`.
fn region_in_error(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorDocument {
        #[serde(rename = "Region")]
        region: Option<String>,
    }
    if !text.trim_start().starts_with("<?xml") && !text.trim_start().starts_with("<Error") {
        return None;
    }
    let document: ErrorDocument = quick_xml::de::from_str(text).ok()?;
    document.region.map(|r| r.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(name: &str, region: &str) -> Signer {
        Signer::new(name, None, region.parse().unwrap(), false).unwrap()
    }

    #[test]
    fn a_region_named_by_header_or_error_document_is_followed_once() {
        let signer = aws("examplebucket", "us-east-1");
        let mut headers = ureq::http::HeaderMap::new();
        assert!(!signer.follow(301, &headers, ""), "nothing named");
        headers.insert("x-amz-bucket-region", "eu-west-1".parse().unwrap());
        assert!(
            !signer.follow(404, &headers, ""),
            "not a wrong-region status"
        );
        assert!(signer.follow(301, &headers, ""));
        assert_eq!(signer.region(), "eu-west-1");
        assert_eq!(
            signer.current().url(),
            "https://examplebucket.s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            signer.configured_url(),
            "https://examplebucket.s3.amazonaws.com"
        );
        assert!(!signer.follow(301, &headers, ""), "already there");

        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\
                    <Code>AuthorizationHeaderMalformed</Code><Message>the region 'eu-west-1' \
                    is wrong; expecting 'ap-south-1'</Message><Region>ap-south-1</Region></Error>";
        let none = ureq::http::HeaderMap::new();
        assert!(signer.follow(400, &none, body));
        assert_eq!(signer.region(), "ap-south-1");
        let evil = body.replace("ap-south-1</Region>", "x.evil.com/</Region>");
        assert!(!signer.follow(400, &none, &evil), "not a region name");
        assert_eq!(signer.region(), "ap-south-1");
    }

    #[test]
    fn a_custom_endpoint_keeps_its_host_and_signs_for_the_region_named() {
        let region = ::s3::Region::Custom {
            region: "us-east-1".into(),
            endpoint: "http://127.0.0.1:9000".into(),
        };
        let signer =
            Signer::new("data", Some("http://127.0.0.1:9000".into()), region, true).unwrap();
        let mut headers = ureq::http::HeaderMap::new();
        headers.insert("x-amz-bucket-region", "eu-central-1".parse().unwrap());
        assert!(signer.follow(301, &headers, ""));
        assert_eq!(signer.region(), "eu-central-1");
        assert_eq!(signer.current().url(), "http://127.0.0.1:9000/data");
    }
}
