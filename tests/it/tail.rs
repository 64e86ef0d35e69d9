//! The tail of a job (issue 16): when the queue is empty and joggers are idle, the remaining
//! bytes of a slow transfer are split among them (ranged, pinned to the first response's
//! version) instead of waiting for one connection to finish them.

use std::time::{Duration, Instant};

use haul::{Detail, Downloader, HttpConfig, JobSpec, JobStatus, RetryPolicy, Sha256Digest};
use haul_origin::{Origin, body};

use crate::support::{TestDir, files_under, guard, kept, visible, wait_until};

/// 6 MiB at 2 MB/s a connection: three seconds on one.
const BIG: u64 = 6 << 20;
const RATE: &str = "rate=2000000";

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .attempts(6)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20))
}

fn downloader(dir: &TestDir, workers: usize) -> Downloader {
    Downloader::builder()
        .mountpath(dir.path())
        .workers_per_target(workers)
        .http(HttpConfig::default().stall(1, Duration::from_secs(2)))
        .build()
        .unwrap()
}

/// Runs `spec` to its end, and returns its status with the most connections each object was
/// seen on while in flight.
fn run(d: &Downloader, spec: JobSpec) -> (JobStatus, std::collections::BTreeMap<String, u32>) {
    let job = d.submit(spec).unwrap();
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let status = d.status(job, Detail::OnlyActive).unwrap();
        for task in &status.in_flight {
            let most = seen.entry(task.name.as_str().to_owned()).or_default();
            *most = (*most).max(task.connections);
        }
        if status.finished_at.is_some() {
            return (d.status(job, Detail::All).unwrap(), seen);
        }
        assert!(Instant::now() < deadline, "the job hangs: {status:?}");
        std::thread::sleep(Duration::from_millis(5)); // the polling's pace
    }
}

/// A few small objects and one slow large one, on four joggers: once the small ones are done
/// the three idle joggers take pieces of the large one's remaining bytes.
fn small_and_slow(origin: &Origin, big_query: &str) -> JobSpec {
    JobSpec::multi_named([
        ("a.bin", origin.url("/tail/a.bin?size=1000")),
        ("b.bin", origin.url("/tail/b.bin?size=2000")),
        (
            "big.bin",
            origin.url(&format!("/tail/big.bin?size={BIG}&{big_query}")),
        ),
    ])
    .retry(quick_retries())
}

fn assert_landed(dir: &TestDir, status: &JobStatus) {
    assert_eq!(status.finished, 3, "{:?}", status.failures);
    let big = std::fs::read(dir.path().join("big.bin")).unwrap();
    assert!(
        big == body("/tail/big.bin", BIG),
        "big.bin has the wrong bytes"
    );
    let work: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| f.contains(".haul-work/"))
        .collect();
    assert!(work.is_empty(), "{work:?}");
}

/// The origin saw `path` split: at least `requests` GETs for it, each piece's answered 206,
/// none refused (412: a piece pinned to another version).
#[track_caller]
fn assert_split(origin: &Origin, path: &str, requests: u64) {
    let stats = origin.stats();
    assert!(
        stats.requests_for(path) >= requests,
        "{path} was split: {stats:?}"
    );
    assert!(stats.status_count(206) >= requests - 1, "{stats:?}");
    assert_eq!(stats.status_count(412), 0, "{stats:?}");
}

#[test]
fn idle_joggers_take_pieces_of_a_slow_transfers_remaining_bytes() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 4);
        // The whole object's digest is checked: the pieces' bytes reach it in order.
        let digest = Sha256Digest::of(&body("/tail/big.bin", BIG));
        let spec = small_and_slow(&origin, RATE).sha256("big.bin", digest);
        let (status, seen) = run(&d, spec);
        assert_landed(&dir, &status);
        assert_split(&origin, "/tail/big.bin", 3);
        assert!(seen.get("big.bin").is_some_and(|&n| n >= 3), "{seen:?}");
        assert_eq!(status.retries, 0);
    });
}

