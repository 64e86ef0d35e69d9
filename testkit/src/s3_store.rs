//! The in-process S3 store: s3s-fs, plus `ListMultipartUploads`, which s3s-fs lacks and the
//! sink tests need to show that no upload is left dangling, and ETags in listings, which
//! s3s-fs leaves out and sync needs (S3 and SeaweedFS list them).
//!
//! GETs and HEADs return an object's checksums only when asked (`x-amz-checksum-mode:
//! ENABLED`), as S3 does; s3s-fs returns them always. Multipart uploads keep a full-object
//! CRC-64/NVME as S3 does, which s3s-fs ignores: a part's checksum is checked against the
//! part, the completion's against the object it makes (`BadDigest`, and nothing kept, when
//! either is wrong), and only for an upload created as a CRC-64/NVME one; the object then
//! has it. (Unlike S3, a completion without one leaves the object without a checksum, so
//! that a test sees whether it was sent.)
//!
//! Every call the tests make is passed to s3s-fs unchanged (unless a test asks the store to
//! lie: [`S3Server::drop_continuation_tokens`](super::s3::S3Server::drop_continuation_tokens)). The uploads listing reads the
//! state s3s-fs keeps for an unfinished upload: a metadata file per upload in its root,
//! `.bucket-<b64 bucket>.object-<b64 key>.upload-<id>.metadata.json`, written by
//! CreateMultipartUpload and removed by CompleteMultipartUpload and AbortMultipartUpload.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

pub struct Store {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    switches: Arc<Switches>,
    /// The checksum algorithm each unfinished upload was created with, by upload id.
    declared: parking_lot::Mutex<std::collections::HashMap<String, String>>,
}

/// How the store misbehaves, set by the test while it runs.
#[derive(Default)]
pub struct Switches {
    /// A public bucket: GETs, HEADs and listings need no signature.
    pub public_reads: AtomicBool,
    /// Lie like a V1-only gateway or a buggy proxy: a truncated ListObjectsV2 page carries
    /// no `NextContinuationToken`.
    pub drop_tokens: AtomicBool,
    /// GETs of this key wait until the gate opens (`false` in the watch).
    pub gated_key: parking_lot::Mutex<Option<String>>,
    /// Listing pages after the first (asked for with a continuation token) wait until the
    /// gate opens.
    pub gated_pages: AtomicBool,
    /// Lie like a proxy that truncates what it passes on: a ListObjectsV2 reply's body is
    /// cut to half its length, sent with a `Content-Length` that matches the cut body.
    pub cut_listings: AtomicBool,
    /// A listing page holds at most this many keys, whatever was asked (0: as asked), as S3
    /// may send fewer than `max-keys`.
    pub page_keys: AtomicU64,
    pub gate: tokio::sync::watch::Sender<bool>,
    /// A busy store: PUTs (of objects and of parts) answer 503 `SlowDown` while more than
    /// this many are in progress, this one included (0: never).
    pub busy_puts_above: AtomicU64,
    /// How long each PUT takes, in milliseconds (so that PUTs overlap).
    pub put_delay_ms: AtomicU64,
    puts_in_progress: AtomicU64,
    /// PUTs answered `SlowDown`.
    pub slowdowns: AtomicU64,
    /// The buckets' region, and how a request signed for another is refused, when set.
    pub home_region: parking_lot::Mutex<Option<(String, WrongRegion)>>,
    /// Requests refused for being signed for another region.
    pub region_refusals: AtomicU64,
}

/// How a store refuses a request signed for another region than its buckets', as S3 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrongRegion {
    /// 301 `PermanentRedirect` with an `x-amz-bucket-region` header (S3 at a regional
    /// endpoint, path style), and no `Location`.
    Redirect,
    /// 400 `AuthorizationQueryParametersError` naming the region only in the error
    /// document's `<Region>` (S3 at its global endpoint); a HEAD, which has no body, gets
    /// the header.
    BadRequest,
}

/// A refusal the store sends instead of passing the request on: status, headers, body.
pub struct Refusal {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The region a SigV4 request was signed for: from a presigned URL's `X-Amz-Credential`, or
/// an `Authorization` header's `Credential=`; `None` for an unsigned request.
fn signed_region(uri: &hyper::Uri, headers: &hyper::HeaderMap) -> Option<String> {
    let from_query = uri.query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "X-Amz-Credential")
            .map(|(_, value)| value.into_owned())
    });
    let from_header = || {
        let auth = headers.get("authorization")?.to_str().ok()?;
        let start = auth.find("Credential=")? + "Credential=".len();
        Some(auth[start..].split([',', ' ']).next()?.to_owned())
    };
    let credential = from_query.or_else(from_header)?;
    credential.split('/').nth(2).map(str::to_owned)
}

