//! Manifests: planned from URLs (probed) and from a Hub snapshot, written and read back,
//! downloaded as a job that fails what no longer matches, and a local tree verified.

use std::time::Duration;

use haul::{Detail, Downloader, HttpClient, Manifest, ManifestEntry, RetryPolicy, Sha256Digest};
use haul_origin::{Origin, body};

use crate::support::{TestDir, files_under, guard};

fn quick() -> RetryPolicy {
    RetryPolicy::default()
        .attempts(3)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20))
}

fn objects(origin: &Origin, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let path = format!("/m/o-{i}.bin");
            origin.set_query(&path, &format!("size={}", 1000 * i + 1));
            (format!("o-{i}.bin"), origin.url(&path))
        })
        .collect()
}

#[test]
fn probed_urls_give_sizes_and_etags_and_the_text_reads_back_the_same() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let mut named = objects(&origin, 20);
        origin.set_query("/m/empty.bin", "size=0");
        origin.set_query("/m/plain.bin", "size=777&no_ranges=1");
        named.push(("empty.bin".into(), origin.url("/m/empty.bin")));
        named.push(("plain.bin".into(), origin.url("/m/plain.bin")));
        let manifest = Manifest::probe(&HttpClient::default(), &named, &[], &quick(), 4).unwrap();
        assert_eq!(manifest.len(), 22);
        assert_eq!(manifest.get("o-3.bin").unwrap().size, 3001);
        assert_eq!(manifest.get("empty.bin").unwrap().size, 0);
        assert_eq!(manifest.get("plain.bin").unwrap().size, 777);
        assert!(manifest.entries().iter().all(|e| e.etag.is_some()));
        // Nothing of the bodies beyond their first bytes (and the one without ranges: none
        // read, the connection dropped).
        assert!(
            origin.stats().body_bytes < 22 * 1024 + 777,
            "{:?}",
            origin.stats()
        );
        let text = manifest.to_string();
        assert_eq!(Manifest::parse(&text).unwrap(), manifest);
        // One object per line, sorted: a diff shows what changed.
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted);

        origin.set_query("/m/gone.bin", "status=404");
        named.push(("gone.bin".into(), origin.url("/m/gone.bin")));
        let failed = Manifest::probe(&HttpClient::default(), &named, &[], &quick(), 4).unwrap_err();
        assert_eq!(failed.len(), 1);
        assert!(
            haul::error_chain(&failed[0]).contains("404"),
            "{:?}",
            failed[0]
        );
    });
}

#[test]
fn a_manifest_job_lands_exactly_its_objects_and_fails_those_that_changed() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let named = objects(&origin, 6);
        let mut manifest =
            Manifest::probe(&HttpClient::default(), &named, &[], &quick(), 3).unwrap();
        // A digest that is right, and one that is wrong.
        let right = body("/m/o-1.bin", 1001);
        let e1 = manifest
            .get("o-1.bin")
            .unwrap()
            .clone()
            .sha256(Sha256Digest::of(&right));
        manifest.push(e1);
        let e2 = manifest
            .get("o-2.bin")
            .unwrap()
            .clone()
            .sha256(Sha256Digest::of(b"other"));
        manifest.push(e2);
        let dir = TestDir::new();
        let downloader = Downloader::builder().mountpath(dir.path()).build().unwrap();
        let job = downloader.submit(manifest.job().retry(quick())).unwrap();
        assert!(downloader.wait(job, Duration::from_secs(50)).unwrap());
        let status = downloader.status(job, Detail::All).unwrap();
        assert_eq!((status.finished, status.failed), (5, 1), "{status:?}");
        assert_eq!(status.failures[0].name, "o-2.bin");
        let report = manifest.verify(dir.path(), &|_| {}).unwrap();
        assert_eq!(report.missing, ["o-2.bin"]);
        assert_eq!(report.good, 5);

        // Every object replaced at the origin: the pinned ETags no longer match, and
        // nothing of the new versions lands over the old.
        origin.replace_objects();
        let fresh = TestDir::new();
        let downloader = Downloader::builder()
            .mountpath(fresh.path())
            .build()
            .unwrap();
        let job = downloader.submit(manifest.job().retry(quick())).unwrap();
        assert!(downloader.wait(job, Duration::from_secs(50)).unwrap());
        let status = downloader.status(job, Detail::All).unwrap();
        assert_eq!(status.failed, 6, "{status:?}");
        let error = haul::error_chain(&*status.failures[0].error);
        assert!(error.contains("the manifest pinned"), "{error}");
        assert!(files_under(fresh.path()).is_empty());
    });
}