#[test]
fn a_transfer_is_not_split_without_idle_joggers_ranges_or_a_validator() {
    guard(|| {
        let origin = Origin::start().unwrap();
        // One jogger: nobody idle to help.
        let dir = TestDir::new();
        let (status, _) = run(&downloader(&dir, 1), small_and_slow(&origin, RATE));
        assert_landed(&dir, &status);
        assert_eq!(origin.stats().requests_for("/tail/big.bin"), 1);
        // A server that ignores ranges (and says none).
        origin.reset_stats();
        let dir = TestDir::new();
        let spec = small_and_slow(&origin, &format!("{RATE}&no_ranges=1"));
        let (status, _) = run(&downloader(&dir, 4), spec);
        assert_landed(&dir, &status);
        assert_eq!(origin.stats().requests_for("/tail/big.bin"), 1);
        // A job held to a rate: slow on purpose (the origin's own pace is faster).
        origin.reset_stats();
        let dir = TestDir::new();
        let spec = small_and_slow(&origin, "rate=20000000").rate_limit(1_500_000);
        let (status, _) = run(&downloader(&dir, 4), spec);
        assert_landed(&dir, &status);
        assert_eq!(origin.stats().requests_for("/tail/big.bin"), 1);
    });
}

/// Pieces are pinned to the version the stream is reading: a server whose object changes on
/// every response answers them 412, and the object is finished on one connection.
/// `bucket` of `server` behind a WAN whose window holds one connection to 64 KiB a round trip
/// of 20 ms: about 3 MB/s a connection. The WAN lives as long as what is returned.
fn behind_a_slow_wan(
    server: &crate::support::s3::S3Server,
    bucket: &str,
) -> (haul_wan::Wan, haul::Bucket) {
    let wan = haul_wan::Wan::start(
        server.socket_addr(),
        haul_wan::WanConfig::default()
            .rtt(Duration::from_millis(20))
            .window(64 << 10)
            .initial_window(64 << 10),
    )
    .unwrap();
    let config = server.config_at(format!("http://{}", wan.addr()));
    let bucket = haul::Bucket::new(&server.bucket_name(bucket), &config).unwrap();
    (wan, bucket)
}

/// Work that waits to start is not only what is queued: objects of a listing whose next page
/// has not come yet wait too. The pieces wait until the job has nothing left to start (a
/// slow dispatcher, or one starved of CPU, once split transfers all over a job).
#[test]
fn a_transfer_is_not_split_while_its_jobs_listing_has_more_to_come() {
    guard(|| {
        let server = crate::support::s3::S3Server::start_local(&["data"]);
        let size = 12u64 << 20;
        let big = body("a-big", size);
        server.seed_file("data", "a-big", &big);
        for i in 0..6 {
            server.seed_file("data", &format!("b-{i}"), b"small");
        }
        // Pages of four keys: the big one and three small ones, then a page held back.
        server.gate_later_pages(4);
        // About 3 MB/s a connection: the big object's stream is slow enough to split from
        // its first look on.
        let (_wan, bucket) = behind_a_slow_wan(&server, "data");
        let dir = TestDir::new();
        let d = downloader(&dir, 4);
        let job = d.submit(JobSpec::s3_prefix(&bucket, "")).unwrap();
        let big_in_flight = || {
            let status = d.status(job, Detail::OnlyActive).unwrap();
            status
                .in_flight
                .into_iter()
                .find(|t| t.name.as_str() == "a-big")
        };
        // A third of it has come on one connection, the other joggers idle since the small
        // ones landed: long past the stream's first look (half a second in).
        let mut most = 0;
        assert!(wait_until(|| {
            let big = big_in_flight();
            most = most.max(big.as_ref().map_or(0, |t| t.connections));
            big.is_some_and(|t| t.bytes_done >= size / 3)
        }));
        assert_eq!(most, 1, "split while the listing had more to come");
        // The listing's last page comes and its objects land: now the job's tail is the big
        // object, and idle joggers take pieces of it.
        server.release();
        assert!(wait_until(|| big_in_flight().is_none_or(|t| {
            most = most.max(t.connections);
            most > 1
        })));
        assert!(d.wait(job, Duration::from_secs(30)).unwrap());
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!(status.finished, 7, "{:?}", status.failures);
        assert!(std::fs::read(dir.path().join("a-big")).unwrap() == big);
        assert!(most > 1, "split at the job's tail");
    });
}

#[test]
fn pieces_of_an_object_that_changes_fail_and_the_stream_finishes_it_alone() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 4);
        let (status, _) = run(
            &d,
            small_and_slow(&origin, &format!("{RATE}&etag=changing")),
        );
        assert_landed(&dir, &status);
        let stats = origin.stats();
        assert!(
            stats.status_count(412) >= 1,
            "the pieces were pinned: {stats:?}"
        );
        assert!(
            stats.requests_for("/tail/big.bin") <= 8,
            "split once, then on one connection: {stats:?}"
        );
    });
}

