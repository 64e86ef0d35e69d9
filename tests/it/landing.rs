//! Where objects land: a work file per transfer, locked until it is renamed into place, and
//! nothing written through a symbolic link someone planted.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use haul::origin::{Origin, body};
use haul::{CancelToken, HttpClient, Mountpath, ObjectName, ObjectTask, Progress};

use crate::support::{TestDir, chain, guard};

fn download(
    client: &HttpClient,
    url: &str,
    mountpath: &Mountpath,
) -> Result<haul::Landed, haul::DownloadError> {
    let task = ObjectTask::from_url(url).unwrap();
    haul::download(
        client,
        &task,
        mountpath,
        &Progress::new(),
        &CancelToken::new(),
    )
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

/// The work file's name for `name`: fixed per name (so a run after a crash finds it), as
/// `Mountpath` makes it, which is what makes it plantable.
fn work_file_of(mountpath: &Mountpath, name: &str) -> std::path::PathBuf {
    let hash = haul::hrw::hash(ObjectName::new(name).unwrap().as_str().as_bytes());
    mountpath.work_dir().join(format!("{hash:016x}.part"))
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
        let error = haul::download(
            &client,
            &task,
            &mountpath,
            &Progress::new(),
            &CancelToken::new(),
        )
        .unwrap_err();
        let text = chain(&error);
        assert!(text.contains("symbolic link"), "{text}");
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
