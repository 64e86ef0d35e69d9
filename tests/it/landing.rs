//! Where objects land: a work file per transfer, locked until it is renamed into place, and
//! nothing written through a symbolic link someone planted.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use haul::{HttpClient, Mountpath, ObjectName, ObjectTask};
use haul_origin::{Origin, body};

use crate::support::{TestDir, chain, guard};

fn download(
    client: &HttpClient,
    url: &str,
    mountpath: &Mountpath,
) -> Result<haul::Landed, haul::DownloadError> {
    let task = ObjectTask::from_url(url).unwrap();
    crate::download_into(client, &task, mountpath)
}

#[test]
fn transfers_of_one_name_at_once_never_show_a_partial_file() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new_fast();
        let mountpath = Arc::new(Mountpath::new(dir.path()).unwrap());
        let client = HttpClient::default();
        let url = origin.url("/same.bin?size=65536");
        let landed = dir.path().join("same.bin");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A reader looks at the landed file the whole time: it is absent, or whole.
        let reader = std::thread::spawn({
            let (landed, done) = (landed.clone(), Arc::clone(&done));
            move || {
                let expected = body("/same.bin", 65536);
                let mut looked = 0u64;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(bytes) = std::fs::read(&landed) {
                        assert!(
                            bytes == expected,
                            "a reader saw the landed file with {} bytes",
                            bytes.len()
                        );
                        looked += 1;
                    }
                }
                looked
            }
        });
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (mountpath, client, url) =
                    (Arc::clone(&mountpath), client.clone(), url.clone());
                std::thread::spawn(move || {
                    for round in 0..150 {
                        if let Err(e) = download(&client, &url, &mountpath) {
                            panic!("round {round}: {}", chain(&e));
                        }
                    }
                })
            })
            .collect();
        let written: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let looked = reader.join();
        for result in written {
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        }
        assert!(looked.unwrap() > 0, "the reader never saw the file");
        let work: Vec<_> = std::fs::read_dir(dir.path().join(".haul-work"))
            .unwrap()
            .collect();
        assert!(work.is_empty(), "work files remain: {work:?}");
    });
}

/// The work file's name for `name`: fixed per name (so a run after a crash finds it),
/// which is what makes it plantable.
fn work_file_of(mountpath: &Mountpath, name: &str) -> std::path::PathBuf {
    mountpath.work_path(&ObjectName::new(name).unwrap())
}

#[test]
fn a_symlink_planted_at_the_work_file_is_never_written_through() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let outside = TestDir::new();
        let victim = outside.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        let mountpath = Mountpath::new(dir.path().join("mp")).unwrap();
        symlink(&victim, work_file_of(&mountpath, "o.bin")).unwrap();

        let client = HttpClient::default();
        let landed = download(&client, &origin.url("/o.bin?size=5000"), &mountpath).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let meta = std::fs::symlink_metadata(&landed.path).unwrap();
        assert!(meta.file_type().is_file(), "the landed name is {meta:?}");
        assert!(std::fs::read(&landed.path).unwrap() == body("/o.bin", 5000));
    });
}

#[test]
fn a_symlinked_directory_inside_a_mountpath_is_never_landed_through() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let outside = TestDir::new();
        let mountpath = Mountpath::new(dir.path()).unwrap();
        // `sub` points out of the mountpath: `sub/o.bin` would land outside.
        symlink(outside.path(), dir.path().join("sub")).unwrap();
        let client = HttpClient::default();
        let task = ObjectTask::new(
            origin.url("/o.bin?size=100"),
            ObjectName::new("sub/o.bin").unwrap(),
        );
        let error = crate::download_into(&client, &task, &mountpath).unwrap_err();
        let text = chain(&error);
        assert!(
            text.contains("a symbolic link inside the output directory"),
            "{text}"
        );
        assert!(!outside.path().join("o.bin").exists(), "it landed outside");
        assert_no_entries(mountpath.work_dir());
    });
}

