//! The Downloader against the loopback origin: placement, concurrency, abort, remove, queue
//! full, status, list, fairness between jobs, flat memory, and shutdown.

use std::path::Path;
use std::time::Duration;

use haul::{
    Detail, Downloader, JobError, JobFilter, JobId, JobSpec, JobStatus, ObjectName, SubmitError,
};
use haul_origin::{Origin, body};

use crate::support::{TestDir, chain, files_under, guard, kept, visible, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// A downloader with one mountpath, `dir`, and `workers` joggers.
fn downloader(dir: &TestDir, workers: usize) -> Downloader {
    Downloader::builder()
        .mountpath(dir.path())
        .workers_per_target(workers)
        .build()
        .unwrap()
}

fn finish(d: &Downloader, job: JobId) -> JobStatus {
    assert!(d.wait(job, WAIT).unwrap(), "{job} did not finish");
    let status = d.status(job, Detail::All).unwrap();
    assert!(status.is_finished());
    assert_eq!(
        status.finished + status.failed + status.skipped + status.cancelled,
        status.total.expect("total known"),
        "a finished job accounts for every object: {status:?}"
    );
    status
}

/// Work files left in any mountpath under `root`.
fn work_files(root: &Path) -> Vec<String> {
    files_under(root)
        .into_iter()
        .filter(|f| f.contains(".haul-work/"))
        .collect()
}

#[test]
fn a_range_job_over_three_mountpaths_lands_every_object_where_hrw_says() {
    guard(|| {
        let origin = Origin::builder().object_size(2000).start().unwrap();
        let dir = TestDir::new();
        let mps: Vec<_> = (0..3)
            .map(|i| dir.path().join(format!("disk{i}")))
            .collect();
        let d = mps
            .iter()
            .fold(Downloader::builder(), |b, mp| b.mountpath(mp))
            .workers_per_target(3)
            // One request per object below: no hedge for a response a loaded machine made
            // late (hedging has tests of its own).
            .hedging(false)
            .build()
            .unwrap();
        let job = d
            .submit(JobSpec::range(origin.url("/r/o-{0000..0999}.bin")).subdir("set"))
            .unwrap();
        let status = finish(&d, job);
        assert_eq!(
            (status.finished, status.failed, status.total),
            (1000, 0, Some(1000))
        );
        assert_eq!(status.bytes, 2_000_000);
        assert_eq!(status.scheduled, 1000);
        assert!(status.all_dispatched && !status.aborted && status.in_flight.is_empty());

        let mut per_mp = [0; 3];
        for i in 0..1000 {
            let file = format!("o-{i:04}.bin");
            let name = ObjectName::new(format!("set/{file}")).unwrap();
            let mp = d.placement(&name);
            per_mp[mp] += 1;
            let bytes = std::fs::read(mps[mp].join("set").join(&file))
                .unwrap_or_else(|e| panic!("{file} not on mountpath {mp}: {e}"));
            assert!(bytes == body(&format!("/r/{file}"), 2000), "{file} differs");
            for (other, path) in mps.iter().enumerate() {
                if other != mp {
                    assert!(
                        !path.join("set").join(&file).exists(),
                        "{file} also on {other}"
                    );
                }
            }
        }
        // HRW spreads names about evenly.
        assert!(
            per_mp.iter().all(|&n| (250..=420).contains(&n)),
            "{per_mp:?}"
        );
        assert!(work_files(dir.path()).is_empty());
        assert_eq!(origin.stats().requests, 1000);
    });
}

#[test]
fn adding_a_fourth_mountpath_moves_only_about_a_quarter_of_the_names() {
    guard(|| {
        let dir = TestDir::new();
        let mps: Vec<_> = (0..4)
            .map(|i| dir.path().join(format!("disk{i}")))
            .collect();
        let three = mps[..3]
            .iter()
            .fold(Downloader::builder(), |b, mp| b.mountpath(mp))
            .build()
            .unwrap();
        let four = mps
            .iter()
            .fold(Downloader::builder(), |b, mp| b.mountpath(mp))
            .build()
            .unwrap();
        let mut moved = 0;
        for i in 0..10_000 {
            let name = ObjectName::new(format!("shard-{i:05}.tar")).unwrap();
            let (before, after) = (three.placement(&name), four.placement(&name));
            if before != after {
                assert_eq!(after, 3, "a name may only move to the new mountpath");
                moved += 1;
            }
        }
        assert!((2_000..=3_000).contains(&moved), "{moved} of 10000 moved");
    });
}

#[test]
fn concurrency_never_exceeds_mountpaths_times_workers() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = Downloader::builder()
            .mountpath(dir.path().join("a"))
            .mountpath(dir.path().join("b"))
            .workers_per_target(2)
            .build()
            .unwrap();
        let job = d
            .submit(JobSpec::range(
                origin.url("/c/o-{00..59}.bin?size=5000&gate_after=100"),
            ))
            .unwrap();
        // Every jogger is held at the gate: exactly 2 x 2 requests are in progress.
        assert!(origin.gate().wait_arrivals(4, WAIT));
        let status = d.status(job, Detail::OnlyActive).unwrap();
        assert!(status.in_flight.len() <= 4, "{:?}", status.in_flight);
        assert_eq!(origin.stats().active, 4);
        origin.gate().release();
        let status = finish(&d, job);
        assert_eq!(status.finished, 60);
        assert_eq!(origin.stats().peak_concurrent, 4);
    });
}

