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
    /// Skip objects whose file already exists, without asking the server.
    #[arg(long, conflicts_with = "revalidate")]
    skip_existing: bool,
    /// Skip objects whose file already exists when the server says it is unchanged and
    /// complete (one bodiless request each); download the others.
    #[arg(long)]
    revalidate: bool,
    /// A `sha256sum` manifest (`HEX  NAME` lines, NAME as the object lands): each object
    /// listed must have that digest, or it fails (after its retries).
    #[arg(long, value_name = "FILE")]
    sha256: Option<PathBuf>,
    /// An extra request header, `NAME: VALUE`; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// At most this many bytes per second for each job (its transfers together).
    #[arg(long, value_name = "BYTES")]
    rate_limit: Option<u64>,
    /// At most this many of each job's objects in flight at once.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Take only shard I of N of every job (0-based): N machines running the same command
    /// with shards 0..N download every object exactly once, with no coordinator.
    #[arg(long, value_name = "I/N", value_parser = crate::net::parse_shard)]
    shard: Option<(u32, u32)>,
    /// fsync each object (and its directory) before it counts as landed, so it survives a
    /// power cut; off by default, as in curl and wget.
    #[arg(long)]
    fsync: bool,
    /// Connections per large object: objects above 64 MiB are fetched in 16 MiB ranged parts
    /// over this many connections (1 = one connection per object).
    #[arg(long, value_name = "N", default_value_t = 1)]
    parts: usize,
    /// Write the objects to stdout, one after another in the order given, instead of into
    /// files (one connection; the summary goes to stderr).
    #[arg(long, conflicts_with_all = ["skip_existing", "revalidate"])]
    stdout: bool,
    #[command(flatten)]
    net: crate::net::NetArgs,
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
    let digests = match &args.sha256 {
        Some(path) => parse_manifest(path)?,
        None => Vec::new(),
    };
    if args.stdout {
        return to_stdout(&args, &digests);
    }
    let mut builder = Downloader::builder()
        .workers_per_mountpath(args.workers_per_mountpath)
        .fsync(args.fsync)
        .http(args.net.http()?);
    for dir in &args.out {
        builder = builder.mountpath(dir);
    }
    let downloader = builder.build()?;
    let started = Instant::now();
    let mut jobs = Vec::new();
    for spec in specs {
        let mut spec = spec
            .existing(if args.skip_existing {
                haul::Existing::Skip
            } else if args.revalidate {
                haul::Existing::Revalidate
            } else {
                haul::Existing::Replace
            })
            .retry(args.net.retry());
        if let Some((index, count)) = args.shard {
            spec = spec.shard(index, count);
        }
        for (name, value) in &args.headers {
            spec = spec.header(name.as_str(), value.as_str());
        }
        if let Some(rate) = args.rate_limit {
            spec = spec.rate_limit(rate);
        }
        if let Some(n) = args.max_connections {
            spec = spec.max_connections(n);
        }
        if args.parts > 1 {
            spec = spec.parts(haul::PartsPolicy::new(args.parts));
        }
        for (name, digest) in &digests {
            spec = spec.sha256(name.clone(), *digest);
        }
        jobs.push(
            downloader
                .submit(spec)
                .map_err(|e| UsageError(run::chain(&e)))?,
        );
    }
    let summary = run::wait_all(&downloader, &jobs, started)?;
    Ok(summary.report())
}

/// `-H 'NAME: VALUE'`.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected NAME: VALUE"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// `--stdout`: every object of every source, in order, into stdout.
fn to_stdout(
    args: &Args,
    digests: &[(String, haul::Sha256Digest)],
) -> Result<ExitCode, Box<dyn Error>> {
    let mut urls: Vec<(Option<String>, String)> = Vec::new();
    for source in &args.sources {
        let template = haul::Template::parse(source).map_err(|e| UsageError(run::chain(&e)))?;
        urls.extend(template.iter().map(|url| (None, url)));
    }
    if let Some(path) = &args.list {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read --list {}: {e}", path.display())))?;
        urls.extend(parse_list(&text));
    }
    let client = haul::HttpClient::new(args.net.http()?);
    // Unbuffered: the body arrives in large blocks, and stdout's line buffering would split
    // binary data at every newline.
    let mut out =
        std::fs::File::from(std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned()?);
    let started = Instant::now();
    let (mut landed, mut failed, mut bytes) = (0u64, 0u64, 0u64);
    for (name, url) in urls {
        let name = name.or_else(|| haul::url::object_name(&url).ok().map(|n| n.to_string()));
        let mut task = haul::ObjectTask::new(url.as_str(), haul::ObjectName::new("-")?)
            .retry(args.net.retry());
        if let Some(digest) = name.and_then(|n| digests.iter().find(|(d, _)| *d == n)) {
            task = task.sha256(digest.1);
        }
        match haul::download_to(
            &client,
            &task,
            &mut out,
            &haul::Progress::new(),
            &haul::CancelToken::new(),
        ) {
            Ok(n) => {
                landed += 1;
                bytes += n;
            }
            Err(e) => {
                failed += 1;
                eprintln!("failed: {}", run::chain(&e));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "{landed} written, {failed} failed; {bytes} bytes in {secs:.3} s: {:.1} MB/s",
        bytes as f64 / 1e6 / secs
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The `(name, digest)` pairs of a `sha256sum` manifest: `HEX  NAME` or `HEX *NAME` lines.
fn parse_manifest(path: &std::path::Path) -> Result<Vec<(String, haul::Sha256Digest)>, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read --sha256 {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad =
            |why: String| UsageError(format!("--sha256 {} line {}: {why}", path.display(), n + 1));
        let (hex, name) = line
            .split_once(' ')
            .ok_or_else(|| bad("expected `HEX  NAME`".into()))?;
        let name = name.trim_start_matches(' ').trim_start_matches('*');
        let name = name.strip_prefix("./").unwrap_or(name);
        let digest = hex
            .parse()
            .map_err(|e: haul::DigestError| bad(e.to_string()))?;
        if name.is_empty() {
            return Err(bad("no name".into()));
        }
        out.push((name.to_owned(), digest));
    }
    Ok(out)
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
