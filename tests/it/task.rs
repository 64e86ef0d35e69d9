//! The one-object download task against the loopback origin.

use std::sync::Arc;
use std::time::Duration;

use haul::{CancelToken, DownloadError, HttpClient, Mountpath, ObjectName, ObjectTask, Progress};
use haul_origin::{Origin, body};

use crate::support::{TestDir, chain, files_under, guard, kept, visible, wait_until};

struct Fixture {
    origin: Origin,
    client: HttpClient,
    dir: TestDir,
    mountpath: Mountpath,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TestDir::new();
        Fixture {
            origin: Origin::start().unwrap(),
            client: HttpClient::default(),
            mountpath: Mountpath::new(dir.path()).unwrap(),
            dir,
        }
    }

    /// One attempt, no retries: what a single GET does.
    fn get(&self, path_and_query: &str) -> (Result<haul::Landed, DownloadError>, Progress) {
        let task = ObjectTask::from_url(self.origin.url(path_and_query))
            .unwrap()
            .retry(haul::RetryPolicy::none());
        self.run(&task)
    }

    fn run(&self, task: &ObjectTask) -> (Result<haul::Landed, DownloadError>, Progress) {
        let progress = Progress::new();
        let result = haul::download(
            &self.client,
            task,
            &self.mountpath,
            &progress,
            &CancelToken::new(),
        );
        (result, progress)
    }

    /// Files in the mountpath, work directory included.
    fn files(&self) -> Vec<String> {
        files_under(self.dir.path())
    }

    /// The work file an interrupted transfer kept for a rerun (with its sidecar), and its
    /// bytes; `None` when the work directory is empty.
    fn kept(&self) -> Option<Vec<u8>> {
        kept_in(self.dir.path())
    }
}

/// The one work file kept under `dir`, and its bytes.
fn kept_in(dir: &std::path::Path) -> Option<Vec<u8>> {
    let mut kept = kept(dir);
    assert!(kept.len() <= 1, "{kept:?}");
    kept.pop().map(|k| k.bytes)
}

#[test]
fn content_matches_byte_for_byte_and_progress_counts_every_byte() {
    guard(|| {
        let fx = Fixture::new();
        for size in [0u64, 1, 4095, 65536, 256 * 1024 + 7, 3 << 20] {
            let (landed, progress) = fx.get(&format!("/objs/o-{size}.bin?size={size}"));
            let landed = landed.unwrap_or_else(|e| panic!("size {size}: {}", chain(&e)));
            assert_eq!(landed.bytes, size);
            assert_eq!(progress.done(), size);
            assert_eq!(progress.total(), Some(size));
            let on_disk = std::fs::read(&landed.path).unwrap();
            assert!(
                on_disk == body(&format!("/objs/o-{size}.bin"), size),
                "size {size} differs"
            );
            assert!(landed.etag.is_some());
        }
        assert_eq!(fx.files().len(), 6, "{:?}", fx.files());
        // Keep-alive: one connection served all six.
        assert_eq!(fx.origin.stats().connections, 1);
    });
}