#[test]
fn a_job_connection_limit_caps_its_concurrency() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 6);
        let job = d
            .submit(
                JobSpec::range(origin.url("/l/o-{00..29}.bin?size=5000&gate_after=100"))
                    .max_connections(2),
            )
            .unwrap();
        assert!(origin.gate().wait_arrivals(2, WAIT));
        origin.gate().release();
        let status = finish(&d, job);
        assert_eq!(status.finished, 30);
        assert_eq!(origin.stats().peak_concurrent, 2);
    });
}

#[test]
fn abort_while_the_gate_holds_a_body_stops_the_job_and_keeps_its_bytes_for_a_rerun() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 1);
        let job = d
            .submit(JobSpec::range(
                origin.url("/a/o-{000..099}.bin?size=100000&gate_after=5000"),
            ))
            .unwrap();
        assert!(origin.gate().wait_arrivals(1, WAIT));
        // Progress is visible while the body is held.
        assert!(wait_until(|| {
            let s = d.status(job, Detail::OnlyActive).unwrap();
            s.in_flight.len() == 1 && s.in_flight[0].bytes_done == 5000
        }));
        let status = d.status(job, Detail::OnlyActive).unwrap();
        assert_eq!(status.in_flight[0].bytes_total, Some(100_000));
        assert_eq!(status.in_flight[0].name.as_str(), "o-000.bin");
        assert_eq!(status.bytes, 5000);

        d.abort(job).unwrap();
        assert!(
            d.status(job, Detail::All).unwrap().aborted,
            "marked at once"
        );
        origin.gate().release();
        let status = finish(&d, job);
        assert!(status.aborted);
        assert_eq!((status.finished, status.failed), (0, 0));
        assert_eq!(status.cancelled, 100);
        // Nothing is visible; the bytes that came wait for a rerun.
        assert!(
            visible(dir.path()).is_empty(),
            "{:?}",
            files_under(dir.path())
        );
        let kept = kept(dir.path());
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].path.starts_with("/a/o-000.bin?"), "{kept:?}");
        // At least the 5000 bytes held; a read under way when the gate opened may bring
        // more, and those are good bytes too.
        let held = kept[0].assert_good(&body("/a/o-000.bin", 100_000));
        assert!(held >= 5000, "{held}");
        // Later objects of the job were never requested.
        assert_eq!(origin.stats().requests, 1);
        // Aborting a finished job succeeds.
        d.abort(job).unwrap();

        // The same job again fetches only what is missing.
        assert!(wait_until(|| origin.stats().active == 0));
        origin.reset_stats();
        let spec = JobSpec::range(origin.url("/a/o-{000..099}.bin?size=100000&gate_after=5000"));
        let again = finish(&d, d.submit(spec).unwrap());
        assert_eq!(again.finished, 100, "{:?}", again.failures);
        assert_eq!(origin.stats().body_bytes, 100 * 100_000 - held);
        assert!(
            std::fs::read(dir.path().join("o-000.bin")).unwrap() == body("/a/o-000.bin", 100_000)
        );
        assert!(work_files(dir.path()).is_empty());
    });
}

