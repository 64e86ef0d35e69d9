//! S3's object checksums, asked for on every GET (`x-amz-checksum-mode: ENABLED`) and
//! verified by the fetcher and the downloader, against the in-process store, which returns
//! them only when asked (as S3 does) and keeps what it is told, true or not.

use std::time::Duration;

use haul::{Detail, Downloader, FetchErrorKind, Fetcher, JobSpec, S3Target};
use haul_origin::Origin;

use crate::support::s3::{S3Server, checksum_of};
use crate::support::{TestDir, files_under, guard};

/// The full-object checksums S3 keeps.
const ALGORITHMS: [&str; 5] = ["crc64nvme", "crc32c", "crc32", "sha1", "sha256"];

fn content(key: &str) -> Vec<u8> {
    haul_origin::body(key, 200_000)
}

/// Under `good/`, an object per algorithm with its true checksum; under `bad/`, one with the
/// checksum of other bytes (a store that lies, or bytes that changed on their way into it).
/// Every ETag is the true MD5, so only the checksum can tell the bad ones.
fn seeded() -> S3Server {
    let server = S3Server::start_local(&["data"]);
    for algorithm in ALGORITHMS {
        let field = format!("checksum_{algorithm}");
        for (dir, of) in [("good", None), ("bad", Some(&b"other bytes"[..]))] {
            let key = format!("{dir}/{algorithm}.bin");
            let bytes = content(&key);
            let checksum = checksum_of(algorithm, of.unwrap_or(&bytes));
            server.seed_with_info("data", &key, &bytes, &[(&field, &checksum)]);
        }
    }
    server
}

/// Two attempts, 1 ms apart: a mismatch is fetched once more before it fails.
fn quick_retries() -> haul::RetryPolicy {
    haul::RetryPolicy::default()
        .attempts(2)
        .initial_backoff(Duration::from_millis(1))
}

/// Seeds `bytes` in bucket `data` under `good` with its true CRC-64/NVME and under `bad` with
/// that of other bytes, both with the true MD5 as their ETag: only the checksum tells them.
fn seed_true_and_lying(server: &S3Server, [good, bad]: [&str; 2], bytes: &[u8]) {
    let md5 = format!("{:x}", md5::compute(bytes));
    for (key, of) in [(good, bytes), (bad, &b"other bytes"[..])] {
        let crc = checksum_of("crc64nvme", of);
        let info = [("checksum_crc64nvme", &crc[..]), ("e_tag", &md5[..])];
        server.seed_with_info("data", key, bytes, &info);
    }
}

/// Runs `spec` on a downloader into `dir` (two joggers, quick retries) to its end.
fn download(dir: &TestDir, spec: JobSpec) -> haul::JobStatus {
    let d = Downloader::builder()
        .mountpath(dir.path())
        .workers_per_target(2)
        .build()
        .unwrap();
    let job = d.submit(spec.retry(quick_retries())).unwrap();
    assert!(d.wait(job, Duration::from_secs(30)).unwrap());
    d.status(job, Detail::All).unwrap()
}

fn fetcher() -> Fetcher {
    Fetcher::builder()
        .workers(2)
        .retry(quick_retries())
        .build()
        .unwrap()
}

#[test]
fn the_fetcher_verifies_every_checksum_algorithm_and_names_the_one_that_failed() {
    guard(|| {
        let server = seeded();
        let bucket = server.bucket("data");
        let fetcher = fetcher();
        let good: Vec<String> = ALGORITHMS.iter().map(|a| format!("good/{a}.bin")).collect();
        for (key, object) in good.iter().zip(fetcher.fetch(&bucket, good.clone())) {
            let object = object.unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(object.bytes() == Some(&content(key)[..]), "{key}");
        }
        for algorithm in ALGORITHMS {
            let key = format!("bad/{algorithm}.bin");
            let Some(Err(error)) = fetcher.fetch(&bucket, [key.clone()]).next() else {
                panic!("{key}: fetched, its checksum not checked");
            };
            let FetchErrorKind::Digest(mismatch) = &error.kind else {
                panic!("{key}: {error}");
            };
            assert_eq!(mismatch.algorithm, algorithm, "{key}: {error}");
            assert_eq!(mismatch.expected, checksum_of(algorithm, b"other bytes"));
            assert_eq!(mismatch.actual, checksum_of(algorithm, &content(&key)));
        }
    });
}

