//! What haul does not trust: every response is checked against what was asked and against the
//! object's first response, for every destination — a work file, ranged parts at their
//! offsets, any `Write`, an S3 target and the fetcher's memory. The origin lies on purpose:
//! it ignores `If-Range`/`If-Match` while the object is replaced mid-transfer, or answers a
//! range from offset 0.

use std::io::Read;
use std::time::Duration;

use haul::{Bucket, S3Config};
use haul::{
    CancelToken, Detail, DownloadError, Downloader, HttpClient, JobSpec, Mountpath, ObjectTask,
    PartsPolicy, Progress, RetryPolicy, S3Target,
};
use haul::{FetchKey, Fetcher};
use haul_origin::{Origin, body, versioned_body};

use crate::support::s3::S3Server;
use crate::support::{TestDir, chain, guard, wait_until};

const SIZE: u64 = 300_000;
const MIB: u64 = 1 << 20;

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .attempts(4)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20))
}

/// The query of an object whose first response stops at the origin's gate after 100,000
/// bytes and is then cut (FIN); the origin honours ranges but ignores `If-Range`/`If-Match`.
fn cut_at_the_gate(size: u64) -> String {
    format!("size={size}&gate_after=100000&drop_after=100000&faults_first=1&ignore_conditions=1")
}

/// Waits until the first response is held at the gate, replaces every object, and lets the
/// response go on (to its cut).
fn replace_while_held(origin: &Origin) {
    assert!(
        origin.gate().wait_arrivals(1, Duration::from_secs(30)),
        "the first response never reached the gate"
    );
    assert_eq!(origin.replace_objects(), 1);
    origin.gate().release();
}

#[test]
fn a_file_resumed_from_a_server_that_ignores_if_range_holds_one_version_only() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let url = origin.url(&format!("/v.bin?{}", cut_at_the_gate(SIZE)));
        let task = ObjectTask::from_url(url).unwrap().retry(quick_retries());
        let downloading = std::thread::spawn({
            let root = dir.path().to_owned();
            move || {
                let mountpath = Mountpath::new(root).unwrap();
                let client = HttpClient::default();
                crate::download_into(&client, &task, &mountpath)
            }
        });
        replace_while_held(&origin);
        let landed = downloading.join().unwrap().unwrap();
        let bytes = std::fs::read(&landed.path).unwrap();
        assert!(
            bytes == versioned_body("/v.bin", SIZE, 1),
            "the file is not the new version whole (first bytes from the old: {})",
            bytes[..100_000] == body("/v.bin", SIZE)[..100_000]
        );
        assert!(landed.refetched >= 100_000, "{landed:?}");
    });
}

#[test]
fn a_stream_resumed_from_a_server_that_ignores_if_range_fails_instead_of_splicing() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let url = origin.url(&format!("/w.bin?{}", cut_at_the_gate(SIZE)));
        let task = ObjectTask::from_url(url).unwrap().retry(quick_retries());
        let downloading = std::thread::spawn(move || {
            let mut out = Vec::new();
            let result = haul::download_to(
                &HttpClient::default(),
                &task,
                &mut out,
                &Progress::new(),
                &CancelToken::new(),
            );
            (result, out)
        });
        replace_while_held(&origin);
        let (result, out) = downloading.join().unwrap();
        let error = result.expect_err("a spliced stream was reported whole");
        let text = chain(&error);
        assert!(text.contains("changed"), "{text}");
        // What was written is the old version's prefix, nothing of the new one.
        assert!(
            out == body("/w.bin", SIZE)[..out.len()],
            "new bytes were written"
        );
    });
}

#[test]
fn ranged_parts_of_an_object_replaced_meanwhile_never_land_stitched() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let size = 3 * MIB;
        // The opening part (1 MiB) is held at the gate while parts 1 and 2 arrive; then the
        // object is replaced and the opening part's resume is answered from the new one.
        let url = origin.url(&format!("/p.bin?{}", cut_at_the_gate(size)));
        let parts = PartsPolicy::new(2).min_object_bytes(MIB).part_bytes(MIB);
        let task = ObjectTask::from_url(url)
            .unwrap()
            .retry(quick_retries())
            .parts(parts);
        let downloading = std::thread::spawn({
            let root = dir.path().to_owned();
            move || {
                let mountpath = Mountpath::new(root).unwrap();
                crate::download_into(&HttpClient::default(), &task, &mountpath)
            }
        });
        assert!(origin.gate().wait_arrivals(1, Duration::from_secs(30)));
        // Parts 1 and 2 are done; only the opening part is in progress.
        assert!(wait_until(|| {
            let stats = origin.stats();
            stats.requests == 3 && stats.active == 1
        }));
        origin.replace_objects();
        origin.gate().release();
        let landed = downloading.join().unwrap().unwrap();
        let bytes = std::fs::read(&landed.path).unwrap();
        assert!(
            bytes == versioned_body("/p.bin", size, 1),
            "the object landed stitched from two versions"
        );
    });
}

