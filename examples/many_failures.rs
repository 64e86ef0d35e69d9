//! Memory of a job whose every object fails: 1,000,000 names against a loopback origin that
//! answers each with 404, no retries. The job keeps exact counts (by reason, too) but only
//! the first `MAX_KEPT_FAILURES` failures in full, so its memory stays flat however many
//! fail. Prints the failures kept and the process's peak resident memory
//! (BENCHMARKS.md, "Memory of a job that fails"). The origin runs in a child process (this
//! program again, with `serve`): it counts requests per path, which is its memory, not
//! haul's.
//!
//! ```sh
//! cargo run --release --example many_failures [-- OBJECTS]
//! ```

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use haul::{Detail, Downloader, JobSpec, RetryPolicy};
use haul_origin::{Faults, Origin};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("serve") {
        // The child: an origin that answers 404, until its parent closes stdin.
        let mut not_found = Faults::default();
        not_found.status = Some(404);
        let origin = Origin::builder().faults(not_found).start()?;
        println!("{}", origin.url(""));
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        return Ok(());
    }
    let objects: u64 = arg.map_or(Ok(1_000_000), |n| n.parse())?;
    let mut server = Command::new(std::env::current_exe()?)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut base_url = String::new();
    BufReader::new(server.stdout.take().expect("piped")).read_line(&mut base_url)?;
    let base_url = base_url.trim().to_owned();
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("haul-many-failures-{}", std::process::id()));
    let downloader = Downloader::builder()
        .mountpath(&dir)
        .workers_per_target(16)
        .build()?;
    let width = (objects.max(2) - 1).to_string().len();
    let template = format!("/gone/o-{{{:0width$}..{}}}.bin", 0, objects - 1);
    let started = Instant::now();
    let job = downloader
        .submit(JobSpec::range(format!("{base_url}{template}")).retry(RetryPolicy::none()))?;
    while !downloader.wait(job, Duration::from_secs(1))? {}
    let status = downloader.status(job, Detail::All)?;
    let elapsed = started.elapsed();
    drop(downloader);
    drop(server.stdin.take());
    server.wait()?;
    std::fs::remove_dir_all(&dir)?;
    let peak = common::peak_rss();
    println!(
        "job of {} objects: {} failed ({:?}) in {elapsed:.1?}, {} kept in full; peak RSS {peak}",
        status.total.unwrap_or(0),
        status.failed,
        status.failure_reasons,
        status.failures.len(),
    );
    Ok(())
}