/// Aborting the job stops the pieces too: the job ends at once, nothing is visible, and
/// the bytes of the stream and of its pieces wait for a rerun, which fetches only the rest.
#[test]
fn aborting_a_split_transfer_stops_its_pieces() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 4);
        let job = d.submit(small_and_slow(&origin, "rate=500000")).unwrap();
        // Wait until the pieces run: the big object on more than one connection.
        let deadline = Instant::now() + Duration::from_secs(20);
        let split_at = loop {
            let status = d.status(job, Detail::OnlyActive).unwrap();
            if let Some(big) = status.in_flight.iter().find(|t| t.connections >= 2) {
                break big.bytes_done;
            }
            assert!(Instant::now() < deadline, "never split: {status:?}");
            std::thread::sleep(Duration::from_millis(5)); // the polling's pace
        };
        // A megabyte more: at 500 kB/s a connection, the pieces have brought some of it.
        assert!(wait_until(|| {
            let status = d.status(job, Detail::OnlyActive).unwrap();
            status
                .in_flight
                .iter()
                .any(|t| t.bytes_done >= split_at + 1_000_000)
        }));
        let aborted = Instant::now();
        d.abort(job).unwrap();
        assert!(d.wait(job, Duration::from_secs(10)).unwrap());
        assert!(
            aborted.elapsed() < Duration::from_secs(5),
            "{:?}",
            aborted.elapsed()
        );
        let status = d.status(job, Detail::All).unwrap();
        assert_eq!(status.cancelled, 1, "{status:?}");
        drop(d);
        // The small objects landed before the abort; the big one is not visible.
        assert_eq!(visible(dir.path()), ["a.bin", "b.bin"]);
        let kept = kept(dir.path());
        assert_eq!(kept.len(), 1, "{kept:?}");
        let path = kept[0].path.split('?').next().unwrap().to_owned();
        let whole = body(&path, BIG);
        let have = kept[0].have().expect("the pieces are listed");
        assert!(
            have.len() >= 2,
            "the stream's bytes and a piece's: {kept:?}"
        );
        let held = kept[0].assert_good(&whole);
        assert!(held < BIG);

        assert!(wait_until(|| origin.stats().active == 0));
        origin.reset_stats();
        let d = downloader(&dir, 4);
        let spec = small_and_slow(&origin, "rate=500000").existing(haul::Existing::Skip);
        let status = d.status(d.submit(spec).unwrap(), Detail::All).unwrap();
        let status = {
            assert!(d.wait(status.id, Duration::from_secs(30)).unwrap());
            d.status(status.id, Detail::All).unwrap()
        };
        assert_eq!((status.finished, status.skipped), (1, 2), "{status:?}");
        assert!(std::fs::read(dir.path().join("big.bin")).unwrap() == whole);
        assert_eq!(origin.stats().body_bytes, BIG - held, "only the holes");
    });
}

/// A crash mid-split keeps what the sidecar lists: once cut, the work file is sized to the
/// object and its sidecar names the stream's bytes, so a run after a crash (here: the work
/// file and sidecar copied while the split is under way, as a killed process leaves them)
/// fetches only the rest.
#[test]
fn a_split_transfers_stream_bytes_survive_a_crash() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let running = dir.path().join("running");
        let d = Downloader::builder()
            .mountpath(&running)
            .workers_per_target(4)
            .build()
            .unwrap();
        let job = d.submit(small_and_slow(&origin, "rate=500000")).unwrap();
        let name = haul::ObjectName::new("big.bin").unwrap();
        let work = haul::Mountpath::new(&running).unwrap().work_path(&name);
        let mut meta = work.clone().into_os_string();
        meta.push(".meta");
        assert!(
            wait_until(|| std::fs::read_to_string(&meta)
                .is_ok_and(|t| t.contains(&format!("size {BIG}\n")))),
            "a split tail's file was never listed in its sidecar: {:?}",
            std::fs::read_to_string(&meta)
        );
        let after = dir.path().join("after");
        let after_crash = haul::Mountpath::new(&after).unwrap();
        std::fs::copy(&work, after_crash.work_path(&name)).unwrap();
        let mut copied = after_crash.work_path(&name).into_os_string();
        copied.push(".meta");
        std::fs::copy(&meta, &copied).unwrap();
        d.abort(job).unwrap();
        drop(d);
        assert!(wait_until(|| origin.stats().active == 0));
        origin.reset_stats();

        let listed = kept(&after);
        assert_eq!(listed.len(), 1, "{listed:?}");
        let whole = body("/tail/big.bin", BIG);
        let held = listed[0].assert_good(&whole);
        assert!(held > 0, "the stream's bytes are listed: {listed:?}");
        let d = Downloader::builder()
            .mountpath(&after)
            .workers_per_target(4)
            .build()
            .unwrap();
        // The same URL: the sidecar pins the resume to its source.
        let spec = JobSpec::single(origin.url(&format!("/tail/big.bin?size={BIG}&rate=500000")))
            .retry(quick_retries());
        let (status, _) = run(&d, spec);
        assert_eq!(status.finished, 1, "{:?}", status.failures);
        assert!(std::fs::read(after.join("big.bin")).unwrap() == whole);
        assert_eq!(origin.stats().body_bytes, BIG - held, "only the rest");
    });
}

