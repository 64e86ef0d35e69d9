//! Planning a manifest of URLs: each one's size and ETag, from a GET of its first byte.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::{Manifest, ManifestEntry};
use crate::cancel::CancelToken;
use crate::engine::error::DownloadError;
use crate::engine::response::Asked;
use crate::engine::retry::RetryPolicy;
use crate::engine::{self, Condition, Context, Source};
use crate::http::HttpClient;
use crate::progress::Progress;

impl Manifest {
    /// The manifest of `objects` (`(name, url)` pairs): each URL asked for its first byte
    /// (retried as `retry` says, redirects followed, `headers` sent to its own host), its
    /// size read from the answer's `Content-Range` (or `Content-Length`, from a server that
    /// ignores ranges; the body is not read) and its strong ETag kept as its validator.
    /// `workers` threads ask at once.
    ///
    /// # Errors
    ///
    /// Every object that could not be probed (not found, no size announced, no answer), in
    /// the order given: a plan is all of the objects or none.
    pub fn probe(
        client: &HttpClient,
        objects: &[(String, String)],
        headers: &[(String, String)],
        retry: &RetryPolicy,
        workers: usize,
    ) -> Result<Manifest, Vec<DownloadError>> {
        let next = AtomicUsize::new(0);
        let found: Mutex<Vec<(usize, Result<ManifestEntry, DownloadError>)>> = Mutex::default();
        std::thread::scope(|scope| {
            for i in 0..workers.clamp(1, objects.len().max(1)) {
                let (next, found) = (&next, &found);
                let spawned = std::thread::Builder::new()
                    .name(format!("haul-probe-{i}"))
                    .spawn_scoped(scope, move || {
                        loop {
                            let at = next.fetch_add(1, Ordering::Relaxed);
                            let Some((name, url)) = objects.get(at) else {
                                return;
                            };
                            let probed = probe_one(client, name, url, headers, retry);
                            found.lock().push((at, probed));
                        }
                    });
                if let Err(e) = spawned {
                    log::warn!("could not start a probe thread: {e}");
                }
            }
        });
        let mut found = found.into_inner();
        found.sort_by_key(|(at, _)| *at);
        let mut manifest = Manifest::new();
        let mut failed = Vec::new();
        for (_, probed) in found {
            match probed {
                Ok(entry) => manifest.push(entry),
                Err(e) => failed.push(e),
            }
        }
        if failed.is_empty() && manifest.len() < objects.len() {
            // No thread could be started: say so rather than plan fewer objects.
            failed.push(DownloadError::Panicked {
                url: String::new(),
                message: "no thread could be started to probe the objects".into(),
            });
        }
        if failed.is_empty() {
            Ok(manifest)
        } else {
            Err(failed)
        }
    }
}

fn probe_one(
    client: &HttpClient,
    name: &str,
    url: &str,
    headers: &[(String, String)],
    retry: &RetryPolicy,
) -> Result<ManifestEntry, DownloadError> {
    crate::source::url::check_url(url)?;
    let (progress, cancel) = (Progress::new(), CancelToken::new());
    let ctx = Context {
        client,
        headers,
        timeout: None,
        limiter: None,
        retry,
        retries: None,
        progress: &progress,
        cancel: &cancel,
        flow: None,
    };
    let source = Source::Url(url);
    let asked = Asked {
        start: 0,
        end: Some(1),
    };
    let answer = engine::request_retried(&ctx, &source, |location| {
        engine::request(&ctx, &source, location, asked, Condition::None)
    })?;
    let size = answer
        .info
        .total
        .or_else(|| answer.framing.as_ref().and_then(|f| f.total))
        .or_else(|| {
            answer
                .framing
                .as_ref()
                .and_then(|f| f.len)
                .filter(|_| answer.status == 200)
        })
        .ok_or_else(|| DownloadError::Unusable {
            url: source.shown(),
            reason: "the server says nothing of the object's size".into(),
        })?;
    let mut entry = ManifestEntry::new(name, size, url);
    entry.etag = answer.info.strong_etag().map(str::to_owned);
    Ok(entry)
}
