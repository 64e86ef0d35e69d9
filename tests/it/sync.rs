//! Sync for backend jobs: reruns fetch exactly what changed, delete what haul downloaded and
//! is gone remotely, and never touch files haul did not write. In process, and against
//! SeaweedFS in `.ci/run`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use haul::{Detail, Downloader, JobSpec, JobStatus};

use crate::support::s3::S3Server;
use crate::support::{TestDir, chain, guard_for};

fn key(i: usize) -> String {
    format!("ds/k-{i:03}.bin")
}

/// Version `v` of object `i`: versions 1 of objects 15..20 change size, the others only
/// their bytes.
fn content(i: usize, v: u64) -> Vec<u8> {
    let size = 200 + (i as u64 * 37) % 900 + if (15..20).contains(&i) { v * 11 } else { 0 };
    haul_origin::body(&format!("{}#{v}", key(i)), size)
}

struct Setup {
    server: S3Server,
    dir: TestDir,
    downloader: Downloader,
}

impl Setup {
    fn new() -> Setup {
        Setup::on(S3Server::start(&["sync"]))
    }

    /// On the in-process store, for a test that makes it misbehave.
    fn local() -> Setup {
        Setup::on(S3Server::start_local(&["sync"]))
    }

    fn on(server: S3Server) -> Setup {
        let dir = TestDir::new();
        let downloader = Downloader::builder()
            .mountpath(dir.path().join("m0"))
            .mountpath(dir.path().join("m1"))
            .workers_per_target(3)
            .build()
            .unwrap();
        Setup {
            server,
            dir,
            downloader,
        }
    }

    /// Twenty objects in the bucket, synced once: the bucket.
    fn synced_twenty(&self) -> haul::Bucket {
        let bucket = self.server.bucket("sync");
        self.server
            .seed_many("sync", (0..20).map(|i| (key(i), content(i, 0))).collect());
        counts(&self.sync(&bucket), (20, 0, 0, 0));
        bucket
    }

    fn sync(&self, bucket: &haul::Bucket) -> JobStatus {
        let spec = JobSpec::s3_prefix(bucket, "ds/").sync(true);
        let job = self.downloader.submit(spec).unwrap();
        assert!(self.downloader.wait(job, Duration::from_secs(60)).unwrap());
        self.downloader.status(job, Detail::All).unwrap()
    }

    /// Where object `i` landed, on whichever mountpath holds it.
    fn file(&self, i: usize) -> Option<PathBuf> {
        ["m0", "m1"]
            .iter()
            .map(|m| self.dir.path().join(m).join(key(i)))
            .find(|p| p.is_file())
    }
}

#[track_caller]
fn counts(status: &JobStatus, expected: (u64, u64, u64, u64)) {
    let failures: Vec<String> = status
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.name, chain(&*f.error)))
        .collect();
    assert_eq!(
        (
            status.finished,
            status.skipped,
            status.deleted,
            status.failed
        ),
        expected,
        "(downloaded, skipped, deleted, failed); {failures:?}"
    );
}

#[track_caller]
fn holds(path: &Path, bytes: &[u8]) {
    assert!(std::fs::read(path).unwrap() == bytes, "{}", path.display());
}

