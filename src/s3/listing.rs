//! Listing a bucket lazily, a page (up to 1,000 keys) at a time.

use std::io::Read;

use super::{Bucket, PAGE_KEYS, S3Error};

impl Bucket {
    /// The objects under `prefix`, listed lazily one page (up to 1,000 keys) at a time, so
    /// listing millions of keys holds one page in memory.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), haul::S3Error> {
    /// let bucket = haul::Bucket::new("data", &haul::S3Config::from_env())?;
    /// for object in bucket.list("shards/") {
    ///     let object = object?;
    ///     println!("{} {}", object.key, object.size);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn list(&self, prefix: &str) -> Listing {
        Listing {
            bucket: self.clone(),
            prefix: prefix.to_owned(),
            page: Vec::new().into_iter(),
            token: None,
            done: false,
        }
    }

    pub(super) fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
        max_keys: &str,
    ) -> Result<::s3::serde_types::ListBucketResult, S3Error> {
        let mut queries = vec![
            ("list-type", "2"),
            ("prefix", prefix),
            ("max-keys", max_keys),
        ];
        if let Some(token) = token {
            queries.push(("continuation-token", token));
        }
        let headers = ureq::http::HeaderMap::new();
        let url = self.presign(&super::sign::Presign {
            op: "list",
            method: "GET",
            key: "",
            queries: &queries,
            headers: &headers,
        })?;
        let request_error = |source: Box<dyn std::error::Error + Send + Sync>| S3Error::Request {
            op: "list",
            bucket: self.name.clone(),
            key: prefix.to_owned(),
            source,
        };
        let response = self
            .client
            .get(&url, &[], None, crate::http::Body::Any)
            .map_err(|e| request_error(Box::new(e)))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(S3Error::Status {
                op: "list",
                bucket: self.name.clone(),
                key: prefix.to_owned(),
                status,
                code: self.failed_reply(status, response),
            });
        }
        let mut text = String::new();
        response
            .into_body()
            .into_reader()
            .read_to_string(&mut text)
            .map_err(|e| request_error(Box::new(e)))?;
        quick_xml::de::from_str(&text).map_err(|e| S3Error::Parse {
            op: "list",
            bucket: self.name.clone(),
            key: prefix.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// A listing's `LastModified` (RFC 3339, `2009-10-12T17:50:30.000Z`).
fn listed_time(text: &str) -> Option<std::time::SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(std::time::SystemTime::from)
}

/// An object found by [`Bucket::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag, quotes removed.
    pub etag: Option<String>,
    /// When it was last written, as the store says (`None` when it said nothing readable).
    pub last_modified: Option<std::time::SystemTime>,
}

impl ListedObject {
    /// An object of `size` bytes at `key`, nothing else known of it.
    #[cfg(test)]
    pub(crate) fn new(key: &str, size: u64) -> ListedObject {
        ListedObject {
            key: key.to_owned(),
            size,
            etag: None,
            last_modified: None,
        }
    }
}

/// The objects under a prefix, fetched a page at a time. See [`Bucket::list`].
#[derive(Debug)]
pub struct Listing {
    bucket: Bucket,
    prefix: String,
    page: std::vec::IntoIter<ListedObject>,
    token: Option<String>,
    done: bool,
}

impl Listing {
    /// A listing of `bucket` that yields nothing more.
    pub(crate) fn done(bucket: &Bucket) -> Listing {
        Listing {
            bucket: bucket.clone(),
            prefix: String::new(),
            page: Vec::new().into_iter(),
            token: None,
            done: true,
        }
    }
}

impl Iterator for Listing {
    type Item = Result<ListedObject, S3Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(object) = self.page.next() {
                return Some(Ok(object));
            }
            if self.done {
                return None;
            }
            let (prefix, token) = (&self.prefix, self.token.as_deref());
            match self
                .bucket
                .retrying(|| self.bucket.list_page(prefix, token, PAGE_KEYS))
            {
                Ok(page) => {
                    // A page that says more follows but gives no way to ask for it (V1-only
                    // gateways, buggy proxies) is not the end of the listing: taking it as
                    // one would make a sync delete every file after it.
                    if page.is_truncated && page.next_continuation_token.is_none() {
                        self.done = true;
                        return Some(Err(S3Error::Parse {
                            op: "list",
                            bucket: self.bucket.name().to_owned(),
                            key: self.prefix.clone(),
                            reason: "the page is truncated but has no continuation token, \
                                     so the rest of the listing cannot be asked for"
                                .to_owned(),
                        }));
                    }
                    self.token = page.next_continuation_token.filter(|_| page.is_truncated);
                    self.done = self.token.is_none();
                    let objects: Vec<ListedObject> = page
                        .contents
                        .into_iter()
                        .map(|o| ListedObject {
                            last_modified: listed_time(&o.last_modified),
                            key: o.key,
                            size: o.size,
                            etag: o.e_tag.map(|e| e.trim_matches('"').to_owned()),
                        })
                        .collect();
                    self.page = objects.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
