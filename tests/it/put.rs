//! Local files into S3 targets (`JobSpec::local`): a tree lands under the prefix by relative
//! path, whole (multipart above the part size, with a full-object checksum), a rerun uploads
//! only what changed, and a file that changes while it is read is not stored.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use haul::{Bucket, Detail, Downloader, Existing, Fetcher, JobSpec, JobStatus, S3Target};

use crate::sink::finish;
use crate::support::s3::S3Server;
use crate::support::{TestDir, chain, guard_for, wait_until};

const MIB: usize = 1 << 20;

fn uploader(bucket: &Bucket, prefix: &str) -> Downloader {
    Downloader::builder()
        .s3_target(S3Target::new(bucket, prefix).part_size(5 << 20))
        .workers_per_target(4)
        .build()
        .unwrap()
}

/// The job's failures (see [`crate::sink::failures`]), sorted.
fn failures(status: &JobStatus) -> Vec<String> {
    let mut out = crate::sink::failures(status);
    out.sort();
    out
}

/// Every key under `prefix` with its bytes, read back from the store.
fn stored(bucket: &Bucket, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let keys: Vec<String> = bucket.list(prefix).map(|o| o.unwrap().key).collect();
    let fetcher = Fetcher::builder()
        .workers(2)
        .memory_budget(64 << 20)
        .build()
        .unwrap();
    let objects = fetcher.fetch(bucket, keys.clone());
    keys.into_iter()
        .zip(objects)
        .map(|(key, object)| {
            let mut bytes = Vec::new();
            object
                .unwrap_or_else(|e| panic!("{key}: {}", chain(&e)))
                .into_reader()
                .read_to_end(&mut bytes)
                .unwrap();
            (key, bytes)
        })
        .collect()
}

fn write(root: &Path, name: &str, bytes: &[u8]) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `n` bytes that differ from offset to offset and from `seed` to `seed`.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

#[test]
fn a_tree_lands_under_the_prefix_by_relative_path_and_links_are_not_followed() {
    guard_for(Duration::from_secs(120), || {
        let server = S3Server::start(&["uploads"]);
        let bucket = server.bucket("uploads");
        let dir = TestDir::new();
        let tree = dir.path().join("tree");
        let files = [
            ("a.txt", b"alpha".to_vec()),
            ("empty", Vec::new()),
            ("sub/b.bin", pattern(70_000, 1)),
            ("sub/deeper/c.bin", pattern(3, 2)),
            // Above the 5 MiB part size: a multipart upload of three parts.
            ("large.bin", pattern(12 * MIB + 5, 3)),
        ];
        for (name, bytes) in &files {
            write(&tree, name, bytes);
        }
        let outside = dir.path().join("secret");
        std::fs::write(&outside, b"not to be uploaded").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), tree.join("sub/loop")).unwrap();
        // A file given by path lands under its file name.
        let single = dir.path().join("single.dat");
        std::fs::write(&single, b"one file").unwrap();

        let up = uploader(&bucket, "ds");
        let status = finish(&up, JobSpec::local([tree.clone(), single.clone()]));
        assert_eq!(failures(&status), Vec::<String>::new());
        assert_eq!((status.finished, status.total), (6, Some(6)));

        let mut want: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(name, bytes)| (format!("ds/{name}"), bytes.clone()))
            .chain([("ds/single.dat".to_owned(), b"one file".to_vec())])
            .collect();
        want.sort();
        let got = stored(&bucket, "ds/");
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want));
        assert!(got == want, "the stored bytes differ from the files'");
        if server.is_local() {
            // Later readers can verify what haul wrote, multipart or not.
            for (key, bytes) in [("ds/large.bin", &files[4].1), ("ds/a.txt", &files[0].1)] {
                assert_eq!(
                    server.stored_checksum("uploads", key, "crc64nvme"),
                    Some(crate::support::s3::checksum_of("crc64nvme", bytes)),
                    "{key}"
                );
            }
        }
    });
}

#[test]
fn a_rerun_uploads_only_the_files_that_changed() {
    guard_for(Duration::from_secs(120), || {
        let server = S3Server::start(&["rerun"]);
        let bucket = server.bucket("rerun");
        let dir = TestDir::new();
        for i in 0..8u8 {
            write(dir.path(), &format!("f{i}.bin"), &pattern(40_000, i));
        }
        write(dir.path(), "big.bin", &pattern(6 * MIB, 9)); // multipart: no MD5 ETag
        let up = uploader(&bucket, "r/");
        let spec = || JobSpec::local([dir.path()]).existing(Existing::Revalidate);
        let first = finish(&up, spec());
        assert_eq!(
            (first.finished, first.skipped),
            (9, 0),
            "{:?}",
            failures(&first)
        );

        let again = finish(&up, spec());
        assert_eq!(
            (again.finished, again.skipped),
            (0, 9),
            "{:?}",
            failures(&again)
        );

        // Same size, other bytes; another size; a new file; the big one's last byte.
        write(dir.path(), "f1.bin", &pattern(40_000, 101));
        write(dir.path(), "f2.bin", &pattern(39_999, 2));
        write(dir.path(), "f9.bin", b"new");
        let mut big = pattern(6 * MIB, 9);
        *big.last_mut().unwrap() ^= 1;
        write(dir.path(), "big.bin", &big);
        let third = finish(&up, spec());
        assert_eq!(failures(&third), Vec::<String>::new());
        assert_eq!((third.finished, third.skipped), (4, 6));
        let got = stored(&bucket, "r/");
        for (key, bytes) in &got {
            let file = std::fs::read(dir.path().join(key.trim_start_matches("r/"))).unwrap();
            assert!(*bytes == file, "{key} differs from its file");
        }
        assert_eq!(got.len(), 10);

        // Skip trusts any key there; Replace uploads everything.
        write(dir.path(), "f3.bin", &pattern(10, 3));
        let skip = finish(&up, JobSpec::local([dir.path()]).existing(Existing::Skip));
        assert_eq!((skip.finished, skip.skipped), (0, 10));
        let replace = finish(&up, JobSpec::local([dir.path()]));
        assert_eq!((replace.finished, replace.skipped), (10, 0));
    });
}

