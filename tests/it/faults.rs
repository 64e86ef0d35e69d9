//! The fault matrix (issue 6): one test per kind of misbehaviour, each checking that nothing
//! is lost — every object is on disk with the right bytes, or reported failed with the right
//! reason — and that no work file remains. Then one mixed run of 10,000 objects.

use std::path::Path;
use std::time::{Duration, Instant};

use haul::{
    Detail, DownloadError, Downloader, EgressPolicy, Existing, HttpConfig, JobSpec, JobStatus,
    RetryPolicy, Sha256Digest,
};
use haul_origin::{Origin, body};

use crate::support::{TestDir, chain, files_under, guard};

const SIZE: u64 = 500_000;

/// Retries that do not make the suite slow: 4 attempts, waits of at most 20 ms.
fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .attempts(4)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20))
}

/// A downloader over `mountpaths` (4 workers each) with a 300 ms stall rule.
fn downloader(mountpaths: &[&Path]) -> Downloader {
    let http = HttpConfig::default().stall(1, Duration::from_millis(300));
    mountpaths
        .iter()
        .fold(Downloader::builder(), |b, mp| b.mountpath(mp))
        .workers_per_target(4)
        .http(http)
        .build()
        .unwrap()
}

fn finish(d: &Downloader, spec: JobSpec) -> JobStatus {
    let job = d.submit(spec).unwrap();
    assert!(d.wait(job, Duration::from_secs(50)).unwrap(), "job hangs");
    let status = d.status(job, Detail::All).unwrap();
    assert_eq!(
        status.finished + status.failed + status.skipped + status.cancelled,
        status.total.unwrap(),
        "{status:?}"
    );
    status
}

/// What should have become of one object.
enum Expect<'a> {
    /// On disk, with the origin's bytes for its path.
    Landed,
    /// Failed, with this text in its error chain.
    Failed(&'a str),
}

/// Nothing lost: each object landed with the right bytes, or failed for the expected reason
/// and left no file; no work files anywhere under `root`.
fn assert_nothing_lost(root: &Path, status: &JobStatus, objects: &[(&str, &str, Expect<'_>)]) {
    for (name, path, expect) in objects {
        let file = root.join(name);
        let failure = status.failures.iter().find(|f| f.name == *name);
        match expect {
            Expect::Landed => {
                assert!(
                    failure.is_none(),
                    "{name}: {}",
                    chain(&*failure.unwrap().error)
                );
                let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(bytes == body(path, SIZE), "{name}: wrong bytes");
            }
            Expect::Failed(reason) => {
                let failure = failure.unwrap_or_else(|| panic!("{name} did not fail"));
                let text = chain(&*failure.error);
                assert!(text.contains(reason), "{name}: {text}");
                assert!(!file.exists(), "{name}: a failed object is on disk");
            }
        }
    }
    let work: Vec<String> = files_under(root)
        .into_iter()
        .filter(|f| f.contains(".haul-work/"))
        .collect();
    assert!(work.is_empty(), "work files remain: {work:?}");
}

/// A job of `(name, path?query)` objects with quick retries.
fn job(origin: &Origin, objects: &[(&str, &str)]) -> JobSpec {
    JobSpec::multi_named(
        objects
            .iter()
            .map(|(name, path)| (name.to_string(), origin.url(path))),
    )
    .retry(quick_retries())
}

#[test]
fn a_body_cut_by_fin_rst_or_stall_resumes_and_fetches_only_the_missing_bytes() {
    guard(|| {
        for (fault, exact) in [
            ("drop_after=123456", true),
            ("reset_after=200000", false),
            ("stall_after=100000", true),
        ] {
            let origin = Origin::start().unwrap();
            let dir = TestDir::new();
            let d = downloader(&[dir.path()]);
            let query = format!("/o.bin?size={SIZE}&{fault}&faults_first=1");
            let status = finish(&d, job(&origin, &[("o.bin", &query)]));
            assert_nothing_lost(dir.path(), &status, &[("o.bin", "/o.bin", Expect::Landed)]);
            assert_eq!(status.retries, 1, "{fault}");
            let stats = origin.stats();
            // The second request asked for the rest of the object, and got it.
            assert_eq!(
                (stats.status_count(200), stats.status_count(206)),
                (1, 1),
                "{fault}"
            );
            if exact {
                assert_eq!(stats.body_bytes, SIZE, "{fault}: bytes sent twice");
            } else {
                // A reset throws away what was in flight: those bytes come again, no more.
                assert!(stats.body_bytes < SIZE + 200_000, "{fault}: {stats:?}");
            }
        }
    });
}

#[test]
fn status_503_twice_then_ok_and_429_with_retry_after_succeed_after_waiting() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let status = finish(
            &d,
            job(
                &origin,
                &[("a.bin", &format!("/a.bin?size={SIZE}&fail_first=2"))],
            ),
        );
        assert_nothing_lost(dir.path(), &status, &[("a.bin", "/a.bin", Expect::Landed)]);
        assert_eq!(status.retries, 2);
        assert_eq!(origin.stats().status_count(503), 2);

        let started = Instant::now();
        let query = format!("/b.bin?size={SIZE}&status=429&retry_after=1&faults_first=1");
        let status = finish(&d, job(&origin, &[("b.bin", &query)]));
        assert_nothing_lost(dir.path(), &status, &[("b.bin", "/b.bin", Expect::Landed)]);
        assert_eq!(origin.stats().status_count(429), 1);
        // Retry-After: 1 is honoured although the policy's own backoff is at most 20 ms.
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );

        // A Retry-After beyond the policy's limit ends the retries at once.
        let query = format!("/c.bin?size={SIZE}&status=503&retry_after=3600");
        let status = finish(&d, job(&origin, &[("c.bin", &query)]));
        assert_nothing_lost(
            dir.path(),
            &status,
            &[("c.bin", "/c.bin", Expect::Failed("HTTP status 503"))],
        );
        assert_eq!(origin.stats().requests_for("/c.bin"), 1);
    });
}

