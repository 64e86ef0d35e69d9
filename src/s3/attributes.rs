//! The parts of a multipart object (`GetObjectAttributes` with `ObjectParts`): what a
//! composite checksum needs before the bytes can be checked against it.
//!
//! A composite checksum (`…-N`) is the digest of the N parts' digests, so checking it needs
//! the parts' sizes, which only the store knows (an uploader may use any sizes). One request,
//! a page per 1,000 parts, made only for objects that carry a composite checksum. A store
//! that cannot say (no `GetObjectAttributes`, no parts listed, a count that does not match
//! the checksum's) leaves the checksum unverified, logged at debug: never claimed as checked.

use super::{Bucket, S3Error, sign};
use crate::engine::verify::StoreChecksum;

/// The `GetObjectAttributes` reply, as far as parts go.
#[derive(Debug, serde::Deserialize)]
struct Attributes {
    #[serde(rename = "ETag")]
    etag: Option<String>,
    #[serde(rename = "ObjectParts")]
    parts: Option<ObjectParts>,
}

#[derive(Debug, serde::Deserialize)]
struct ObjectParts {
    #[serde(rename = "IsTruncated", default)]
    truncated: bool,
    #[serde(rename = "NextPartNumberMarker")]
    next_marker: Option<u32>,
    #[serde(rename = "Part", default)]
    part: Vec<Part>,
}

#[derive(Debug, serde::Deserialize)]
struct Part {
    #[serde(rename = "PartNumber")]
    number: u32,
    #[serde(rename = "Size")]
    size: u64,
}

impl Bucket {
    /// `composite` with the sizes of `key`'s parts, when the store lists them and they are
    /// as many as the checksum says, of the version with `etag` (when given); else `None`,
    /// logged at debug.
    pub(crate) fn composite_parts(
        &self,
        key: &str,
        etag: Option<&str>,
        composite: &StoreChecksum,
    ) -> Option<StoreChecksum> {
        let skip = |why: &str| {
            log::debug!(
                "s3://{}/{key}: its composite {} checksum is not verified: {why}",
                self.name,
                composite.algorithm
            );
            None
        };
        let count: usize = match composite.value.rsplit_once('-').map(|(_, n)| n.parse()) {
            Some(Ok(n)) => n,
            _ => return skip("the checksum does not say how many parts it is of"),
        };
        let (listed_etag, sizes) = match self.part_sizes(key) {
            Ok(found) => found,
            Err(e) => return skip(&format!("the parts could not be listed ({e})")),
        };
        if sizes.len() != count {
            return skip(&format!(
                "the store lists {} parts, the checksum is of {count}",
                sizes.len()
            ));
        }
        let trim = |e: &str| e.trim().trim_matches('"').to_owned();
        if let (Some(want), Some(listed)) = (etag, listed_etag.as_deref())
            && trim(want) != trim(listed)
        {
            return skip("the object was replaced since it was asked for");
        }
        Some(StoreChecksum {
            parts: Some(sizes),
            ..composite.clone()
        })
    }

    /// The ETag and the sizes of `key`'s parts in order (empty when the store lists none).
    fn part_sizes(&self, key: &str) -> Result<(Option<String>, Vec<u64>), S3Error> {
        let mut sizes = Vec::new();
        let mut etag = None;
        let mut marker: Option<u32> = None;
        loop {
            let mut extra = vec![
                ("x-amz-object-attributes", "ETag,ObjectParts".to_owned()),
                ("x-amz-max-parts", "1000".to_owned()),
            ];
            if let Some(marker) = marker {
                extra.push(("x-amz-part-number-marker", marker.to_string()));
            }
            let (signed, sent) = super::signed_headers(&extra);
            let (_, text) = self.retrying(|| {
                let presign = sign::Presign {
                    op: "get attributes",
                    method: "GET",
                    key,
                    queries: &[("attributes", "")],
                    headers: &signed,
                };
                self.call(&presign, &sent, &[])
            })?;
            let reply: Attributes = quick_xml::de::from_str(&text).map_err(|e| S3Error::Parse {
                op: "get attributes",
                bucket: self.name.clone(),
                key: key.to_owned(),
                reason: e.to_string(),
            })?;
            etag = etag.or(reply.etag);
            let Some(parts) = reply.parts else {
                return Ok((etag, sizes));
            };
            for part in &parts.part {
                if part.number as usize != sizes.len() + 1 {
                    return Err(S3Error::Parse {
                        op: "get attributes",
                        bucket: self.name.clone(),
                        key: key.to_owned(),
                        reason: format!(
                            "part {} listed where {} was due",
                            part.number,
                            sizes.len() + 1
                        ),
                    });
                }
                sizes.push(part.size);
            }
            match (parts.truncated, parts.next_marker) {
                (true, Some(next)) if Some(next) != marker && !parts.part.is_empty() => {
                    marker = Some(next);
                }
                (true, _) => {
                    return Err(S3Error::Parse {
                        op: "get attributes",
                        bucket: self.name.clone(),
                        key: key.to_owned(),
                        reason: "the parts are truncated with no way to ask for the rest".into(),
                    });
                }
                (false, _) => return Ok((etag, sizes)),
            }
        }
    }
}