#[test]
fn remove_is_refused_while_running_and_forgets_a_finished_job() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 1);
        let job = d
            .submit(JobSpec::single(
                origin.url("/x.bin?size=1000&gate_after=10"),
            ))
            .unwrap();
        assert!(origin.gate().wait_arrivals(1, WAIT));
        assert_eq!(d.remove(job), Err(JobError::Running(job)));
        assert_eq!(
            d.remove(job).unwrap_err().to_string(),
            format!("{job} is still running")
        );
        origin.gate().release();
        finish(&d, job);
        d.remove(job).unwrap();
        assert_eq!(
            d.status(job, Detail::All).unwrap_err(),
            JobError::Unknown(job)
        );
        assert_eq!(
            d.remove(job).unwrap_err().to_string(),
            format!("unknown job {job}")
        );
        assert!(matches!(d.wait(job, WAIT), Err(JobError::Unknown(_))));
        assert!(matches!(d.abort(job), Err(JobError::Unknown(_))));
    });
}

#[test]
fn submitting_past_the_job_queue_capacity_is_refused_promptly() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = Downloader::builder()
            .mountpath(dir.path())
            .queue_capacity(1)
            .max_active_jobs(1)
            .job_queue_capacity(2)
            .build()
            .unwrap();
        // The first job stays active: its jogger is held at the gate, its queue is full.
        let first = d
            .submit(JobSpec::range(
                origin.url("/q/o-{0..99}.bin?size=1000&gate_after=10"),
            ))
            .unwrap();
        assert!(origin.gate().wait_arrivals(1, WAIT));
        let second = d
            .submit(JobSpec::single(origin.url("/q/b.bin?size=10")))
            .unwrap();
        let third = d
            .submit(JobSpec::single(origin.url("/q/c.bin?size=10")))
            .unwrap();
        let err = d
            .submit(JobSpec::single(origin.url("/q/d.bin?size=10")))
            .unwrap_err();
        assert!(
            matches!(err, SubmitError::QueueFull { capacity: 2 }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "job queue is full (2 jobs waiting)");
        origin.gate().release();
        for job in [first, second, third] {
            assert_eq!(finish(&d, job).failed, 0);
        }
        // Room again.
        let again = d
            .submit(JobSpec::single(origin.url("/q/e.bin?size=10")))
            .unwrap();
        assert_eq!(finish(&d, again).finished, 1);
    });
}

#[test]
fn a_small_job_is_not_starved_behind_a_big_one() {
    guard(|| {
        let origin = Origin::builder().object_size(1000).start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 2);
        let big = d
            .submit(JobSpec::range(origin.url("/big/o-{0000..4999}.bin")))
            .unwrap();
        let small = d
            .submit(JobSpec::range(origin.url("/small/o-{0..4}.bin")))
            .unwrap();
        let small_status = finish(&d, small);
        assert_eq!(small_status.finished, 5);
        let big_status = d.status(big, Detail::OnlyActive).unwrap();
        assert!(!big_status.is_finished());
        assert!(
            big_status.finished < 2500,
            "big job had {} done",
            big_status.finished
        );
        assert_eq!(finish(&d, big).finished, 5000);
    });
}