#[test]
fn a_downloader_job_lands_what_its_checksum_vouches_for_and_nothing_else() {
    guard(|| {
        let server = seeded();
        let bucket = server.bucket("data");
        let dir = TestDir::new();
        let status = download(&dir, JobSpec::s3_prefix(&bucket, ""));
        assert_eq!((status.finished, status.failed), (5, 5), "{status:?}");
        let mut failed: Vec<String> = status
            .failures
            .iter()
            .map(|f| haul::error_chain(&f.error))
            .collect();
        failed.sort();
        let mut algorithms = ALGORITHMS;
        algorithms.sort_unstable();
        assert_eq!(failed.len(), algorithms.len());
        for (text, algorithm) in failed.iter().zip(algorithms) {
            assert!(
                text.contains(&format!("bad/{algorithm}.bin"))
                    && text.contains(&format!("{algorithm} mismatch")),
                "{text}"
            );
        }
        let mut landed = files_under(dir.path());
        landed.sort();
        let mut want: Vec<String> = ALGORITHMS.iter().map(|a| format!("good/{a}.bin")).collect();
        want.sort();
        assert_eq!(landed, want);
        for key in &want {
            assert!(std::fs::read(dir.path().join(key)).unwrap() == content(key));
        }
    });
}

/// A verified CRC stands for the MD5 (which would cost a core 2 s a GiB more), so an ETag
/// that is not the object's MD5 does not fail it; a composite checksum (`…-N`, of the parts'
/// checksums) is not mistaken for the bytes' and fails nothing.
#[test]
fn a_verified_crc_stands_for_the_etag_and_a_composite_checksum_is_not_the_bytes() {
    guard(|| {
        let server = S3Server::start_local(&["data"]);
        let bytes = content("x");
        let crc = checksum_of("crc64nvme", &bytes);
        let not_md5 = "0123456789abcdef0123456789abcdef";
        server.seed_with_info(
            "data",
            "crc.bin",
            &bytes,
            &[("checksum_crc64nvme", &crc), ("e_tag", not_md5)],
        );
        let composite = format!("{}-3", checksum_of("crc32c", b"the parts' checksums"));
        let md5 = format!("{:x}", md5::compute(&bytes));
        server.seed_with_info(
            "data",
            "composite.bin",
            &bytes,
            &[("checksum_crc32c", &composite), ("e_tag", &md5)],
        );
        let bucket = server.bucket("data");
        for object in fetcher().fetch(&bucket, ["crc.bin", "composite.bin"]) {
            let object = object.unwrap();
            assert!(object.bytes() == Some(&bytes[..]), "{}", object.key());
        }
        // Without the CRC, the ETag that is not the MD5 fails the object.
        server.seed_with_info("data", "crc.bin", &bytes, &[("e_tag", not_md5)]);
        let Some(Err(error)) = fetcher().fetch(&bucket, ["crc.bin"]).next() else {
            panic!("an ETag that is not the MD5 was not checked");
        };
        assert!(error.to_string().contains("md5 mismatch"), "{error}");
    });
}

/// What haul uploads carries a full-object CRC-64/NVME (in one PUT, or declared when a
/// multipart upload starts, a part's own with each part and the whole object's with the
/// completion), which the store checks and keeps for later readers.
#[test]
fn uploads_carry_a_full_object_crc64nvme_that_the_store_checks_and_keeps() {
    guard(|| {
        const MIB: u64 = 1 << 20;
        let server = S3Server::start_local(&["uploads"]);
        let bucket = server.bucket("uploads");
        let origin = Origin::start().unwrap();
        let d = Downloader::builder()
            .s3_target(S3Target::new(&bucket, "in/").part_size(5 * MIB))
            .workers_per_target(2)
            .build()
            .unwrap();
        let sizes = [("one.bin", 1000), ("three.bin", 15 * MIB + 7)];
        let spec = JobSpec::multi_named(
            sizes.map(|(name, size)| (name, origin.url(&format!("/u/{name}?size={size}")))),
        );
        let job = d.submit(spec).unwrap();
        assert!(d.wait(job, Duration::from_secs(60)).unwrap());
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!(status.finished, 2, "{status:?}");
        for (name, size) in sizes {
            let kept = server.stored_checksum("uploads", &format!("in/{name}"), "crc64nvme");
            let bytes = haul_origin::body(&format!("/u/{name}"), size);
            assert_eq!(kept, Some(checksum_of("crc64nvme", &bytes)), "{name}");
        }
        bucket.put("put.bin", b"one PUT").unwrap();
        let kept = server.stored_checksum("uploads", "put.bin", "crc64nvme");
        assert_eq!(kept, Some(checksum_of("crc64nvme", b"one PUT")));
    });
}

/// An object streamed in ranged parts (which carry no checksum of the whole) is checked, as
/// its parts are read, against the full-object checksum one HEAD asks for: a lie is caught
/// at the end of the stream even though the ETag is the true MD5.
#[test]
fn a_streamed_object_is_checked_against_the_checksum_a_head_asks_for() {
    use std::io::Read as _;
    guard(|| {
        let server = S3Server::start_local(&["data"]);
        let bytes = haul_origin::body("big", 6 << 20);
        seed_true_and_lying(&server, ["good.bin", "bad.bin"], &bytes);
        let fetcher = Fetcher::builder()
            .workers(2)
            .per_request_workers(2)
            .part_size(1 << 20)
            .max_whole_object(4 << 20)
            .memory_budget(16 << 20)
            .retry(quick_retries())
            .build()
            .unwrap();
        let bucket = server.bucket("data");
        for key in ["good.bin", "bad.bin"] {
            let object = fetcher.fetch(&bucket, [key]).next().unwrap().unwrap();
            assert!(object.bytes().is_none(), "{key}: not streamed");
            let mut read = Vec::new();
            let result = object.into_reader().read_to_end(&mut read);
            if key == "good.bin" {
                result.unwrap();
                assert!(read == bytes, "{key}: the bytes");
            } else {
                let error = result.expect_err("a lying checksum went unnoticed");
                assert!(error.to_string().contains("crc64nvme mismatch"), "{error}");
            }
        }
    });
}

