//! A range template from a loopback origin into an S3 bucket: small objects go up with one
//! PUT each, the large one as a multipart upload, and each appears only when complete.
//!
//! ```sh
//! AWS_ENDPOINT_URL=http://127.0.0.1:8333 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
//!     cargo run --release --example into_bucket -- my-bucket landed/
//! ```

use std::time::Duration;

use haul::{Bucket, S3Config};
use haul::{Detail, Downloader, JobSpec, S3Target};
use haul_origin::Origin;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(bucket), prefix) = (args.next(), args.next().unwrap_or_default()) else {
        eprintln!("usage: into_bucket BUCKET [PREFIX]");
        std::process::exit(2);
    };
    let bucket = Bucket::new(&bucket, &S3Config::from_env())?;
    bucket.create()?; // succeeds when it exists already
    let origin = Origin::start()?;
    let downloader = Downloader::builder()
        .s3_target(S3Target::new(&bucket, prefix.as_str()).part_size(8 << 20))
        .workers_per_target(8)
        .memory_budget(64 << 20) // at most 64 MiB of parts in flight, all workers together
        .build()?;
    let small = downloader.submit(JobSpec::range(
        origin.url("/example/shard-{000..199}.bin?size=65536"),
    ))?;
    let large = downloader.submit(JobSpec::single(
        origin.url("/example/large.bin?size=104857600"),
    ))?;
    for job in [small, large] {
        downloader.wait(job, Duration::from_secs(600))?;
        let status = downloader.status(job, Detail::All)?;
        println!(
            "{}: {} stored, {} failed, {} bytes",
            status.description, status.finished, status.failed, status.bytes
        );
        for failure in &status.failures {
            eprintln!("  {}: {}", failure.name, failure.error);
        }
    }
    if let Some(budget) = downloader.memory_use() {
        println!("peak buffered: {} of {} bytes", budget.peak, budget.budget);
    }
    println!(
        "unfinished uploads left behind: {}",
        bucket.uploads(&prefix)?.len()
    );
    Ok(())
}