#[test]
fn status_detail_lists_failures_and_list_filters_by_description() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 1);
        let good = origin.url("/s/good.bin?size=10");
        let missing = origin.url("/s/missing.bin?status=404");
        let mixed = d
            .submit(JobSpec::multi([good.clone(), missing.clone()]).description("shards: mixed"))
            .unwrap();
        let plain = d.submit(JobSpec::single(good)).unwrap();
        let status = finish(&d, mixed);
        assert_eq!((status.finished, status.failed), (1, 1));
        assert_eq!(status.failures.len(), 1);
        assert_eq!(status.failures[0].name, "missing.bin");
        assert_eq!(
            chain(&*status.failures[0].error),
            format!("GET {missing}: HTTP status 404")
        );
        assert!(
            d.status(mixed, Detail::OnlyActive)
                .unwrap()
                .failures
                .is_empty()
        );
        finish(&d, plain);

        let all: Vec<JobId> = d.list(&JobFilter::all()).iter().map(|s| s.id).collect();
        assert_eq!(all, [mixed, plain]);
        let shards = d.list(&JobFilter::all().matching("^shards").unwrap());
        assert_eq!(shards.len(), 1);
        assert_eq!(
            (shards[0].id, shards[0].description.as_str()),
            (mixed, "shards: mixed")
        );
        // The default description says what the job is.
        let single = d.list(&JobFilter::all().matching("^single: http").unwrap());
        assert_eq!(single[0].id, plain);
        assert!(d.list(&JobFilter::all().only_running()).is_empty());
        let bad = JobFilter::all().matching("(").unwrap_err();
        assert!(
            bad.to_string().starts_with("bad job filter \"(\": "),
            "{bad}"
        );
    });
}

#[test]
fn bad_specs_are_refused_at_submit_with_typed_errors() {
    guard(|| {
        let dir = TestDir::new();
        let d = downloader(&dir, 1);
        let check = |spec: JobSpec, message: &str| {
            let err = d.submit(spec).unwrap_err();
            assert_eq!(chain(&err), message);
        };
        check(
            JobSpec::range("http://h/o-{1..}.bin"),
            "bad range template: malformed group \"{1..}\" at column 12: expected {START..END}, {START..END..STEP} or {a,b,...}",
        );
        check(
            JobSpec::range("ftp://h/o-{1..3}.bin"),
            "bad URL: unsupported URL \"ftp://h/o-1.bin\": the scheme must be http or https",
        );
        check(
            JobSpec::single("http://h/dir/"),
            "bad URL: URL \"http://h/dir/\" names no file (its path ends in '/'): give the object a name",
        );
        check(
            JobSpec::single_named("http://h/x", "../../etc/passwd"),
            "bad object name: object name \"../../etc/passwd\" has a \"..\" segment",
        );
        check(
            JobSpec::single("http://h/x").subdir("../up"),
            "bad object name: object name \"../up\" has a \"..\" segment",
        );
        check(JobSpec::multi(Vec::<String>::new()), "job has no objects");
        check(
            JobSpec::single("http://h/x").max_connections(0),
            "bad option max_connections: must be at least 1",
        );
        check(
            JobSpec::single("http://h/x").header("Bad Header", "v"),
            "bad option header: a header name must be printable ASCII without ':' or spaces",
        );
        // Objects that would land under one name: refused, naming the name and both.
        check(
            JobSpec::multi(["http://a/x/f.bin", "http://b/y/g.bin", "http://c/z/f.bin"]),
            "objects 0 and 2 of the job both land as f.bin",
        );
        check(
            JobSpec::range("http://h/{eu,us}/day-{1..3}/part.bin"),
            "objects 0 and 1 of the job both land as part.bin",
        );
        check(
            JobSpec::range("http://h/part.bin?shard={0..9}"),
            "objects 0 and 1 of the job both land as part.bin",
        );
        check(
            JobSpec::range("http://h/{a,b,a}.bin"),
            "bad range template: item \"a\" twice in list \"{a,b,a}\" at column 10",
        );
        check(
            JobSpec::single("http://h/x")
                .retry(haul::RetryPolicy::default())
                .sha256("../x", haul::Sha256Digest::of(b"")),
            "bad object name: object name \"../x\" has a \"..\" segment",
        );
        assert!(
            d.list(&JobFilter::all()).is_empty(),
            "refused jobs leave no trace"
        );
    });
}