#[test]
fn a_404_names_the_url_and_status_and_leaves_no_file() {
    guard(|| {
        let fx = Fixture::new();
        let (result, _) = fx.get("/missing.bin?status=404");
        let err = result.expect_err("404 is an error");
        assert!(
            matches!(err, DownloadError::Status { status: 404, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "GET {}: HTTP status 404",
                fx.origin.url("/missing.bin?status=404")
            )
        );
        assert!(fx.files().is_empty(), "{:?}", fx.files());
    });
}

#[test]
fn a_lying_content_length_is_an_error_and_leaves_no_object() {
    guard(|| {
        let fx = Fixture::new();
        let (result, _) = fx.get("/lie.bin?size=100000&extra_length=10");
        let err = result.expect_err("short body is an error");
        let text = chain(&err);
        assert!(
            matches!(
                err,
                DownloadError::Body {
                    received: 100000,
                    ..
                } | DownloadError::Length { .. }
            ),
            "{text}"
        );
        // A body cut short of what the server announced may be resumed by a rerun (its
        // bytes are the object's); nothing is visible.
        assert!(visible(fx.dir.path()).is_empty(), "{:?}", fx.files());
    });
}

#[test]
fn fin_mid_body_is_an_error_that_keeps_the_bytes_for_a_rerun_and_shows_no_object() {
    guard(|| {
        let fx = Fixture::new();
        let (result, progress) = fx.get("/fin.bin?size=500000&drop_after=123456");
        let err = result.expect_err("cut body is an error");
        assert!(
            matches!(
                err,
                DownloadError::Body {
                    received: 123456,
                    ..
                }
            ),
            "{}",
            chain(&err)
        );
        assert!(
            err.to_string()
                .contains("body broke off after 123456 bytes"),
            "{err}"
        );
        assert_eq!(progress.done(), 123456);
        assert!(visible(fx.dir.path()).is_empty(), "{:?}", fx.files());
        let kept = fx.kept().expect("the bytes that came are kept");
        assert!(kept[..] == body("/fin.bin", 500000)[..123456]);
    });
}

#[test]
fn rst_mid_body_is_an_error_and_shows_no_object() {
    guard(|| {
        let fx = Fixture::new();
        let (result, _) = fx.get("/rst.bin?size=500000&reset_after=200000");
        let err = result.expect_err("reset body is an error");
        assert!(matches!(err, DownloadError::Body { .. }), "{}", chain(&err));
        assert!(visible(fx.dir.path()).is_empty(), "{:?}", fx.files());
        if let Some(kept) = fx.kept() {
            assert!(kept[..] == body("/rst.bin", 500000)[..kept.len()]);
        }
    });
}

#[test]
fn bodies_without_length_or_chunked_are_verified_whole() {
    guard(|| {
        let fx = Fixture::new();
        for query in ["no_length=1", "chunked=1"] {
            let (landed, progress) = fx.get(&format!("/nl.bin?size=300001&{query}"));
            let landed = landed.unwrap_or_else(|e| panic!("{query}: {}", chain(&e)));
            assert_eq!(landed.bytes, 300001);
            assert_eq!(progress.total(), None, "{query}");
            assert!(
                std::fs::read(&landed.path).unwrap() == body("/nl.bin", 300001),
                "{query}"
            );
        }
    });
}

#[test]
fn a_dead_server_is_a_request_error() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let addr = origin.addr();
        drop(origin);
        let task = ObjectTask::from_url(format!("http://{addr}/gone.bin")).unwrap();
        let dir = TestDir::new();
        let mp = Mountpath::new(dir.path()).unwrap();
        let err =
            crate::download_into(&HttpClient::default(), &task, &mp).expect_err("nobody listens");
        assert!(
            matches!(err, DownloadError::Request { .. }),
            "{}",
            chain(&err)
        );
        assert!(
            err.to_string()
                .starts_with(&format!("GET http://{addr}/gone.bin: request failed"))
        );
        assert!(files_under(dir.path()).is_empty());
    });
}

#[test]
fn a_cancelled_transfer_keeps_its_bytes_and_the_next_download_fetches_only_the_rest() {
    guard(|| {
        let fx = Arc::new(Fixture::new());
        let cancel = CancelToken::new();
        let progress = Arc::new(Progress::new());
        let path = "/held.bin?size=1000000&gate_after=300000";
        let worker = {
            let (fx, cancel, progress) = (Arc::clone(&fx), cancel.clone(), Arc::clone(&progress));
            std::thread::spawn(move || {
                let task = ObjectTask::from_url(fx.origin.url(path)).unwrap();
                haul::download(&fx.client, &task, &fx.mountpath, &progress, &cancel)
            })
        };
        assert!(
            fx.origin.gate().wait_arrivals(1, Duration::from_secs(30)),
            "never reached the gate"
        );
        // The server holds the body at byte 300000; wait until the client has all of those
        // (in its write buffer: a 1 MB object's buffer holds them all).
        assert!(
            wait_until(|| progress.done() == 300000),
            "client stuck at {} bytes",
            progress.done()
        );
        cancel.cancel();
        let err = worker.join().unwrap().expect_err("cancelled");
        assert!(err.is_cancelled(), "{}", chain(&err));
        // No object is visible: its bytes wait in the work directory, with the sidecar
        // that pins them to the object's version.
        let files = fx.files();
        assert!(
            files.iter().all(|f| f.starts_with(".haul-work/")),
            "{files:?}"
        );
        let kept = fx.kept().expect("kept");
        assert!(
            kept[..] == body("/held.bin", 1000000)[..300000],
            "kept {} bytes, not the first 300000 of the object",
            kept.len()
        );

        fx.origin.gate().release();
        assert!(wait_until(|| fx.origin.stats().active == 0));
        fx.origin.reset_stats();
        let (landed, _) = fx.get(path);
        let landed = landed.unwrap_or_else(|e| panic!("{}", chain(&e)));
        assert_eq!((landed.bytes, landed.resumed), (1000000, 300000));
        assert!(std::fs::read(&landed.path).unwrap() == body("/held.bin", 1000000));
        assert_eq!(
            fx.origin.stats().body_bytes,
            700000,
            "only the rest was fetched"
        );
        assert_eq!(fx.files(), vec!["held.bin".to_owned()]);
    });
}

