//! What a later run takes over from an interrupted one: a split object's pieces, kept on a
//! cancellation and recorded as they finish (for a crash), fetched again only where missing.

use std::sync::Arc;
use std::time::Duration;

use haul::{CancelToken, HttpClient, Mountpath, ObjectTask, PartsPolicy, Progress};
use haul_origin::{Origin, body, versioned_body};

use crate::support::{TestDir, chain, files_under, guard, kept, visible, wait_until};

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(30);

/// A download of `url` into `mountpath` on a thread of its own, cancelled by `cancel`.
fn spawn_download(
    url: String,
    parts: PartsPolicy,
    mountpath: Arc<Mountpath>,
    progress: Arc<Progress>,
    cancel: CancelToken,
) -> std::thread::JoinHandle<Result<haul::Landed, haul::DownloadError>> {
    std::thread::spawn(move || {
        let task = ObjectTask::from_url(url).unwrap().parts(parts);
        haul::download(
            &HttpClient::default(),
            &task,
            &mountpath,
            &progress,
            &cancel,
        )
    })
}

fn download(url: &str, parts: PartsPolicy, mountpath: &Mountpath) -> haul::Landed {
    let task = ObjectTask::from_url(url).unwrap().parts(parts);
    let landed = haul::download(
        &HttpClient::default(),
        &task,
        mountpath,
        &Progress::new(),
        &CancelToken::new(),
    );
    landed.unwrap_or_else(|e| panic!("{}", chain(&e)))
}

/// Objects above 1 MiB split: the opening 1 MiB, then 256 KiB parts, over 4 connections.
fn four_parts() -> PartsPolicy {
    PartsPolicy::new(4)
        .min_object_bytes(MIB)
        .part_bytes(256 << 10)
}

/// Starts a 5 MiB split download whose four responses the gate holds at 100,000 bytes
/// each, and cancels it there: its work file keeps those four pieces.
fn cancelled_split(origin: &Origin, dir: &TestDir, path: &str) -> Arc<Mountpath> {
    let mountpath = Arc::new(Mountpath::new(dir.path()).unwrap());
    let (progress, cancel) = (Arc::new(Progress::new()), CancelToken::new());
    let worker = spawn_download(
        origin.url(&format!("{path}?size={}&gate_after=100000", 5 * MIB)),
        four_parts(),
        Arc::clone(&mountpath),
        Arc::clone(&progress),
        cancel.clone(),
    );
    assert!(origin.gate().wait_arrivals(4, WAIT), "not split in four");
    assert!(
        wait_until(|| progress.done() == 400_000),
        "{}",
        progress.done()
    );
    cancel.cancel();
    let error = worker.join().unwrap().expect_err("cancelled");
    assert!(error.is_cancelled(), "{}", chain(&error));
    origin.gate().release();
    assert!(wait_until(|| origin.stats().active == 0));
    origin.reset_stats();
    mountpath
}

#[test]
fn a_cancelled_split_object_keeps_its_pieces_and_a_rerun_fetches_only_the_holes() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let mountpath = cancelled_split(&origin, &dir, "/split.bin");
        assert!(
            visible(dir.path()).is_empty(),
            "{:?}",
            files_under(dir.path())
        );
        let kept = kept(dir.path());
        assert_eq!(kept.len(), 1, "{kept:?}");
        let whole = body("/split.bin", 5 * MIB);
        // Sized to the object, with each connection's first 100,000 bytes in place.
        assert_eq!(kept[0].bytes.len() as u64, 5 * MIB);
        let starts = [0, MIB, MIB + (256 << 10), MIB + (512 << 10)];
        for start in starts {
            let piece = start as usize..start as usize + 100_000;
            assert!(
                kept[0].bytes[piece.clone()] == whole[piece],
                "piece at {start}"
            );
            let line = format!("have {start}-{}", start + 100_000);
            assert!(kept[0].sidecar.contains(&line), "{}", kept[0].sidecar);
        }

        let url = origin.url(&format!("/split.bin?size={}&gate_after=100000", 5 * MIB));
        let landed = download(&url, four_parts(), &mountpath);
        assert_eq!((landed.bytes, landed.resumed), (5 * MIB, 400_000));
        assert!(std::fs::read(&landed.path).unwrap() == whole);
        assert_eq!(origin.stats().body_bytes, 5 * MIB - 400_000);
        assert_eq!(files_under(dir.path()), ["split.bin"]);
    });
}

#[test]
fn a_split_object_that_changed_since_its_pieces_were_kept_is_fetched_again_whole() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let mountpath = cancelled_split(&origin, &dir, "/changing.bin");
        assert_eq!(kept(dir.path()).len(), 1);
        let version = origin.replace_objects();

        let url = origin.url(&format!("/changing.bin?size={}", 5 * MIB));
        let landed = download(&url, four_parts(), &mountpath);
        let new = versioned_body("/changing.bin", 5 * MIB, version);
        assert!(
            std::fs::read(&landed.path).unwrap() == new,
            "not the new version alone"
        );
        assert!(origin.stats().body_bytes >= 5 * MIB);
        assert_eq!(files_under(dir.path()), ["changing.bin"]);
    });
}

/// A crash keeps what the sidecar says: each part is recorded as it finishes, so a run
/// after a crash (here: the work file and sidecar copied while the transfer is under way,
/// as a killed process leaves them) fetches only the parts that were not finished.
#[test]
fn a_split_objects_finished_parts_survive_a_crash() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let mountpath = Arc::new(Mountpath::new(dir.path().join("running")).unwrap());
        // Part 0 is the first 2 MiB, held at the gate halfway; the last 1 MiB comes in four
        // parts of 256 KiB on the other connection, and finishes.
        let parts = PartsPolicy::new(2)
            .min_object_bytes(2 * MIB)
            .part_bytes(256 << 10);
        let url = origin.url(&format!("/crash.bin?size={}&gate_after={MIB}", 3 * MIB));
        let (progress, cancel) = (Arc::new(Progress::new()), CancelToken::new());
        let worker = spawn_download(
            url.clone(),
            parts,
            Arc::clone(&mountpath),
            Arc::clone(&progress),
            cancel.clone(),
        );
        assert!(origin.gate().wait_arrivals(1, WAIT));
        let name = haul::ObjectName::new("crash.bin").unwrap();
        let work = mountpath.work_path(&name);
        let mut meta = work.clone().into_os_string();
        meta.push(".meta");
        let line = format!("have {}-{}", 2 * MIB, 3 * MIB);
        assert!(
            wait_until(|| std::fs::read_to_string(&meta).is_ok_and(|t| t.contains(&line))),
            "the finished parts were never recorded: {:?}",
            std::fs::read_to_string(&meta)
        );
        // What a crash leaves now, in another output directory.
        let after_crash = Mountpath::new(dir.path().join("after")).unwrap();
        std::fs::copy(&work, after_crash.work_path(&name)).unwrap();
        let mut copied = after_crash.work_path(&name).into_os_string();
        copied.push(".meta");
        std::fs::copy(&meta, &copied).unwrap();
        cancel.cancel();
        let _ = worker.join().unwrap();
        origin.gate().release();
        assert!(wait_until(|| origin.stats().active == 0));
        origin.reset_stats();

        let landed = download(&url, parts, &after_crash);
        assert_eq!((landed.bytes, landed.resumed), (3 * MIB, MIB));
        assert!(std::fs::read(&landed.path).unwrap() == body("/crash.bin", 3 * MIB));
        assert_eq!(origin.stats().body_bytes, 2 * MIB, "only part 0 again");
    });
}
