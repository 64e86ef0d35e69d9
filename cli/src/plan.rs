//! `haul plan`: a manifest of URLs, templates, lists and `hf://` repositories on stdout —
//! every object's name, size, digest and validator where known — with the total and an
//! estimate of the time at a rate measured now.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use haul::Manifest;
use indicatif::HumanBytes;

use crate::run::UsageError;

/// `haul plan --help`'s examples: each command in it is parsed by a test.
pub(crate) const EXAMPLES: &str = "\
Examples:
  # Pin a Hugging Face dataset at today's commit, then fetch exactly that next month
  haul plan hf://datasets/org/corpus > corpus.manifest
  haul get --manifest corpus.manifest -o corpus/

  # A range of shards, their sizes and ETags
  haul plan 'https://host/shard-{0000..0999}.tar' > shards.manifest

  # The objects under a bucket prefix (named as `s3 get` lands them)
  haul plan s3://bucket/shards/ > shards.manifest

  # Check a copy against it
  haul verify corpus/ --manifest corpus.manifest
";

/// How many URLs are probed at once.
const PROBES: usize = 16;
/// Bytes of the largest object fetched to measure the rate.
const SAMPLE_BYTES: u64 = 8 << 20;
/// The connections the estimate assumes at most (an adaptive run's start is 8, and grows).
const ESTIMATE_CONNECTIONS: u64 = 16;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// URLs, range templates, hf:// repositories (as `get` takes them) or s3://bucket/prefix
    /// (every object under it, named as `s3 get` lands it, with its size and ETag).
    sources: Vec<String>,
    /// A file of URLs, one per line, or - for stdin (as `get --list`).
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// An extra request header, `NAME: VALUE`, for the URLs' probes; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = crate::get::parse_header)]
    headers: Vec<(String, String)>,
    /// Skip measuring the rate (no estimate; nothing of any body is fetched).
    #[arg(long)]
    no_estimate: bool,
    /// Pin each object of an s3:// source to its version id (one HEAD an object, in a bucket
    /// that keeps versions): `get --manifest` then fetches those versions even after the
    /// keys are written again.
    #[arg(long)]
    s3_versions: bool,
    #[command(flatten)]
    patterns: crate::patterns::PatternArgs,
    #[command(flatten, next_help_heading = "Network options")]
    net: crate::net::NetArgs,
    #[command(flatten, next_help_heading = "Hugging Face options")]
    hf: crate::hf::HfArgs,
    #[command(flatten, next_help_heading = "S3 options")]
    s3: crate::net::S3Args,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn Error>> {
    if args.sources.is_empty() && args.list.is_none() {
        return Err(UsageError(
            "give at least one URL, template or hf:// source, or --list FILE".into(),
        )
        .into());
    }
    let select = args.patterns.selection()?;
    let http = haul::HttpClient::new(args.net.http()?);
    let mut manifest = Manifest::new();
    // The headers a sample of an object needs, by name: the Hub's token for its files.
    let mut sample_headers: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut named = Vec::new();
    let mut web_sources = Vec::new();
    let mut hub = None;
    for source in &args.sources {
        if source.starts_with("s3://") {
            let (bucket, prefix) = crate::s3::split_s3_url(source)?;
            let config = args.s3.config(&args.net)?;
            let bucket =
                haul::Bucket::new(bucket, &config).map_err(|e| UsageError(e.to_string()))?;
            let listed = Manifest::from_bucket(&bucket, prefix, &select, args.s3_versions)?;
            for note in listed.notes() {
                manifest.note(note.clone());
            }
            for entry in listed.entries() {
                add(&mut manifest, entry.clone())?;
            }
            continue;
        }
        if haul::HfPath::is_hf(source) {
            let client = match &hub {
                Some(client) => client,
                None => hub.insert(args.hf.client(&args.net)?),
            };
            let snapshot = crate::hf::snapshot(client, source, &select)?;
            let planned = Manifest::from_snapshot(&snapshot);
            for note in planned.notes() {
                manifest.note(note.clone());
            }
            for entry in planned.entries() {
                add(&mut manifest, entry.clone())?;
                sample_headers.push((entry.name.clone(), snapshot.headers()));
            }
            continue;
        }
        manifest.note(format!("source {}", haul::redact_url(source)));
        web_sources.push(source);
    }
    if let Some(path) = &args.list {
        manifest.note(format!("source --list {}", path.display()));
    }
    for (name, url) in crate::get::expand_urls(web_sources, args.list.as_deref())? {
        let name = match name {
            Some(name) => name,
            None => haul::name_from_url(&url)
                .map_err(|e| UsageError(e.to_string()))?
                .to_string(),
        };
        named.push((name, url));
    }
    named.retain(|(name, _)| select.matches(name));
    if !named.is_empty() {
        let probed = Manifest::probe(&http, &named, &args.headers, &args.net.retry(), PROBES);
        match probed {
            Ok(probed) => {
                for entry in probed.entries() {
                    add(&mut manifest, entry.clone())?;
                    sample_headers.push((entry.name.clone(), args.headers.clone()));
                }
            }
            Err(failures) => {
                for failure in &failures {
                    tell!("failed: {}", haul::error_chain(failure));
                }
                tell!(
                    "no manifest: {} of {} objects could not be probed",
                    failures.len(),
                    named.len()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if manifest.is_empty() {
        tell!("no objects matched");
        return Ok(ExitCode::FAILURE);
    }
    manifest.note(format!(
        "{} objects, {} bytes ({})",
        manifest.len(),
        manifest.total_bytes(),
        HumanBytes(manifest.total_bytes())
    ));
    if !args.no_estimate
        && let Some(note) = estimate(&http, &manifest, &sample_headers, &args.net.retry())
    {
        manifest.note(note);
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{manifest}")?;
    out.flush()?;
    if !crate::run::output().quiet {
        tell!(
            "{} objects, {}",
            manifest.len(),
            HumanBytes(manifest.total_bytes())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds `entry`, refusing a second object under one name (two sources, or two URLs with
/// one last segment: a list's `NAME<TAB>URL` lines name them apart).
fn add(manifest: &mut Manifest, entry: haul::ManifestEntry) -> Result<(), UsageError> {
    if let Some(first) = manifest.get(&entry.name) {
        return Err(UsageError(format!(
            "two objects would land under {:?}: {} and {}",
            entry.name,
            haul::redact_url(&first.url),
            haul::redact_url(&entry.url)
        )));
    }
    manifest.push(entry);
    Ok(())
}

/// The time the manifest would take at the rate one connection gets now (the first
/// [`SAMPLE_BYTES`] of the largest object, fetched and thrown away), with up to
/// [`ESTIMATE_CONNECTIONS`] at once: a note, or `None` when nothing could be measured.
fn estimate(
    http: &haul::HttpClient,
    manifest: &Manifest,
    headers: &[(String, Vec<(String, String)>)],
    retry: &haul::RetryPolicy,
) -> Option<String> {
    let largest = manifest.entries().into_iter().max_by_key(|e| e.size)?;
    if largest.size == 0 {
        return None;
    }
    let mut task =
        haul::ObjectTask::new(largest.url.as_str(), haul::ObjectName::new("sample").ok()?)
            .retry(*retry);
    for (name, value) in headers
        .iter()
        .find(|(n, _)| *n == largest.name)
        .map(|(_, h)| h.as_slice())
        .unwrap_or_default()
    {
        task = task.header(name.as_str(), value.as_str());
    }
    let cancel = haul::CancelToken::new();
    let mut sink = Sample {
        left: SAMPLE_BYTES.min(largest.size),
        got: 0,
        cancel: &cancel,
    };
    let started = Instant::now();
    let _ = haul::download_to(http, &task, &mut sink, &haul::Progress::new(), &cancel);
    let elapsed = started.elapsed().max(Duration::from_millis(1));
    if sink.got == 0 {
        return None;
    }
    let rate = sink.got as f64 / elapsed.as_secs_f64();
    let connections = ESTIMATE_CONNECTIONS.min(manifest.len() as u64).max(1);
    let seconds = manifest.total_bytes() as f64 / (rate * connections as f64);
    Some(format!(
        "estimate: about {} with {connections} connections at {}/s each (measured: {} of {} in {})",
        crate::run::elapsed_text(Duration::from_secs_f64(seconds.max(0.001))),
        HumanBytes(rate as u64),
        HumanBytes(sink.got),
        largest.name,
        crate::run::elapsed_text(elapsed),
    ))
}

/// Counts a sample's bytes and stops the transfer once it has enough.
struct Sample<'a> {
    left: u64,
    got: u64,
    cancel: &'a haul::CancelToken,
}

impl Write for Sample<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.got += buf.len() as u64;
        self.left = self.left.saturating_sub(buf.len() as u64);
        if self.left == 0 {
            self.cancel.cancel();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