#[test]
fn ranged_parts_answered_from_the_wrong_offset_are_never_written_there() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let size = 3 * MIB + 12_345;
        let url = origin.url(&format!("/z.bin?size={size}&range_from_zero=1"));
        let parts = PartsPolicy::new(4).min_object_bytes(MIB).part_bytes(MIB);
        let task = ObjectTask::from_url(url)
            .unwrap()
            .retry(quick_retries())
            .parts(parts);
        let mountpath = Mountpath::new(dir.path()).unwrap();
        let landed = crate::download_into(&HttpClient::default(), &task, &mountpath).unwrap();
        let bytes = std::fs::read(&landed.path).unwrap();
        assert!(
            bytes == body("/z.bin", size),
            "parts landed at the wrong offsets"
        );
        // It fell back to one plain stream, which such a server serves right.
        assert!(
            origin.stats().status_count(200) >= 1,
            "{:?}",
            origin.stats()
        );
    });
}

#[test]
fn an_s3_target_resumed_from_a_server_that_ignores_if_range_stores_one_version_only() {
    guard(|| {
        let server = S3Server::start(&["consistent"]);
        let bucket = server.bucket("consistent");
        let origin = Origin::start().unwrap();
        let d = Downloader::builder()
            .s3_target(S3Target::new(&bucket, "in"))
            .build()
            .unwrap();
        let url = origin.url(&format!("/s.bin?{}", cut_at_the_gate(SIZE)));
        let job = d
            .submit(JobSpec::single(url).retry(quick_retries()))
            .unwrap();
        replace_while_held(&origin);
        assert!(d.wait(job, Duration::from_secs(30)).unwrap());
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!(status.finished, 1, "{:?}", status.failures);
        let fetcher = Fetcher::builder().workers(1).build().unwrap();
        let stored = fetcher
            .fetch(&bucket, ["in/s.bin"])
            .next()
            .unwrap()
            .unwrap();
        assert!(
            stored.bytes() == Some(&versioned_body("/s.bin", SIZE, 1)[..]),
            "the stored object is not the new version whole"
        );
        assert_eq!(bucket.uploads("").unwrap(), vec![]);
    });
}

/// A bucket whose store is the origin itself: presigned GETs of `/bucket/key` are served
/// like any path (the signature is ignored), so the fetcher meets the origin's lies.
fn origin_bucket(origin: &Origin) -> Bucket {
    let config = S3Config::new(origin.url(""), "us-east-1").credentials("origin", "origin");
    Bucket::new("lies", &config).unwrap()
}

/// Whole objects up to 1 MiB; larger ones stream in 1 MiB parts, within a 1 MiB budget.
fn one_part_fetcher() -> Fetcher {
    Fetcher::builder()
        .workers(1)
        .per_request_workers(1)
        .part_size(MIB)
        .max_whole_object(MIB)
        .memory_budget(MIB)
        .retry(quick_retries())
        .build()
        .unwrap()
}

#[test]
fn the_fetcher_never_appends_a_resume_answered_from_the_wrong_offset() {
    guard(|| {
        let origin = Origin::start().unwrap();
        origin.set_query(
            "/lies/cut.bin",
            &format!("size={SIZE}&drop_after=100000&faults_first=1&range_from_zero=1"),
        );
        let bucket = origin_bucket(&origin);
        let fetcher = one_part_fetcher();
        let object = fetcher
            .fetch(&bucket, [FetchKey::new("cut.bin").size(SIZE)])
            .next()
            .unwrap()
            .unwrap();
        assert!(
            object.bytes() == Some(&body("/lies/cut.bin", SIZE)[..]),
            "the resumed bytes were appended from the wrong offset"
        );
    });
}

#[test]
fn a_streamed_fetch_of_an_object_replaced_between_parts_fails_and_stays_failed() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let size = 3 * MIB;
        origin.set_query("/lies/big.bin", &format!("size={size}&ignore_conditions=1"));
        let bucket = origin_bucket(&origin);
        let fetcher = one_part_fetcher();
        let object = fetcher
            .fetch(&bucket, [FetchKey::new("big.bin").size(size)])
            .next()
            .unwrap()
            .unwrap();
        assert!(object.is_streamed());
        let mut reader = object.into_reader();
        let mut first = vec![0; MIB as usize];
        reader.read_exact(&mut first).unwrap();
        assert!(first == body("/lies/big.bin", size)[..MIB as usize]);
        // Part 1 waits for the budget part 0 still holds: it is asked for only now.
        origin.replace_objects();
        let mut rest = Vec::new();
        let error = reader
            .read_to_end(&mut rest)
            .expect_err("parts of two versions were read as one object");
        assert!(error.to_string().contains("changed"), "{error}");
        assert!(
            rest.is_empty() || rest == body("/lies/big.bin", size)[MIB as usize..][..rest.len()],
            "bytes of the new version were read"
        );
        // An error stays an error: no clean end of file over a broken object, no hang.
        for _ in 0..3 {
            let again = reader.read(&mut [0; 16]);
            assert!(again.is_err(), "a read after the error gave {again:?}");
        }
    });
}