/// A PUT in progress, for `busy_puts_above`; it ends before its response is sent.
struct PutInProgress<'a>(&'a Switches);

impl Drop for PutInProgress<'_> {
    fn drop(&mut self) {
        self.0.puts_in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Switches {
    /// The answer to a request signed for another region than the buckets' (see
    /// [`WrongRegion`]); `None` to pass it on.
    pub fn region_refusal(
        &self,
        method: &hyper::Method,
        uri: &hyper::Uri,
        headers: &hyper::HeaderMap,
    ) -> Option<Refusal> {
        let (home, answer) = self.home_region.lock().clone()?;
        let signed = signed_region(uri, headers)?;
        if signed == home {
            return None;
        }
        self.region_refusals.fetch_add(1, Ordering::SeqCst);
        let xml = |code: &str, message: &str, extra: &str| {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>{message}</Message>{extra}<RequestId>haul-test</RequestId></Error>"
            )
        };
        let header = vec![("x-amz-bucket-region", home.clone())];
        let head = method == hyper::Method::HEAD;
        Some(match answer {
            WrongRegion::Redirect => Refusal {
                status: 301,
                headers: header,
                body: xml(
                    "PermanentRedirect",
                    "The bucket you are attempting to access must be addressed using the \
                     specified endpoint.",
                    "",
                ),
            },
            WrongRegion::BadRequest => Refusal {
                status: 400,
                headers: if head { header } else { Vec::new() },
                body: xml(
                    "AuthorizationQueryParametersError",
                    &format!(
                        "Error parsing the X-Amz-Credential parameter; the region '{signed}' \
                         is wrong; expecting '{home}'"
                    ),
                    &format!("<Region>{home}</Region>"),
                ),
            },
        })
    }

    /// Counts a PUT in, waits its delay; `SlowDown` when the store is too busy for it.
    async fn put_begins(&self) -> S3Result<PutInProgress<'_>> {
        let now = self.puts_in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        let guard = PutInProgress(self);
        let most = self.busy_puts_above.load(Ordering::SeqCst);
        if most > 0 && now > most {
            self.slowdowns.fetch_add(1, Ordering::SeqCst);
            return Err(s3s::s3_error!(
                SlowDown,
                "more than {most} PUTs in progress"
            ));
        }
        let delay = self.put_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        Ok(guard)
    }
}

impl Store {
    pub fn new(root: PathBuf, switches: Arc<Switches>) -> Store {
        Store {
            fs: s3s_fs::FileSystem::new(&root).unwrap(),
            root,
            switches,
            declared: Default::default(),
        }
    }

    /// The CRC-64/NVME (base64) of the file at `path`, by s3s's hash.
    fn crc64nvme_of(path: &std::path::Path) -> S3Result<String> {
        use s3s::crypto::Checksum as _;
        let bytes = std::fs::read(path)
            .map_err(|e| s3s::s3_error!(e, InternalError, "reading {}", path.display()))?;
        let mut crc = s3s::crypto::Crc64Nvme::new();
        crc.update(&bytes);
        Ok(base64_simd::STANDARD.encode_to_string(crc.finalize()))
    }

    /// Refuses a CRC-64/NVME for an upload not created as a CRC-64/NVME one.
    fn check_declared(&self, upload_id: &str) -> S3Result<()> {
        match self.declared.lock().get(upload_id).map(String::as_str) {
            Some("CRC64NVME") => Ok(()),
            other => Err(s3s::s3_error!(
                InvalidRequest,
                "a CRC64NVME checksum for an upload created with {other:?}"
            )),
        }
    }

    fn internal_info_path(&self, bucket: &str, key: &str) -> PathBuf {
        internal_info_path(&self.root, bucket, key)
    }
}

/// Where s3s-fs keeps what it knows about `key` besides its bytes (ETag, checksums).
pub(crate) fn internal_info_path(root: &std::path::Path, bucket: &str, key: &str) -> PathBuf {
    let encode = |s: &str| base64_simd::URL_SAFE_NO_PAD.encode_to_string(s);
    root.join(format!(
        ".bucket-{}.object-{}.internal.json",
        encode(bucket),
        encode(key)
    ))
}