#[test]
fn status_404_and_403_fail_at_once_after_one_request() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let status = finish(
            &d,
            job(
                &origin,
                &[
                    ("nf.bin", "/nf.bin?status=404"),
                    ("fb.bin", "/fb.bin?status=403"),
                    ("ok.bin", &format!("/ok.bin?size={SIZE}")),
                ],
            ),
        );
        assert_nothing_lost(
            dir.path(),
            &status,
            &[
                ("nf.bin", "/nf.bin", Expect::Failed("HTTP status 404")),
                ("fb.bin", "/fb.bin", Expect::Failed("HTTP status 403")),
                ("ok.bin", "/ok.bin", Expect::Landed),
            ],
        );
        assert_eq!(status.retries, 0);
        let stats = origin.stats();
        assert_eq!(
            (stats.requests_for("/nf.bin"), stats.requests_for("/fb.bin")),
            (1, 1)
        );
    });
}

#[test]
fn a_wrong_content_length_is_detected_and_retried_and_never_lands_wrong_bytes() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let digest = |path: &str| Sha256Digest::of(&body(path, SIZE));
        // Longer than the body: the body ends early; resumed.
        // Shorter than the body: only the digest can tell; the object starts over.
        // Shorter every time: fails with both digests, nothing on disk.
        let spec = job(
            &origin,
            &[
                (
                    "long.bin",
                    &format!("/long.bin?size={SIZE}&extra_length=1000&faults_first=1"),
                ),
                (
                    "short.bin",
                    &format!("/short.bin?size={SIZE}&short_length=1000&faults_first=1"),
                ),
                (
                    "bad.bin",
                    &format!("/bad.bin?size={SIZE}&short_length=1000"),
                ),
            ],
        )
        .sha256("short.bin", digest("/short.bin"))
        .sha256("bad.bin", digest("/bad.bin"));
        let status = finish(&d, spec);
        let mismatch = format!("sha256 mismatch: expected {}, got ", digest("/bad.bin"));
        assert_nothing_lost(
            dir.path(),
            &status,
            &[
                ("long.bin", "/long.bin", Expect::Landed),
                ("short.bin", "/short.bin", Expect::Landed),
                ("bad.bin", "/bad.bin", Expect::Failed(&mismatch)),
            ],
        );
        let stats = origin.stats();
        // long.bin: the resume's 416 says `*/500000`, the first response announced 501,000:
        // a size that contradicts the first response is not trusted, so it starts over.
        assert_eq!(stats.requests_for("/long.bin"), 3);
        assert_eq!(stats.requests_for("/short.bin"), 2);
        assert_eq!(stats.requests_for("/bad.bin"), 4, "every attempt used");
    });
}

