//! Hugging Face Hub repositories as sources, against the origin's emulated Hub (its API on
//! one origin, LFS files redirected to a second one that refuses the token) — listing,
//! ordered fetch, download jobs, gated repos, throttling, a tree that lies about a digest.

use std::io::Read;
use std::time::Duration;

use haul::{
    Detail, Downloader, Fetcher, HfError, HfPath, HubClient, JobSpec, KeySelection, RetryPolicy,
};
use haul_origin::{Faults, Hub, HubRepo, Origin};

use crate::support::{TestDir, files_under, guard};

/// The storage host LFS files redirect to: it refuses any request carrying a token, as a
/// presigned CDN URL would have no use for one (and must never see it).
fn storage() -> Origin {
    let mut faults = Faults::default();
    faults.refuse_header = Some("authorization".into());
    Origin::builder().faults(faults).start().unwrap()
}

fn dataset() -> HubRepo {
    HubRepo::dataset("org/corpus")
        .file("README.md", 1_000)
        .file("data/config.json", 300)
        .lfs_file("data/train-0.parquet", 2_500_000)
        .lfs_file("data/train-1.parquet", 700_000)
        .lfs_file("data/test 0.parquet", 400_000)
        .lfs_file("models/big.bin", 3_000_000)
}

fn quick() -> RetryPolicy {
    RetryPolicy::default()
        .attempts(3)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20))
}

fn client(hub: &Origin) -> HubClient {
    HubClient::new(hub.url("")).retry(quick())
}

#[test]
fn a_tree_listed_page_by_page_gives_every_file_at_one_commit_with_its_digest() {
    guard(|| {
        let storage = storage();
        let repo = dataset();
        let hub = Origin::builder()
            .hub(Hub::new(storage.url("")).repo(repo.clone()).page_size(2))
            .start()
            .unwrap();
        let snapshot = client(&hub)
            .snapshot(&HfPath::parse("hf://datasets/org/corpus").unwrap())
            .unwrap();
        assert_eq!(snapshot.commit(), repo.commit());
        let paths: Vec<&str> = snapshot.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "README.md",
                "data/config.json",
                "data/test 0.parquet",
                "data/train-0.parquet",
                "data/train-1.parquet",
                "models/big.bin"
            ]
        );
        for file in snapshot.files() {
            let lfs = file.path.ends_with(".parquet") || file.path.ends_with(".bin");
            assert_eq!(file.sha256.is_some(), lfs, "{file:?}");
            if let Some(digest) = file.sha256 {
                assert_eq!(digest, haul::Sha256Digest::of(&repo.body(&file.path)));
            }
            // Every file at the commit, not the branch: a job is one version.
            assert!(
                file.url.contains(&format!("/resolve/{}/", repo.commit())),
                "{}",
                file.url
            );
        }
        assert!(snapshot.files()[2].url.ends_with("/data/test%200.parquet"));
        assert_eq!(
            snapshot.total_bytes(),
            1_000 + 300 + 2_500_000 + 700_000 + 400_000 + 3_000_000
        );
        // The directories came too, so 8 entries over 4 pages; one revision call.
        let tree_calls: u64 = hub
            .stats()
            .paths
            .iter()
            .filter(|(p, _)| p.contains("/tree/"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(tree_calls, 4);

        // A directory, a file, and the patterns of allow_patterns / ignore_patterns.
        let under = client(&hub)
            .snapshot(&HfPath::parse("hf://datasets/org/corpus@main/data").unwrap())
            .unwrap();
        assert_eq!(under.files().len(), 4);
        let one = client(&hub)
            .snapshot(&HfPath::parse("hf://datasets/org/corpus/data/train-1.parquet").unwrap())
            .unwrap();
        assert_eq!(one.files().len(), 1);
        let selection = KeySelection::new()
            .include("*.parquet")
            .unwrap()
            .exclude("*test*")
            .unwrap();
        let selected = snapshot.select(&selection);
        let paths: Vec<&str> = selected.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["data/train-0.parquet", "data/train-1.parquet"]);
    });
}

