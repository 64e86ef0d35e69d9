//! S3 targets: jobs from the loopback origin into a bucket of the in-process S3 server (or
//! SeaweedFS, with `HAUL_TEST_S3_ENDPOINT`). Objects appear whole or not at all, and no
//! multipart upload is ever left behind.

use std::io::Read;
use std::time::Duration;

use haul::Bucket;
use haul::Fetcher;
use haul::{Detail, Downloader, JobSpec, JobStatus, RetryPolicy, S3Target};
use haul_origin::{Origin, fill, seed};

use crate::support::s3::S3Server;
use crate::support::{chain, guard_for, wait_until};

const MIB: u64 = 1 << 20;

/// Reads `key` back from the store and compares it, byte for byte, with the origin's
/// object at `path` of `size` bytes.
#[track_caller]
pub(crate) fn assert_stored(bucket: &Bucket, key: &str, path: &str, size: u64) {
    let fetcher = Fetcher::builder()
        .workers(2)
        .per_request_workers(2)
        .memory_budget(64 * MIB)
        .build()
        .unwrap();
    let object = fetcher
        .fetch(bucket, vec![key.to_owned()])
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("{key}: {}", chain(&e)));
    let mut reader = object.into_reader();
    let (mut offset, mut got, mut want) = (0u64, vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = reader.read(&mut got).unwrap();
        if n == 0 {
            break;
        }
        fill(seed(path), offset, &mut want[..n]);
        assert!(
            got[..n] == want[..n],
            "{key}: bytes differ near offset {offset}"
        );
        offset += n as u64;
    }
    assert_eq!(offset, size, "{key}: length");
}

fn downloader(bucket: &Bucket, prefix: &str, workers: usize) -> Downloader {
    Downloader::builder()
        .s3_target(S3Target::new(bucket, prefix).part_size(5 * MIB))
        .workers_per_target(workers)
        .build()
        .unwrap()
}

/// Runs `spec` on `d` to its end (a hang fails the test) and its full status.
pub(crate) fn finish(d: &Downloader, spec: JobSpec) -> JobStatus {
    let job = d.submit(spec).unwrap();
    assert!(d.wait(job, Duration::from_secs(100)).unwrap(), "job hangs");
    d.status(job, Detail::All).unwrap()
}

/// Each failed object as `NAME: ERROR CHAIN`.
pub(crate) fn failures(status: &JobStatus) -> Vec<String> {
    status
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.name, chain(&*f.error)))
        .collect()
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default().initial_backoff(Duration::from_millis(5))
}

#[test]
fn objects_of_every_size_land_whole_under_the_prefix() {
    guard_for(Duration::from_secs(120), || {
        let server = S3Server::start(&["land"]);
        let bucket = server.bucket("land");
        let origin = Origin::start().unwrap();
        let part = 5 * MIB;
        // Around the part size, several parts, empty, and bodies of unknown length.
        let objects: Vec<(String, u64, &str)> = vec![
            ("empty.bin".into(), 0, ""),
            ("one.bin".into(), 1, ""),
            ("below.bin".into(), part - 1, ""),
            ("exact.bin".into(), part, ""),
            ("above.bin".into(), part + 1, ""),
            ("three.bin".into(), 3 * part + 7, ""),
            ("chunked.bin".into(), 2 * part + 3, "&chunked=1"),
            ("nolength.bin".into(), part + 5, "&no_length=1"),
            ("small-chunked.bin".into(), 1000, "&chunked=1"),
        ];
        let pairs: Vec<(String, String)> = objects
            .iter()
            .map(|(name, size, extra)| {
                let url = origin.url(&format!("/sz/{name}?size={size}{extra}"));
                (format!("d/{name}"), url)
            })
            .collect();
        let d = downloader(&bucket, "in", 3);
        let status = finish(&d, JobSpec::multi_named(pairs));
        assert_eq!(
            (status.finished, status.failed),
            (objects.len() as u64, 0),
            "{:?}",
            failures(&status)
        );
        for (name, size, _) in &objects {
            assert_stored(
                &bucket,
                &format!("in/d/{name}"),
                &format!("/sz/{name}"),
                *size,
            );
        }
        let expected: u64 = objects.iter().map(|o| o.1).sum();
        assert_eq!(status.bytes, expected);
        assert_eq!(bucket.uploads("").unwrap(), vec![], "no upload left behind");
        // Multipart where the object is larger than a part, one PUT otherwise.
        let etag = |key: &str| bucket.head(key).unwrap().unwrap().etag.unwrap();
        assert!(
            etag("in/d/three.bin").ends_with("-4"),
            "{}",
            etag("in/d/three.bin")
        );
        assert!(!etag("in/d/below.bin").contains('-'));
        let budget = d.memory_use().unwrap();
        assert_eq!(budget.in_use, 0, "every buffer went back");
        assert!(budget.peak <= budget.budget);
    });
}