#[test]
fn a_rerun_fetches_what_changed_deletes_what_is_gone_and_spares_files_haul_did_not_write() {
    guard_for(Duration::from_secs(120), || {
        let s = Setup::new();
        let bucket = s.server.bucket("sync");
        s.server
            .seed_many("sync", (0..100).map(|i| (key(i), content(i, 0))).collect());
        // Files haul did not write: one beside the objects, one among them.
        let mine = s.dir.path().join("m0/mine.txt");
        let local_only = s.dir.path().join("m1/ds/local-only.bin");
        std::fs::create_dir_all(local_only.parent().unwrap()).unwrap();
        std::fs::write(&mine, b"mine").unwrap();
        std::fs::write(&local_only, b"also mine").unwrap();

        let first = s.sync(&bucket);
        counts(&first, (100, 0, 0, 0));
        assert_eq!(first.total, Some(100));

        // Remotely: 10 deleted, 10 changed (5 in size, 5 only in bytes), 10 added.
        for i in 0..10 {
            bucket.delete(&key(i)).unwrap();
        }
        s.server.seed_many(
            "sync",
            (10..20)
                .map(|i| (key(i), content(i, 1)))
                .chain((100..110).map(|i| (key(i), content(i, 0))))
                .collect(),
        );
        let second = s.sync(&bucket);
        counts(&second, (20, 80, 10, 0));
        let fetched: u64 = (10..20)
            .map(|i| content(i, 1).len() as u64)
            .chain((100..110).map(|i| content(i, 0).len() as u64))
            .sum();
        assert_eq!(
            second.bytes, fetched,
            "only the changed and new objects came"
        );
        for i in 0..10 {
            assert_eq!(s.file(i), None, "{} is gone remotely", key(i));
        }
        for i in 10..20 {
            holds(&s.file(i).unwrap(), &content(i, 1));
        }
        for i in (20..100).chain(100..110) {
            holds(&s.file(i).unwrap(), &content(i, 0));
        }
        holds(&mine, b"mine");
        holds(&local_only, b"also mine");

        // A file haul wrote and someone changed since is not deleted when its object goes;
        // one changed locally while its object did not is fetched again.
        let changed = s.file(20).unwrap();
        std::fs::write(&changed, b"edited by hand").unwrap();
        bucket.delete(&key(20)).unwrap();
        std::fs::write(s.file(21).unwrap(), b"edited too").unwrap();
        let third = s.sync(&bucket);
        counts(&third, (1, 98, 0, 0));
        holds(&changed, b"edited by hand");
        holds(&s.file(21).unwrap(), &content(21, 0));
        holds(&local_only, b"also mine");

        // Nothing changed: everything is skipped without a request for its bytes.
        let fourth = s.sync(&bucket);
        counts(&fourth, (0, 99, 0, 0));
        assert_eq!(fourth.bytes, 0);
    });
}

#[test]
fn a_truncated_listing_without_a_continuation_token_fails_and_deletes_nothing() {
    guard_for(Duration::from_secs(120), || {
        let server = S3Server::start_local(&["sync"]);
        let dir = TestDir::new_fast();
        let downloader = Downloader::builder()
            .mountpath(dir.path())
            .workers_per_target(8)
            .build()
            .unwrap();
        let bucket = server.bucket("sync");
        let name = |i: usize| format!("ds/t-{i:04}.bin");
        server.seed_many(
            "sync",
            (0..1500)
                .map(|i| (name(i), haul_origin::body(&name(i), 100)))
                .collect(),
        );
        let sync = || {
            let job = downloader
                .submit(JobSpec::s3_prefix(&bucket, "ds/").sync(true))
                .unwrap();
            assert!(downloader.wait(job, Duration::from_secs(100)).unwrap());
            downloader.status(job, Detail::All).unwrap()
        };
        counts(&sync(), (1500, 0, 0, 0));
        // Page 1 (1,000 keys) says it is truncated but gives no way to page 2.
        server.drop_continuation_tokens(true);
        let lied = sync();
        assert_eq!((lied.deleted, lied.failed), (0, 1), "{:?}", lied.failures);
        let text = chain(&*lied.failures[0].error);
        assert!(
            text.contains("truncated") && text.contains("continuation token"),
            "{text}"
        );
        for i in 0..1500 {
            assert!(
                dir.path().join(name(i)).is_file(),
                "{} was deleted",
                name(i)
            );
        }
        // The record still knows every file: an honest listing skips them all.
        server.drop_continuation_tokens(false);
        counts(&sync(), (0, 1500, 0, 0));
    });
}

#[test]
fn a_sync_whose_listing_fails_deletes_nothing_and_keeps_its_record() {
    guard_for(Duration::from_secs(60), || {
        let s = Setup::new();
        let bucket = s.synced_twenty();
        for i in 0..5 {
            bucket.delete(&key(i)).unwrap();
        }
        // The same bucket, with credentials the store refuses: the listing fails at once.
        let (access_key, _) = s.server.keys();
        let wrong = haul::S3Config::new(s.server.endpoint(), "us-east-1")
            .credentials(access_key, "wrong")
            .retry(haul::RetryPolicy::none());
        let refused = haul::Bucket::new(bucket.name(), &wrong).unwrap();
        let failed = s.sync(&refused);
        counts(&failed, (0, 0, 0, 1));
        assert!(chain(&*failed.failures[0].error).contains("403"));
        for i in 0..20 {
            assert!(s.file(i).is_some(), "{} deleted by a failed sync", key(i));
        }
        // The record survived: the next good sync deletes the five and skips the rest.
        counts(&s.sync(&bucket), (0, 15, 5, 0));
    });
}

