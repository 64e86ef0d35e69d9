//! `haul s3 ...`: S3 commands. Credentials and endpoint come from the standard AWS
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`,
//! `AWS_REGION`) or the profile files; `--endpoint` and `--region` override.

use std::error::Error;
use std::io::{self, Write};
use std::process::ExitCode;

use haul::Bucket;

use crate::run::UsageError;

/// `haul s3 cat --help`'s examples: each command in it is parsed by a test.
const CAT_EXAMPLES: &str = "\
Examples:
  # Two objects, one after the other
  haul s3 cat s3://bucket/part-0000.csv s3://bucket/part-0001.csv | wc -l

  # A hundred shards (the shell expands the braces) through 1 GiB of memory at most
  haul s3 cat --memory 1GiB s3://bucket/shard-{0000..0099}.tar | tar -t
";

/// `haul s3 get --help`'s examples.
const GET_EXAMPLES: &str = "\
Examples:
  # Every object under shards/ into data/ (a rerun continues where the last one stopped)
  haul s3 get s3://bucket/shards/ -o data/

  # The keys a wildcard matches
  haul s3 get 's3://bucket/logs/2026-*.gz' -o logs/

  # From a public bucket, no credentials, CSV files only
  haul s3 get --no-sign-request s3://noaa-ghcn-pds/csv/ --include '*.csv' -o ghcn/

  # Keep a directory in step with a prefix: new and changed objects, deletions
  haul s3 get --sync s3://bucket/models/ -o models/

  # From one bucket into another
  haul s3 get s3://src/a/ -o s3://dst/b/

  # From an S3-compatible store on this machine (MinIO, SeaweedFS)
  haul s3 get --endpoint http://127.0.0.1:8333 s3://bucket/p/ -o data/
";

/// `haul s3 ls --help`'s examples.
const LS_EXAMPLES: &str = "\
Examples:
  # Sizes (bytes) and keys under shards/
  haul s3 ls s3://bucket/shards/

  # The keys of objects of 1 GiB or more, as JSON lines
  haul s3 ls --json --min-size 1GiB s3://bucket/ | jq -r .key
";

/// Every example of `haul s3`'s subcommands, for the test that parses them.
#[cfg(test)]
pub(crate) const EXAMPLES: [&str; 3] = [CAT_EXAMPLES, GET_EXAMPLES, LS_EXAMPLES];

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten, next_help_heading = "S3 options")]
    s3: crate::net::S3Args,
    #[command(flatten, next_help_heading = "Network options")]
    net: crate::net::NetArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write objects to stdout, in the order given, fetched in parallel within a memory budget.
    /// An object that cannot be fetched (after its retries) is left out and named on stderr,
    /// and the exit status is 1.
    #[command(after_help = CAT_EXAMPLES)]
    Cat {
        /// Objects as s3://bucket/key; all in one bucket.
        #[arg(required = true)]
        objects: Vec<String>,
        #[command(flatten)]
        fetch: crate::cat::FetchArgs,
    },
    /// Download every object under s3://bucket/prefix into directories or another S3 target
    /// (a backend job: listed page by page while the first objects already download). Each
    /// object lands under its key relative to the prefix's directory (after its last `/`),
    /// as with `aws s3 cp --recursive`, s5cmd and rclone.
    #[command(after_help = GET_EXAMPLES)]
    Get {
        /// s3://bucket/prefix, or s3://bucket/prefix*pattern (s5cmd's wildcards: `*` matches
        /// any characters, `/` included, `?` one, `[a-z]` one of a class); each is one job.
        #[arg(required = true)]
        prefixes: Vec<String>,
        /// Only keys ending with this, e.g. `.tar`.
        #[arg(long)]
        suffix: Option<String>,
        #[command(flatten)]
        select: SelectArgs,
        /// Keep the directories in step with the prefix: skip objects unchanged since haul
        /// downloaded them (size and ETag, no request), fetch changed and new ones, and
        /// delete files haul downloaded whose objects are gone (each named on stderr). Files
        /// haul did not download are never touched.
        #[arg(long)]
        sync: bool,
        /// Land each object under its whole key, not the key relative to the prefix.
        #[arg(long)]
        full_keys: bool,
        #[command(flatten, next_help_heading = "Job options")]
        job: crate::jobs::JobArgs,
    },
    /// List the keys under s3://bucket/prefix: one line each, its size in bytes and its key
    /// (with --json, one JSON object each: key, size, etag, last_modified).
    #[command(after_help = LS_EXAMPLES)]
    Ls {
        /// s3://bucket/prefix, or s3://bucket/prefix*pattern (as for `s3 get`)
        prefix: String,
        #[command(flatten)]
        select: SelectArgs,
    },
}

/// Which keys under the prefix: rclone's globs on the key relative to the prefix, sizes,
/// ages, a list (`put` rewords their help for files).
#[derive(Debug, clap::Args)]
pub(crate) struct SelectArgs {
    #[command(flatten)]
    patterns: crate::patterns::PatternArgs,
    /// Leave out objects smaller than this, e.g. 1MiB
    #[arg(long, value_name = "SIZE", value_parser = crate::net::parse_size)]
    min_size: Option<u64>,
    /// Leave out objects larger than this, e.g. 4GiB
    #[arg(long, value_name = "SIZE", value_parser = crate::net::parse_size)]
    max_size: Option<u64>,
    /// Leave out objects modified less than this long ago: seconds, or with a unit s, m, h,
    /// d or w (90m, 7d)
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    min_age: Option<std::time::Duration>,
    /// Leave out objects modified more than this long ago (as --min-age reads it)
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    max_age: Option<std::time::Duration>,
    /// Only the keys listed in FILE, one per line, relative to the prefix (surrounding
    /// spaces stripped; blank lines and lines starting with # skipped)
    #[arg(long, value_name = "FILE")]
    files_from: Option<std::path::PathBuf>,
}

/// An age: seconds, or a number with a unit s, m, h, d or w.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{text:?}: expected a number of seconds, or one with s, m, h, d or w"
            ));
        }
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("{text:?}: expected a number of seconds, or one with s, m, h, d or w")
    })?;
    Ok(std::time::Duration::from_secs(n.saturating_mul(seconds)))
}

impl SelectArgs {
    pub(crate) fn selection(&self) -> Result<haul::KeySelection, UsageError> {
        let mut select = self.patterns.selection()?;
        if let Some(bytes) = self.min_size {
            select = select.min_size(bytes);
        }
        if let Some(bytes) = self.max_size {
            select = select.max_size(bytes);
        }
        if let Some(age) = self.min_age {
            select = select.min_age(age);
        }
        if let Some(age) = self.max_age {
            select = select.max_age(age);
        }
        if let Some(path) = &self.files_from {
            let text = std::fs::read_to_string(path)
                .map_err(|e| UsageError(format!("--files-from {}: {e}", path.display())))?;
            let keys = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_owned);
            select = select.only(keys);
        }
        Ok(select)
    }
}

/// Splits a prefix at its first wildcard (`*`, `?` or `[`): the literal prefix to list, and
/// `select` with the rest as its wildcard (`*` crossing `/`, as s5cmd reads it).
fn with_wildcard<'a>(
    prefix: &'a str,
    select: &haul::KeySelection,
) -> Result<(&'a str, haul::KeySelection), UsageError> {
    match prefix.find(['*', '?', '[']) {
        None => Ok((prefix, select.clone())),
        Some(at) => {
            let select = select
                .clone()
                .wildcard(&prefix[at..])
                .map_err(|e| UsageError(e.to_string()))?;
            Ok((&prefix[..at], select))
        }
    }
}

/// Splits `s3://bucket/key` into its bucket and key.
pub(crate) fn split_s3_url(url: &str) -> Result<(&str, &str), UsageError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| UsageError(format!("{url:?} is not an s3://bucket/key URL")))?;
    Ok(rest.split_once('/').unwrap_or((rest, "")))
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn Error>> {
    let config = args.s3.config(&args.net)?;
    match args.command {
        Command::Ls { prefix, select } => {
            let (bucket, prefix) = split_s3_url(&prefix)?;
            let (prefix, select) = with_wildcard(prefix, &select.selection()?)?;
            let bucket = Bucket::new(bucket, &config).map_err(|e| UsageError(e.to_string()))?;
            let mut out = io::stdout().lock();
            for object in bucket.list(prefix) {
                let object = object?;
                let relative = object.key.get(prefix.len()..).unwrap_or(&object.key);
                if select.matches_listed(relative, &object) {
                    let written = if crate::run::output().json {
                        writeln!(out, "{}", listed_json(&object))
                    } else {
                        writeln!(out, "{:>12} {}", object.size, object.key)
                    };
                    match written {
                        // `| head` has what it wanted: a listing's reader may stop early.
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                            return Ok(ExitCode::SUCCESS);
                        }
                        other => other?,
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            prefixes,
            suffix,
            select,
            sync,
            full_keys,
            job,
        } => {
            let select = select.selection()?;
            let digests = job.digests()?;
            let downloader = job.downloader(&args.net, &args.s3)?;
            let started = std::time::Instant::now();
            let mut jobs = Vec::new();
            for url in &prefixes {
                let (bucket, prefix) = split_s3_url(url)?;
                let (prefix, select) = with_wildcard(prefix, &select)?;
                let bucket = Bucket::new(bucket, &config).map_err(|e| UsageError(e.to_string()))?;
                let mut spec = haul::JobSpec::s3_prefix(&bucket, prefix)
                    .sync(sync)
                    .relative_names(!full_keys)
                    .select(select);
                if let Some(suffix) = &suffix {
                    spec = spec.suffix(suffix.as_str());
                }
                let spec = job.apply(spec, &args.net, &digests);
                jobs.push(
                    downloader
                        .submit(spec)
                        .map_err(|e| crate::run::refused(&e))?,
                );
            }
            let summary = crate::run::wait_all(&downloader, &jobs, started, job.dry_run)?;
            let code = summary.report();
            let filters: Vec<String> = suffix
                .iter()
                .map(|s| format!("--suffix {s}"))
                .chain((!select.is_all()).then(|| select.shown()))
                .collect();
            let none = summary.unmatched(&prefixes, &filters);
            Ok(if none { ExitCode::FAILURE } else { code })
        }
        Command::Cat { objects, fetch } => {
            let mut keys = Vec::with_capacity(objects.len());
            let mut bucket_name = None;
            for url in &objects {
                let (bucket, key) = split_s3_url(url)?;
                if bucket_name.is_some_and(|b| b != bucket) {
                    return Err(UsageError("all objects must be in one bucket".into()).into());
                }
                bucket_name = Some(bucket);
                keys.push(key.to_owned());
            }
            let bucket = Bucket::new(bucket_name.unwrap_or_default(), &config)
                .map_err(|e| UsageError(e.to_string()))?;
            let fetcher = fetch.fetcher(&args.net)?;
            crate::cat::write_in_order(fetcher.fetch(&bucket, keys))
        }
    }
}

/// One listed object as a JSON line of `s3 ls --json`: its key, size, ETag and when it was
/// last written (RFC 3339, UTC), `null` where the store said nothing.
fn listed_json(object: &haul::ListedObject) -> serde_json::Value {
    let modified = object
        .last_modified
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string());
    serde_json::json!({
        "key": object.key,
        "size": object.size,
        "etag": object.etag,
        "last_modified": modified,
    })
}
