//! The ordered fetcher over HTTP(S): the test origin's URLs as keys, with the guarantees an S3
//! fetch has (order, budget, parts, drop = cancel, errors naming the URL) and the origin's
//! lies caught.

use std::io::Read;
use std::time::Duration;

use haul::{FetchErrorKind, FetchKey, Fetcher, RetryPolicy, Web};
use haul_origin::{Origin, body};

use crate::support::{guard, wait_until};

const MIB: u64 = 1 << 20;

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .attempts(3)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20))
}

/// Four workers, whole objects up to 1 MiB, larger ones in 256 KiB parts, a 2 MiB budget.
fn fetcher() -> Fetcher {
    Fetcher::builder()
        .workers(4)
        .per_request_workers(4)
        .part_size(256 << 10)
        .max_whole_object(MIB)
        .memory_budget(2 * MIB)
        .retry(quick_retries())
        .build()
        .unwrap()
}

fn read_all(object: haul::Object) -> Vec<u8> {
    if let Some(bytes) = object.bytes() {
        return bytes.to_vec();
    }
    let mut out = Vec::new();
    object.into_reader().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn urls_arrive_in_the_callers_order_whole_or_in_ranged_parts_within_the_budget() {
    guard(|| {
        let origin = Origin::start().unwrap();
        // Mixed sizes, some above max_whole_object (streamed in ranged parts), the later
        // ones answering at once and the earlier ones late, so order is the fetcher's doing.
        let objects: Vec<(String, u64)> = (0..40u64)
            .map(|i| {
                let size = match i % 5 {
                    0 => 0,
                    1 => 1 + i,
                    2 => 100_000,
                    3 => 3 * MIB + i, // streamed
                    _ => 700_000,
                };
                let path = format!("/web/o-{i:02}.bin");
                let delay = if i < 8 { 80 - 10 * i } else { 0 };
                origin.set_query(&path, &format!("size={size}&delay_ms={delay}"));
                (path, size)
            })
            .collect();
        let fetcher = fetcher();
        // Half the keys with their sizes (as from a listing), half probed.
        let keys: Vec<FetchKey> = objects
            .iter()
            .enumerate()
            .map(|(i, (path, size))| {
                let key = FetchKey::new(origin.url(path));
                if i % 2 == 0 { key.size(*size) } else { key }
            })
            .collect();
        let mut streamed = 0;
        let mut got = 0;
        for (object, (path, size)) in fetcher.fetch(Web::default(), keys).zip(&objects) {
            let object = object.unwrap();
            assert_eq!(object.key(), origin.url(path));
            assert_eq!(object.size(), *size, "{path}");
            streamed += usize::from(object.is_streamed());
            assert!(read_all(object) == body(path, *size), "{path}: wrong bytes");
            got += 1;
        }
        assert_eq!(got, objects.len());
        assert_eq!(streamed, 8, "the 3 MiB objects arrive in parts");
        let stats = fetcher.stats();
        assert!(stats.budget_peak <= 2 * MIB, "{stats:?}");
        assert!(
            wait_until(|| fetcher.stats().budget_in_use == 0),
            "{:?}",
            fetcher.stats()
        );
        // Ranged parts, not one GET per streamed object.
        assert!(
            origin.stats().requests >= 40 + 8 * 12,
            "{:?}",
            origin.stats()
        );
    });
}

#[test]
fn errors_name_the_url_and_a_key_that_is_no_url_is_refused_without_a_request() {
    guard(|| {
        let origin = Origin::start().unwrap();
        origin.set_query("/web/ok.bin", "size=1000");
        origin.set_query("/web/gone.bin", "status=404");
        let fetcher = fetcher();
        let keys = [
            origin.url("/web/gone.bin"),
            "ftp://127.0.0.1/x.bin".to_owned(),
            origin.url("/web/ok.bin?sig=secret"),
        ];
        let results: Vec<_> = fetcher.fetch(Web::default(), keys.clone()).collect();
        assert_eq!(results.len(), 3);
        let gone = results[0].as_ref().unwrap_err();
        assert!(gone.is_not_found(), "{gone:?}");
        assert_eq!(
            gone.to_string(),
            format!("GET {}: not found", keys[0]),
            "the error names the URL"
        );
        let refused = results[1].as_ref().unwrap_err();
        assert!(
            matches!(refused.kind, FetchErrorKind::Url(_)),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("http or https"), "{refused}");
        let ok = results[2].as_ref().unwrap();
        assert_eq!(ok.bytes(), Some(&body("/web/ok.bin", 1000)[..]));
        assert_eq!(origin.stats().requests, 2, "the ftp key was requested");
    });
}

#[test]
fn an_error_redacts_the_urls_secrets() {
    guard(|| {
        let origin = Origin::start().unwrap();
        origin.set_query("/web/private.bin", "status=403");
        let url = origin.url("/web/private.bin?X-Amz-Signature=abcdef&token=hunter2");
        let fetcher = fetcher();
        let error = fetcher
            .fetch(Web::default(), [url])
            .next()
            .unwrap()
            .unwrap_err();
        let shown = error.to_string();
        assert!(shown.contains("HTTP status 403"), "{shown}");
        assert!(
            !shown.contains("abcdef") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(
            !error.key.contains("abcdef") && !error.key.contains("hunter2"),
            "{error:?}"
        );
    });
}

#[test]
fn the_webs_headers_reach_the_origin() {
    guard(|| {
        let origin = Origin::start().unwrap();
        origin.set_query(
            "/web/token.bin",
            "size=2000000&need_header=authorization:Bearer-t0k",
        );
        let fetcher = fetcher();
        let url = origin.url("/web/token.bin");
        let without = fetcher.fetch(Web::default(), [url.clone()]).next().unwrap();
        assert!(without.is_err(), "the origin served it without the header");
        let web = Web::default().header("Authorization", "Bearer-t0k");
        let object = fetcher.fetch(web, [url.clone()]).next().unwrap().unwrap();
        assert!(
            object.is_streamed(),
            "every ranged part carries the header too"
        );
        assert!(read_all(object) == body("/web/token.bin", 2_000_000));
    });
}

#[test]
fn a_streamed_url_answered_from_offset_zero_is_never_stitched_wrong() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let size = 3 * MIB;
        // Every range is answered 206 but from byte 0: the parts would repeat the start.
        origin.set_query("/web/liar.bin", &format!("size={size}&range_from_zero=1"));
        let fetcher = fetcher();
        let key = FetchKey::new(origin.url("/web/liar.bin")).size(size);
        let object = fetcher
            .fetch(Web::default(), [key])
            .next()
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let read = object.into_reader().read_to_end(&mut out);
        let error = read.expect_err("a lying server's parts read as the object");
        assert!(error.to_string().contains("unusable"), "{error}");
        assert!(
            out == body("/web/liar.bin", size)[..out.len()],
            "wrong bytes were read"
        );
    });
}

