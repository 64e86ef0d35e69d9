//! The fetcher's side of the fault matrix: a TCP proxy in front of the S3 server cuts,
//! resets, corrupts or refuses the first connections. Nothing is lost: every key yields its
//! right bytes, or an error naming it.

use std::io::Read;
use std::time::Duration;

use haul::Bucket;
use haul::RetryPolicy;
use haul::{FetchErrorKind, FetchKey, Fetcher};

use crate::support::guard;
use crate::support::proxy::{FaultProxy, Faults};
use crate::support::s3::S3Server;

fn content(key: &str, size: usize) -> Vec<u8> {
    haul_origin::body(key, size as u64)
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .attempts(4)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20))
}

/// Whole objects up to 4 MiB; larger ones stream in 1 MiB parts.
fn fetcher() -> Fetcher {
    Fetcher::builder()
        .workers(2)
        .per_request_workers(2)
        .part_size(1 << 20)
        .max_whole_object(4 << 20)
        .memory_budget(16 << 20)
        .retry(quick_retries())
        .build()
        .unwrap()
}

/// A server with `objects` in bucket `data`, and a proxy in front of it.
fn setup(objects: &[(&str, usize)], faults: Faults, faulty: u64) -> (S3Server, FaultProxy, Bucket) {
    let server = S3Server::start(&["data"]);
    for (key, size) in objects {
        server.seed_file("data", key, &content(key, *size));
    }
    let proxy = FaultProxy::start(server.socket_addr(), faults, faulty);
    let config = server.config_at(format!("http://{}", proxy.addr()));
    let bucket = Bucket::new(&server.bucket_name("data"), &config).unwrap();
    (server, proxy, bucket)
}