/// A listing reply cut short with a length that matches it (a truncating proxy): valid HTTP,
/// no transport error, half a document. It is a failure, never the listing's end: files
/// whose keys sort after the cut stay, though their objects are gone.
#[test]
fn a_sync_whose_listing_reply_is_cut_short_deletes_nothing_past_the_cut() {
    guard_for(Duration::from_secs(60), || {
        let s = Setup::local();
        let bucket = s.synced_twenty();
        // The last five: past the middle of the reply, where it is cut.
        for i in 15..20 {
            bucket.delete(&key(i)).unwrap();
        }
        s.server.cut_listings(true);
        let cut = s.sync(&bucket);
        assert_eq!((cut.deleted, cut.failed), (0, 1), "{:?}", cut.failures);
        let text = chain(&*cut.failures[0].error);
        assert!(text.contains("ended"), "{text}");
        for i in 0..20 {
            assert!(
                s.file(i).is_some(),
                "{} deleted after a cut listing",
                key(i)
            );
        }
        s.server.cut_listings(false);
        counts(&s.sync(&bucket), (0, 15, 5, 0));
    });
}

#[test]
fn an_aborted_sync_deletes_nothing_past_where_it_stopped_and_the_next_one_catches_up() {
    guard_for(Duration::from_secs(60), || {
        let s = Setup::new();
        let bucket = s.server.bucket("sync");
        s.server
            .seed_many("sync", (0..40).map(|i| (key(i), content(i, 0))).collect());
        counts(&s.sync(&bucket), (40, 0, 0, 0));
        // The last ten go; the rest change, and come back slowly (a byte-rate limit).
        for i in 30..40 {
            bucket.delete(&key(i)).unwrap();
        }
        s.server
            .seed_many("sync", (0..30).map(|i| (key(i), content(i, 1))).collect());
        let spec = JobSpec::s3_prefix(&bucket, "ds/")
            .sync(true)
            .rate_limit(1000);
        let job = s.downloader.submit(spec).unwrap();
        // Aborted once one object is in and more are on their way: the first may land at
        // once (the rate limit's first burst) before the listing has fed a second, and an
        // abort then would find nothing to cancel.
        assert!(crate::support::wait_until(|| {
            let status = s.downloader.status(job, Detail::OnlyActive).unwrap();
            status.finished >= 1 && status.scheduled > status.finished
        }));
        s.downloader.abort(job).unwrap();
        assert!(s.downloader.wait(job, Duration::from_secs(30)).unwrap());
        let aborted = s.downloader.status(job, Detail::All).unwrap();
        assert!(aborted.cancelled > 0 && aborted.deleted == 0, "{aborted:?}");
        for i in 30..40 {
            assert!(s.file(i).is_some(), "{} deleted by an aborted sync", key(i));
        }
        // The record kept every key: the next sync deletes the ten and fetches the rest.
        let next = s.sync(&bucket);
        counts(&next, (30 - aborted.finished, aborted.finished, 10, 0));
        for i in 0..30 {
            holds(&s.file(i).unwrap(), &content(i, 1));
        }
    });
}

#[test]
fn sync_needs_a_prefix_job_and_mountpaths() {
    guard_for(
        Duration::from_secs(30),
        sync_needs_a_prefix_job_and_mountpaths_body,
    );
}

fn sync_needs_a_prefix_job_and_mountpaths_body() {
    let s = Setup::new();
    let err = s
        .downloader
        .submit(JobSpec::single("http://127.0.0.1:9/x").sync(true))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad option sync: needs an S3 prefix job and output directories (mountpaths)"
    );
    let bucket = s.server.bucket("sync");
    let to_store = Downloader::builder()
        .s3_target(haul::S3Target::new(&bucket, "copy/"))
        .build()
        .unwrap();
    let err = to_store
        .submit(JobSpec::s3_prefix(&bucket, "ds/").sync(true))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad option sync: needs an S3 prefix job and output directories (mountpaths)"
    );
}