/// A piece on a slow path is cut again: the stream (4 MB/s) is cut once while one jogger is
/// idle; its piece, on a path that serves ranges from 4 MiB on at 1 MB/s, would set the end
/// alone, until two more joggers come free and take pieces of the piece's own rest.
#[test]
fn a_slow_piece_is_cut_again_when_more_joggers_come_free() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let size: u64 = 12 << 20;
        let big = format!(
            "/tail/recut.bin?size={size}&rate=4000000&slow_from={}&slow_rate=1000000",
            4 << 20
        );
        let spec = JobSpec::multi_named([
            (
                "m1.bin",
                origin.url("/tail/m1.bin?size=1500000&rate=1000000"),
            ),
            (
                "m2.bin",
                origin.url("/tail/m2.bin?size=1500000&rate=1000000"),
            ),
            ("recut.bin", origin.url(&big)),
        ])
        .sha256(
            "recut.bin",
            Sha256Digest::of(&body("/tail/recut.bin", size)),
        )
        .retry(quick_retries());
        let (status, _) = run(&downloader(&dir, 4), spec);
        assert_eq!(status.finished, 3, "{:?}", status.failures);
        assert!(
            std::fs::read(dir.path().join("recut.bin")).unwrap() == body("/tail/recut.bin", size)
        );
        assert_split(&origin, "/tail/recut.bin", 4);
    });
}

// The fetcher's tail: the request's idle workers take pieces of a slow object (or part) in
// memory, joined in order before the object is handed over.

/// Four workers on one request; objects up to 16 MiB whole, larger ones in 6 MiB parts.
fn fetcher() -> haul::Fetcher {
    haul::Fetcher::builder()
        .workers(4)
        .per_request_workers(4)
        .max_whole_object(16 << 20)
        .part_size(6 << 20)
        .memory_budget(64 << 20)
        .hedging(false)
        .retry(quick_retries())
        .build()
        .unwrap()
}

/// Reads every item of `objects`, in order: each object's bytes, or its error.
fn fetched(objects: haul::Objects) -> Vec<(String, Result<Vec<u8>, String>)> {
    use std::io::Read;
    objects
        .map(|item| match item {
            Ok(object) => {
                let key = object.key().to_owned();
                if let Some(bytes) = object.bytes() {
                    return (key, Ok(bytes.to_vec()));
                }
                let mut out = Vec::new();
                let read = object.into_reader().read_to_end(&mut out);
                (key, read.map(|_| out).map_err(|e| e.to_string()))
            }
            Err(e) => (e.to_string(), Err(e.to_string())),
        })
        .collect()
}

/// The keys of [`small_and_slow`] as URLs, the big one `size` bytes.
fn slow_urls(origin: &Origin, size: u64, big_query: &str) -> Vec<haul::FetchKey> {
    let big = origin.url(&format!("/tail/big.bin?size={size}&{big_query}"));
    let digest = Sha256Digest::of(&body("/tail/big.bin", size));
    vec![
        haul::FetchKey::new(origin.url("/tail/a.bin?size=1000")),
        haul::FetchKey::new(origin.url("/tail/b.bin?size=2000")),
        haul::FetchKey::new(big).sha256(digest),
    ]
}

fn assert_fetched(got: &[(String, Result<Vec<u8>, String>)], size: u64) {
    assert_eq!(got.len(), 3);
    for ((key, bytes), (path, len)) in got.iter().zip([
        ("/tail/a.bin", 1000),
        ("/tail/b.bin", 2000),
        ("/tail/big.bin", size),
    ]) {
        assert!(key.contains(path), "{key} in the place of {path}");
        let bytes = bytes.as_ref().unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(*bytes == body(path, len), "{key} has the wrong bytes");
    }
}