fn read_all(object: haul::Object) -> std::io::Result<Vec<u8>> {
    if let Some(bytes) = object.bytes() {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    object.into_reader().read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn a_body_cut_by_fin_or_rst_resumes_for_whole_and_streamed_objects() {
    guard(|| {
        for reset in [false, true] {
            // 3 MiB whole; 6 MiB streamed (the cut falls inside part 0).
            for (key, size, cut) in [("whole", 3 << 20, 1 << 20), ("big", 6 << 20, 512 << 10)] {
                let faults = Faults {
                    cut_after: Some(cut),
                    reset,
                    ..Faults::default()
                };
                let (_server, proxy, bucket) = setup(&[(key, size)], faults, 1);
                let fetcher = fetcher();
                let object = fetcher.fetch(&bucket, [key]).next().unwrap().unwrap();
                assert_eq!(object.is_streamed(), size > 4 << 20);
                let bytes = read_all(object).unwrap();
                assert!(
                    bytes == content(key, size),
                    "{key} reset={reset}: wrong bytes"
                );
                assert_eq!(fetcher.stats().retries, 1, "{key} reset={reset}");
                // Only the missing bytes came again: far less than the cut part twice.
                let slack = 64 << 10;
                assert!(
                    proxy.bytes_down() < (size + cut as usize + slack) as u64,
                    "{key} reset={reset}: {} bytes",
                    proxy.bytes_down()
                );
            }
        }
    });
}

#[test]
fn a_503_is_retried() {
    guard(|| {
        let faults = Faults {
            status_503: true,
            ..Faults::default()
        };
        let (_server, proxy, bucket) = setup(&[("k", 1000)], faults, 2);
        let fetcher = fetcher();
        let object = fetcher.fetch(&bucket, ["k"]).next().unwrap().unwrap();
        assert!(object.bytes() == Some(&content("k", 1000)[..]));
        assert_eq!(fetcher.stats().retries, 2);
        // Each 503 closed its connection: the third attempt needed a third one.
        assert_eq!(proxy.connections(), 3);
    });
}

#[test]
fn corrupted_bytes_fail_the_md5_etag_check_and_are_fetched_again() {
    guard(|| {
        // Byte 100,000 of the first response is flipped: the MD5 ETag catches it.
        let faults = Faults {
            corrupt_at: Some(100_000),
            ..Faults::default()
        };
        let (_server, _proxy, bucket) = setup(&[("k", 300_000)], faults, 1);
        let fetch = fetcher();
        let object = fetch
            .fetch(&bucket, [FetchKey::new("k").size(300_000)])
            .next()
            .unwrap()
            .unwrap();
        assert!(object.bytes() == Some(&content("k", 300_000)[..]));
        assert_eq!(fetch.stats().retries, 1);

        // Corrupt every time: an error naming the key and both digests, for a whole object
        // (seeded as a file, so checked by its MD5 ETag; or PUT with a CRC-64/NVME checksum
        // the store returns) and at the end of a streamed one.
        let always = Faults {
            corrupt_every: Some(100_000),
            ..Faults::default()
        };
        for (key, size, put) in [
            ("w", 300_000, false),
            ("p", 300_000, true),
            ("s", 6 << 20, false),
        ] {
            let seeded: &[(&str, usize)] = if put { &[] } else { &[(key, size)] };
            let (server, _proxy, bucket) = setup(seeded, always, u64::MAX);
            if put {
                server.bucket("data").put(key, &content(key, size)).unwrap();
            }
            let fetcher = fetcher();
            let result = fetcher.fetch(&bucket, [key]).next().unwrap();
            let error = match result {
                Err(e) => e,
                Ok(object) => {
                    let Err(io) = read_all(object) else {
                        panic!("{key}: a corrupted stream read to its end without an error");
                    };
                    *io.into_inner()
                        .unwrap()
                        .downcast::<haul::FetchError>()
                        .unwrap()
                }
            };
            let FetchErrorKind::Digest(mismatch) = &error.kind else {
                panic!("{key}: {error}");
            };
            let md5 = format!("{:x}", md5_of(&content(key, size)));
            let expected = match mismatch.algorithm {
                "md5" => md5,
                algorithm => crate::support::s3::checksum_of(algorithm, &content(key, size)),
            };
            // In process, a file seeded on disk has no checksum; a PUT's is kept. An outside
            // store may keep one for every object.
            if server.is_local() {
                let want = if put { "crc64nvme" } else { "md5" };
                assert_eq!(mismatch.algorithm, want, "{key}");
            }
            let text = error.to_string();
            assert!(
                text.starts_with(&format!("GET s3://{}/{key}: ", bucket.name()))
                    && text.contains(&format!(
                        "{} mismatch: expected {expected}, got ",
                        mismatch.algorithm
                    )),
                "{text}"
            );
        }
    });
}

fn md5_of(bytes: &[u8]) -> md5::Digest {
    md5::compute(bytes)
}

#[test]
fn a_dead_store_fails_every_key_promptly_naming_it() {
    guard(|| {
        let server = S3Server::start_local(&["data"]);
        let config = server.config();
        drop(server);
        let bucket = Bucket::new("data", &config).unwrap();
        let fetcher = fetcher();
        let keys: Vec<String> = (0..10).map(|i| format!("k-{i}")).collect();
        let results: Vec<_> = fetcher.fetch(&bucket, keys.clone()).collect();
        assert_eq!(results.len(), 10);
        for (result, key) in results.iter().zip(&keys) {
            let error = result.as_ref().unwrap_err();
            assert!(matches!(error.kind, FetchErrorKind::Request(_)), "{error}");
            assert_eq!(
                error.to_string(),
                format!("GET s3://data/{key}: request failed")
            );
        }
        assert_eq!(fetcher.stats().retries, 10 * 3, "every attempt was made");
    });
}

/// An object that changes between attempts must not be stitched from two versions. The
/// loopback origin stands in for the store here (it serves any path, ignores the signature,
/// and answers `If-Match` like S3): S3 servers cannot change an object mid-GET on cue.
#[test]
fn an_object_that_changes_mid_transfer_starts_over_instead_of_mixing_versions() {
    guard(|| {
        let mut faults = haul_origin::Faults::default();
        faults.changing_etag = true;
        faults.drop_after = Some(100_000);
        faults.faults_first = Some(1);
        let origin = haul_origin::Origin::builder()
            .object_size(300_000)
            .faults(faults)
            .start()
            .unwrap();
        let config = haul::S3Config::new(origin.url(""), "us-east-1").credentials("k", "s");
        let bucket = Bucket::new("bkt", &config).unwrap();
        let fetch = fetcher();
        for key in [FetchKey::new("obj"), FetchKey::new("sized").size(300_000)] {
            origin.reset_stats();
            let name = key.key.clone();
            let object = fetch.fetch(&bucket, [key]).next().unwrap().unwrap();
            assert!(
                object.bytes() == Some(&haul_origin::body(&format!("/bkt/{name}"), 300_000)[..])
            );
            // Cut, then the resume is refused (412: not the version we hold), then whole.
            let stats = origin.stats();
            assert_eq!(
                (
                    stats.status_count(200),
                    stats.status_count(412),
                    stats.requests
                ),
                (2, 1, 3),
                "{name}: {stats:?}"
            );
        }
    });
}