#[test]
fn a_range_job_and_a_200_mib_object_go_into_a_bucket_multipart() {
    guard_for(Duration::from_secs(240), || {
        let server = S3Server::start(&["big"]);
        let bucket = server.bucket("big");
        let origin = Origin::start().unwrap();
        let d = Downloader::builder()
            .s3_target(S3Target::new(&bucket, "r/"))
            .workers_per_target(4)
            .build()
            .unwrap();
        let status = finish(
            &d,
            JobSpec::range(origin.url("/rg/o-{000..099}.bin?size=3000")),
        );
        assert_eq!(
            (status.finished, status.failed),
            (100, 0),
            "{:?}",
            failures(&status)
        );
        let keys: Vec<String> = bucket.list("r/").map(|o| o.unwrap().key).collect();
        let expected: Vec<String> = (0..100).map(|i| format!("r/o-{i:03}.bin")).collect();
        assert_eq!(keys, expected);
        for i in [0, 57, 99] {
            assert_stored(
                &bucket,
                &format!("r/o-{i:03}.bin"),
                &format!("/rg/o-{i:03}.bin"),
                3000,
            );
        }

        let size = 200 * MIB;
        let status = finish(
            &d,
            JobSpec::single(origin.url(&format!("/rg/big.bin?size={size}"))),
        );
        assert_eq!(
            (status.finished, status.failed),
            (1, 0),
            "{:?}",
            failures(&status)
        );
        let head = bucket.head("r/big.bin").unwrap().unwrap();
        assert_eq!(head.size, size);
        // 200 MiB in the default 8 MiB parts.
        assert!(head.etag.as_deref().unwrap().ends_with("-25"), "{head:?}");
        assert_stored(&bucket, "r/big.bin", "/rg/big.bin", size);
        assert_eq!(bucket.uploads("").unwrap(), vec![]);
        let budget = d.memory_use().unwrap();
        assert_eq!(budget.budget, 4 * 8 * MIB, "one part per jogger");
        assert!(budget.peak <= budget.budget);
    });
}

#[test]
fn abort_mid_upload_leaves_no_object_and_no_dangling_upload() {
    guard_for(Duration::from_secs(120), || {
        let server = S3Server::start(&["abort"]);
        let bucket = server.bucket("abort");
        let origin = Origin::start().unwrap();
        let d = downloader(&bucket, "", 2);
        // Two parts go up, then the body stops at the gate in the third.
        let big = origin.url(&format!(
            "/ab/big.bin?size={}&gate_after={}",
            40 * MIB,
            12 * MIB
        ));
        let job = d.submit(JobSpec::single(big)).unwrap();
        assert!(origin.gate().wait_arrivals(1, Duration::from_secs(60)));
        assert!(
            wait_until(|| bucket.uploads("").unwrap().len() == 1),
            "the upload is under way"
        );
        d.abort(job).unwrap();
        assert!(d.wait(job, Duration::from_secs(60)).unwrap());
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!((status.finished, status.cancelled), (0, 1));
        assert_eq!(
            bucket.uploads("").unwrap(),
            vec![],
            "the upload was aborted"
        );
        assert_eq!(bucket.head("big.bin").unwrap(), None, "no partial object");
        origin.gate().release();

        // Dropping the downloader mid-upload cleans up the same way.
        let d = downloader(&bucket, "", 2);
        let big = origin.url(&format!(
            "/ab/big2.bin?size={}&gate_after={}",
            40 * MIB,
            12 * MIB
        ));
        d.submit(JobSpec::single(big)).unwrap();
        assert!(origin.gate().wait_arrivals(2, Duration::from_secs(60)));
        assert!(wait_until(|| bucket.uploads("").unwrap().len() == 1));
        drop(d);
        assert_eq!(bucket.uploads("").unwrap(), vec![]);
        assert_eq!(bucket.head("big2.bin").unwrap(), None);
        origin.gate().release();
    });
}