#[test]
fn a_fetchers_idle_workers_take_pieces_of_a_slow_whole_object() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let fetcher = fetcher();
        let keys = slow_urls(&origin, BIG, RATE);
        let got = fetched(fetcher.fetch(haul::Web::default(), keys));
        // The SHA-256 of the whole was checked: the pieces reached it in order.
        assert_fetched(&got, BIG);
        assert_split(&origin, "/tail/big.bin", 3);
        assert_eq!(fetcher.stats().retries, 0);
        assert_eq!(fetcher.stats().budget_in_use, 0);
    });
}

#[test]
fn a_fetchers_slow_parts_of_a_streamed_object_are_split_too() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let fetcher = fetcher();
        // 18 MiB: three parts of 6 MiB, each on one connection at 2 MB/s, and nothing else
        // to start once they are out: the fourth worker is idle.
        let size = 18 << 20;
        let keys = slow_urls(&origin, size, "rate=2000000");
        let got = fetched(fetcher.fetch(haul::Web::default(), keys));
        assert_fetched(&got, size);
        assert_split(&origin, "/tail/big.bin", 4);
    });
}

/// As a downloader's joggers wait for a listing's next page: while the caller's key iterator
/// is still to give its next key, a slow object is not split; once it has ended, it is.
#[test]
fn a_fetcher_does_not_split_while_its_keys_have_more_to_come() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let fetcher = fetcher();
        let big = slow_urls(&origin, BIG, RATE).pop().unwrap();
        let (more, keys) = std::sync::mpsc::channel::<haul::FetchKey>();
        more.send(big).unwrap();
        let objects = fetcher.fetch(
            haul::Web::default(),
            std::iter::from_fn(move || keys.recv().ok()),
        );
        // A third of it has come on one connection, three workers idle (one waits for the
        // next key): long past the stream's first look (half a second in).
        assert!(wait_until(|| origin.stats().body_bytes >= BIG / 3));
        assert_eq!(
            origin.stats().requests_for("/tail/big.bin"),
            1,
            "split while the keys had more to come"
        );
        // The keys end: the object is the request's tail now.
        drop(more);
        let got = fetched(objects);
        assert_eq!(got.len(), 1);
        assert!(
            got[0]
                .1
                .as_ref()
                .is_ok_and(|b| *b == body("/tail/big.bin", BIG)),
            "{:?}",
            got[0].0
        );
        assert_split(&origin, "/tail/big.bin", 2);
    });
}

#[test]
fn a_fetcher_does_not_split_without_idle_workers_ranges_or_a_steady_version() {
    guard(|| {
        let origin = Origin::start().unwrap();
        // One worker for the request: nobody idle to help.
        let one = haul::Fetcher::builder()
            .workers(1)
            .max_whole_object(16 << 20)
            .memory_budget(32 << 20)
            .hedging(false)
            .retry(quick_retries())
            .build()
            .unwrap();
        assert_fetched(
            &fetched(one.fetch(haul::Web::default(), slow_urls(&origin, BIG, RATE))),
            BIG,
        );
        assert_eq!(origin.stats().requests_for("/tail/big.bin"), 1);
        // A server that ignores ranges (and says none).
        origin.reset_stats();
        let keys = slow_urls(&origin, BIG, &format!("{RATE}&no_ranges=1"));
        assert_fetched(&fetched(fetcher().fetch(haul::Web::default(), keys)), BIG);
        assert_eq!(origin.stats().requests_for("/tail/big.bin"), 1);
        // An object that changes on every response: the pieces are pinned (412), and the
        // stream finishes it alone.
        origin.reset_stats();
        let keys = slow_urls(&origin, BIG, &format!("{RATE}&etag=changing"));
        assert_fetched(&fetched(fetcher().fetch(haul::Web::default(), keys)), BIG);
        let stats = origin.stats();
        assert!(
            stats.status_count(412) >= 1,
            "the pieces were pinned: {stats:?}"
        );
        assert!(
            stats.requests_for("/tail/big.bin") <= 8,
            "split once, then on one connection: {stats:?}"
        );
        // Servers that lie to the pieces: one answers a range from its first byte, one
        // ignores `If-Match` while its object changes. Every answer is checked, so the
        // pieces are refused and the stream brings the right bytes alone.
        for liar in ["range_from_zero=1", "etag=changing&ignore_conditions=1"] {
            origin.reset_stats();
            let keys = slow_urls(&origin, BIG, &format!("{RATE}&{liar}"));
            assert_fetched(&fetched(fetcher().fetch(haul::Web::default(), keys)), BIG);
            let stats = origin.stats();
            let asked = stats.requests_for("/tail/big.bin");
            assert!((3..=8).contains(&asked), "{liar}: split once: {stats:?}");
        }
    });
}

