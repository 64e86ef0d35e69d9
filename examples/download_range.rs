//! A range template into two directories (two "disks"), with retries and a status loop.
//! Runs against a loopback origin it starts itself:
//!
//! ```sh
//! cargo run --example download_range
//! ```

use std::time::Duration;

use haul::{Detail, Downloader, JobSpec, RetryPolicy};
use haul_origin::Origin;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let origin = Origin::builder().object_size(256 << 10).start()?;
    let root = std::env::temp_dir().join(format!("haul-example-range-{}", std::process::id()));
    let downloader = Downloader::builder()
        .mountpath(root.join("disk0"))
        .mountpath(root.join("disk1"))
        .workers_per_target(4)
        .build()?;
    let spec = JobSpec::range(origin.url("/shards/shard-{000..199}.tar"))
        .description("example shards")
        .retry(RetryPolicy::default().attempts(3));
    let job = downloader.submit(spec)?;
    while !downloader.wait(job, Duration::from_millis(200))? {
        let status = downloader.status(job, Detail::OnlyActive)?;
        println!(
            "{}/{} landed, {} bytes, {} in flight",
            status.finished,
            status.total.unwrap_or(0),
            status.bytes,
            status.in_flight.len()
        );
    }
    let status = downloader.status(job, Detail::All)?;
    println!(
        "done: {} landed, {} failed, {} bytes",
        status.finished, status.failed, status.bytes
    );
    drop(downloader);
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