#[test]
fn an_etag_that_looks_like_an_md5_is_not_taken_for_one_on_the_web() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let size = 3 * MIB;
        // 32 hex digits, as an S3 single-part ETag, but not the bytes' MD5: only S3's
        // ETags say what the bytes are.
        origin.set_query("/web/hex.bin", &format!("size={size}&etag=hex"));
        let fetcher = fetcher();
        let object = fetcher
            .fetch(Web::default(), [origin.url("/web/hex.bin")])
            .next()
            .unwrap()
            .unwrap();
        assert!(object.is_streamed());
        assert!(read_all(object) == body("/web/hex.bin", size));
        origin.set_query("/web/hex-whole.bin", "size=1000&etag=hex");
        let whole = fetcher
            .fetch(Web::default(), [origin.url("/web/hex-whole.bin")])
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(whole.bytes(), Some(&body("/web/hex-whole.bin", 1000)[..]));
    });
}

#[test]
fn a_url_whose_etag_changes_between_parts_fails_as_changed() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let size = 3 * MIB;
        origin.set_query(
            "/web/moving.bin",
            &format!("size={size}&etag=changing&ignore_conditions=1"),
        );
        let fetcher = fetcher();
        let object = fetcher
            .fetch(Web::default(), [origin.url("/web/moving.bin")])
            .next()
            .unwrap();
        let error = match object {
            Err(e) => e.to_string(),
            Ok(object) => {
                let mut out = Vec::new();
                object
                    .into_reader()
                    .read_to_end(&mut out)
                    .expect_err("parts of different versions read as one object")
                    .to_string()
            }
        };
        assert!(error.contains("changed"), "{error}");
    });
}

#[test]
fn dropping_the_iterator_cancels_the_gets_in_flight() {
    guard(|| {
        let origin = Origin::start().unwrap();
        // Every object stalls after its first bytes: only a cancel ends the GETs.
        let urls: Vec<String> = (0..20)
            .map(|i| {
                let path = format!("/web/stall-{i}.bin");
                origin.set_query(&path, "size=500000&stall_after=1000");
                origin.url(&path)
            })
            .collect();
        let fetcher = fetcher();
        let objects = fetcher.fetch(Web::default(), urls);
        assert!(
            wait_until(|| origin.stats().peak_concurrent >= 4),
            "{:?}",
            origin.stats()
        );
        drop(objects);
        assert!(
            wait_until(|| fetcher.stats().busy == 0 && fetcher.stats().budget_in_use == 0),
            "{:?}",
            fetcher.stats()
        );
    });
}