#[test]
fn a_streamed_fetch_from_a_store_whose_object_is_replaced_fails_instead_of_stitching() {
    guard(|| {
        let server = S3Server::start(&["stitch"]);
        let size = 3 * MIB as usize;
        let old = haul_origin::body("old", size as u64);
        server.seed_file("stitch", "big.bin", &old);
        let bucket = server.bucket("stitch");
        let fetcher = one_part_fetcher();
        let object = fetcher
            .fetch(&bucket, [FetchKey::new("big.bin").size(size as u64)])
            .next()
            .unwrap()
            .unwrap();
        let mut reader = object.into_reader();
        let mut first = vec![0; MIB as usize];
        reader.read_exact(&mut first).unwrap();
        assert!(first == old[..MIB as usize]);
        server.seed_file("stitch", "big.bin", &haul_origin::body("new", size as u64));
        let mut rest = Vec::new();
        let result = reader.read_to_end(&mut rest);
        assert!(
            result.is_err(),
            "a stitched object was read whole ({} bytes after the first part)",
            rest.len()
        );
        assert!(reader.read(&mut [0; 16]).is_err(), "the error did not stay");
    });
}

#[test]
fn when_part_zero_of_a_streamed_object_fails_the_next_keys_still_arrive() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let size = 3 * MIB;
        // The first request for the big object (its part 0) gets a 503; later parts succeed.
        origin.set_query(
            "/lies/first.bin",
            &format!("size={size}&status=503&faults_first=1"),
        );
        origin.set_query("/lies/second.bin", "size=1000");
        let bucket = origin_bucket(&origin);
        let fetcher = Fetcher::builder()
            .workers(1)
            .per_request_workers(1)
            .part_size(MIB)
            .max_whole_object(MIB)
            .memory_budget(MIB)
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let keys = [
            FetchKey::new("first.bin").size(size),
            FetchKey::new("second.bin").size(1000),
        ];
        let mut objects = fetcher.fetch(&bucket, keys);
        let first = objects.next().unwrap();
        assert!(first.is_err(), "part 0 failed, so the object fails");
        let second = objects.next().unwrap().unwrap();
        assert!(second.bytes() == Some(&body("/lies/second.bin", 1000)[..]));
        assert!(objects.next().is_none());
        drop((second, objects));
        assert!(wait_until(|| fetcher.stats().budget_in_use == 0));
    });
}

#[test]
fn every_destination_refuses_a_resume_that_starts_elsewhere() {
    // The single-stream destinations with a cut body whose resume is answered from offset
    // 0: the file and the S3 target start over and land right; the stream fails.
    guard(|| {
        let origin = Origin::start().unwrap();
        let query = format!("size={SIZE}&drop_after=100000&faults_first=1&range_from_zero=1");
        let dir = TestDir::new();
        let mountpath = Mountpath::new(dir.path()).unwrap();
        let task = ObjectTask::from_url(origin.url(&format!("/f.bin?{query}")))
            .unwrap()
            .retry(quick_retries());
        let landed = crate::download_into(&HttpClient::default(), &task, &mountpath).unwrap();
        assert!(std::fs::read(&landed.path).unwrap() == body("/f.bin", SIZE));

        let task = ObjectTask::from_url(origin.url(&format!("/g.bin?{query}")))
            .unwrap()
            .retry(quick_retries());
        let mut out = Vec::new();
        let error = haul::download_to(
            &HttpClient::default(),
            &task,
            &mut out,
            &Progress::new(),
            &CancelToken::new(),
        )
        .unwrap_err();
        assert!(
            !matches!(error, DownloadError::Cancelled { .. }),
            "{}",
            chain(&error)
        );
        assert!(out == body("/g.bin", SIZE)[..out.len()]);

        let server = S3Server::start(&["offsets"]);
        let bucket = server.bucket("offsets");
        let d = Downloader::builder()
            .s3_target(S3Target::new(&bucket, ""))
            .build()
            .unwrap();
        let url = origin.url(&format!("/h.bin?{query}"));
        let job = d
            .submit(JobSpec::single(url).retry(quick_retries()))
            .unwrap();
        assert!(d.wait(job, Duration::from_secs(30)).unwrap());
        assert_eq!(d.status(job, Detail::All).unwrap().finished, 1);
        let fetcher = Fetcher::builder().workers(1).build().unwrap();
        let stored = fetcher.fetch(&bucket, ["h.bin"]).next().unwrap().unwrap();
        assert!(stored.bytes() == Some(&body("/h.bin", SIZE)[..]));
    });
}