/// The fetcher cuts a slow piece again too (its pieces are in memory): the scene of
/// [`a_slow_piece_is_cut_again_when_more_joggers_come_free`], as a fetch.
#[test]
fn a_fetchers_slow_piece_is_cut_again_when_more_workers_come_free() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let size: u64 = 12 << 20;
        let big = format!(
            "/tail/recut.bin?size={size}&rate=4000000&slow_from={}&slow_rate=1000000",
            4 << 20
        );
        let keys = vec![
            haul::FetchKey::new(origin.url("/tail/m1.bin?size=1500000&rate=1000000")),
            haul::FetchKey::new(origin.url("/tail/m2.bin?size=1500000&rate=1000000")),
            haul::FetchKey::new(origin.url(&big))
                .sha256(Sha256Digest::of(&body("/tail/recut.bin", size))),
        ];
        let got = fetched(fetcher().fetch(haul::Web::default(), keys));
        for ((key, bytes), (path, len)) in got.iter().zip([
            ("/tail/m1.bin", 1_500_000),
            ("/tail/m2.bin", 1_500_000),
            ("/tail/recut.bin", size),
        ]) {
            let bytes = bytes.as_ref().unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(*bytes == body(path, len), "{key} has the wrong bytes");
        }
        assert_split(&origin, "/tail/recut.bin", 4);
    });
}

/// Dropping the items stops the pieces too: every request ends at once.
#[test]
fn dropping_a_fetch_stops_the_pieces_of_its_split_object() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let fetcher = fetcher();
        let mut objects =
            fetcher.fetch(haul::Web::default(), slow_urls(&origin, BIG, "rate=500000"));
        // The first two arrive; the big one is split once its stream has been judged.
        for _ in 0..2 {
            objects.next().unwrap().unwrap();
        }
        assert!(
            wait_until(|| origin.stats().requests_for("/tail/big.bin") >= 3),
            "never split: {:?}",
            origin.stats()
        );
        let dropped = Instant::now();
        drop(objects);
        assert!(
            wait_until(|| origin.stats().active == 0),
            "requests still open: {:?}",
            origin.stats()
        );
        assert!(
            dropped.elapsed() < Duration::from_secs(5),
            "{:?}",
            dropped.elapsed()
        );
        assert!(wait_until(|| fetcher.stats().budget_in_use == 0));
    });
}

/// From S3 (the in-process store behind a slow WAN): the same split, pinned to the object's
/// ETag.
#[test]
fn a_fetchers_slow_object_from_s3_is_split_among_idle_workers() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["data"]);
        let size = 8usize << 20;
        let big = haul_origin::body("big", size as u64);
        server.seed_file("data", "big", &big);
        server.seed_file("data", "small", b"small");
        let (wan, bucket) = behind_a_slow_wan(&server, "data");
        let fetcher = fetcher();
        let got = fetched(fetcher.fetch(&bucket, ["small", "big"]));
        assert_eq!(got.len(), 2);
        assert!(
            got[0].1.as_ref().is_ok_and(|b| b == b"small"),
            "{:?}",
            got[0].0
        );
        assert!(
            got[1].1.as_ref().is_ok_and(|b| *b == big),
            "big: wrong bytes or {:?}",
            got[1].1.as_ref().err()
        );
        let stats = wan.stats();
        assert!(stats.requests >= 4, "the big object was split: {stats:?}");
    });
}

// The S3 sink's tail: pieces of a slow object, on part boundaries, go up as parts of its
// multipart upload; the stream joins them in order for the object's digests and checksum.

const SINK_BIG: u64 = 20 << 20;

fn sink(bucket: &haul::Bucket) -> Downloader {
    Downloader::builder()
        .s3_target(haul::S3Target::new(bucket, "").part_size(5 << 20))
        .workers_per_target(4)
        .http(HttpConfig::default().stall(1, Duration::from_secs(2)))
        .build()
        .unwrap()
}

