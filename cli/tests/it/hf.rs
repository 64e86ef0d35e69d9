//! `haul get hf://…` and `haul cat hf://…` against the origin's emulated Hub (HF_ENDPOINT
//! pointed at it), its LFS files on a second origin that refuses the token.

use std::process::Output;

use haul_origin::{Faults, Hub, HubRepo, Origin};

use crate::stderr;
use crate::support::{TestDir, files_under, guard};

/// The Hub and its storage host, and the repo it serves.
struct Hubs {
    storage: Origin,
    hub: Origin,
    repo: HubRepo,
}

fn hubs(repo: HubRepo) -> Hubs {
    let mut faults = Faults::default();
    faults.refuse_header = Some("authorization".into());
    let storage = Origin::builder().faults(faults).start().unwrap();
    let hub = Origin::builder()
        .hub(Hub::new(storage.url("")).repo(repo.clone()).page_size(3))
        .start()
        .unwrap();
    Hubs { storage, hub, repo }
}

fn repo() -> HubRepo {
    HubRepo::dataset("org/corpus")
        .file("README.md", 1_000)
        .lfs_file("data/train-0.parquet", 900_000)
        .lfs_file("data/train-1.parquet", 300_000)
        .file("data/notes.txt", 50)
}

/// `haul ARGS` with the Hub at `hubs` and no token of this machine's.
fn haul(hubs: &Hubs, home: &TestDir, args: &[&str], env: &[(&str, &str)]) -> Output {
    let endpoint = hubs.hub.url("");
    let mut all = vec![("HF_ENDPOINT", endpoint.as_str())];
    all.extend_from_slice(env);
    crate::haul_without_hf_token(home.path(), args, &all)
}

#[test]
fn get_downloads_a_repo_under_its_paths_and_a_rerun_fetches_nothing() {
    guard(|| {
        let hubs = hubs(repo());
        let (home, dir) = (TestDir::new(), TestDir::new());
        let out_dir = dir.path().to_str().unwrap();
        let out = haul(
            &hubs,
            &home,
            &["get", "hf://datasets/org/corpus", "-o", out_dir],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("4 files"), "{}", stderr(&out));
        let mut files = files_under(dir.path());
        files.sort();
        assert_eq!(
            files,
            [
                "README.md",
                "data/notes.txt",
                "data/train-0.parquet",
                "data/train-1.parquet"
            ]
        );
        for file in &files {
            let bytes = std::fs::read(dir.path().join(file)).unwrap();
            assert!(bytes == hubs.repo.body(file), "{file}");
        }
        // A rerun finds every file there: the listing again, no file's bytes sent.
        let bytes = |hubs: &Hubs| hubs.hub.stats().body_bytes + hubs.storage.stats().body_bytes;
        let before = bytes(&hubs);
        assert!(before >= 1_200_000, "{before}");
        let out = haul(
            &hubs,
            &home,
            &["get", "hf://datasets/org/corpus", "-o", out_dir],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            bytes(&hubs),
            before,
            "a rerun downloaded again: {}",
            stderr(&out)
        );

        // Patterns as allow_patterns, on the path in the repo.
        let only = TestDir::new();
        let out = haul(
            &hubs,
            &home,
            &[
                "get",
                "hf://datasets/org/corpus/data",
                "--include",
                "*.parquet",
                "-o",
                only.path().to_str().unwrap(),
            ],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let mut files = files_under(only.path());
        files.sort();
        assert_eq!(files, ["data/train-0.parquet", "data/train-1.parquet"]);
    });
}

#[test]
fn a_gated_repo_needs_a_token_from_the_flag_the_environment_or_the_token_file() {
    guard(|| {
        let hubs = hubs(repo().gated("hf_t0k"));
        let home = TestDir::new();
        let source = "hf://datasets/org/corpus/README.md";
        let out = haul(&hubs, &home, &["cat", source], &[]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("needs a token"), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
        let readme = hubs.repo.body("README.md");
        let out = haul(&hubs, &home, &["cat", "--hf-token", "hf_t0k", source], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(out.stdout == readme);
        let out = haul(&hubs, &home, &["cat", source], &[("HF_TOKEN", "hf_t0k")]);
        assert!(out.status.success(), "{}", stderr(&out));
        // Where `hf auth login` leaves it.
        std::fs::create_dir_all(home.path().join(".cache/huggingface")).unwrap();
        std::fs::write(home.path().join(".cache/huggingface/token"), "hf_t0k\n").unwrap();
        let out = haul(&hubs, &home, &["cat", source], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(out.stdout == readme);
        let out = haul(
            &hubs,
            &home,
            &["cat", "--hf-token", "hf_wrong", source],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("no access"), "{}", stderr(&out));
    });
}

#[test]
fn cat_writes_a_repos_files_in_path_order_and_refuses_to_mix_them_with_urls() {
    guard(|| {
        let hubs = hubs(repo());
        let home = TestDir::new();
        let out = haul(
            &hubs,
            &home,
            &["cat", "--exclude", "*.txt", "hf://datasets/org/corpus"],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let mut want = hubs.repo.body("README.md");
        want.extend(hubs.repo.body("data/train-0.parquet"));
        want.extend(hubs.repo.body("data/train-1.parquet"));
        assert!(out.stdout == want, "{} bytes", out.stdout.len());

        let url = hubs.hub.url("/x.bin");
        let out = haul(
            &hubs,
            &home,
            &["cat", "hf://datasets/org/corpus", &url],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("cannot be mixed"), "{}", stderr(&out));
        let out = haul(&hubs, &home, &["cat", "hf://datasets/org"], &[]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("names no repository"),
            "{}",
            stderr(&out)
        );
        let out = haul(
            &hubs,
            &home,
            &["get", "--stdout", "hf://datasets/org/corpus"],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("haul cat"), "{}", stderr(&out));
    });
}
