//! Presigned URLs for any S3 request (GET, PUT, POST, DELETE, with any query), made with
//! rust-s3's SigV4 primitives.
//!
//! rust-s3's own presigning covers GET, PUT and DELETE only, and its sync `presign_put` signs
//! custom queries it then leaves out of the URL; multipart uploads need `POST ?uploads`,
//! `PUT ?partNumber&uploadId` and `POST ?uploadId`. The canonical request, the string to
//! sign and the signing key are rust-s3's; this file only assembles them.

use std::fmt::Write as _;

use ::s3::signing;
use hmac::Mac;
use ureq::http::HeaderMap;

use super::{Bucket, PRESIGN_EXPIRY_SECS, S3Error};

/// One request to presign: the method, the key (empty for the bucket itself), the query
/// parameters and the headers the signature covers (besides `host`).
#[derive(Debug)]
pub(crate) struct Presign<'a> {
    pub(crate) op: &'static str,
    pub(crate) method: &'static str,
    pub(crate) key: &'a str,
    pub(crate) queries: &'a [(&'a str, &'a str)],
    pub(crate) headers: &'a HeaderMap,
}

impl Bucket {
    /// A presigned URL for `request`, valid for an hour.
    pub(crate) fn presign(&self, request: &Presign<'_>) -> Result<String, S3Error> {
        self.presign_at(
            request,
            time::OffsetDateTime::now_utc(),
            PRESIGN_EXPIRY_SECS,
        )
    }

    fn presign_at(
        &self,
        request: &Presign<'_>,
        now: time::OffsetDateTime,
        expiry_secs: u32,
    ) -> Result<String, S3Error> {
        let fail = |e: ::s3::error::S3Error| self.sign_error(request.op, request.key, e);
        let signer = self.signer.current();
        let region = signer.region();
        let mut url = signer.url();
        url.push('/');
        url.push_str(&signing::uri_encode(request.key, false));
        if !self.credentials.signs() {
            // A public bucket: the request as it is, unsigned.
            for (i, (name, value)) in request.queries.iter().enumerate() {
                let _ = write!(
                    url,
                    "{}{}={}",
                    if i == 0 { '?' } else { '&' },
                    signing::uri_encode(name, true),
                    signing::uri_encode(value, true)
                );
            }
            return Ok(url);
        }
        let keys = self.credentials.keys()?;
        let (access_key, secret_key, token) =
            (&keys.access_key, &keys.secret_key, keys.token.as_ref());
        url.push_str(
            &signing::authorization_query_params_no_sig(
                access_key,
                &now,
                &region,
                expiry_secs,
                Some(request.headers),
                token,
            )
            .map_err(fail)?,
        );
        for (name, value) in request.queries {
            let _ = write!(
                url,
                "&{}={}",
                signing::uri_encode(name, true),
                signing::uri_encode(value, true)
            );
        }
        let parsed = ::url::Url::parse(&url).map_err(|e| S3Error::Sign {
            op: request.op,
            bucket: self.name.clone(),
            key: request.key.to_owned(),
            reason: e.to_string(),
        })?;
        let mut headers = request.headers.clone();
        let host = signer.host();
        let authority = host.split('/').next().unwrap_or(&host);
        headers.insert(
            ureq::http::header::HOST,
            authority.parse().map_err(|_| {
                S3Error::Config(format!("endpoint host {authority:?} is not a valid header"))
            })?,
        );
        let canonical =
            signing::canonical_request(request.method, &parsed, &headers, "UNSIGNED-PAYLOAD")
                .map_err(fail)?;
        let to_sign = signing::string_to_sign(&now, &region, &canonical).map_err(fail)?;
        let key = signing::signing_key(&now, secret_key, &region, "s3").map_err(fail)?;
        let mut mac = signing::HmacSha256::new_from_slice(&key)
            .map_err(|e| fail(::s3::error::S3Error::from(e)))?;
        mac.update(to_sign.as_bytes());
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(format!("{url}&X-Amz-Signature={signature}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::S3Config;

    /// AWS's worked example of a presigned URL ("Authenticating Requests: Using Query
    /// Parameters", Signature Version 4): the same inputs must give its signature.
    #[test]
    fn matches_the_aws_documentation_example() {
        let mut config = S3Config::from_env()
            .credentials(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .path_style(false);
        config.endpoint = None;
        config.region = "us-east-1".to_owned();
        let bucket = Bucket::new("examplebucket", &config).unwrap();
        let headers = HeaderMap::new();
        let request = Presign {
            op: "GET",
            method: "GET",
            key: "test.txt",
            queries: &[],
            headers: &headers,
        };
        let now = time::macros::datetime!(2013-05-24 00:00:00 UTC);
        let url = bucket.presign_at(&request, now, 86400).unwrap();
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }
}