/// Small objects and a 20 MiB one at `big_query`'s pace, into a bucket.
fn small_and_slow_into_s3(origin: &Origin, big_query: &str) -> JobSpec {
    let digest = Sha256Digest::of(&body("/tail/big.bin", SINK_BIG));
    JobSpec::multi_named([
        ("a.bin", origin.url("/tail/a.bin?size=1000")),
        ("b.bin", origin.url("/tail/b.bin?size=2000")),
        (
            "big.bin",
            origin.url(&format!("/tail/big.bin?size={SINK_BIG}&{big_query}")),
        ),
    ])
    .sha256("big.bin", digest)
    .retry(quick_retries())
}

#[test]
fn an_s3_targets_idle_joggers_take_pieces_of_a_slow_object_as_parts() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["tail"]);
        let bucket = server.bucket("tail");
        let origin = Origin::start().unwrap();
        let (status, seen) = run(
            &sink(&bucket),
            small_and_slow_into_s3(&origin, "rate=4000000"),
        );
        assert_eq!(status.finished, 3, "{:?}", crate::sink::failures(&status));
        crate::sink::assert_stored(&bucket, "big.bin", "/tail/big.bin", SINK_BIG);
        assert_eq!(bucket.uploads("").unwrap(), vec![], "no upload left behind");
        assert_split(&origin, "/tail/big.bin", 3);
        assert!(seen.get("big.bin").is_some_and(|&n| n >= 3), "{seen:?}");
        assert_eq!(status.retries, 0);
    });
}

#[test]
fn an_s3_targets_pieces_of_an_object_that_changes_fail_and_the_stream_finishes_it() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["tail"]);
        let bucket = server.bucket("tail");
        let origin = Origin::start().unwrap();
        for liar in ["etag=changing", "range_from_zero=1"] {
            origin.reset_stats();
            let spec = small_and_slow_into_s3(&origin, &format!("rate=4000000&{liar}"));
            let (status, _) = run(&sink(&bucket), spec);
            assert_eq!(
                status.finished,
                3,
                "{liar}: {:?}",
                crate::sink::failures(&status)
            );
            crate::sink::assert_stored(&bucket, "big.bin", "/tail/big.bin", SINK_BIG);
            assert_eq!(bucket.uploads("").unwrap(), vec![], "{liar}");
            let stats = origin.stats();
            let asked = stats.requests_for("/tail/big.bin");
            assert!((3..=8).contains(&asked), "{liar}: split once: {stats:?}");
            if liar.starts_with("etag") {
                assert!(stats.status_count(412) >= 1, "pinned: {stats:?}");
            }
        }
    });
}

#[test]
fn aborting_an_s3_targets_split_object_leaves_no_object_and_no_upload() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["tail"]);
        let bucket = server.bucket("tail");
        let origin = Origin::start().unwrap();
        let d = sink(&bucket);
        let job = d
            .submit(small_and_slow_into_s3(&origin, "rate=2000000"))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = d.status(job, Detail::OnlyActive).unwrap();
            if status.in_flight.iter().any(|t| t.connections >= 2) {
                break;
            }
            assert!(Instant::now() < deadline, "never split: {status:?}");
            std::thread::sleep(Duration::from_millis(5)); // the polling's pace
        }
        let aborted = Instant::now();
        d.abort(job).unwrap();
        assert!(d.wait(job, Duration::from_secs(10)).unwrap());
        assert!(
            aborted.elapsed() < Duration::from_secs(5),
            "{:?}",
            aborted.elapsed()
        );
        assert_eq!(d.status(job, Detail::All).unwrap().cancelled, 1);
        assert_eq!(
            bucket.uploads("").unwrap(),
            vec![],
            "the upload was aborted"
        );
        assert_eq!(bucket.head("big.bin").unwrap(), None, "no partial object");
        assert!(wait_until(|| origin.stats().active == 0));
    });
}

