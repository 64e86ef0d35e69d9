//! `haul demo`: the main job on an embedded default, against a loopback origin.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use haul::{Downloader, HttpConfig, JobSpec, Template};
use haul_origin::Origin;
use rayon::prelude::*;

use crate::run::{self, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How many objects the range job has.
    #[arg(long, value_name = "N", default_value_t = 3000)]
    objects: u64,
    /// The size of each object in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    size: u64,
    /// Download threads.
    #[arg(long, value_name = "N", default_value_t = 16)]
    workers: usize,
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("haul-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn Error>> {
    if args.objects == 0 || args.workers == 0 {
        return Err(UsageError("--objects and --workers must be at least 1".into()).into());
    }
    let origin = Origin::builder().object_size(args.size).start()?;
    let last = args.objects - 1;
    let width = last.to_string().len().max(4);
    let template = origin.url(&format!("/demo/shard-{{{:0width$}..{last}}}.bin", 0));
    let dir = TempDir::new()?;
    let downloader = Downloader::builder()
        .mountpath(&dir.0)
        .workers_per_target(args.workers)
        .http(HttpConfig::default().idle_connections_per_host(args.workers))
        .build()?;
    say!(
        "haul demo: {} objects x {} bytes from {} into {}",
        args.objects,
        args.size,
        origin.addr(),
        dir.0.display()
    );

    let started = Instant::now();
    let job = downloader.submit(JobSpec::range(template.as_str()).description("demo"))?;
    let summary = run::wait_all(&downloader, &[job], started, false)?;
    let code = summary.report();
    drop(downloader);

    let stats = origin.stats();
    say!(
        "origin saw {} requests on {} connections, peak {} at once",
        stats.requests,
        stats.connections,
        stats.peak_concurrent
    );
    let mismatched = verify(&Template::parse(&template)?, &dir.0, args.size);
    if mismatched > 0 {
        return Err(format!("{mismatched} objects did not match the origin's bytes").into());
    }
    if code == ExitCode::SUCCESS {
        say!(
            "verified: every byte of all {} objects matches",
            args.objects
        );
    }
    Ok(code)
}

/// Checks every landed file against the origin's bytes (CPU-bound: rayon). Returns how many
/// are missing or differ.
fn verify(template: &Template, root: &Path, size: u64) -> u64 {
    (0..template.len())
        .into_par_iter()
        .filter(|&i| {
            let url = template.get(i).expect("index below len");
            let name = url.rsplit('/').next().unwrap_or_default();
            match std::fs::read(root.join(name)) {
                Ok(bytes) => bytes != haul_origin::body(&format!("/demo/{name}"), size),
                Err(_) => true,
            }
        })
        .count() as u64
}
