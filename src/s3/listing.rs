//! Listing a bucket lazily, a page (up to 1,000 keys) at a time.

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
            page: None,
            token: None,
            last_key: None,
            done: false,
        }
    }

    /// Asks for one page and checks its status; its body is read as it arrives
    /// ([`Page`]).
    fn open_page(&self, prefix: &str, token: Option<&str>) -> Result<Page, S3Error> {
        let response = self.list_request(prefix, token, PAGE_KEYS)?;
        Ok(Page::new(response.into_body().into_reader()))
    }

    /// Sends a ListObjectsV2 request; a reply other than 200 is an error.
    pub(super) fn list_request(
        &self,
        prefix: &str,
        token: Option<&str>,
        max_keys: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, S3Error> {
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
        let response = self
            .client
            .get(&url, &[], None, crate::http::Body::Any)
            .map_err(|e| self.list_error(prefix, Box::new(e)))?;
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
        Ok(response)
    }

    fn list_error(
        &self,
        prefix: &str,
        source: Box<dyn std::error::Error + Send + Sync>,
    ) -> S3Error {
        S3Error::Request {
            op: "list",
            bucket: self.name.clone(),
            key: prefix.to_owned(),
            source,
        }
    }

    fn list_parse_error(&self, prefix: &str, reason: String) -> S3Error {
        S3Error::Parse {
            op: "list",
            bucket: self.name.clone(),
            key: prefix.to_owned(),
            reason,
        }
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
///
/// A page's objects are yielded as its body arrives, not once it is whole: across a WAN
/// the first keys of a 1,000-key page come a few round trips before its last (a new
/// connection's slow start), and a job starts on them. A page that breaks off is asked
/// again and read past the last key yielded (a page's keys come in order), so no key
/// comes twice and none is lost. A listing its caller stops reading midway keeps the page's
/// connection (the rest of the page waits in the socket); should the store close it
/// meanwhile, the page is asked for again the same way.
#[derive(Debug)]
pub struct Listing {
    bucket: Bucket,
    prefix: String,
    /// The page being read.
    page: Option<Page>,
    /// The page to ask for next (or being read): `None` is the first.
    token: Option<String>,
    /// The last key yielded; a page asked again is read past it.
    last_key: Option<String>,
    done: bool,
}

impl Listing {
    /// A listing of `bucket` that yields nothing more.
    pub(crate) fn done(bucket: &Bucket) -> Listing {
        Listing {
            done: true,
            ..bucket.list("")
        }
    }
}

impl Iterator for Listing {
    type Item = Result<ListedObject, S3Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Listing {
                bucket,
                prefix,
                page,
                token,
                last_key,
                ..
            } = self;
            // Each object is a success: a page that breaks off again and again after new
            // keys has the retries' attempts afresh for each.
            let next = bucket.retrying(|| {
                next_in_page(bucket, prefix, page, token.as_deref(), last_key.as_deref())
            });
            match next {
                Ok(Entry::Object(object)) => {
                    self.last_key = Some(object.key.clone());
                    return Some(Ok(object));
                }
                Ok(Entry::End { truncated, token }) => {
                    self.page = None;
                    // A page that says more follows but gives no way to ask for it (V1-only
                    // gateways, buggy proxies) is not the end of the listing: taking it as
                    // one would make a sync delete every file after it.
                    if truncated && token.is_none() {
                        self.done = true;
                        return Some(Err(self.bucket.list_parse_error(
                            &self.prefix,
                            "the page is truncated but has no continuation token, so the \
                             rest of the listing cannot be asked for"
                                .to_owned(),
                        )));
                    }
                    self.token = token.filter(|_| truncated);
                    self.done = self.token.is_none();
                }
                // The page is closed already (`next_in_page` drops one that broke off).
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// The next object of the open page (asking for the page first if none is open) past
/// `last_key`, or the page's end; a page that breaks off is closed, to be asked for again.
fn next_in_page(
    bucket: &Bucket,
    prefix: &str,
    page: &mut Option<Page>,
    token: Option<&str>,
    last_key: Option<&str>,
) -> Result<Entry, S3Error> {
    let open = match page {
        Some(open) => open,
        None => page.insert(bucket.open_page(prefix, token)?),
    };
    loop {
        let entry = open.next_entry().map_err(|e| match e {
            PageError::Read(e) => bucket.list_error(prefix, Box::new(e)),
            PageError::Parse(reason) => bucket.list_parse_error(prefix, reason),
        });
        match entry {
            // Yielded before the page broke off (a page's keys come in order).
            Ok(Entry::Object(object))
                if last_key.is_some_and(|last| object.key.as_str() <= last) => {}
            Err(e) => {
                *page = None;
                return Err(e);
            }
            Ok(entry) => return Ok(entry),
        }
    }
}

/// What a page gives next.
#[derive(Debug)]
enum Entry {
    Object(ListedObject),
    /// The page ended (its closing tag): whether more follow, and how to ask for them.
    End {
        truncated: bool,
        token: Option<String>,
    },
}

#[derive(Debug)]
enum PageError {
    /// The body broke off: the page can be asked for again.
    Read(std::io::Error),
    /// It is not a ListObjectsV2 reply, or it ended before its closing tag.
    Parse(String),
}

/// One ListObjectsV2 reply, parsed as its body arrives.
struct Page {
    xml: quick_xml::Reader<std::io::BufReader<ureq::BodyReader<'static>>>,
    buf: Vec<u8>,
    truncated: bool,
    token: Option<String>,
    /// The root element was seen.
    started: bool,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("truncated", &self.truncated)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Page {
    fn new(body: ureq::BodyReader<'static>) -> Page {
        let mut xml =
            quick_xml::Reader::from_reader(std::io::BufReader::with_capacity(64 << 10, body));
        // No trimming: a key's spaces at either end are part of it.
        xml.config_mut().trim_text(false);
        Page {
            xml,
            buf: Vec::new(),
            truncated: false,
            token: None,
            started: false,
        }
    }

    /// The next event of the reply.
    fn read(&mut self) -> Result<quick_xml::events::Event<'_>, PageError> {
        self.buf.clear();
        self.xml
            .read_event_into(&mut self.buf)
            .map_err(read_or_parse)
    }

    /// Reads on to the next object, or to the end of the page.
    fn next_entry(&mut self) -> Result<Entry, PageError> {
        use quick_xml::events::Event;
        loop {
            let event = self.read()?;
            match event {
                Event::Start(start) => {
                    let name = start.local_name().as_ref().to_vec();
                    if !self.started {
                        if name != b"ListBucketResult" {
                            return Err(PageError::Parse(format!(
                                "a {} document, not a ListBucketResult",
                                String::from_utf8_lossy(&name)
                            )));
                        }
                        self.started = true;
                        continue;
                    }
                    match name.as_slice() {
                        b"Contents" => return self.object().map(Entry::Object),
                        b"IsTruncated" => {
                            self.truncated = self.text(b"IsTruncated")?.trim() == "true";
                        }
                        b"NextContinuationToken" => {
                            self.token = Some(self.text(b"NextContinuationToken")?);
                        }
                        _ => self.skip(&name)?,
                    }
                }
                Event::End(end) if end.local_name().as_ref() == b"ListBucketResult" => {
                    return Ok(Entry::End {
                        truncated: self.truncated,
                        token: self.token.take(),
                    });
                }
                Event::Eof => {
                    return Err(PageError::Parse(
                        "the reply ended before its closing tag".to_owned(),
                    ));
                }
                _ => {}
            }
        }
    }

    /// One `<Contents>` element, its start read.
    fn object(&mut self) -> Result<ListedObject, PageError> {
        use quick_xml::events::Event;
        let (mut key, mut size, mut etag, mut modified) = (None, None, None, None);
        loop {
            let event = self.read()?;
            match event {
                Event::Start(start) => {
                    let name = start.local_name().as_ref().to_vec();
                    match name.as_slice() {
                        b"Key" => key = Some(self.text(&name)?),
                        b"Size" => size = Some(self.text(&name)?),
                        b"ETag" => etag = Some(self.text(&name)?),
                        b"LastModified" => modified = Some(self.text(&name)?),
                        _ => self.skip(&name)?,
                    }
                }
                Event::Empty(empty) if empty.local_name().as_ref() == b"Key" => {
                    key = Some(String::new());
                }
                Event::End(_) => break,
                Event::Eof => {
                    return Err(PageError::Parse("the reply ended inside an object".into()));
                }
                _ => {}
            }
        }
        let key = key.ok_or_else(|| PageError::Parse("an object without a Key".into()))?;
        let size = size
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| PageError::Parse(format!("{key}: no readable Size")))?;
        Ok(ListedObject {
            key,
            size,
            etag: etag.map(|e| e.trim_matches('"').to_owned()),
            last_modified: modified.as_deref().map(str::trim).and_then(listed_time),
        })
    }

    /// The text of an element whose start was read, up to its end: character and the
    /// predefined entity references resolved.
    fn text(&mut self, name: &[u8]) -> Result<String, PageError> {
        use quick_xml::events::Event;
        let mut text = String::new();
        loop {
            let event = self.read()?;
            match event {
                Event::Text(t) => text.push_str(&t.decode().map_err(unreadable)?),
                Event::CData(t) => text.push_str(&t.decode().map_err(unreadable)?),
                Event::GeneralRef(r) => {
                    if let Some(c) = r.resolve_char_ref().map_err(unreadable)? {
                        text.push(c);
                    } else {
                        let name = r.decode().map_err(unreadable)?;
                        let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| {
                                PageError::Parse(format!("an unknown entity &{name};"))
                            })?;
                        text.push_str(resolved);
                    }
                }
                Event::End(end) if end.local_name().as_ref() == name => return Ok(text),
                Event::Eof => {
                    return Err(PageError::Parse("the reply ended inside an element".into()));
                }
                Event::Start(start) => {
                    let inner = start.local_name().as_ref().to_vec();
                    self.skip(&inner)?;
                }
                _ => {}
            }
        }
    }

    /// Reads past the end of an element whose start was read.
    fn skip(&mut self, name: &[u8]) -> Result<(), PageError> {
        self.buf.clear();
        self.xml
            .read_to_end_into(quick_xml::name::QName(name), &mut self.buf)
            .map(|_| ())
            .map_err(read_or_parse)
    }
}

/// Text that cannot be decoded, or a reference that cannot be resolved.
fn unreadable(error: impl std::fmt::Display) -> PageError {
    PageError::Parse(error.to_string())
}

/// A reader's error: the body breaking off, or XML that is not well formed.
fn read_or_parse(error: quick_xml::Error) -> PageError {
    match error {
        quick_xml::Error::Io(io) => PageError::Read(std::io::Error::new(io.kind(), io.to_string())),
        other => PageError::Parse(other.to_string()),
    }
}