/// A work file an earlier run left (its stream stopped part way) is cut like a fresh stream
/// once the resumed stream proves slow and joggers are idle.
#[test]
fn a_resumed_work_file_is_split_too() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let query = "rate=1000000";
        // One jogger: the stream runs alone, and is stopped after a megabyte.
        let d = downloader(&dir, 1);
        let job = d.submit(small_and_slow(&origin, query)).unwrap();
        assert!(wait_until(|| {
            let status = d.status(job, Detail::OnlyActive).unwrap();
            status
                .in_flight
                .iter()
                .any(|t| t.name.as_str() == "big.bin" && t.bytes_done >= 1_000_000)
        }));
        d.abort(job).unwrap();
        assert!(d.wait(job, Duration::from_secs(10)).unwrap());
        drop(d);
        let kept = kept(dir.path());
        assert_eq!(kept.len(), 1, "{kept:?}");
        let whole = body("/tail/big.bin", BIG);
        let held = kept[0].assert_good(&whole);
        assert!(held > 0 && held < BIG);

        assert!(wait_until(|| origin.stats().active == 0));
        origin.reset_stats();
        let d = downloader(&dir, 4);
        let spec = small_and_slow(&origin, query).existing(haul::Existing::Skip);
        let (status, _) = run(&d, spec);
        assert_eq!(
            (status.finished, status.skipped),
            (1, 2),
            "{:?}",
            status.failures
        );
        assert!(std::fs::read(dir.path().join("big.bin")).unwrap() == whole);
        let stats = origin.stats();
        assert!(
            stats.requests_for("/tail/big.bin") >= 3,
            "the resumed stream was split: {stats:?}"
        );
        // The bytes held are not asked again; the origin counts what it sent, so the
        // stream's socket may have held some past its cut when it was dropped.
        assert!(
            (BIG - held..BIG - held + (256 << 10)).contains(&stats.body_bytes),
            "only the rest ({} of {BIG} were held): {stats:?}",
            held
        );
    });
}

/// With nothing to verify but the CRC-64/NVME (which combines), an S3 target's pieces stream
/// their parts up and hold one part each, not all their bytes: a budget too small for the
/// pieces' bytes still lets a 100 MiB object be cut at its first looks. With a SHA-256 to check
/// (the bytes are needed), the same budget cuts it only once little is left.
#[test]
fn an_s3_targets_pieces_hold_one_part_each_when_no_digest_needs_their_bytes() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["tail"]);
        let bucket = server.bucket("tail");
        let origin = Origin::start().unwrap();
        let size: u64 = 100 << 20;
        // 25 MiB: the stream's part and four more; the pieces of what is left would need all
        // of theirs until the stream is past half the object, but a part each at once.
        let d = Downloader::builder()
            .s3_target(
                haul::S3Target::new(&bucket, "")
                    .part_size(5 << 20)
                    .upload_connections(1),
            )
            .workers_per_target(4)
            .memory_budget(25 << 20)
            .http(HttpConfig::default().stall(1, Duration::from_secs(2)))
            .build()
            .unwrap();
        // Where the object was when it was first seen on more than one connection.
        let first_cut = |spec: JobSpec| {
            let job = d.submit(spec).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut cut_at = None;
            loop {
                let status = d.status(job, Detail::OnlyActive).unwrap();
                if cut_at.is_none()
                    && let Some(big) = status.in_flight.iter().find(|t| t.connections >= 2)
                {
                    cut_at = Some(big.bytes_done);
                }
                if status.finished_at.is_some() {
                    let status = d.status(job, Detail::All).unwrap();
                    assert_eq!(status.finished, 1, "{:?}", crate::sink::failures(&status));
                    return cut_at;
                }
                assert!(Instant::now() < deadline, "the job hangs: {status:?}");
                std::thread::sleep(Duration::from_millis(5)); // the polling's pace
            }
        };
        let url = |path: &str| origin.url(&format!("{path}?size={size}&rate=8000000"));
        let streamed = first_cut(JobSpec::single(url("/tail/streamed.bin")).retry(quick_retries()));
        crate::sink::assert_stored(&bucket, "streamed.bin", "/tail/streamed.bin", size);
        assert!(
            streamed.is_some_and(|at| at < 20 << 20),
            "cut at its first looks: {streamed:?}"
        );
        let digest = Sha256Digest::of(&body("/tail/kept.bin", size));
        let kept = JobSpec::single(url("/tail/kept.bin"))
            .sha256("kept.bin", digest)
            .retry(quick_retries());
        let kept = first_cut(kept);
        eprintln!("first cuts: streamed {streamed:?}, kept {kept:?}");
        crate::sink::assert_stored(&bucket, "kept.bin", "/tail/kept.bin", size);
        assert!(
            kept.is_none_or(|at| at >= 30 << 20),
            "the pieces' bytes did not fit early: {kept:?}"
        );
        assert_eq!(bucket.uploads("").unwrap(), vec![]);
    });
}