#[test]
fn bad_names_inside_a_template_fail_only_their_objects() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 1);
        // "{ok,..}" expands to a good name and one that would escape the mountpath.
        let job = d
            .submit(JobSpec::range(origin.url("/n/{ok,..}?size=10")))
            .unwrap();
        let status = finish(&d, job);
        assert_eq!((status.finished, status.failed), (1, 1));
        assert!(chain(&*status.failures[0].error).contains("has a \"..\" segment"));
        assert_eq!(files_under(dir.path()), ["ok"]);
    });
}

#[test]
fn skip_existing_counts_skipped_objects_and_fetches_nothing_again() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 1);
        let spec = || {
            JobSpec::range(origin.url("/k/o-{0..9}.bin?size=100")).existing(haul::Existing::Skip)
        };
        assert_eq!(finish(&d, d.submit(spec()).unwrap()).finished, 10);
        std::fs::remove_file(dir.path().join("o-3.bin")).unwrap();
        origin.reset_stats();
        let again = finish(&d, d.submit(spec()).unwrap());
        assert_eq!((again.finished, again.skipped), (1, 9));
        assert_eq!(origin.stats().requests, 1);
    });
}

#[test]
fn a_rate_limited_job_still_lands_correct_bytes() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 2);
        let job = d
            .submit(JobSpec::range(origin.url("/t/o-{0..3}.bin?size=100000")).rate_limit(4 << 20))
            .unwrap();
        assert_eq!(finish(&d, job).finished, 4);
        for i in 0..4 {
            let bytes = std::fs::read(dir.path().join(format!("o-{i}.bin"))).unwrap();
            assert!(bytes == body(&format!("/t/o-{i}.bin"), 100000));
        }
    });
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn a_ten_million_name_job_is_accepted_and_aborted_with_flat_memory() {
    guard(|| {
        let origin = Origin::builder().object_size(100).start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 1);
        let before = rss_bytes();
        let job = d
            .submit(JobSpec::range(origin.url("/m/o-{0000000..9999999}.bin")))
            .unwrap();
        assert_eq!(d.status(job, Detail::All).unwrap().total, Some(10_000_000));
        assert!(wait_until(|| d
            .status(job, Detail::OnlyActive)
            .unwrap()
            .finished
            >= 100));
        let during = rss_bytes();
        d.abort(job).unwrap();
        let status = finish(&d, job);
        assert!(status.aborted);
        assert!(status.cancelled > 9_990_000, "{status:?}");
        // Ten million names materialised would take hundreds of MiB; the queue holds at most
        // a thousand. Other tests share this process, so allow them some room.
        let grown = during.saturating_sub(before);
        assert!(grown < 100 << 20, "RSS grew by {} MiB", grown >> 20);
    });
}

fn live_threads_named(prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm"))
            && comm.trim().starts_with(prefix)
        {
            names.push(comm.trim().to_owned());
        }
    }
    names
}

#[test]
fn dropping_a_downloader_mid_job_returns_with_every_thread_joined() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        // A unique mountpath name makes this downloader's threads recognisable.
        let d = Downloader::builder()
            .mountpath(dir.path().join("drp7"))
            .workers_per_target(3)
            .build()
            .unwrap();
        // Slow bodies: each read brings a little data, so a cancel is seen within one read.
        let job = d
            .submit(JobSpec::range(
                origin.url("/d/o-{00..99}.bin?size=10000000&rate=2000000"),
            ))
            .unwrap();
        assert!(wait_until(|| d
            .status(job, Detail::OnlyActive)
            .unwrap()
            .in_flight
            .len()
            == 3));
        assert_eq!(live_threads_named("haul-jog-drp7").len(), 3);
        drop(d);
        // Joined means exited; the kernel may list an exited thread in /proc for a moment
        // after the join returns, so wait for the listing, bounded by the guard.
        assert!(wait_until(|| live_threads_named("haul-jog-drp7").is_empty()));
        assert!(
            files_under(dir.path()).is_empty(),
            "{:?}",
            files_under(dir.path())
        );
    });
}

