//! Sharding a job across machines with no coordinator (the three-process runs are the CLI's
//! tests).

use std::time::Duration;

use crate::support::guard_for;

/// A directory on tmpfs when there is one: 30,000 small files.
fn scratch() -> crate::support::TestDir {
    crate::support::TestDir::new_fast()
}

#[test]
fn adding_a_shard_moves_only_its_fair_fraction_of_objects() {
    let names: Vec<String> = (0..30_000).map(|i| format!("o-{i:05}.bin")).collect();
    let moved = names
        .iter()
        .filter(|n| haul::shard_of(n, 3) != haul::shard_of(n, 4))
        .count();
    // Ideal: a quarter move (to the new shard), and none move between old shards.
    let fraction = moved as f64 / names.len() as f64;
    assert!((0.22..0.28).contains(&fraction), "{fraction}");
    for n in &names {
        let (a, b) = (haul::shard_of(n, 3), haul::shard_of(n, 4));
        assert!(a == b || b == Some(3), "{n} moved between old shards");
    }
}

#[test]
fn a_listing_that_fails_is_a_failure_of_every_shard() {
    guard_for(Duration::from_secs(60), || {
        let server = crate::support::s3::S3Server::start(&["present"]);
        // A bucket that does not exist: the listing fails at its first page.
        let bucket = server.bucket("absent");
        for index in 0..3 {
            let dir = scratch();
            let d = haul::Downloader::builder()
                .mountpath(dir.path())
                .build()
                .unwrap();
            let spec = haul::JobSpec::s3_prefix(&bucket, "").shard(index, 3);
            let job = d.submit(spec).unwrap();
            assert!(d.wait(job, Duration::from_secs(30)).unwrap());
            let status = d.status(job, haul::Detail::All).unwrap();
            assert_eq!(
                status.failed, 1,
                "shard {index}/3 finished as if its share were complete"
            );
        }
    });
}
