//! Sharding a job across processes with no coordinator: the `haul` binary run three times.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use haul_origin::Origin;

use crate::support::{files_under, guard_for};

/// A directory on tmpfs when there is one: 30,000 small files.
fn scratch() -> crate::support::TestDir {
    crate::support::TestDir::new_fast()
}

#[test]
fn three_processes_with_shards_download_every_object_exactly_once() {
    guard_for(Duration::from_secs(150), || {
        const N: usize = 30_000;
        let origin = Origin::start().unwrap();
        let template = origin.url("/sh/o-{00000..29999}.bin?size=1");
        let dirs: Vec<_> = (0..3).map(|_| scratch()).collect();
        let children: Vec<_> = (0..3)
            .map(|i| {
                Command::new(env!("CARGO_BIN_EXE_haul"))
                    .args([
                        "get",
                        "--workers-per-target",
                        "4",
                        // Exactly one request per object: no hedge for a response that the
                        // loaded machine made late.
                        "--no-hedge",
                        "--shard",
                        &format!("{i}/3"),
                    ])
                    .arg("-o")
                    .arg(dirs[i].path())
                    .arg(&template)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut union = HashSet::new();
        for dir in &dirs {
            let files: Vec<String> = files_under(dir.path())
                .into_iter()
                .filter(|f| !f.starts_with(".haul-work"))
                .collect();
            // Each share within ±10% of a third.
            assert!(
                (9_000..=11_000).contains(&files.len()),
                "a share of {}",
                files.len()
            );
            for f in files {
                assert!(union.insert(f.clone()), "{f} downloaded twice");
            }
        }
        assert_eq!(union.len(), N, "the union is the whole job");
        let stats = origin.stats();
        assert_eq!(stats.requests, N as u64, "no object requested twice");
        assert!(stats.paths.values().all(|&n| n == 1));
    });
}

#[test]
fn a_shard_outside_its_count_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_haul"))
        .args(["get", "--shard", "3/3", "http://127.0.0.1:9/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expected I/N with 0 <= I < N"), "{stderr}");

    let dir = crate::support::TestDir::new();
    let d = haul::Downloader::builder()
        .mountpath(dir.path())
        .build()
        .unwrap();
    let err = d
        .submit(haul::JobSpec::single("http://127.0.0.1:9/x").shard(0, 0))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad option shard: the index must be below the count, and the count at least 1"
    );
}

/// The cluster recipe in one machine: three processes, each with its shard, store one job
/// into one bucket (the in-process S3 server, or SeaweedFS in `.ci/run`) with no
/// coordinator: every object lands exactly once and is requested once.
#[test]
fn three_processes_with_shards_store_every_object_once_in_s3() {
    guard_for(Duration::from_secs(240), || {
        const N: usize = 3_000;
        let server = crate::support::s3::S3Server::start(&["sharded"]);
        let bucket = server.bucket("sharded");
        let origin = Origin::start().unwrap();
        let template = origin.url("/s3sh/o-{0000..2999}.bin?size=100");
        let target = format!("s3://{}/run", bucket.name());
        let children: Vec<_> = (0..3)
            .map(|i| {
                crate::haul_for(&server)
                    .args([
                        "get",
                        "--json",
                        "--no-hedge",
                        "--workers",
                        "4",
                        "--shard",
                        &format!("{i}/3"),
                    ])
                    .args(["-o", &target, &template])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut landed = 0;
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let share = json["landed"].as_u64().unwrap();
            assert!((900..=1100).contains(&share), "a share of {share}");
            landed += share;
        }
        assert_eq!(landed, N as u64);
        let keys: HashSet<String> = bucket.list("run/").map(|o| o.unwrap().key).collect();
        let expected: HashSet<String> = (0..N).map(|i| format!("run/o-{i:04}.bin")).collect();
        assert_eq!(keys, expected, "the union is the whole job");
        let stats = origin.stats();
        assert_eq!(stats.requests, N as u64, "no object requested twice");
        assert!(stats.paths.values().all(|&n| n == 1));
        assert_eq!(bucket.uploads("").unwrap(), vec![]);
    });
}