#[test]
fn a_sync_never_deletes_through_a_symbolic_link() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["sync"]);
        let dir = TestDir::new();
        let outside = TestDir::new();
        let downloader = Downloader::builder().mountpath(dir.path()).build().unwrap();
        let bucket = server.bucket("sync");
        server.seed_file("sync", "ds/sub/gone.bin", b"12345");
        let sync = || {
            let job = downloader
                .submit(JobSpec::s3_prefix(&bucket, "ds/").sync(true))
                .unwrap();
            assert!(downloader.wait(job, Duration::from_secs(30)).unwrap());
            downloader.status(job, Detail::All).unwrap()
        };
        counts(&sync(), (1, 0, 0, 0));
        // The directory haul wrote into becomes a link to another, where a file of the
        // recorded name and size lives; then the object goes.
        std::fs::remove_dir_all(dir.path().join("ds/sub")).unwrap();
        std::fs::write(outside.path().join("gone.bin"), b"54321").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("ds/sub")).unwrap();
        bucket.delete("ds/sub/gone.bin").unwrap();
        let status = sync();
        assert_eq!(status.deleted, 0);
        holds(&outside.path().join("gone.bin"), b"54321");
    });
}

#[test]
fn a_second_sync_of_the_same_source_is_refused_while_one_runs_and_the_record_survives() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["sync"]);
        let dir = TestDir::new();
        let d = Downloader::builder().mountpath(dir.path()).build().unwrap();
        let bucket = server.bucket("sync");
        let seed = |v: u64| {
            let objects = (0..3).map(|i| (key(i), content(i, v))).collect();
            server.seed_many("sync", objects);
        };
        let run = |d: &Downloader, spec: JobSpec| {
            let job = d.submit(spec).unwrap();
            assert!(d.wait(job, Duration::from_secs(30)).unwrap());
            d.status(job, Detail::All).unwrap()
        };
        let spec = || JobSpec::s3_prefix(&bucket, "ds/").sync(true);
        seed(0);
        counts(&run(&d, spec()), (3, 0, 0, 0));
        // Changed remotely, and fetched slowly: the second sync runs for a while.
        seed(1);
        let slow = d.submit(spec().rate_limit(300)).unwrap();
        let refused = d.submit(spec()).unwrap_err();
        assert!(
            matches!(refused, haul::SubmitError::SyncRunning { .. }),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("another sync"), "{refused}");
        // Another downloader (another process, a cron run overlapping) is refused too.
        let other = Downloader::builder().mountpath(dir.path()).build().unwrap();
        let refused = other.submit(spec()).unwrap_err();
        assert!(
            matches!(refused, haul::SubmitError::SyncRunning { .. }),
            "{refused:?}"
        );
        assert!(d.wait(slow, Duration::from_secs(30)).unwrap());
        counts(&d.status(slow, Detail::All).unwrap(), (3, 0, 0, 0));
        // The record is whole: the next sync knows every file.
        counts(&run(&other, spec()), (0, 3, 0, 0));
    });
}

#[test]
fn one_stalled_object_holds_back_a_sync_instead_of_growing_its_queue() {
    guard_for(Duration::from_secs(100), || {
        const KEYS: u64 = 3000;
        let server = S3Server::start_local(&["sync"]);
        let dir = TestDir::new_fast();
        // A sync runs at most 4 × queue_capacity (here 200) objects past its oldest
        // unfinished one: fewer than a listing page (1,000), so a page being fetched is
        // never taken for the bound.
        let d = Downloader::builder()
            .mountpath(dir.path())
            .workers_per_target(8)
            .queue_capacity(50)
            .build()
            .unwrap();
        let bucket = server.bucket("sync");
        let name = |i: u64| format!("ds/s-{i:04}.bin");
        server.seed_many(
            "sync",
            (0..KEYS)
                .map(|i| (name(i), haul_origin::body(&name(i), 10)))
                .collect(),
        );
        // The first key's GET is held: every line after it waits for its line in the new
        // record, which is written in key order.
        server.gate_key(&name(0));
        let job = d
            .submit(JobSpec::s3_prefix(&bucket, "ds/").sync(true))
            .unwrap();
        // The job settles with only the held object in flight: nothing queued, nothing
        // else running. Without a bound that happens only once every other key is done.
        assert!(crate::support::wait_until(|| {
            let s = d.status(job, Detail::OnlyActive).unwrap();
            s.finished >= 100 && s.scheduled == s.finished + s.skipped + s.failed + 1
        }));
        let held = d.status(job, Detail::OnlyActive).unwrap();
        assert!(
            held.scheduled < 1000,
            "{} of {KEYS} objects were scheduled behind the held one",
            held.scheduled
        );
        server.release();
        assert!(d.wait(job, Duration::from_secs(60)).unwrap());
        counts(&d.status(job, Detail::All).unwrap(), (KEYS, 0, 0, 0));
    });
}