#[test]
fn bodies_without_length_or_chunked_succeed_and_are_checked_against_the_digest() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let digest = |path: &str| Sha256Digest::of(&body(path, SIZE));
        let spec = job(
            &origin,
            &[
                ("nl.bin", &format!("/nl.bin?size={SIZE}&no_length=1")),
                ("ch.bin", &format!("/ch.bin?size={SIZE}&chunked=1")),
                // Without a length, a connection closed early looks like a whole body: the
                // digest catches it, and the retry starts over.
                (
                    "cut.bin",
                    &format!("/cut.bin?size={SIZE}&no_length=1&drop_after=70000&faults_first=1"),
                ),
            ],
        )
        .sha256("nl.bin", digest("/nl.bin"))
        .sha256("ch.bin", digest("/ch.bin"))
        .sha256("cut.bin", digest("/cut.bin"));
        let status = finish(&d, spec);
        assert_nothing_lost(
            dir.path(),
            &status,
            &[
                ("nl.bin", "/nl.bin", Expect::Landed),
                ("ch.bin", "/ch.bin", Expect::Landed),
                ("cut.bin", "/cut.bin", Expect::Landed),
            ],
        );
        assert_eq!(status.retries, 1);

        // And a digest that does not match fails the object, naming both values.
        let wrong = Sha256Digest::of(b"something else");
        let spec = job(
            &origin,
            &[("w.bin", &format!("/w.bin?size={SIZE}&chunked=1"))],
        )
        .sha256("w.bin", wrong)
        .retry(RetryPolicy::none());
        let status = finish(&d, spec);
        let text = format!(
            "sha256 mismatch: expected {wrong}, got {}",
            digest("/w.bin")
        );
        assert_nothing_lost(
            dir.path(),
            &status,
            &[("w.bin", "/w.bin", Expect::Failed(&text))],
        );
    });
}

#[test]
fn a_server_that_ignores_ranges_or_changes_the_etag_makes_the_object_start_over() {
    guard(|| {
        for fault in ["no_ranges=1", "etag=changing"] {
            let origin = Origin::start().unwrap();
            let dir = TestDir::new();
            let d = downloader(&[dir.path()]);
            let query = format!("/o.bin?size={SIZE}&{fault}&drop_after=100000&faults_first=1");
            let status = finish(&d, job(&origin, &[("o.bin", &query)]));
            assert_nothing_lost(dir.path(), &status, &[("o.bin", "/o.bin", Expect::Landed)]);
            let stats = origin.stats();
            // The resume was refused: a whole 200 again, the first 100,000 bytes sent twice.
            assert_eq!(
                (stats.status_count(200), stats.status_count(206)),
                (2, 0),
                "{fault}"
            );
            assert_eq!(stats.body_bytes, SIZE + 100_000, "{fault}");
        }
    });
}