#[test]
fn a_first_upload_asks_nothing_per_file_beyond_its_put() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start_local(&["quiet"]);
        let bucket = server.bucket("quiet");
        let dir = TestDir::new();
        for i in 0..20u8 {
            write(dir.path(), &format!("d{}/f{i}", i % 3), &pattern(1000, i));
        }
        let up = uploader(&bucket, "q");
        let counters = server.counters().expect("in-process store");
        let before = counters.requests.load(std::sync::atomic::Ordering::SeqCst);
        let spec = JobSpec::local([dir.path()]).existing(Existing::Revalidate);
        let status = finish(&up, spec);
        assert_eq!(status.finished, 20, "{:?}", failures(&status));
        let requests = counters.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
        // One listing of the empty prefix, then one PUT per file: no HEAD per file.
        assert_eq!(requests, 21);
    });
}

#[test]
fn a_selection_and_a_dry_run_choose_and_write_nothing() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["sel"]);
        let bucket = server.bucket("sel");
        let dir = TestDir::new();
        for name in ["keep/a.tar", "keep/b.tar", "keep/c.txt", "skip/d.tar"] {
            write(dir.path(), name, name.as_bytes());
        }
        write(dir.path(), "keep/tiny.tar", b"x");
        let select = haul::KeySelection::new()
            .include("*.tar")
            .unwrap()
            .exclude("skip/**")
            .unwrap()
            .min_size(2);
        let dry = Downloader::builder()
            .s3_target(S3Target::new(&bucket, "p/"))
            .dry_run(true)
            .build()
            .unwrap();
        let plan = finish(&dry, JobSpec::local([dir.path()]).select(select.clone()));
        assert_eq!(
            (plan.finished, plan.bytes),
            (2, 20),
            "{:?}",
            failures(&plan)
        );
        assert_eq!(
            stored(&bucket, ""),
            Vec::new(),
            "a dry run stored something"
        );

        let up = uploader(&bucket, "p/");
        let status = finish(&up, JobSpec::local([dir.path()]).select(select));
        assert_eq!(status.finished, 2);
        let keys: Vec<String> = stored(&bucket, "").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["p/keep/a.tar", "p/keep/b.tar"]);
    });
}

#[test]
fn names_that_meet_and_missing_paths_fail_their_files_only() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["meet"]);
        let bucket = server.bucket("meet");
        let dir = TestDir::new();
        write(dir.path(), "one/x.bin", b"first");
        write(dir.path(), "two/x.bin", b"second");
        write(dir.path(), "two/y.bin", b"why");
        let up = uploader(&bucket, "");
        let missing = dir.path().join("missing");
        let spec = JobSpec::local([dir.path().join("one"), dir.path().join("two"), missing]);
        let status = finish(&up, spec);
        assert_eq!((status.finished, status.failed), (2, 2));
        let failed = failures(&status);
        assert!(
            failed[0].contains("missing: reading") && failed[0].contains("No such file"),
            "{failed:?}"
        );
        assert!(
            failed[1].contains("two/x.bin: naming") && failed[1].contains("named x.bin too"),
            "{failed:?}"
        );
        // The first file of a name is stored, the second is not.
        let got = stored(&bucket, "");
        assert_eq!(
            got,
            [
                ("x.bin".to_owned(), b"first".to_vec()),
                ("y.bin".to_owned(), b"why".to_vec())
            ]
        );

        // Local files go into S3 targets only.
        let disk = TestDir::new();
        let d = Downloader::builder()
            .mountpath(disk.path())
            .build()
            .unwrap();
        let err = d.submit(JobSpec::local([dir.path()])).unwrap_err();
        assert!(
            chain(&err).contains("uploaded into bucket prefixes"),
            "{}",
            chain(&err)
        );
    });
}

#[test]
fn a_file_that_changes_while_it_is_read_is_not_stored() {
    guard_for(Duration::from_secs(60), || {
        let server = S3Server::start(&["moving"]);
        let bucket = server.bucket("moving");
        let dir = TestDir::new();
        let path = dir.path().join("growing.log");
        std::fs::write(&path, pattern(3 * MIB, 7)).unwrap();
        let up = uploader(&bucket, "");
        // Slow enough that the file is written to while it is read.
        let job = up
            .submit(JobSpec::local([path.clone()]).rate_limit(1 << 20))
            .unwrap();
        assert!(wait_until(|| {
            let status = up.status(job, Detail::OnlyActive).unwrap();
            status.in_flight.iter().any(|t| t.bytes_done > 0)
        }));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b"one more line\n").unwrap();
        drop(file);
        assert!(up.wait(job, Duration::from_secs(30)).unwrap(), "job hangs");
        let status = up.status(job, Detail::All).unwrap();
        assert_eq!(status.failed, 1);
        let failed = failures(&status);
        assert!(
            failed[0].contains("changed while it was read"),
            "{failed:?}"
        );
        assert_eq!(
            stored(&bucket, ""),
            Vec::new(),
            "a half-old object was stored"
        );
    });
}