/// Passes calls to s3s-fs. Written in the shape `async_trait` gives trait methods, because
/// `#[async_trait]` does not see into a macro's output.
impl Store {
    /// The ETag s3s-fs gives `key` on a GET: the one it stored (multipart objects), else
    /// the MD5 of the file.
    fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        let info = self.internal_info_path(bucket, key);
        if let Ok(text) = std::fs::read(&info)
            && let Ok(map) = serde_json::from_slice::<serde_json::Value>(&text)
            && let Some(etag) = map.get("e_tag").and_then(|v| v.as_str())
        {
            return Some(etag.to_owned());
        }
        let bytes = std::fs::read(self.root.join(bucket).join(key)).ok()?;
        Some(format!("{:x}", md5::compute(bytes)))
    }
}

macro_rules! delegate {
    ($($name:ident: $input:ident -> $output:ident;)*) => {
        $(
            fn $name<'life0, 'async_trait>(
                &'life0 self,
                req: S3Request<$input>,
            ) -> Pin<Box<dyn Future<Output = S3Result<S3Response<$output>>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                self.fs.$name(req)
            }
        )*
    };
}

/// Takes the checksums out of a GET's or a HEAD's answer.
macro_rules! forget_checksums {
    ($out:expr) => {{
        let out = &mut $out;
        (
            out.checksum_crc32,
            out.checksum_crc32c,
            out.checksum_crc64nvme,
        ) = (None, None, None);
        (out.checksum_sha1, out.checksum_sha256, out.checksum_type) = (None, None, None);
    }};
}

/// Whether a GET or HEAD asked for the object's checksums.
fn checksums_asked(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
}

fn decode(text: &str) -> Option<String> {
    let bytes = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(text).ok()?;
    String::from_utf8(bytes).ok()
}