#[test]
fn a_dead_server_fails_every_object_promptly_with_the_reason() {
    guard(|| {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let spec = JobSpec::range(format!("http://127.0.0.1:{port}/o-{{00..19}}.bin"))
            .retry(quick_retries());
        let status = finish(&d, spec);
        assert_eq!((status.failed, status.finished), (20, 0));
        assert_eq!(status.retries, 20 * 3, "every attempt was made");
        for failure in &status.failures {
            let text = chain(&*failure.error);
            assert!(
                matches!(*failure.error, DownloadError::Request { .. })
                    && text.contains("onnection refused"),
                "{text}"
            );
        }
        assert!(
            files_under(dir.path()).is_empty(),
            "{:?}",
            files_under(dir.path())
        );
    });
}

#[test]
fn a_broken_or_full_mountpath_fails_its_objects_and_the_others_complete() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let (good, broken) = (dir.path().join("good"), dir.path().join("broken"));
        let d = downloader(&[&good, &broken]);
        // The broken mountpath's work directory becomes a file: nothing can be created in it.
        let work = broken.join(".haul-work");
        std::fs::remove_dir_all(&work).unwrap();
        std::fs::write(&work, b"not a directory").unwrap();
        let names: Vec<String> = (0..40).map(|i| format!("o-{i:02}.bin")).collect();
        let spec = JobSpec::multi_named(
            names
                .iter()
                .map(|n| (n.clone(), origin.url(&format!("/{n}?size=1000")))),
        )
        .retry(quick_retries());
        let status = finish(&d, spec);
        let on_broken = names
            .iter()
            .filter(|n| d.placement(&haul::ObjectName::new(n.as_str()).unwrap()) == 1)
            .count() as u64;
        assert!(on_broken > 0 && on_broken < 40, "{on_broken}");
        assert_eq!(
            (status.failed, status.finished),
            (on_broken, 40 - on_broken)
        );
        for failure in &status.failures {
            let text = chain(&*failure.error);
            assert!(
                text.starts_with(&format!("creating work file {}", work.display())),
                "{text}"
            );
        }
        assert_eq!(status.retries, 0, "a local error is not retried");
        for name in &names {
            let on = if d.placement(&haul::ObjectName::new(name.as_str()).unwrap()) == 0 {
                &good
            } else {
                continue;
            };
            assert!(std::fs::read(on.join(name)).unwrap() == body(&format!("/{name}"), 1000));
        }
    });
}

/// A full disk, for real: the work file is a link to `/dev/full`, where every write fails
/// with `ENOSPC`.
#[cfg(target_os = "linux")]
#[test]
fn public_only_refuses_loopback_before_connecting() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = Downloader::builder()
            .mountpath(dir.path())
            .http(HttpConfig::default().egress(EgressPolicy::PublicOnly))
            .build()
            .unwrap();
        let url = origin.url("/o.bin");
        let localhost = url.replace("127.0.0.1", "localhost");
        let status = finish(
            &d,
            JobSpec::multi_named([("a.bin", url.as_str()), ("b.bin", localhost.as_str())])
                .retry(quick_retries()),
        );
        assert_eq!(status.failed, 2);
        for failure in &status.failures {
            assert!(
                matches!(*failure.error, DownloadError::Egress { .. }),
                "{}",
                chain(&*failure.error)
            );
            let text = chain(&*failure.error);
            assert!(text.contains("is loopback"), "{text}");
        }
        assert_eq!(status.retries, 0);
        assert_eq!(origin.stats().connections, 0, "nothing reached the origin");
        assert!(files_under(dir.path()).is_empty());
    });
}