#[test]
fn a_body_that_breaks_resumes_into_the_same_upload_and_one_that_fails_leaves_nothing() {
    guard_for(Duration::from_secs(120), || {
        let server = S3Server::start(&["brk"]);
        let bucket = server.bucket("brk");
        let origin = Origin::start().unwrap();
        let d = downloader(&bucket, "", 2);
        let size = 17 * MIB + 5;
        // Cut mid-part, once: the retry asks for the rest and the upload goes on.
        let url = origin.url(&format!(
            "/bk/resumed.bin?size={size}&reset_after={}&faults_first=1",
            7 * MIB + 11
        ));
        let status = finish(&d, JobSpec::single(url).retry(fast_retries()));
        assert_eq!(
            (status.finished, status.retries),
            (1, 1),
            "{:?}",
            failures(&status)
        );
        assert_stored(&bucket, "resumed.bin", "/bk/resumed.bin", size);
        // The retry asked for the rest (206), not the whole object again (a second 200).
        let stats = origin.stats();
        assert_eq!(
            (stats.status_count(200), stats.status_count(206)),
            (1, 1),
            "{:?}",
            stats.statuses
        );

        // Cut every time, and no retries left: the object fails, and nothing is left.
        let url = origin.url(&format!(
            "/bk/failed.bin?size={size}&drop_after={}",
            11 * MIB
        ));
        let status = finish(&d, JobSpec::single(url).retry(RetryPolicy::none()));
        assert_eq!(status.failed, 1);
        let error = chain(&*status.failures[0].error);
        assert!(error.contains("body broke off after"), "{error}");
        assert_eq!(bucket.uploads("").unwrap(), vec![]);
        assert_eq!(bucket.head("failed.bin").unwrap(), None);

        // A digest that never matches: each attempt starts over; nothing lands.
        let url = origin.url(&format!("/bk/wrong.bin?size={}", 6 * MIB));
        let spec = JobSpec::single(url)
            .sha256("wrong.bin", haul::Sha256Digest::of(b"something else"))
            .retry(fast_retries().attempts(2));
        let status = finish(&d, spec);
        assert_eq!((status.failed, status.retries), (1, 1));
        assert!(chain(&*status.failures[0].error).contains("sha256"));
        assert_eq!(bucket.uploads("").unwrap(), vec![]);
        assert_eq!(bucket.head("wrong.bin").unwrap(), None);
    });
}

#[test]
fn store_errors_name_the_key_and_budgets_too_small_are_refused() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["real"]);
        let origin = Origin::start().unwrap();
        // A store that refuses the credentials, and one that is not there at all.
        let real = server.bucket_name("real");
        let wrong = haul::S3Config::new(server.endpoint(), "us-east-1")
            .credentials(server.keys().0, "wrong")
            .retry(fast_retries().attempts(2));
        let refusing = Bucket::new(&real, &wrong).unwrap();
        let dead = haul::S3Config::new("http://127.0.0.1:1", "us-east-1")
            .credentials("k", "s")
            .retry(fast_retries().attempts(2));
        let dead = Bucket::new("dead", &dead).unwrap();
        for (bucket, cause) in [(&refusing, "HTTP status 403"), (&dead, "request failed")] {
            let d = downloader(bucket, "p", 1);
            let status = finish(&d, JobSpec::single(origin.url("/se/a.bin?size=10")));
            assert_eq!(status.failed, 1, "{status:?}");
            let error = chain(&*status.failures[0].error);
            let expected = format!(
                "storing s3://{}/p/a.bin: PUT s3://{}/p/a.bin: {cause}",
                bucket.name(),
                bucket.name()
            );
            assert!(error.starts_with(&expected), "{error}");
        }

        // An object needing a larger buffer than the whole budget.
        let bucket = server.bucket("real");
        let d = Downloader::builder()
            .s3_target(S3Target::new(&bucket, ""))
            .memory_budget(MIB)
            .build()
            .unwrap();
        let url = origin.url(&format!("/se/b.bin?size={}", 2 * MIB));
        let status = finish(&d, JobSpec::single(&url));
        assert_eq!(status.failed, 1);
        assert_eq!(
            chain(&*status.failures[0].error),
            format!(
                "GET {url}: needs a buffer of {} bytes, more than the whole memory budget of {} bytes",
                2 * MIB,
                MIB
            )
        );
        assert_eq!(bucket.head("b.bin").unwrap(), None);

        // Building: a part below S3's minimum; mountpaths mixed with targets.
        let err = Downloader::builder()
            .s3_target(S3Target::new(&bucket, "").part_size(MIB))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "part_size is 1048576, below its minimum of 5242880"
        );
        let dir = crate::support::TestDir::new();
        let err = Downloader::builder()
            .mountpath(dir.path())
            .s3_target(S3Target::new(&bucket, ""))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "output directories (mountpaths) and bucket prefixes (S3 targets) cannot be mixed in one downloader"
        );
        // Options that need files.
        let err = d
            .submit(JobSpec::single(&url).existing(haul::Existing::Revalidate))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("Revalidate needs output directories"),
            "{err}"
        );
    });
}