#[test]
fn shutdown_joins_and_reports_no_panics() {
    guard(|| {
        let dir = TestDir::new();
        let d = downloader(&dir, 4);
        d.shutdown().unwrap();
    });
}

#[test]
fn builder_errors_are_clear() {
    let err = Downloader::builder().build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "no target: give at least one output directory or bucket prefix"
    );
    let dir = TestDir::new();
    let err = Downloader::builder()
        .mountpath(dir.path())
        .workers_per_target(0)
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "workers_per_target must be at least 1");
    let err = Downloader::builder()
        .mountpath(dir.path())
        .mountpath(dir.path())
        .build()
        .unwrap_err();
    assert!(err.to_string().ends_with("given twice"), "{err}");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = Downloader::builder().mountpath(&file).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot open output directory {}", file.display())
    );
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Downloader>();
    send_sync::<JobStatus>();
    send_sync::<SubmitError>();
    send_sync::<JobError>();
}

#[test]
fn abort_and_drop_stop_transfers_whose_server_sends_nothing() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let patient = haul::HttpConfig::default()
            .response_timeout(Duration::from_secs(600))
            .stall(1, Duration::from_secs(600));
        let d = Downloader::builder()
            .mountpath(dir.path().join("stl5"))
            .workers_per_target(2)
            .http(patient)
            .build()
            .unwrap();
        let stalled = d
            .submit(JobSpec::range(
                origin.url("/st/o-{0..9}.bin?size=100000&stall_after=1000"),
            ))
            .unwrap();
        assert!(wait_until(|| {
            let s = d.status(stalled, Detail::OnlyActive).unwrap();
            s.in_flight.len() == 2 && s.in_flight.iter().all(|t| t.bytes_done == 1000)
        }));
        d.abort(stalled).unwrap();
        let status = finish(&d, stalled);
        assert_eq!(status.cancelled, 10);

        // A second stalled job, then drop the downloader with it in flight.
        let again = d
            .submit(JobSpec::range(
                origin.url("/st2/p-{0..9}.bin?size=100000&stall_after=1000"),
            ))
            .unwrap();
        assert!(wait_until(|| {
            let s = d.status(again, Detail::OnlyActive).unwrap();
            s.in_flight.len() == 2 && s.in_flight.iter().all(|t| t.bytes_done == 1000)
        }));
        drop(d);
        assert!(live_threads_named("haul-jog-stl5").is_empty());
        // Nothing is visible; each transfer that was under way kept its 1000 bytes.
        assert!(
            visible(dir.path()).is_empty(),
            "{:?}",
            files_under(dir.path())
        );
        let kept = kept(dir.path());
        assert_eq!(kept.len(), 4, "{kept:?}");
        for k in kept {
            let path = k.path.split('?').next().unwrap();
            assert!(k.bytes[..] == body(path, 100_000)[..1000], "{path}");
        }
    });
}

#[test]
fn job_headers_are_sent_with_every_request() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 1);
        let template = origin.url("/h/o-{0..4}.bin?size=10&need_header=x-token:s3cr3t");
        let without = finish(&d, d.submit(JobSpec::range(template.as_str())).unwrap());
        assert_eq!(without.failed, 5);
        assert!(chain(&*without.failures[0].error).ends_with("HTTP status 401"));
        let with = d
            .submit(JobSpec::range(template.as_str()).header("X-Token", "s3cr3t"))
            .unwrap();
        assert_eq!(finish(&d, with).finished, 5);
        // The header's value is a secret: Debug shows only its name.
        let debug = format!(
            "{:?}",
            JobSpec::single("http://h/x").header("X-Token", "s3cr3t")
        );
        assert!(
            debug.contains("X-Token") && !debug.contains("s3cr3t"),
            "{debug}"
        );
    });
}