#[test]
fn a_cancelled_token_sends_no_request() {
    guard(|| {
        let fx = Fixture::new();
        let cancel = CancelToken::new();
        cancel.cancel();
        let task = ObjectTask::from_url(fx.origin.url("/x.bin")).unwrap();
        let err = haul::download(&fx.client, &task, &fx.mountpath, &Progress::new(), &cancel)
            .unwrap_err();
        assert!(err.is_cancelled());
        assert_eq!(fx.origin.stats().requests, 0);
    });
}

#[test]
fn objects_land_in_subdirectories_and_replace_old_versions() {
    guard(|| {
        let fx = Fixture::new();
        let name = ObjectName::new("x.bin").unwrap().under("job/7").unwrap();
        let task = ObjectTask::new(fx.origin.url("/a.bin?size=10"), name.clone());
        let first = crate::download_into(&fx.client, &task, &fx.mountpath).unwrap();
        assert_eq!(first.path, fx.dir.path().join("job/7/x.bin"));
        let task = ObjectTask::new(fx.origin.url("/b.bin?size=20"), name);
        let second = crate::download_into(&fx.client, &task, &fx.mountpath).unwrap();
        assert_eq!(std::fs::read(&second.path).unwrap(), body("/b.bin", 20));
        assert_eq!(fx.files(), ["job/7/x.bin"]);
    });
}

#[test]
fn a_bad_url_is_refused_before_any_request() {
    guard(|| {
        let fx = Fixture::new();
        let task = ObjectTask::new("ftp://127.0.0.1/x", ObjectName::new("x").unwrap());
        let err = crate::download_into(&fx.client, &task, &fx.mountpath).unwrap_err();
        assert_eq!(
            chain(&err),
            "bad URL: unsupported URL \"ftp://127.0.0.1/x\": the scheme must be http or https"
        );
        assert_eq!(fx.origin.stats().requests, 0);
    });
}

#[test]
fn errors_and_handles_cross_threads() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    send_sync_static::<DownloadError>();
    send_sync_static::<haul::TemplateError>();
    send_sync_static::<haul::UrlError>();
    send_sync_static::<HttpClient>();
    send_sync_static::<Mountpath>();
    send_sync_static::<CancelToken>();
    send_sync_static::<Progress>();
    send_sync_static::<Origin>();
    // Errors travel through channels by value: keep them small.
    assert!(
        std::mem::size_of::<DownloadError>() <= 80,
        "{}",
        std::mem::size_of::<DownloadError>()
    );
}

/// A client whose own timeouts are far longer than the hang guard: if cancellation relied on
/// them, these tests would fail by hanging.
fn patient_client() -> HttpClient {
    HttpClient::new(
        haul::HttpConfig::default()
            .response_timeout(Duration::from_secs(600))
            .stall(1, Duration::from_secs(600)),
    )
}