#[test]
fn a_rerun_with_revalidate_skips_unchanged_objects_and_fetches_the_rest() {
    guard(|| {
        const N: usize = 10;
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let spec = || {
            JobSpec::range(origin.url(&format!("/r/o-{{0..9}}.bin?size={SIZE}")))
                .existing(Existing::Revalidate)
                .retry(quick_retries())
        };
        let status = finish(&d, spec());
        assert_eq!((status.finished, status.skipped), (N as u64, 0));
        let file = |i: usize| dir.path().join(format!("o-{i}.bin"));
        // The landed file's modification time is the origin's Last-Modified (in 2024).
        let mtime = |i: usize| std::fs::metadata(file(i)).unwrap().modified().unwrap();
        let year_2024 = std::time::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        for i in 0..N {
            let t = mtime(i);
            assert!(t >= year_2024 && t < year_2024 + Duration::from_secs(366 * 86_400));
        }

        // Changes on disk: o-1 cut short (its time kept), o-2 touched, o-3 deleted.
        let kept = mtime(1);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(file(1))
            .unwrap();
        f.set_len(1000).unwrap();
        f.set_modified(kept).unwrap();
        drop(f);
        std::fs::File::options()
            .write(true)
            .open(file(2))
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
        std::fs::remove_file(file(3)).unwrap();
        origin.reset_stats();

        let status = finish(&d, spec());
        assert_eq!(
            (status.finished, status.skipped),
            (3, N as u64 - 3),
            "{status:?}"
        );
        let stats = origin.stats();
        // Unchanged: one bodiless 416 each. o-1: a 206 showed it incomplete, then whole.
        assert_eq!(stats.status_count(416), N as u64 - 3, "{stats:?}");
        assert_eq!(stats.status_count(200), 3, "{stats:?}");
        for i in 0..N {
            let bytes = std::fs::read(file(i)).unwrap();
            assert!(bytes == body(&format!("/r/o-{i}.bin"), SIZE), "o-{i}");
        }
    });
}

/// A server that ignores `If-Range` answers every revalidation 416 when the sizes match,
/// whatever the file's time: the 416's own `Last-Modified` shows the file is another
/// version, which is fetched again.
#[test]
fn revalidation_is_not_fooled_by_a_server_that_ignores_if_range() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let spec = || {
            JobSpec::range(origin.url(&format!(
                "/ir/o-{{0..1}}.bin?size={SIZE}&ignore_conditions=1"
            )))
            .existing(Existing::Revalidate)
            .retry(quick_retries())
        };
        assert_eq!(finish(&d, spec()).finished, 2);
        // o-1: same size, other bytes, another time (as a file from elsewhere would be).
        let other = dir.path().join("o-1.bin");
        std::fs::write(&other, vec![0u8; SIZE as usize]).unwrap();
        let status = finish(&d, spec());
        assert_eq!((status.finished, status.skipped), (1, 1), "{status:?}");
        assert!(std::fs::read(&other).unwrap() == body("/ir/o-1.bin", SIZE));
    });
}