#[async_trait::async_trait]
impl S3 for Store {
    delegate! {
        abort_multipart_upload: AbortMultipartUploadInput -> AbortMultipartUploadOutput;
        copy_object: CopyObjectInput -> CopyObjectOutput;
        create_bucket: CreateBucketInput -> CreateBucketOutput;
        delete_bucket: DeleteBucketInput -> DeleteBucketOutput;
        delete_object: DeleteObjectInput -> DeleteObjectOutput;
        delete_objects: DeleteObjectsInput -> DeleteObjectsOutput;
        get_bucket_location: GetBucketLocationInput -> GetBucketLocationOutput;
        head_bucket: HeadBucketInput -> HeadBucketOutput;
        list_buckets: ListBucketsInput -> ListBucketsOutput;
        list_objects: ListObjectsInput -> ListObjectsOutput;
        list_parts: ListPartsInput -> ListPartsOutput;
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let _in_progress = self.switches.put_begins().await?;
        self.fs.put_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let algorithm = req.input.checksum_algorithm.clone();
        let response = self.fs.create_multipart_upload(req).await?;
        if let (Some(id), Some(algorithm)) = (&response.output.upload_id, algorithm) {
            self.declared
                .lock()
                .insert(id.clone(), algorithm.as_str().to_owned());
        }
        Ok(response)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let _in_progress = self.switches.put_begins().await?;
        let (id, number) = (req.input.upload_id.clone(), req.input.part_number);
        let sent = req.input.checksum_crc64nvme.clone();
        if sent.is_some() {
            self.check_declared(&id)?;
        }
        let response = self.fs.upload_part(req).await?;
        if let Some(sent) = sent {
            let part = self.root.join(format!(".upload_id-{id}.part-{number}"));
            let kept = Self::crc64nvme_of(&part)?;
            if kept != sent {
                let _ = std::fs::remove_file(&part);
                return Err(s3s::s3_error!(
                    BadDigest,
                    "part {number}: CRC64NVME {sent} sent, {kept} received"
                ));
            }
        }
        Ok(response)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = &req.input;
        let (bucket, key, id) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let sent = input.checksum_crc64nvme.clone();
        if sent.is_some() {
            self.check_declared(&id)?;
        }
        let mut response = self.fs.complete_multipart_upload(req).await?;
        self.declared.lock().remove(&id);
        let Some(sent) = sent else {
            return Ok(response);
        };
        let object = self.root.join(&bucket).join(&key);
        let made = Self::crc64nvme_of(&object)?;
        if made != sent {
            let _ = std::fs::remove_file(&object);
            return Err(s3s::s3_error!(
                BadDigest,
                "CRC64NVME {sent} sent, the parts make {made}"
            ));
        }
        let path = self.internal_info_path(&bucket, &key);
        let mut info: serde_json::Map<String, serde_json::Value> = std::fs::read(&path)
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok())
            .unwrap_or_default();
        info.insert("checksum_crc64nvme".to_owned(), made.clone().into());
        std::fs::write(&path, serde_json::to_vec(&info).unwrap())
            .map_err(|e| s3s::s3_error!(e, InternalError, "writing {}", path.display()))?;
        response.output.checksum_crc64nvme = Some(made);
        response.output.checksum_type = Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT));
        Ok(response)
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        let mut req = req;
        if req.input.continuation_token.is_some()
            && self.switches.gated_pages.load(Ordering::SeqCst)
        {
            let mut open = self.switches.gate.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
        let most = self.switches.page_keys.load(Ordering::SeqCst);
        if most > 0 {
            let most = i32::try_from(most).unwrap_or(i32::MAX);
            req.input.max_keys = Some(req.input.max_keys.map_or(most, |asked| asked.min(most)));
        }
        let mut response = self.fs.list_objects_v2(req).await?;
        for object in response.output.contents.iter_mut().flatten() {
            if let Some(key) = &object.key {
                object.e_tag = self.etag(&bucket, key).map(ETag::Strong);
            }
        }
        if self.switches.drop_tokens.load(Ordering::SeqCst) {
            response.output.next_continuation_token = None;
        }
        Ok(response)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let gated = self.switches.gated_key.lock().as_deref() == Some(req.input.key.as_str());
        if gated {
            let mut open = self.switches.gate.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
        let asked = checksums_asked(req.input.checksum_mode.as_ref());
        let mut response = self.fs.get_object(req).await?;
        if !asked {
            forget_checksums!(response.output);
        }
        Ok(response)
    }

    /// The parts of an object seeded with `part_sizes` (`"100,60,90"` in its info, by
    /// `S3Server::seed_with_info`), a page at a time; none for other objects, as S3 lists
    /// none for an object without a checksum of its parts.
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        let data = self.root.join(&input.bucket).join(&input.key);
        let size = std::fs::metadata(&data)
            .map_err(|_| s3s::s3_error!(NoSuchKey))?
            .len();
        let info: serde_json::Value =
            std::fs::read(self.internal_info_path(&input.bucket, &input.key))
                .ok()
                .and_then(|text| serde_json::from_slice(&text).ok())
                .unwrap_or_default();
        let sizes: Vec<u64> = info
            .get("part_sizes")
            .and_then(|v| v.as_str())
            .map(|list| {
                list.split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let object_parts = (!sizes.is_empty()).then(|| {
            let max = input.max_parts.unwrap_or(1000).max(1) as usize;
            let after = input.part_number_marker.unwrap_or(0).max(0) as usize;
            let page: Vec<ObjectPart> = sizes
                .iter()
                .enumerate()
                .skip(after)
                .take(max)
                .map(|(i, size)| ObjectPart {
                    part_number: Some(i as i32 + 1),
                    size: Some(*size as i64),
                    ..Default::default()
                })
                .collect();
            let last = after + page.len();
            GetObjectAttributesParts {
                is_truncated: Some(last < sizes.len()),
                max_parts: Some(max as i32),
                next_part_number_marker: Some(last as i32),
                part_number_marker: Some(after as i32),
                parts: Some(page),
                total_parts_count: Some(sizes.len() as i32),
            }
        });
        let output = GetObjectAttributesOutput {
            e_tag: self.etag(&input.bucket, &input.key).map(ETag::Strong),
            object_parts,
            object_size: Some(size as i64),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let asked = checksums_asked(req.input.checksum_mode.as_ref());
        let mut response = self.fs.head_object(req).await?;
        if !asked {
            forget_checksums!(response.output);
        }
        Ok(response)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut uploads = Vec::new();
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| s3s::s3_error!(e, InternalError, "reading the store's root"))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".bucket-") else {
                continue;
            };
            let Some(rest) = rest.strip_suffix(".metadata.json") else {
                continue;
            };
            let Some((bucket, rest)) = rest.split_once(".object-") else {
                continue;
            };
            let Some((key, upload_id)) = rest.split_once(".upload-") else {
                continue;
            };
            let (Some(bucket), Some(key)) = (decode(bucket), decode(key)) else {
                continue;
            };
            if bucket == input.bucket && key.starts_with(&prefix) {
                uploads.push(MultipartUpload {
                    key: Some(key),
                    upload_id: Some(upload_id.to_owned()),
                    ..Default::default()
                });
            }
        }
        uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}
