//! `haul get`: URLs, range templates and URL lists into one or more mountpaths.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use haul::{Downloader, JobSpec};

use crate::run::{self, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// URLs or range templates (`https://host/shard-{0000..0999}.tar`); each is one job.
    sources: Vec<String>,
    /// A file of URLs, one per line (`#` starts a comment; `name<TAB>url` names the object).
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// A directory to download into; repeat it for several disks (objects are spread over
    /// them by highest-random-weight hashing of their names).
    #[arg(short = 'o', long = "out", value_name = "DIR", default_value = ".")]
    out: Vec<PathBuf>,
    /// Download threads per output directory.
    #[arg(long, value_name = "N", default_value_t = 8)]
    workers_per_mountpath: usize,
    /// Skip objects whose file already exists.
    #[arg(long)]
    skip_existing: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn Error>> {
    if args.sources.is_empty() && args.list.is_none() {
        return Err(UsageError("give at least one URL or template, or --list FILE".into()).into());
    }
    let mut specs = Vec::new();
    for source in &args.sources {
        specs.push(JobSpec::range(source.as_str()));
    }
    if let Some(path) = &args.list {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read --list {}: {e}", path.display())))?;
        let pairs = parse_list(&text);
        if pairs.is_empty() {
            return Err(UsageError(format!("--list {} has no URLs", path.display())).into());
        }
        specs.push(JobSpec::new(haul::Source::Multi(pairs)));
    }
    let mut builder = Downloader::builder().workers_per_mountpath(args.workers_per_mountpath);
    for dir in &args.out {
        builder = builder.mountpath(dir);
    }
    let downloader = builder.build()?;
    let started = Instant::now();
    let mut jobs = Vec::new();
    for spec in specs {
        let spec = spec.existing(if args.skip_existing {
            haul::Existing::Skip
        } else {
            haul::Existing::Replace
        });
        jobs.push(
            downloader
                .submit(spec)
                .map_err(|e| UsageError(run::chain(&e)))?,
        );
    }
    let summary = run::wait_all(&downloader, &jobs, started)?;
    Ok(summary.report())
}

/// Lines of `url` or `name<TAB>url`; blank lines and `#` comments are skipped.
fn parse_list(text: &str) -> Vec<(Option<String>, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| match line.split_once('\t') {
            Some((name, url)) => (Some(name.trim().to_owned()), url.trim().to_owned()),
            None => (None, line.to_owned()),
        })
        .collect()
}