#[test]
fn cancel_stops_a_transfer_whose_server_sends_nothing_more() {
    guard(|| {
        let origin = Arc::new(Origin::start().unwrap());
        let dir = Arc::new(TestDir::new());
        let cancel = CancelToken::new();
        let progress = Arc::new(Progress::new());
        let worker = {
            let (origin, dir, cancel, progress) = (
                Arc::clone(&origin),
                Arc::clone(&dir),
                cancel.clone(),
                Arc::clone(&progress),
            );
            std::thread::spawn(move || {
                let mp = Mountpath::new(dir.path()).unwrap();
                let task =
                    ObjectTask::from_url(origin.url("/stall.bin?size=1000000&stall_after=4000"))
                        .unwrap();
                haul::download(&patient_client(), &task, &mp, &progress, &cancel)
            })
        };
        assert!(wait_until(|| progress.done() == 4000));
        cancel.cancel(); // the server never sends another byte
        let err = worker.join().unwrap().expect_err("cancelled");
        assert!(err.is_cancelled(), "{}", chain(&err));
        assert!(
            visible(dir.path()).is_empty(),
            "{:?}",
            files_under(dir.path())
        );
        let kept = kept_in(dir.path()).expect("kept for a rerun");
        assert!(kept[..] == body("/stall.bin", 1000000)[..4000]);
    });
}

#[test]
fn cancel_stops_a_request_still_waiting_for_headers() {
    guard(|| {
        let origin = Arc::new(Origin::start().unwrap());
        let dir = Arc::new(TestDir::new());
        let cancel = CancelToken::new();
        let worker = {
            let (origin, dir, cancel) = (Arc::clone(&origin), Arc::clone(&dir), cancel.clone());
            std::thread::spawn(move || {
                let mp = Mountpath::new(dir.path()).unwrap();
                let task = ObjectTask::from_url(origin.url("/slow.bin?delay_ms=600000")).unwrap();
                haul::download(&patient_client(), &task, &mp, &Progress::new(), &cancel)
            })
        };
        assert!(wait_until(|| origin.stats().active == 1));
        cancel.cancel();
        let err = worker.join().unwrap().expect_err("cancelled");
        assert!(err.is_cancelled(), "{}", chain(&err));
        assert!(files_under(dir.path()).is_empty());
    });
}

#[test]
fn download_to_a_writer_resumes_a_cut_body_and_refuses_what_it_cannot_take_back() {
    guard(|| {
        let fx = Fixture::new();
        let quick = haul::RetryPolicy::default().initial_backoff(Duration::from_millis(1));
        let get = |query: &str, sha: Option<haul::Sha256Digest>| {
            let mut task = ObjectTask::from_url(fx.origin.url(query))
                .unwrap()
                .retry(quick);
            if let Some(sha) = sha {
                task = task.sha256(sha);
            }
            let mut out = Vec::new();
            let result = haul::download_to(
                &fx.client,
                &task,
                &mut out,
                &Progress::new(),
                &CancelToken::new(),
            );
            (result, out)
        };
        // Cut once: the rest is asked for with a range, and the stream is whole.
        let (n, out) = get("/s.bin?size=300000&drop_after=100000&faults_first=1", None);
        assert_eq!(n.unwrap(), 300_000);
        assert!(out == body("/s.bin", 300_000));
        assert_eq!(fx.origin.stats().status_count(206), 1);

        // Cut where the server then ignores ranges: written bytes cannot be taken back.
        let (err, out) = get(
            "/n.bin?size=300000&drop_after=100000&faults_first=1&no_ranges=1",
            None,
        );
        let text = chain(&err.unwrap_err());
        assert!(
            text.contains("the server ignored the range")
                && text.contains("100000 bytes were written already and cannot be taken back"),
            "{text}"
        );
        assert_eq!(out.len(), 100_000);

        // A digest is checked over the whole stream.
        let wrong = haul::Sha256Digest::of(b"x");
        let (err, _) = get("/d.bin?size=1000", Some(wrong));
        assert!(chain(&err.unwrap_err()).contains("sha256 mismatch"));
        let right = haul::Sha256Digest::of(&body("/d.bin", 1000));
        assert_eq!(get("/d.bin?size=1000", Some(right)).0.unwrap(), 1000);
    });
}