#[test]
fn a_work_directory_that_is_a_symlink_is_refused() {
    guard(|| {
        let dir = TestDir::new();
        let outside = TestDir::new();
        std::fs::create_dir_all(dir.path().join("mp")).unwrap();
        symlink(outside.path(), dir.path().join("mp/.haul-work")).unwrap();
        let error = Mountpath::new(dir.path().join("mp")).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
    });
}

#[track_caller]
fn assert_no_entries(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(left.is_empty(), "{} holds {left:?}", dir.display());
}

/// `text` with the characters a query value cannot hold percent-encoded.
fn encoded(text: &str) -> String {
    text.replace('%', "%25")
        .replace('?', "%3F")
        .replace('&', "%26")
        .replace('=', "%3D")
}

#[test]
fn a_job_header_follows_a_redirect_only_within_its_origin() {
    guard(|| {
        let (here, elsewhere) = (Origin::start().unwrap(), Origin::start().unwrap());
        let dir = TestDir::new();
        let mountpath = Mountpath::new(dir.path()).unwrap();
        let client = HttpClient::default();
        let fetch = |url: String| {
            let task = ObjectTask::from_url(url)
                .unwrap()
                .header("X-Secret", "s3cr3t")
                .retry(haul::RetryPolicy::none());
            crate::download_into(&client, &task, &mountpath)
        };
        // Within the origin, the header goes along (the target demands it).
        let target = "/kept.bin?size=100&need_header=x-secret:s3cr3t";
        let landed = fetch(here.url(&format!("/a.bin?redirect={}", encoded(target))));
        let landed = landed.unwrap_or_else(|e| panic!("{}", chain(&e)));
        assert!(std::fs::read(landed.path).unwrap() == body("/kept.bin", 100));
        // To another origin, it does not (the target refuses it).
        let target = elsewhere.url("/other.bin?size=100&refuse_header=x-secret");
        let landed = fetch(here.url(&format!("/b.bin?redirect={}", encoded(&target))));
        let landed = landed.unwrap_or_else(|e| panic!("{}", chain(&e)));
        assert!(std::fs::read(landed.path).unwrap() == body("/other.bin", 100));
        assert_eq!(elsewhere.stats().status_count(400), 0);
    });
}

#[test]
fn opening_a_mountpath_removes_what_crashed_runs_left_that_nothing_can_resume() {
    guard(|| {
        let dir = TestDir::new();
        let work = dir.path().join(".haul-work");
        std::fs::create_dir_all(work.join("sync")).unwrap();
        let plant = |name: &str, bytes: &[u8]| std::fs::write(work.join(name), bytes).unwrap();
        // A spare work file (another transfer of the name had the usual one), a split
        // object's file with holes (no sidecar), a sidecar whose file is gone: none can be
        // resumed. A work file with its sidecar can; one another process holds is in use.
        plant("00000000000000aa-4242-0.part", b"spare");
        plant("00000000000000bb.part", b"split, no sidecar");
        plant("00000000000000cc.part.meta", b"source x\n");
        plant("00000000000000dd.part", b"resumable");
        plant(
            "00000000000000dd.part.meta",
            b"source http://h/d\netag \"e\"\n",
        );
        plant("00000000000000ee-4242-1.part", b"in use");
        let held = std::fs::File::options()
            .write(true)
            .open(work.join("00000000000000ee-4242-1.part"))
            .unwrap();
        held.lock().unwrap();
        plant("sync/0000000000000001.tsv", b"haul-sync 1 x\n");

        Mountpath::new(dir.path()).unwrap();
        let mut left: Vec<String> = crate::support::files_under(&work);
        left.sort();
        assert_eq!(
            left,
            [
                "00000000000000dd.part",
                "00000000000000dd.part.meta",
                "00000000000000ee-4242-1.part",
                "sync/0000000000000001.tsv",
            ]
        );
        drop(held);
    });
}