/// An object a downloader job fetches in ranged parts is read back once it is whole and
/// checked against the store's full-object checksum (one HEAD: ranged answers carry none):
/// a lie fails it, though the ETag is the true MD5 and every part arrived intact.
#[test]
fn an_object_fetched_in_parts_is_checked_whole_against_the_store_checksum() {
    guard(|| {
        let server = S3Server::start_local(&["data"]);
        let bytes = haul_origin::body("parted", 3 << 20);
        seed_true_and_lying(&server, ["p/good.bin", "p/bad.bin"], &bytes);
        let bucket = server.bucket("data");
        let dir = TestDir::new();
        let parts = haul::PartsPolicy::new(4)
            .min_object_bytes(1 << 20)
            .part_bytes(256 << 10);
        let status = download(&dir, JobSpec::s3_prefix(&bucket, "p/").parts(parts));
        assert_eq!((status.finished, status.failed), (1, 1), "{status:?}");
        let error = haul::error_chain(&status.failures[0].error);
        assert!(
            error.contains("p/bad.bin") && error.contains("crc64nvme mismatch"),
            "{error}"
        );
        assert_eq!(files_under(dir.path()), ["p/good.bin"]);
        assert!(std::fs::read(dir.path().join("p/good.bin")).unwrap() == bytes);
    });
}

/// A composite checksum (of a multipart upload's parts' checksums) is checked once the store
/// has listed the parts' sizes (`GetObjectAttributes`), uneven ones included: by the fetcher
/// whole or streamed, and by a downloader job. Without a list of parts it is not checked,
/// and fails nothing.
#[test]
fn a_composite_checksum_is_checked_against_the_parts_the_store_lists() {
    use crate::support::s3::composite_checksum_of;
    use std::io::Read as _;
    guard(|| {
        let server = S3Server::start_local(&["data"]);
        let bytes = haul_origin::body("composite", 2_500_000);
        let sizes = [1_000_000, 600_000, 900_000];
        let listed = "1000000,600000,900000";
        let md5 = format!("{:x}", md5::compute(&bytes));
        let other = haul_origin::body("other", bytes.len() as u64);
        for (key, of, parts) in [
            ("c/good.bin", &bytes, Some(listed)),
            ("c/bad.bin", &other, Some(listed)),
            // Parts the store lists in another order than they were: not this checksum.
            ("c/moved.bin", &bytes, Some("1000000,900000,600000")),
            ("c/unlisted.bin", &other, None),
        ] {
            let composite = composite_checksum_of("crc32c", of, &sizes);
            let mut info = vec![("checksum_crc32c", composite.as_str()), ("e_tag", &md5)];
            info.extend(parts.map(|p| ("part_sizes", p)));
            server.seed_with_info("data", key, &bytes, &info);
        }
        let bucket = server.bucket("data");
        let whole = fetcher();
        let streamed = Fetcher::builder()
            .workers(2)
            .per_request_workers(2)
            .part_size(512 << 10)
            .max_whole_object(1 << 20)
            .memory_budget(8 << 20)
            .retry(quick_retries())
            .build()
            .unwrap();
        for key in ["c/good.bin", "c/unlisted.bin", "c/bad.bin", "c/moved.bin"] {
            let fails = key == "c/bad.bin" || key == "c/moved.bin";
            let object = whole.fetch(&bucket, [key]).next().unwrap();
            match object {
                Ok(object) if !fails => assert!(object.bytes() == Some(&bytes[..]), "{key}"),
                Err(e) if fails => assert!(e.to_string().contains("crc32c mismatch"), "{key}: {e}"),
                other => panic!("{key}: {:?}", other.map(|o| o.key().to_owned())),
            }
            let object = streamed.fetch(&bucket, [key]).next().unwrap().unwrap();
            let mut read = Vec::new();
            let result = object.into_reader().read_to_end(&mut read);
            match result {
                Ok(_) if !fails => assert!(read == bytes, "{key} streamed"),
                Err(e) if fails => assert!(e.to_string().contains("crc32c mismatch"), "{key}: {e}"),
                other => panic!("{key} streamed: {other:?}"),
            }
        }
        let dir = TestDir::new();
        let status = download(&dir, JobSpec::s3_prefix(&bucket, "c/"));
        assert_eq!((status.finished, status.failed), (2, 2), "{status:?}");
        assert_eq!(files_under(dir.path()), ["c/good.bin", "c/unlisted.bin"]);
    });
}
