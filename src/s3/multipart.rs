//! Multipart uploads: create, upload a part, complete, abort, and list the unfinished ones.
//!
//! An object written in parts is invisible until `complete`; `abort` throws the parts away.
//! Every part carries a `Content-MD5` and a CRC-64/NVME the store checks, and the part's
//! ETag (its MD5 on every store haul knows) is compared with the MD5 computed here. The
//! upload is declared a full-object CRC-64/NVME one, and its completion carries the whole
//! object's checksum: the store checks it against the parts it joined and keeps it, so
//! later readers can verify what was written.

use ureq::http::HeaderMap;

use super::sign::Presign;
use super::{Bucket, S3Error, signed_headers};
use crate::engine::verify::Crc64Nvme;

/// How the uploads' checksums are declared: one CRC-64/NVME of the whole object.
const CHECKSUM_DECLARED: [(&str, &str); 2] = [
    ("x-amz-checksum-algorithm", "CRC64NVME"),
    ("x-amz-checksum-type", "FULL_OBJECT"),
];

/// An unfinished multipart upload, found by [`Bucket::uploads`]. Its parts take space in
/// the store until it is completed or aborted ([`Bucket::abort_upload`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MultipartUpload {
    /// The key the object would have.
    pub key: String,
    /// The upload's id.
    pub upload_id: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Initiated {
    upload_id: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadsPage {
    #[serde(default)]
    is_truncated: Option<String>,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<ListedUpload>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
}

impl Bucket {
    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        key: &str,
        text: &str,
    ) -> Result<T, S3Error> {
        quick_xml::de::from_str(text).map_err(|e| S3Error::Parse {
            op,
            bucket: self.name.clone(),
            key: key.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Starts a multipart upload of `key` with a full-object CRC-64/NVME; returns its id.
    pub(crate) fn create_upload(&self, key: &str) -> Result<String, S3Error> {
        let (signed, sent) = signed_headers(&CHECKSUM_DECLARED.map(|(n, v)| (n, v.to_owned())));
        self.retrying(|| {
            let presign = Presign {
                op: "create upload",
                method: "POST",
                key,
                queries: &[("uploads", "")],
                headers: &signed,
            };
            let (_, text) = self.call(&presign, &sent, &[])?;
            let initiated: Initiated = self.parse("create upload", key, &text)?;
            Ok(initiated.upload_id)
        })
    }

    /// Uploads part `number` (from 1) of an upload; returns the part's ETag.
    pub(crate) fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        bytes: &[u8],
    ) -> Result<String, S3Error> {
        let md5 = md5::compute(bytes);
        let number_text = number.to_string();
        let (signed, mut sent) = signed_headers(&[(Crc64Nvme::HEADER, Crc64Nvme::of(bytes))]);
        sent.push((
            "content-md5".to_owned(),
            crate::engine::verify::base64(&md5.0),
        ));
        self.retrying(|| {
            let presign = Presign {
                op: "upload part",
                method: "PUT",
                key,
                queries: &[("partNumber", &number_text), ("uploadId", upload_id)],
                headers: &signed,
            };
            let (reply, _) = self.call(&presign, &sent, bytes)?;
            let etag = reply
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .unwrap_or_default();
            let hex = etag.trim_matches('"');
            let expected = format!("{md5:x}");
            if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && hex != expected {
                // The store kept other bytes than were sent: send the part again.
                return Err(S3Error::Status {
                    op: "upload part",
                    bucket: self.name.clone(),
                    key: key.to_owned(),
                    status: 500,
                    code: Some(format!(
                        "part {number} ETag {hex} is not its MD5 {expected}"
                    )),
                });
            }
            Ok(etag)
        })
    }

    /// Completes an upload from its parts' `(number, ETag)` and the whole object's
    /// CRC-64/NVME (base64): the object appears now, whole.
    pub(crate) fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
        checksum: &str,
    ) -> Result<(), S3Error> {
        let (signed, sent) = signed_headers(&[
            (Crc64Nvme::HEADER, checksum.to_owned()),
            (CHECKSUM_DECLARED[1].0, CHECKSUM_DECLARED[1].1.to_owned()),
        ]);
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, etag) in parts {
            body.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                xml_escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let mut first = true;
        self.retrying(|| {
            let presign = Presign {
                op: "complete upload",
                method: "POST",
                key,
                queries: &[("uploadId", upload_id)],
                headers: &signed,
            };
            let retried = !std::mem::replace(&mut first, false);
            match self.call(&presign, &sent, body.as_bytes()) {
                // A 200 whose body holds an error: S3 reports late failures of a complete so.
                Ok((_, text)) if super::s3_error_code(&text).is_some() => Err(S3Error::Status {
                    op: "complete upload",
                    bucket: self.name.clone(),
                    key: key.to_owned(),
                    status: 500,
                    code: super::s3_error_code(&text),
                }),
                Ok(_) => Ok(()),
                // A retry after a reply that was lost: the first call may have completed it.
                Err(S3Error::Status { status: 404, .. })
                    if retried && self.completed_as(key, parts.len())? =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    }

    /// Whether `key` exists with a multipart ETag of `parts` parts.
    fn completed_as(&self, key: &str, parts: usize) -> Result<bool, S3Error> {
        Ok(self
            .head(key)?
            .and_then(|o| o.etag)
            .is_some_and(|etag| etag.ends_with(&format!("-{parts}"))))
    }

    /// Aborts an unfinished multipart upload: its parts are thrown away and the object never
    /// appears. Aborting an upload that is already gone succeeds.
    ///
    /// # Errors
    ///
    /// An [`S3Error`] naming the key.
    pub fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        self.retrying(|| {
            let presign = Presign {
                op: "abort upload",
                method: "DELETE",
                key,
                queries: &[("uploadId", upload_id)],
                headers: &HeaderMap::new(),
            };
            match self.call(&presign, &[], &[]) {
                Ok(_) | Err(S3Error::Status { status: 404, .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// The unfinished multipart uploads under `prefix` (all pages).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), haul::S3Error> {
    /// let bucket = haul::Bucket::new("landing", &haul::S3Config::from_env())?;
    /// for upload in bucket.uploads("shards/")? {
    ///     bucket.abort_upload(&upload.key, &upload.upload_id)?; // clean up after a crash
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// An [`S3Error`] naming the prefix.
    pub fn uploads(&self, prefix: &str) -> Result<Vec<MultipartUpload>, S3Error> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let page: UploadsPage = self.retrying(|| {
                let mut queries = vec![("uploads", ""), ("prefix", prefix)];
                if let Some((key, id)) = &markers {
                    queries.push(("key-marker", key));
                    queries.push(("upload-id-marker", id));
                }
                let presign = Presign {
                    op: "list uploads",
                    method: "GET",
                    key: "",
                    queries: &queries,
                    headers: &HeaderMap::new(),
                };
                let (_, text) = self.call(&presign, &[], &[])?;
                self.parse("list uploads", prefix, &text)
            })?;
            out.extend(page.uploads.into_iter().map(|u| MultipartUpload {
                key: u.key,
                upload_id: u.upload_id,
            }));
            let truncated = page.is_truncated.as_deref().map(str::trim) == Some("true");
            match (truncated, page.next_key_marker) {
                (true, Some(key)) => {
                    markers = Some((key, page.next_upload_id_marker.unwrap_or_default()));
                }
                _ => return Ok(out),
            }
        }
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