#[test]
fn the_fetcher_streams_a_snapshot_in_order_and_the_token_never_reaches_the_storage_host() {
    guard(|| {
        let storage = storage();
        let repo = dataset().gated("hf_s3cr3t");
        let hub = Origin::builder()
            .hub(Hub::new(storage.url("")).repo(repo.clone()))
            .start()
            .unwrap();
        let snapshot = client(&hub)
            .token("hf_s3cr3t")
            .snapshot(&HfPath::parse("hf://datasets/org/corpus").unwrap())
            .unwrap();
        // Large files in ranged parts (above 1 MiB), taken at the storage host.
        let fetcher = Fetcher::builder()
            .workers(4)
            .part_size(512 << 10)
            .max_whole_object(1 << 20)
            .memory_budget(4 << 20)
            .retry(quick())
            .build()
            .unwrap();
        let objects = fetcher.fetch(snapshot.web(), snapshot.fetch_keys());
        let mut streamed = 0;
        for (object, file) in objects.zip(snapshot.files()) {
            let object = object.unwrap_or_else(|e| panic!("{}: {e}", file.path));
            streamed += usize::from(object.is_streamed());
            let mut bytes = Vec::new();
            object.into_reader().read_to_end(&mut bytes).unwrap();
            assert!(bytes == repo.body(&file.path), "{}", file.path);
        }
        assert_eq!(streamed, 2);
        let refused = storage.stats().status_count(400);
        assert_eq!(refused, 0, "the token was sent to the storage host");
        assert!(
            storage.stats().status_count(206) >= 10,
            "{:?}",
            storage.stats()
        );
    });
}

#[test]
fn a_download_job_of_a_snapshot_lands_every_file_under_its_path_and_fails_a_lying_digest() {
    guard(|| {
        let storage = storage();
        let repo = dataset().lfs_file_listed_wrong("data/corrupt.parquet", 200_000);
        let hub = Origin::builder()
            .hub(Hub::new(storage.url("")).repo(repo.clone()))
            .start()
            .unwrap();
        let snapshot = client(&hub)
            .snapshot(&HfPath::parse("hf://datasets/org/corpus").unwrap())
            .unwrap();
        let dir = TestDir::new();
        let downloader = Downloader::builder()
            .mountpath(dir.path())
            .workers_per_target(3)
            .build()
            .unwrap();
        let job = downloader.submit(snapshot.job().retry(quick())).unwrap();
        assert!(downloader.wait(job, Duration::from_secs(50)).unwrap());
        let status = downloader.status(job, Detail::All).unwrap();
        assert_eq!((status.finished, status.failed), (6, 1), "{status:?}");
        let failure = &status.failures[0];
        assert_eq!(failure.name, "data/corrupt.parquet");
        assert!(
            haul::error_chain(&*failure.error).contains("sha256"),
            "{}",
            haul::error_chain(&*failure.error)
        );
        let landed = files_under(dir.path());
        assert!(!landed.iter().any(|f| f.contains("corrupt")), "{landed:?}");
        for file in snapshot
            .files()
            .iter()
            .filter(|f| !f.path.contains("corrupt"))
        {
            let bytes = std::fs::read(dir.path().join(&file.path)).unwrap();
            assert!(bytes == repo.body(&file.path), "{}", file.path);
        }
        // The fetcher checks it too, whole or streamed.
        for max_whole in [1 << 20, 100_000] {
            let fetcher = Fetcher::builder()
                .workers(2)
                .part_size(64 << 10)
                .max_whole_object(max_whole)
                .retry(quick())
                .build()
                .unwrap();
            let keys = snapshot
                .fetch_keys()
                .into_iter()
                .filter(|k| k.key.contains("corrupt"));
            let error = match fetcher.fetch(snapshot.web(), keys).next().unwrap() {
                Err(e) => e.to_string(),
                Ok(object) => {
                    assert!(
                        object.is_streamed(),
                        "a whole object of other bytes was delivered"
                    );
                    let mut bytes = Vec::new();
                    let read = object.into_reader().read_to_end(&mut bytes);
                    read.unwrap_err().to_string()
                }
            };
            assert!(error.contains("sha256"), "{max_whole}: {error}");
        }
    });
}