#[test]
fn a_file_skipped_as_already_there_is_not_taken_for_one_haul_wrote() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["sync"]);
        let dir = TestDir::new();
        let d = Downloader::builder().mountpath(dir.path()).build().unwrap();
        let bucket = server.bucket("sync");
        server.seed_file("sync", "ds/theirs.bin", b"remote");
        // A file of the same name and size that haul did not write.
        std::fs::create_dir_all(dir.path().join("ds")).unwrap();
        std::fs::write(dir.path().join("ds/theirs.bin"), b"locals").unwrap();
        let sync = || {
            let spec = JobSpec::s3_prefix(&bucket, "ds/")
                .sync(true)
                .existing(haul::Existing::Skip);
            let job = d.submit(spec).unwrap();
            assert!(d.wait(job, Duration::from_secs(30)).unwrap());
            d.status(job, Detail::All).unwrap()
        };
        counts(&sync(), (0, 1, 0, 0));
        bucket.delete("ds/theirs.bin").unwrap();
        counts(&sync(), (0, 0, 0, 0));
        holds(&dir.path().join("ds/theirs.bin"), b"locals");
    });
}

/// A dry run of a sync says what the sync would do — download the changed and new objects,
/// skip the unchanged, delete what is gone — and does none of it: not one file, record or
/// directory changes, and the real sync after it does exactly what the dry run said.
#[test]
fn a_dry_run_of_a_sync_counts_what_it_would_do_and_changes_nothing() {
    guard_for(Duration::from_secs(60), || {
        let setup = Setup::new();
        let bucket = setup.server.bucket("sync");
        for i in 0..20 {
            setup.server.seed_file("sync", &key(i), &content(i, 0));
        }
        counts(&setup.sync(&bucket), (20, 0, 0, 0));
        // Objects 15..20 change size, 0..3 are deleted, 20..22 are new.
        for i in 15..22 {
            setup.server.seed_file("sync", &key(i), &content(i, 1));
        }
        for i in 0..3 {
            bucket.delete(&key(i)).unwrap();
        }
        let before = crate::support::tree(setup.dir.path());
        // A dry run of the sync into `mountpaths`.
        let plan = |mountpaths: &[PathBuf]| {
            let dry = mountpaths
                .iter()
                .fold(Downloader::builder(), |b, m| b.mountpath(m))
                .dry_run(true)
                .build()
                .unwrap();
            let job = dry
                .submit(JobSpec::s3_prefix(&bucket, "ds/").sync(true))
                .unwrap();
            assert!(dry.wait(job, Duration::from_secs(30)).unwrap());
            dry.status(job, Detail::All).unwrap()
        };
        let planned = plan(&[setup.dir.path().join("m0"), setup.dir.path().join("m1")]);
        counts(&planned, (7, 12, 3, 0));
        let sizes: u64 = (15..22).map(|i| content(i, 1).len() as u64).sum();
        assert_eq!(planned.bytes, sizes);
        assert!(
            crate::support::tree(setup.dir.path()) == before,
            "the dry run changed files"
        );
        // Into a directory that is not there: it stays not there.
        let nowhere = setup.dir.path().join("not-made");
        counts(&plan(std::slice::from_ref(&nowhere)), (19, 0, 0, 0));
        assert!(!nowhere.exists());
        // The sync itself does what the dry run said.
        counts(&setup.sync(&bucket), (7, 12, 3, 0));
    });
}
