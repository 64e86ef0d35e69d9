//! Memory of a huge job: submits a 10,000,000-name range job against a loopback origin,
//! lets 100,000 objects land, aborts it, and prints the process's peak resident memory.
//! The job is expanded lazily and queues are bounded, so the peak does not depend on the
//! job's size. `benches/peers.sh` (case d) runs it:
//!
//! ```sh
//! cargo run --release --example big_job_memory
//! ```

mod common;

use std::time::Duration;

use haul::{Detail, Downloader, JobSpec};
use haul_origin::Origin;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const LAND: u64 = 100_000;
    let origin = Origin::builder().object_size(1024).start()?;
    let dir = std::env::temp_dir().join(format!("haul-big-job-{}", std::process::id()));
    let downloader = Downloader::builder()
        .mountpath(&dir)
        .workers_per_target(8)
        .build()?;
    let job = downloader.submit(JobSpec::range(origin.url("/big/o-{0000000..9999999}.bin")))?;
    loop {
        let status = downloader.status(job, Detail::OnlyActive)?;
        if status.finished + status.failed >= LAND {
            break;
        }
        if downloader.wait(job, Duration::from_millis(100))? {
            break;
        }
    }
    downloader.abort(job)?;
    assert!(
        downloader.wait(job, Duration::from_secs(60))?,
        "abort finished the job"
    );
    let status = downloader.status(job, Detail::OnlyActive)?;
    drop(downloader);
    std::fs::remove_dir_all(&dir)?;
    let peak = common::peak_rss();
    println!(
        "job of {} objects: {} landed, {} failed, {} cancelled; peak RSS {peak}",
        status.total.unwrap_or(0),
        status.finished,
        status.failed,
        status.cancelled
    );
    Ok(())
}
