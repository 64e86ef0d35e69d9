//! `haul put`: local files into a bucket prefix, and back with `haul s3 get`.

use std::path::Path;
use std::process::Output;

use crate::support::s3::S3Server;
use crate::support::{TestDir, guard, tree};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn haul(server: &S3Server, args: &[&str]) -> Output {
    crate::haul_for(server).args(args).output().unwrap()
}

/// `out` succeeded, and its summary (the last line on stderr that counts what landed)
/// starts with `summary`.
#[track_caller]
fn succeeds(out: &Output, summary: &str) {
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains(" landed, ") || l.starts_with("dry run: "))
        .unwrap_or_else(|| panic!("no summary on stderr: {stderr}"));
    assert!(line.starts_with(summary), "{stderr}");
}

fn write(root: &Path, name: &str, bytes: &[u8]) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn put_uploads_a_tree_that_s3_get_brings_back_and_a_rerun_uploads_only_what_changed() {
    guard(|| {
        let server = S3Server::start(&["puts"]);
        let bucket = server.bucket_name("puts");
        let dir = TestDir::new();
        let src = dir.path().join("src");
        write(&src, "a.bin", &[1u8; 7000]);
        write(&src, "sub/b.bin", &[2u8; 300]);
        write(&src, "notes.txt", b"left out");
        let single = dir.path().join("single.dat");
        std::fs::write(&single, b"one file").unwrap();
        let to = format!("s3://{bucket}/up");
        let put = |extra: &[&str]| {
            let mut args = vec!["put", src.to_str().unwrap(), single.to_str().unwrap(), &to];
            args.extend(["--exclude", "*.txt"]);
            args.extend(extra);
            haul(&server, &args)
        };
        succeeds(&put(&[]), "3 landed, 0 failed, 0 skipped");

        // Back down: the same names and bytes.
        let back = dir.path().join("back");
        let out = haul(
            &server,
            &["s3", "get", &format!("{to}/"), "-o", back.to_str().unwrap()],
        );
        succeeds(&out, "3 landed");
        let mut want = tree(&src);
        want.retain(|(name, _)| name != "notes.txt");
        want.push(("single.dat".to_owned(), b"one file".to_vec()));
        want.sort();
        assert_eq!(tree(&back), want);

        // A rerun uploads nothing; a changed file is what a dry run shows and a rerun sends.
        succeeds(&put(&[]), "0 landed, 0 failed, 3 skipped");
        write(&src, "a.bin", &[9u8; 7000]);
        let dry = put(&["--dry-run"]);
        succeeds(
            &dry,
            "dry run: would upload 1 objects (6.84 KiB as listed), skip 2, delete 0",
        );
        assert!(
            text(&dry.stderr).contains("would upload a.bin"),
            "{}",
            text(&dry.stderr)
        );
        succeeds(&put(&[]), "1 landed, 0 failed, 2 skipped");
        succeeds(&put(&["--skip-existing"]), "0 landed, 0 failed, 3 skipped");
        succeeds(&put(&["--force"]), "3 landed, 0 failed, 0 skipped");
        let again = dir.path().join("again");
        let out = haul(
            &server,
            &[
                "s3",
                "get",
                &format!("{to}/a.bin"),
                "-o",
                again.to_str().unwrap(),
            ],
        );
        succeeds(&out, "1 landed");
        assert_eq!(std::fs::read(again.join("a.bin")).unwrap(), [9u8; 7000]);
    });
}

#[test]
fn put_refuses_what_it_cannot_do_and_says_when_nothing_matched() {
    guard(|| {
        let server = S3Server::start(&["putbad"]);
        let bucket = server.bucket_name("putbad");
        let dir = TestDir::new();
        write(dir.path(), "a.bin", b"a");
        let from = dir.path().to_str().unwrap();
        let to = format!("s3://{bucket}/p/");

        let out = haul(&server, &["put", from, "not-a-bucket"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("must be where to upload: s3://bucket/prefix"));

        let out = haul(&server, &["put", &to, &to]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("put uploads local files"));

        let out = haul(&server, &["put", from, &to, "--include", "*.tar"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("no objects matched"),
            "{}",
            text(&out.stderr)
        );

        let missing = dir.path().join("missing");
        let out = haul(&server, &["put", missing.to_str().unwrap(), &to]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("failed: ") && stderr.contains("missing: No such file"),
            "{stderr}"
        );
        assert_eq!(server.bucket("putbad").list("").count(), 0);
    });
}
