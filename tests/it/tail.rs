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
        let stats = origin.stats();
        assert!(
            stats.requests_for("/tail/big.bin") >= 3,
            "the rest was split: {stats:?}"
        );
        assert!(stats.status_count(206) >= 2, "{stats:?}");
        assert_eq!(stats.status_count(412), 0, "{stats:?}");
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