#[test]
fn verify_reports_missing_extra_and_mismatched_files_and_follows_no_link() {
    guard(|| {
        let dir = TestDir::new();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let files: [(&str, &[u8]); 5] = [
            ("good.bin", b"good bytes"),
            ("sub/good-size.txt", b"12345"),
            ("short.bin", b"shor"),
            ("wrong.bin", b"wrong byte"),
            ("extra.bin", b"not listed"),
        ];
        for (name, bytes) in files {
            std::fs::write(root.join(name), bytes).unwrap();
        }
        std::fs::write(root.join("target.bin"), b"good bytes").unwrap();
        std::os::unix::fs::symlink(root.join("target.bin"), root.join("link.bin")).unwrap();
        std::fs::create_dir_all(root.join(".haul-work")).unwrap();
        std::fs::write(root.join(".haul-work/w"), b"work file").unwrap();
        let digest = Sha256Digest::of(b"good bytes");
        let mut manifest = Manifest::new();
        let entry = |name: &str, size| ManifestEntry::new(name, size, format!("https://h/{name}"));
        manifest.push(entry("good.bin", 10).sha256(digest));
        manifest.push(entry("sub/good-size.txt", 5));
        manifest.push(entry("short.bin", 5).sha256(digest));
        manifest.push(entry("wrong.bin", 10).sha256(digest));
        manifest.push(entry("link.bin", 10).sha256(digest));
        manifest.push(entry("target.bin", 10).sha256(digest));
        manifest.push(entry("missing.bin", 3));
        let hashed = std::sync::atomic::AtomicU64::new(0);
        let report = manifest
            .verify(root, &|n| {
                hashed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            })
            .unwrap();
        assert_eq!((report.good, report.size_only), (3, 1), "{report:?}");
        assert_eq!(report.missing, ["missing.bin"]);
        assert_eq!(report.extra, ["extra.bin"]);
        let mismatched: Vec<(&str, &str)> = report
            .mismatched
            .iter()
            .map(|m| (m.name.as_str(), m.reason.as_str()))
            .collect();
        assert_eq!(mismatched.len(), 3, "{mismatched:?}");
        assert!(mismatched[0].0 == "link.bin" && mismatched[0].1.contains("symbolic link"));
        assert!(mismatched[1].0 == "short.bin" && mismatched[1].1.contains("has 4 bytes"));
        assert!(mismatched[2].0 == "wrong.bin" && mismatched[2].1.contains("sha256"));
        assert!(!report.is_clean());
        assert_eq!(report.bytes_hashed, 30);
        assert_eq!(hashed.into_inner(), 30);
        assert!(manifest.verify(&root.join("nope"), &|_| {}).is_err());
    });
}

#[test]
fn a_bucket_prefix_planned_and_downloaded_by_manifest_fails_objects_replaced_since() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["data"]);
        let objects: Vec<(String, Vec<u8>)> = (0..5)
            .map(|i| {
                (
                    format!("set/part-{i}.bin"),
                    body(&format!("/p{i}"), 10_000 + i),
                )
            })
            .collect();
        server.seed_many("data", objects.clone());
        let bucket = server.bucket("data");
        let manifest =
            Manifest::from_bucket(&bucket, "set/", &haul::KeySelection::new(), false).unwrap();
        assert_eq!(manifest.len(), 5);
        let entry = manifest.get("part-3.bin").unwrap();
        assert_eq!(entry.url, format!("s3://{}/set/part-3.bin", bucket.name()));
        assert!(entry.etag.as_deref().is_some_and(|e| e.starts_with('"')));
        // It reads back as it was written.
        assert_eq!(Manifest::parse(&manifest.to_string()).unwrap(), manifest);
        let jobs = manifest.jobs(&server.config()).unwrap();
        assert_eq!(jobs.len(), 1, "one bucket, no web objects");

        // One object replaced after the plan by one of the same size: its ETag says so, it
        // fails as changed, the others land.
        server.seed_file("data", "set/part-1.bin", &body("/other", 10_001));
        let dir = TestDir::new();
        let downloader = Downloader::builder().mountpath(dir.path()).build().unwrap();
        let mut ids = Vec::new();
        for job in jobs {
            ids.push(downloader.submit(job.retry(quick())).unwrap());
        }
        for id in ids {
            assert!(downloader.wait(id, Duration::from_secs(50)).unwrap());
            let status = downloader.status(id, Detail::All).unwrap();
            assert_eq!((status.finished, status.failed), (4, 1), "{status:?}");
            assert_eq!(status.failures[0].name, "part-1.bin");
            let error = haul::error_chain(&*status.failures[0].error);
            assert!(error.contains("the manifest pinned"), "{error}");
        }
        let report = manifest.verify(dir.path(), &|_| {}).unwrap();
        assert_eq!(report.missing, ["part-1.bin"]);
        assert_eq!(report.good, 4);
        for (key, bytes) in &objects {
            let name = key.trim_start_matches("set/");
            if name != "part-1.bin" {
                assert!(
                    std::fs::read(dir.path().join(name)).unwrap() == *bytes,
                    "{name}"
                );
            }
        }
    });
}