#[test]
fn a_gated_repo_says_a_token_is_needed_or_that_the_token_has_no_access() {
    guard(|| {
        let storage = storage();
        let hub = Origin::builder()
            .hub(Hub::new(storage.url("")).repo(dataset().gated("hf_right")))
            .start()
            .unwrap();
        let path = HfPath::parse("hf://datasets/org/corpus").unwrap();
        let none = client(&hub).snapshot(&path).unwrap_err();
        assert!(
            matches!(none, HfError::Denied { status: 401, .. }),
            "{none:?}"
        );
        assert!(none.to_string().contains("needs a token"), "{none}");
        assert!(none.to_string().contains("HF_TOKEN"), "{none}");
        let wrong = client(&hub).token("hf_wrong").snapshot(&path).unwrap_err();
        assert!(
            matches!(wrong, HfError::Denied { status: 403, .. }),
            "{wrong:?}"
        );
        assert!(wrong.to_string().contains("no access"), "{wrong}");
        // Not retried: 401 and 403 are answers, not failures.
        assert_eq!(hub.stats().requests, 2);

        let missing = client(&hub)
            .snapshot(&HfPath::parse("hf://datasets/org/nothing").unwrap())
            .unwrap_err();
        assert!(
            matches!(missing, HfError::RepoNotFound { .. }),
            "{missing:?}"
        );
        let revision = client(&hub)
            .token("hf_right")
            .snapshot(&HfPath::parse("hf://datasets/org/corpus@v9").unwrap())
            .unwrap_err();
        assert!(matches!(revision, HfError::NotFound { .. }), "{revision:?}");
        assert!(revision.to_string().contains("v9 not found"), "{revision}");
        let path = client(&hub)
            .token("hf_right")
            .snapshot(&HfPath::parse("hf://datasets/org/corpus/nope/x").unwrap())
            .unwrap_err();
        assert!(path.to_string().contains("not found"), "{path}");
    });
}

#[test]
fn a_throttled_hub_is_waited_for_as_its_retry_after_says() {
    guard(|| {
        let storage = storage();
        let hub = Origin::builder()
            .hub(Hub::new(storage.url("")).repo(dataset()).throttle_first(2))
            .start()
            .unwrap();
        let snapshot = client(&hub)
            .snapshot(&HfPath::parse("hf://datasets/org/corpus").unwrap())
            .unwrap();
        assert_eq!(snapshot.files().len(), 6);
        assert_eq!(hub.stats().status_count(429), 2);
        // A policy that will not wait a second gives up with the Hub's answer.
        let hub2 = Origin::builder()
            .hub(Hub::new(storage.url("")).repo(dataset()).throttle_first(1))
            .start()
            .unwrap();
        let error = HubClient::new(hub2.url(""))
            .retry(quick().max_retry_after(Duration::from_millis(100)))
            .snapshot(&HfPath::parse("hf://datasets/org/corpus").unwrap())
            .unwrap_err();
        assert!(
            matches!(error, HfError::Status { status: 429, .. }),
            "{error:?}"
        );
    });
}

#[test]
fn an_object_of_another_size_than_listed_fails_and_never_lands() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let downloader = Downloader::builder().mountpath(dir.path()).build().unwrap();
        let spec = JobSpec::multi_named([
            ("right.bin", origin.url("/sizes/right.bin?size=5000")),
            ("wrong.bin", origin.url("/sizes/wrong.bin?size=5000")),
        ])
        .size("right.bin", 5000)
        .size("wrong.bin", 4999)
        .retry(quick());
        let job = downloader.submit(spec).unwrap();
        assert!(downloader.wait(job, Duration::from_secs(50)).unwrap());
        let status = downloader.status(job, Detail::All).unwrap();
        assert_eq!((status.finished, status.failed), (1, 1), "{status:?}");
        let error = haul::error_chain(&*status.failures[0].error);
        assert!(
            error.contains("it has 5000 bytes, 4999 were listed"),
            "{error}"
        );
        assert_eq!(files_under(dir.path()), ["right.bin"]);
        // Not retried: another attempt would find the same object.
        assert_eq!(origin.stats().requests_for("/sizes/wrong.bin"), 1);
    });
}