#[test]
fn a_job_timeout_fails_requests_that_take_longer() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = downloader(&dir, 1);
        let job = d
            .submit(
                JobSpec::single(origin.url("/slow.bin?size=10&delay_ms=30000"))
                    .timeout(Duration::from_millis(200)),
            )
            .unwrap();
        let status = finish(&d, job);
        assert_eq!(status.failed, 1);
        let text = chain(&*status.failures[0].error);
        assert!(
            text.contains("request failed") && text.contains("timeout"),
            "{text}"
        );
        assert!(files_under(dir.path()).is_empty());
    });
}

#[test]
fn a_waiting_job_starts_when_the_active_one_learns_it_is_done_after_its_last_object() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let d = Downloader::builder()
            .mountpath(dir.path())
            .max_active_jobs(1)
            .build()
            .unwrap();
        // At its connection limit the first job is asked for its next object only after its
        // one object is done, and only then learns there is none.
        let first = d
            .submit(JobSpec::single(origin.url("/first.bin?size=1000")).max_connections(1))
            .unwrap();
        let second = d
            .submit(JobSpec::single(origin.url("/second.bin?size=1000")))
            .unwrap();
        assert_eq!(finish(&d, first).finished, 1);
        assert_eq!(
            finish(&d, second).finished,
            1,
            "the waiting job never started"
        );
    });
}
#[test]
fn a_job_of_many_failures_keeps_exact_counts_and_a_bounded_list() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new_fast();
        let d = downloader(&dir, 4);
        let spec = JobSpec::range(origin.url("/gone/o-{0000..1199}.bin?status=404"))
            .retry(haul::RetryPolicy::none());
        let job = d.submit(spec).unwrap();
        let status = finish(&d, job);
        assert_eq!(status.failed, 1200);
        assert_eq!(status.failures.len(), haul::MAX_KEPT_FAILURES);
        assert_eq!(
            status.failure_reasons.get("HTTP status 404"),
            Some(&1200),
            "{:?}",
            status.failure_reasons
        );
    });
}

#[test]
fn a_url_job_takes_name_patterns_but_refuses_size_and_age_bounds() {
    guard(|| {
        let dir = TestDir::new();
        let d = Downloader::builder().mountpath(dir.path()).build().unwrap();
        for select in [
            haul::KeySelection::new().min_size(1),
            haul::KeySelection::new().max_age(Duration::from_secs(60)),
        ] {
            let spec = JobSpec::range("http://127.0.0.1:9/o-{1..3}.bin").select(select);
            let err = d.submit(spec).unwrap_err();
            assert_eq!(
                err.to_string(),
                "bad option select: sizes and ages are known only from an S3 listing or local \
                 files: a URL job takes patterns only"
            );
        }
    });
}

#[test]
fn an_empty_work_directory_is_removed_when_the_downloader_stops_and_a_used_one_stays() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let work = dir.path().join(".haul-work");
        let d = Downloader::builder().mountpath(dir.path()).build().unwrap();
        assert!(work.is_dir(), "made when the mountpath opens");
        let job = d
            .submit(JobSpec::range(origin.url("/w/o-{1..3}.bin?size=100")))
            .unwrap();
        assert!(d.wait(job, Duration::from_secs(30)).unwrap());
        d.shutdown().unwrap();
        assert!(!work.exists(), "an empty .haul-work outlived the run");
        assert_eq!(files_under(dir.path()), ["o-1.bin", "o-2.bin", "o-3.bin"]);

        // Another run's work (a file it may resume) keeps the directory.
        let d = Downloader::builder().mountpath(dir.path()).build().unwrap();
        std::fs::write(work.join("someone-elses.part"), b"x").unwrap();
        drop(d);
        assert!(work.join("someone-elses.part").is_file());
    });
}