#[test]
fn skip_existing_asks_the_store_and_skips_what_is_there() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["skip"]);
        let bucket = server.bucket("skip");
        let origin = Origin::start().unwrap();
        let d = downloader(&bucket, "s", 2);
        let template = origin.url("/sk/o-{0..9}.bin?size=100");
        let status = finish(&d, JobSpec::range(&template));
        assert_eq!(status.finished, 10);
        origin.reset_stats();
        let status = finish(&d, JobSpec::range(&template).existing(haul::Existing::Skip));
        assert_eq!((status.finished, status.skipped), (0, 10));
        assert_eq!(origin.stats().requests, 0, "nothing fetched again");
    });
}

#[test]
fn parts_of_one_object_go_up_in_parallel_only_within_the_budget() {
    guard_for(Duration::from_secs(120), || {
        let server = S3Server::start(&["par"]);
        let bucket = server.bucket("par");
        let origin = Origin::start().unwrap();
        let size = 30 * MIB + 3;
        let part = 5 * MIB;
        let cases = [
            // (upload connections, budget in parts, most parts buffered at once)
            (4, 8, 5), // the reader's part and four being sent
            (4, 2, 2), // the budget allows one part being sent beside the reader's
            (1, 8, 1), // one part at a time: read, send, read on
        ];
        for (connections, budget_parts, peak_parts) in cases {
            // No tail split: on a loaded machine the stream is slow enough for its tail to
            // be cut into pieces for the idle joggers, whose parts take budget of their own
            // (`tail::an_s3_targets_pieces_hold_one_part_each…` counts those).
            let d = Downloader::builder()
                .s3_target(
                    S3Target::new(&bucket, format!("c{connections}-b{budget_parts}"))
                        .part_size(part)
                        .upload_connections(connections),
                )
                .memory_budget(budget_parts * part)
                .split_tails(false)
                .build()
                .unwrap();
            let path = format!("/par/{connections}-{budget_parts}.bin");
            let status = finish(
                &d,
                JobSpec::single(origin.url(&format!("{path}?size={size}"))),
            );
            assert_eq!(status.finished, 1, "{:?}", failures(&status));
            let key = format!("c{connections}-b{budget_parts}/{connections}-{budget_parts}.bin");
            assert_stored(&bucket, &key, &path, size);
            let head = bucket.head(&key).unwrap().unwrap();
            assert!(
                head.etag.unwrap().ends_with("-7"),
                "six full parts and a short one"
            );
            let budget = d.memory_use().unwrap();
            assert_eq!(
                budget.peak,
                peak_parts * part,
                "{connections} connections, budget of {budget_parts} parts"
            );
            assert_eq!(budget.in_use, 0);
        }
        assert_eq!(bucket.uploads("").unwrap(), vec![]);
    });
}

