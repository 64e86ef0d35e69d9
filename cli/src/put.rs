//! `haul put PATH... s3://bucket/prefix`: local files and directories into a bucket prefix,
//! through the same downloader and S3 sink as `get -o s3://…`.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use haul::{Concurrency, Downloader, Existing, JobSpec, S3Target};

use crate::net::parse_size;
use crate::run::UsageError;

/// `haul put --help`'s examples: each line that starts with `haul` is parsed by a test.
pub(crate) const EXAMPLES: &str = "\
Examples:
  # Every file under data/ as datasets/v1/PATH (a rerun uploads only what changed)
  haul put data/ s3://bucket/datasets/v1/

  # Two files as shards/a.tar and shards/b.tar
  haul put a.tar b.tar s3://bucket/shards/

  # What would be uploaded: the .tar files under data/, nothing sent
  haul put --include '*.tar' --dry-run data/ s3://bucket/x/

  # Into an S3-compatible store on this machine (MinIO, SeaweedFS)
  haul put --endpoint http://127.0.0.1:8333 data/ s3://bucket/p/
";

/// The selection's options, reworded for files: put selects files under the directories
/// given, not keys under a prefix.
const FILE_SELECTION_HELP: [(&str, &str); 7] = [
    (
        "include",
        "Only files whose paths (under the directory given; a file given by itself, its name) \
         match this glob: `*` within a path segment, `**` across them, `?`, `[a-z]`, `{a,b}`; \
         without a `/` it matches the last segment. Repeat for more (any may match)",
    ),
    (
        "exclude",
        "Leave out files whose paths match this glob (as --include reads it). Repeat for more",
    ),
    ("min_size", "Leave out files smaller than this, e.g. 1MiB"),
    ("max_size", "Leave out files larger than this, e.g. 4GiB"),
    (
        "min_age",
        "Leave out files modified less than this long ago: seconds, or with a unit s, m, h, d \
         or w (90m, 7d)",
    ),
    (
        "max_age",
        "Leave out files modified more than this long ago (as --min-age reads it)",
    ),
    (
        "files_from",
        "Only the files listed in FILE, one path per line, relative to the directory given \
         (surrounding spaces stripped; blank lines and lines starting with # skipped)",
    ),
];

/// `put`'s command with the selection's help in files' words.
pub(crate) fn reword(mut command: clap::Command) -> clap::Command {
    for (id, help) in FILE_SELECTION_HELP {
        command = command.mut_arg(id, |arg| arg.help(help));
    }
    command
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files and directories to upload, then where: s3://bucket/prefix. A file lands as
    /// PREFIX/NAME, each file under a directory as PREFIX/PATH relative to that directory
    /// (the destination is always a directory, as with rclone copy). Symbolic links inside
    /// directories are skipped, not followed
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    paths: Vec<String>,
    #[command(flatten)]
    select: crate::s3::SelectArgs,
    /// Upload every file, even one whose object already holds the same bytes. By default a
    /// file is skipped when the bucket has an object of its size whose stored checksum (or
    /// MD5 ETag) matches it, so a rerun uploads only what changed
    #[arg(long, conflicts_with = "skip_existing")]
    force: bool,
    /// Skip every file whose key is in the bucket already, whatever it holds (no file is
    /// read to compare)
    #[arg(long)]
    skip_existing: bool,
    /// Show what would be uploaded and skipped, one line each on stderr, then the counts;
    /// nothing is uploaded
    #[arg(long)]
    dry_run: bool,
    /// Pin the parallel uploads to N. By default their number adapts to the store (it grows
    /// while more uploads move more bytes a second, backs off on SlowDown)
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Parts of one large file uploaded at once (over as many connections)
    #[arg(long, value_name = "N", default_value_t = haul::DEFAULT_UPLOAD_CONNECTIONS)]
    parts: usize,
    /// Files above this size are uploaded in parts of it (multipart; at least 5MiB)
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size)]
    part_size: u64,
    /// The most bytes buffered at once, all uploads together (each file in flight buffers
    /// one part, or all of it when smaller). Default: one part per upload
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// At most this many bytes per second, all uploads together, e.g. 20MiB (K/KiB, M/MiB,
    /// G/GiB are powers of 1024, KB, MB, GB of 1000; default: no limit)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    rate_limit: Option<u64>,
    /// Take only shard I of N of the files (0-based): N machines running the same command
    /// with shards 0..N upload every file exactly once
    #[arg(long, value_name = "I/N", value_parser = crate::net::parse_shard)]
    shard: Option<(u32, u32)>,
    #[command(flatten, next_help_heading = "S3 options")]
    s3: crate::net::S3Args,
    #[command(flatten, next_help_heading = "Network options")]
    net: crate::net::NetArgs,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn Error>> {
    let (destination, paths) = args.paths.split_last().expect("clap asks for two");
    let (bucket, prefix) = crate::s3::split_s3_url(destination).map_err(|_| {
        UsageError(format!(
            "the last argument, {destination:?}, must be where to upload: s3://bucket/prefix"
        ))
    })?;
    if let Some(path) = paths.iter().find(|p| p.starts_with("s3://")) {
        return Err(UsageError(format!(
            "{path}: put uploads local files; to copy between buckets use `haul s3 get {path} -o {destination}`"
        ))
        .into());
    }
    let select = args.select.selection()?;
    let config = args.s3.config(&args.net)?;
    let bucket = haul::Bucket::new(bucket, &config).map_err(|e| UsageError(e.to_string()))?;
    let target = S3Target::new(&bucket, prefix)
        .part_size(args.part_size)
        .upload_connections(args.parts);
    let concurrency = args
        .workers
        .map_or_else(Concurrency::adaptive, Concurrency::fixed);
    let mut builder = Downloader::builder()
        .s3_target(target)
        .concurrency(concurrency)
        .dry_run(args.dry_run)
        .http(args.net.http()?);
    if let Some(bytes) = args.memory {
        builder = builder.memory_budget(bytes);
    }
    let uploader = builder
        .build()
        .map_err(|e| UsageError(haul::error_chain(&e)))?;
    let mut spec = JobSpec::local(paths.iter().map(PathBuf::from))
        .existing(if args.force {
            Existing::Replace
        } else if args.skip_existing {
            Existing::Skip
        } else {
            Existing::Revalidate
        })
        .select(select.clone())
        .retry(args.net.retry());
    if let Some(rate) = args.rate_limit {
        spec = spec.rate_limit(rate);
    }
    if let Some((index, count)) = args.shard {
        spec = spec.shard(index, count);
    }
    let started = Instant::now();
    let job = uploader.submit(spec).map_err(|e| crate::run::refused(&e))?;
    let mut summary = crate::run::wait_all(&uploader, &[job], started, args.dry_run)?;
    summary.verb = "upload";
    let code = summary.report();
    let filters: Vec<String> = (!select.is_all())
        .then(|| select.shown())
        .into_iter()
        .collect();
    let none = summary.unmatched(&[paths.join(" ")], &filters);
    Ok(if none { ExitCode::FAILURE } else { code })
}