/// A small deterministic generator (splitmix64) for the mixed run's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn a_mixed_run_of_10000_objects_with_one_percent_faults_loses_nothing() {
    crate::support::guard_for(Duration::from_secs(180), || {
        const OBJECTS: usize = 10_000;
        // Each fault strikes the first request for its object only (faults_first=1, or
        // fail_first=1); the ones a length cannot reveal are caught by the object's digest.
        const KINDS: [&str; 12] = [
            "drop_after",
            "reset_after",
            "stall_after",
            "fail_first",
            "status_500",
            "status_429",
            "extra_length",
            "short_length",
            "no_length_cut",
            "no_ranges_cut",
            "etag_changing_cut",
            "chunked_cut",
        ];
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let mut rng = Rng(0x6861_756c); // "haul"
        let mut objects = Vec::with_capacity(OBJECTS);
        let mut injected = [0u64; KINDS.len()];
        let mut total_bytes = 0;
        let mut spec_digests = Vec::new();
        for i in 0..OBJECTS {
            let size = 1024 + rng.below(15 * 1024);
            total_bytes += size;
            let path = format!("/mix/o-{i:05}.bin");
            let mut query = format!("size={size}");
            if rng.below(100) == 0 {
                let kind = rng.below(KINDS.len() as u64) as usize;
                injected[kind] += 1;
                let half = size / 2;
                query.push_str(&match KINDS[kind] {
                    "drop_after" => format!("&drop_after={half}&faults_first=1"),
                    "reset_after" => format!("&reset_after={half}&faults_first=1"),
                    "stall_after" => format!("&stall_after={half}&faults_first=1"),
                    "fail_first" => "&fail_first=1".to_owned(),
                    "status_500" => "&status=500&faults_first=1".to_owned(),
                    "status_429" => "&status=429&retry_after=0&faults_first=1".to_owned(),
                    "extra_length" => "&extra_length=100&faults_first=1".to_owned(),
                    "short_length" => "&short_length=100&faults_first=1".to_owned(),
                    "no_length_cut" => format!("&no_length=1&drop_after={half}&faults_first=1"),
                    "no_ranges_cut" => format!("&no_ranges=1&drop_after={half}&faults_first=1"),
                    "etag_changing_cut" => {
                        format!("&etag=changing&drop_after={half}&faults_first=1")
                    }
                    "chunked_cut" => format!("&chunked=1&drop_after={half}&faults_first=1"),
                    _ => unreachable!(),
                });
                spec_digests.push((
                    format!("o-{i:05}.bin"),
                    Sha256Digest::of(&body(&path, size)),
                ));
            }
            objects.push((format!("o-{i:05}.bin"), path, query, size));
        }
        let mut spec =
            JobSpec::multi_named(objects.iter().map(|(name, path, query, _)| {
                (name.clone(), origin.url(&format!("{path}?{query}")))
            }))
            .retry(quick_retries());
        for (name, digest) in spec_digests {
            spec = spec.sha256(name, digest);
        }
        let started = Instant::now();
        let status = finish(&d, spec);
        let wall = started.elapsed();

        assert_eq!(
            status.finished,
            OBJECTS as u64,
            "{:?}",
            status.failures.first()
        );
        for (name, path, _, size) in &objects {
            let bytes = std::fs::read(dir.path().join(name)).unwrap();
            assert!(bytes == body(path, *size), "{name}: wrong bytes");
        }
        let work: Vec<String> = files_under(dir.path())
            .into_iter()
            .filter(|f| f.contains(".haul-work/"))
            .collect();
        assert!(work.is_empty(), "{work:?}");
        let faults: u64 = injected.iter().sum();
        assert!(
            (50..200).contains(&faults),
            "about 1% of requests: {faults}"
        );
        assert!(status.retries >= faults, "each fault cost a retry");
        let stats = origin.stats();
        println!(
            "mixed run: {OBJECTS} objects ({total_bytes} bytes), {faults} faults injected \
             ({}), {} retries, {} bytes re-fetched, {} requests, wall {wall:.2?}",
            KINDS
                .iter()
                .zip(injected)
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            status.retries,
            stats.body_bytes.saturating_sub(total_bytes),
            stats.requests,
        );
    });
}

/// Parts small enough for tests: objects above 1 MiB are split, 256 KiB at a time, over 4
/// connections.
fn small_parts() -> haul::PartsPolicy {
    haul::PartsPolicy::new(4)
        .min_object_bytes(1 << 20)
        .part_bytes(256 << 10)
}

#[test]
fn a_large_object_split_into_ranged_parts_lands_whole_and_small_ones_are_not_split() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let big = 5 << 20;
        let spec = JobSpec::multi_named([
            ("big.bin", origin.url(&format!("/big.bin?size={big}"))),
            ("small.bin", origin.url("/small.bin?size=300000")),
            ("empty.bin", origin.url("/empty.bin?size=0")),
        ])
        .parts(small_parts())
        .retry(quick_retries());
        let status = finish(&d, spec);
        assert_eq!(status.finished, 3, "{:?}", status.failures.first());
        let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
        assert!(read("big.bin") == body("/big.bin", big), "big.bin");
        assert!(read("small.bin") == body("/small.bin", 300000));
        assert!(read("empty.bin").is_empty());
        let stats = origin.stats();
        // big: the opening 1 MiB, then 4 MiB in 16 parts of 256 KiB; each byte sent once.
        assert_eq!(stats.requests_for("/big.bin"), 17);
        // small: its opening range held all of it. empty: 416 to the range, then a plain GET.
        assert_eq!(stats.requests_for("/small.bin"), 1);
        assert_eq!(stats.requests_for("/empty.bin"), 2);
        assert_eq!(stats.body_bytes, big + 300000);
        assert_eq!(status.retries, 0);
    });
}

