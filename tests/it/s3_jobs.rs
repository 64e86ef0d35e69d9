//! Backend jobs: every object under an S3 prefix, listed lazily, through the Downloader,
//! from the in-process S3 server (or SeaweedFS, with `HAUL_TEST_S3_ENDPOINT`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use haul::{Detail, Downloader, JobSpec};

use crate::support::s3::S3Server;
use crate::support::{TestDir, files_under, guard_for};

/// Keys with spaces, `+`, `%`, `=`, `?`, `#` and unicode, in two directories.
fn key(i: usize) -> String {
    let odd = ["a b", "c+d", "e%f", "g=h", "ü✓", "q?r", "s#t"][i % 7];
    format!("set/d{}/{i:04} {odd}.bin", i % 2)
}

fn content(key: &str) -> Vec<u8> {
    haul_origin::body(key, 100 + (haul_origin::seed(key) % 4000))
}

#[test]
fn a_backend_job_lands_every_object_under_a_prefix_once_and_its_total_becomes_exact() {
    guard_for(Duration::from_secs(120), || {
        const N: usize = 5000;
        let server = S3Server::start(&["data"]);
        let mut seeds: Vec<(String, Vec<u8>)> = (0..N)
            .map(|i| {
                let k = key(i);
                let bytes = content(&k);
                (k, bytes)
            })
            .collect();
        seeds.push(("other/x.bin".to_owned(), b"not in the prefix".to_vec()));
        server.seed_many("data", seeds);
        let bucket = server.bucket("data");
        let dir = TestDir::new();
        let d = Downloader::builder()
            .mountpath(dir.path().join("m0"))
            .mountpath(dir.path().join("m1"))
            .workers_per_target(4)
            .build()
            .unwrap();
        let gets_before = server.counters().map(|c| c.gets.load(Ordering::SeqCst));
        let job = d.submit(JobSpec::s3_prefix(&bucket, "set/")).unwrap();
        assert!(d.wait(job, Duration::from_secs(100)).unwrap());
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!(status.total, Some(N as u64), "exact once the listing ended");
        assert_eq!(
            (status.finished, status.failed),
            (N as u64, 0),
            "{:?}",
            status
                .failures
                .first()
                .map(|f| crate::support::chain(&*f.error))
        );
        assert!(status.description.starts_with("backend: s3://"));
        for i in 0..N {
            let k = key(i);
            let name = haul::ObjectName::new(k.as_str()).unwrap();
            let mp = dir.path().join(format!("m{}", d.placement(&name)));
            let bytes = std::fs::read(mp.join(&k)).unwrap_or_else(|e| panic!("{k}: {e}"));
            assert!(bytes == content(&k), "{k}");
        }
        let landed = files_under(dir.path())
            .into_iter()
            .filter(|f| !f.contains(".haul-work/"))
            .count();
        assert_eq!(landed, N, "nothing outside the prefix, nothing twice");
        if let (Some(before), Some(c)) = (gets_before, server.counters()) {
            // One GET per object, plus 5 listing pages, plus the hedges (a second GET for a
            // response later than the store's 95th percentile, at most one in twenty;
            // counted when started, so some never reach the store).
            let gets = c.gets.load(Ordering::SeqCst) - before;
            let hedged = d.flows()[0].hedged;
            assert!(
                (N as u64 + 5..=N as u64 + 5 + hedged).contains(&gets),
                "{gets} GETs, {hedged} hedges"
            );
        }
    });
}

#[test]
fn a_backend_job_filters_by_suffix_and_a_missing_bucket_fails_naming_it() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["data"]);
        server.seed_many(
            "data",
            ["p/a.tar", "p/b.tar", "p/c.txt", "p/d.tar"]
                .iter()
                .map(|k| (k.to_string(), k.as_bytes().to_vec()))
                .collect(),
        );
        let dir = TestDir::new();
        let d = Downloader::builder().mountpath(dir.path()).build().unwrap();
        let job = d
            .submit(JobSpec::s3_prefix(&server.bucket("data"), "p/").suffix(".tar"))
            .unwrap();
        assert!(d.wait(job, Duration::from_secs(30)).unwrap());
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!((status.total, status.finished), (Some(3), 3));
        assert_eq!(files_under(dir.path()), ["p/a.tar", "p/b.tar", "p/d.tar"]);

        let missing = server.bucket("nope");
        let job = d.submit(JobSpec::s3_prefix(&missing, "x/")).unwrap();
        assert!(d.wait(job, Duration::from_secs(30)).unwrap());
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!((status.total, status.failed), (Some(1), 1));
        let text = crate::support::chain(&*status.failures[0].error);
        assert!(
            text.contains(&format!(
                "list s3://{}/x/: HTTP status 404 (NoSuchBucket)",
                missing.name()
            )),
            "{text}"
        );
    });
}

