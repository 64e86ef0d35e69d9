//! `haul plan`, `haul get --manifest` and `haul verify`: a dataset pinned, fetched exactly,
//! and a copy checked — from the origin's URLs and from its emulated Hub.

use std::process::Output;

use haul_origin::{Faults, Hub, HubRepo, Origin};

use crate::stderr;
use crate::support::{TestDir, files_under, guard};

fn haul(args: &[&str], env: &[(&str, &str)]) -> Output {
    crate::haul_without_hf_token(std::path::Path::new("/nonexistent"), args, env)
}

#[test]
fn a_planned_template_downloads_exactly_and_verify_names_what_differs() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let template = origin.url("/d/part-{0..5}.bin?size=300000");
        let out = haul(&["plan", &template], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let manifest = haul::Manifest::parse(&text).unwrap();
        assert_eq!((manifest.len(), manifest.total_bytes()), (6, 1_800_000));
        assert!(manifest.entries().iter().all(|e| e.etag.is_some()));
        assert!(text.contains("# estimate: about "), "{text}");
        let work = TestDir::new();
        let file = work.path().join("d.manifest");
        std::fs::write(&file, &text).unwrap();
        let (file, dir) = (file.to_str().unwrap(), work.path().join("data"));
        let dir_arg = dir.to_str().unwrap();

        // Shardable as any job: two shards take each object once between them.
        let out = haul(
            &["get", "--manifest", file, "--shard", "0/2", "-o", dir_arg],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let first = files_under(&dir).len();
        assert!((1..6).contains(&first), "shard 0/2 took {first} of 6");
        let out = haul(
            &["get", "--manifest", file, "--shard", "1/2", "-o", dir_arg],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let mut landed = files_under(&dir);
        landed.sort();
        assert_eq!(landed.len(), 6, "{landed:?}");
        // A rerun finds them there: no body sent again.
        let sent = origin.stats().body_bytes;
        let out = haul(&["get", "--manifest", file, "-o", dir_arg], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(origin.stats().body_bytes, sent, "{}", stderr(&out));
        // Sizes only (a web server gives no digest): clean.
        let out = haul(&["verify", dir_arg, "--manifest", file], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("6 of 6 files as listed"),
            "{}",
            stderr(&out)
        );

        std::fs::write(dir.join("part-1.bin"), b"short").unwrap();
        std::fs::remove_file(dir.join("part-2.bin")).unwrap();
        std::fs::write(dir.join("stray.bin"), b"x").unwrap();
        let out = haul(&["verify", dir_arg, "--manifest", file], &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let said = stderr(&out);
        assert!(said.contains("missing: part-2.bin"), "{said}");
        assert!(said.contains("mismatch: part-1.bin: has 5 bytes"), "{said}");
        assert!(said.contains("extra: stray.bin"), "{said}");

        // The objects changed at the origin: the pinned ETags fail every one, nothing lands.
        origin.replace_objects();
        let again = work.path().join("again");
        let out = haul(
            &["get", "--manifest", file, "-o", again.to_str().unwrap()],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the manifest pinned"),
            "{}",
            stderr(&out)
        );
        assert!(files_under(&again).is_empty());

        // A manifest that is not one is a usage error naming the line.
        std::fs::write(work.path().join("bad"), "# haul manifest 1\nx\t1\n").unwrap();
        let bad = work.path().join("bad");
        let out = haul(
            &["get", "--manifest", bad.to_str().unwrap(), "-o", dir_arg],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("manifest line 2"), "{}", stderr(&out));
    });
}

#[test]
fn a_planned_hub_snapshot_pins_the_commit_and_digests_and_verify_hashes_them() {
    guard(|| {
        let mut faults = Faults::default();
        faults.refuse_header = Some("authorization".into());
        let storage = Origin::builder().faults(faults).start().unwrap();
        let repo = HubRepo::dataset("org/corpus")
            .file("README.md", 500)
            .lfs_file("data/train.parquet", 1_500_000)
            .gated("hf_k");
        let hub = Origin::builder()
            .hub(Hub::new(storage.url("")).repo(repo.clone()))
            .start()
            .unwrap();
        let env = [
            ("HF_ENDPOINT", hub.url("")),
            ("HF_TOKEN", "hf_k".to_owned()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let out = haul(&["plan", "hf://datasets/org/corpus"], &env);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(&format!("at commit {}", repo.commit())),
            "{text}"
        );
        let manifest = haul::Manifest::parse(&text).unwrap();
        let train = manifest.get("data/train.parquet").unwrap();
        assert_eq!(
            train.sha256.unwrap().to_string(),
            repo.sha256("data/train.parquet")
        );
        assert!(train.url.contains(repo.commit()));

        let work = TestDir::new();
        let file = work.path().join("m");
        std::fs::write(&file, &text).unwrap();
        let dir = work.path().join("corpus");
        let (file, dir_arg) = (file.to_str().unwrap(), dir.to_str().unwrap());
        let out = haul(&["get", "--manifest", file, "-o", dir_arg], &env);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            std::fs::read(dir.join("data/train.parquet")).unwrap()
                == repo.body("data/train.parquet")
        );
        let out = haul(&["verify", dir_arg, "--manifest", file], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("1 by size alone"), "{}", stderr(&out));
        // Same size, other bytes: only the digest tells.
        let mut bytes = std::fs::read(dir.join("data/train.parquet")).unwrap();
        bytes[1000] ^= 1;
        std::fs::write(dir.join("data/train.parquet"), &bytes).unwrap();
        let out = haul(&["verify", dir_arg, "--manifest", file], &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("mismatch: data/train.parquet: its sha256 is"),
            "{}",
            stderr(&out)
        );
    });
}

#[test]
fn a_planned_bucket_prefix_downloads_by_manifest_under_the_names_s3_get_gives() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["data"]);
        let bucket = server.bucket_name("data");
        for i in 0..4 {
            server.seed_file(
                "data",
                &format!("set/sub/part-{i}.bin"),
                &vec![b'a' + i; 1000 + usize::from(i)],
            );
        }
        server.seed_file("data", "set/skip.txt", b"not selected");
        let out = crate::haul_for(&server)
            .args(["plan", "--include", "*.bin", &format!("s3://{bucket}/set/")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let manifest = haul::Manifest::parse(&text).unwrap();
        assert_eq!(manifest.len(), 4, "{text}");
        assert!(manifest.get("sub/part-2.bin").is_some(), "{text}");
        let work = TestDir::new();
        let file = work.path().join("m");
        std::fs::write(&file, &text).unwrap();
        let dir = work.path().join("out");
        let out = crate::haul_for(&server)
            .args([
                "get",
                "--manifest",
                file.to_str().unwrap(),
                "-o",
                dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let mut landed = files_under(&dir);
        landed.sort();
        assert_eq!(
            landed,
            [
                "sub/part-0.bin",
                "sub/part-1.bin",
                "sub/part-2.bin",
                "sub/part-3.bin"
            ]
        );
        let out = haul(
            &[
                "verify",
                dir.to_str().unwrap(),
                "--manifest",
                file.to_str().unwrap(),
            ],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    });
}