/// A downloader into a bucket of a store that reads a request's head and then nothing, for
/// objects of `part` bytes stored with one PUT each.
fn into_a_stuck_store(
    stuck: &crate::support::stuck::StuckServer,
    http: haul::HttpConfig,
) -> Downloader {
    let config = haul::S3Config::new(stuck.endpoint(), "us-east-1")
        .credentials("stuck", "stuck")
        .http(http)
        .retry(RetryPolicy::none());
    let bucket = Bucket::new("stuck", &config).unwrap();
    Downloader::builder()
        .s3_target(S3Target::new(&bucket, "").part_size(32 * MIB))
        .build()
        .unwrap()
}

#[test]
fn abort_reaches_an_upload_stuck_in_a_write() {
    guard_for(Duration::from_secs(60), || {
        let stuck = crate::support::stuck::StuckServer::start();
        let origin = Origin::start().unwrap();
        let d = into_a_stuck_store(&stuck, haul::HttpConfig::default());
        // 32 MiB in one PUT: far more than the socket buffers hold, so the write blocks.
        let url = origin.url(&format!("/big.bin?size={}", 32 * MIB));
        let job = d
            .submit(JobSpec::single(url).retry(RetryPolicy::none()))
            .unwrap();
        assert!(
            stuck.wait_heads(1, Duration::from_secs(30)),
            "no PUT arrived"
        );
        d.abort(job).unwrap();
        assert!(
            d.wait(job, Duration::from_secs(5)).unwrap(),
            "the abort did not reach the upload"
        );
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!(
            (status.finished, status.cancelled),
            (0, 1),
            "{:?}",
            failures(&status)
        );
    });
}

#[test]
fn an_upload_stuck_in_a_write_fails_by_the_stall_rule() {
    guard_for(Duration::from_secs(60), || {
        let stuck = crate::support::stuck::StuckServer::start();
        let origin = Origin::start().unwrap();
        let http = haul::HttpConfig::default().stall(1, Duration::from_millis(500));
        let d = into_a_stuck_store(&stuck, http);
        let url = origin.url(&format!("/big.bin?size={}", 32 * MIB));
        let job = d
            .submit(JobSpec::single(url).retry(RetryPolicy::none()))
            .unwrap();
        assert!(
            d.wait(job, Duration::from_secs(20)).unwrap(),
            "a write that makes no progress was waited on for ever"
        );
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!(status.failed, 1, "{:?}", failures(&status));
        let text = failures(&status).join("");
        assert!(text.contains("storing s3://stuck/big.bin"), "{text}");
    });
}

/// A store that says `SlowDown` past four PUTs at once gets about four from a downloader
/// whose concurrency adapts: its uploads take leave from a flow of their own (apart from
/// the source's, which is fast and climbs), and the store's 503s halve that flow's limit.
/// Every object lands.
#[test]
fn uploads_into_a_store_that_says_slow_down_back_off_and_every_object_lands() {
    guard_for(Duration::from_secs(120), || {
        let server = S3Server::start_local(&["busy"]);
        server.busy_puts(4, Duration::from_millis(20));
        let bucket = server.bucket("busy");
        let origin = Origin::start().unwrap();
        let d = Downloader::builder()
            .s3_target(S3Target::new(&bucket, "in"))
            .build()
            .unwrap();
        let status = finish(
            &d,
            JobSpec::range(origin.url("/up/o-{000..299}.bin?size=4096")),
        );
        let slowdowns = server.slowdowns();
        let flows = d.flows();
        assert_eq!(
            (status.finished, status.failed),
            (300, 0),
            "{slowdowns} SlowDowns, {flows:?}: {:?}",
            failures(&status)
        );
        let uploads = flows
            .iter()
            .find(|f| f.host == "s3://busy (uploads)")
            .unwrap_or_else(|| panic!("no flow for the uploads: {flows:?}"));
        assert!(
            uploads.throttles > 0,
            "the SlowDowns were seen: {uploads:?}"
        );
        assert!(uploads.limit <= 8, "{uploads:?}");
        assert_eq!(uploads.bytes, 300 * 4096);
        // Backing off, it meets about ten here (4 or 5 from a start of 8); when the
        // uploads follow the source's limit instead, 180 to 650, and objects run out of
        // attempts.
        assert!(slowdowns < 60, "{slowdowns} SlowDowns for 300 objects");
        assert_eq!(bucket.list("in/").count(), 300);
    });
}