/// A listing that keeps failing waits out its backoff between attempts on the dispatcher
/// thread; an abort must end that wait, not sit through it.
#[test]
fn aborting_a_backend_job_ends_its_listing_backoff_at_once() {
    guard_for(Duration::from_secs(60), || {
        // A "store" that answers every request 503: retried after a five-minute backoff.
        let mut refuse = haul_origin::Faults::default();
        refuse.status = Some(503);
        let origin = haul_origin::Origin::builder()
            .faults(refuse)
            .start()
            .unwrap();
        let busy = haul::S3Config::new(origin.url(""), "us-east-1")
            .credentials("k", "s")
            .retry(
                haul::RetryPolicy::default()
                    .attempts(10)
                    .initial_backoff(Duration::from_secs(300))
                    .max_backoff(Duration::from_secs(300)),
            );
        let bucket = haul::Bucket::new("busy", &busy).unwrap();
        let dir = TestDir::new();
        let d = Downloader::builder().mountpath(dir.path()).build().unwrap();
        let job = d.submit(JobSpec::s3_prefix(&bucket, "p/")).unwrap();
        // The first listing request was refused: the dispatcher is in its backoff now.
        assert!(crate::support::wait_until(|| origin.stats().requests >= 1));
        d.abort(job).unwrap();
        // Without the abort reaching the listing this would take five minutes or more.
        assert!(
            d.wait(job, Duration::from_secs(30)).unwrap(),
            "the listing ignored the abort"
        );
        let status = d.status(job, Detail::All).unwrap();
        assert!(status.aborted);
        assert_eq!(
            (status.finished, status.failed),
            (0, 0),
            "an abort is not a failure"
        );
    });
}

/// A backend job checks a single-part object's MD5 ETag, as the fetcher does: a byte flipped
/// in the first response is caught and fetched again; flipped in every one, the object
/// fails naming both digests and leaves no file.
#[test]
fn a_backend_job_checks_md5_etags_and_never_lands_corrupted_bytes() {
    use crate::support::proxy::{FaultProxy, Faults};
    guard_for(Duration::from_secs(60), || {
        for (every, name) in [(false, "once"), (true, "always")] {
            let server = S3Server::start(&["data"]);
            let bytes = haul_origin::body(name, 300_000);
            server.seed_file("data", &format!("md5/{name}.bin"), &bytes);
            let faults = Faults {
                corrupt_at: (!every).then_some(100_000),
                corrupt_every: every.then_some(100_000),
                ..Faults::default()
            };
            // Faulty connections: the listing's (its page is under 100,000 bytes) and the
            // first GET's; or all of them.
            let faulty = if every { u64::MAX } else { 2 };
            let proxy = FaultProxy::start(server.socket_addr(), faults, faulty);
            let config = server.config_at(format!("http://{}", proxy.addr()));
            let bucket = haul::Bucket::new(&server.bucket_name("data"), &config).unwrap();
            let dir = TestDir::new();
            let d = Downloader::builder()
                .mountpath(dir.path())
                .workers_per_target(2)
                .build()
                .unwrap();
            let spec = JobSpec::s3_prefix(&bucket, "md5/").retry(
                haul::RetryPolicy::default()
                    .attempts(3)
                    .initial_backoff(Duration::from_millis(1)),
            );
            let job = d.submit(spec).unwrap();
            assert!(d.wait(job, Duration::from_secs(30)).unwrap());
            let status = d.status(job, Detail::All).unwrap();
            let path = dir.path().join(format!("md5/{name}.bin"));
            if every {
                assert_eq!(status.failed, 1, "{status:?}");
                let error = haul::error_chain(&status.failures[0].error);
                assert!(error.contains("md5"), "{error}");
                assert!(!path.exists());
            } else {
                assert_eq!((status.finished, status.retries), (1, 1), "{status:?}");
                assert!(std::fs::read(&path).unwrap() == bytes, "{name}: the bytes");
            }
        }
    });
}

/// A rerun that revalidates takes the listing's word: a file of the object's size and, to
/// the second, its time (haul set it) is unchanged, with no request of its own; a file that
/// differs is fetched again.
#[test]
fn a_revalidating_rerun_of_a_prefix_asks_only_the_listing() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["data"]);
        let seeds: Vec<(String, Vec<u8>)> = (0..50)
            .map(|i| {
                let k = key(i);
                let bytes = content(&k);
                (k, bytes)
            })
            .collect();
        server.seed_many("data", seeds);
        let bucket = server.bucket("data");
        let dir = TestDir::new();
        let d = Downloader::builder()
            .mountpath(dir.path())
            .workers_per_target(4)
            .build()
            .unwrap();
        let run = || {
            let spec = JobSpec::s3_prefix(&bucket, "set/").existing(haul::Existing::Revalidate);
            let job = d.submit(spec).unwrap();
            assert!(d.wait(job, Duration::from_secs(50)).unwrap());
            d.status(job, Detail::All).unwrap()
        };
        let first = run();
        assert_eq!(first.finished, 50, "{:?}", first.failures.first());
        // One file changed locally: same size, another time.
        let changed = dir.path().join(key(7));
        let file = std::fs::File::options().write(true).open(&changed).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        drop(file);

        let gets_before = server.counters().map(|c| c.gets.load(Ordering::SeqCst));
        let again = run();
        assert_eq!((again.skipped, again.finished), (49, 1), "{again:?}");
        if let (Some(before), Some(c)) = (gets_before, server.counters()) {
            // The listing's one page and the changed file's revalidation (or its GET).
            let gets = c.gets.load(Ordering::SeqCst) - before;
            assert!((2..=3).contains(&gets), "{gets} GETs");
        }
        assert!(std::fs::read(&changed).unwrap() == content(&key(7)));
    });
}