/// What aria2c shows as `CN`: while a split object comes in, its status says over how many
/// connections; an object on one says 1.
#[test]
fn the_status_of_a_split_object_in_flight_counts_its_connections() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let big = 4 << 20;
        // 2 MB/s a connection: the opening 1 MiB part alone takes half a second.
        let spec = JobSpec::multi_named([
            (
                "big.bin",
                origin.url(&format!("/cn/big.bin?size={big}&rate=2000000")),
            ),
            (
                "one.bin",
                origin.url("/cn/one.bin?size=900000&rate=2000000"),
            ),
        ])
        .parts(small_parts())
        .retry(quick_retries());
        let job = d.submit(spec).unwrap();
        let mut seen = std::collections::BTreeMap::<String, u32>::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = d.status(job, Detail::OnlyActive).unwrap();
            for task in &status.in_flight {
                let most = seen.entry(task.name.as_str().to_owned()).or_default();
                *most = (*most).max(task.connections);
            }
            if status.finished_at.is_some() || Instant::now() > deadline {
                assert_eq!(status.finished, 2, "{status:?}");
                assert!(status.in_flight.is_empty());
                break;
            }
            std::thread::sleep(Duration::from_millis(2)); // the polling's pace
        }
        assert_eq!(seen.get("big.bin"), Some(&4), "{seen:?}");
        assert_eq!(seen.get("one.bin"), Some(&1), "{seen:?}");
        assert!(std::fs::read(dir.path().join("big.bin")).unwrap() == body("/cn/big.bin", big));
    });
}

#[test]
fn split_parts_resume_on_their_own_and_a_changing_object_falls_back_to_one_stream() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&[dir.path()]);
        let big = 3 << 20;
        // The first three responses for each path are cut after 100,000 bytes.
        let cut = format!("/cut.bin?size={big}&drop_after=100000&faults_first=3");
        // A new ETag on every response: parts answer 412 to If-Match, and the object is
        // fetched again on one connection.
        let changing = format!("/chg.bin?size={big}&etag=changing");
        // Ranges ignored: the opening GET gets the whole object, on one connection.
        let ignored = format!("/ign.bin?size={big}&no_ranges=1");
        let spec = JobSpec::multi_named([
            ("cut.bin", origin.url(&cut)),
            ("chg.bin", origin.url(&changing)),
            ("ign.bin", origin.url(&ignored)),
        ])
        .parts(small_parts())
        .retry(quick_retries());
        let status = finish(&d, spec);
        assert_nothing_lost_sized(
            dir.path(),
            &status,
            &[
                ("cut.bin", "/cut.bin"),
                ("chg.bin", "/chg.bin"),
                ("ign.bin", "/ign.bin"),
            ],
            big,
        );
        let stats = origin.stats();
        assert!(stats.status_count(412) >= 1, "{stats:?}");
        assert_eq!(stats.requests_for("/ign.bin"), 1);
        assert!(
            status.retries >= 3,
            "each cut part was retried: {}",
            status.retries
        );
    });
}

/// [`assert_nothing_lost`] for objects of `size` bytes that all landed.
fn assert_nothing_lost_sized(root: &Path, status: &JobStatus, objects: &[(&str, &str)], size: u64) {
    assert!(
        status.failures.is_empty(),
        "{}",
        chain(&*status.failures[0].error)
    );
    for (name, path) in objects {
        let bytes = std::fs::read(root.join(name)).unwrap();
        assert!(bytes == body(path, size), "{name}: wrong bytes");
    }
    let work: Vec<String> = files_under(root)
        .into_iter()
        .filter(|f| f.contains(".haul-work/"))
        .collect();
    assert!(work.is_empty(), "work files remain: {work:?}");
}
