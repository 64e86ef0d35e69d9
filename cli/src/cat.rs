//! `haul cat`: URLs and range templates to stdout in the order given, fetched in parallel
//! within a memory budget (the `s3 cat` of the web); and what both `cat`s share: the
//! fetcher's flags and the loop that writes its objects out.

use std::error::Error;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use haul::{Concurrency, Fetcher};

use crate::run::{self, UsageError};

/// `haul cat --help`'s examples: each command in it is parsed by a test.
pub(crate) const EXAMPLES: &str = "\
Examples:
  # A thousand shards, in order, into tar (the GETs adapt; 256 MiB of memory at most)
  haul cat 'https://host/shard-{0000..0999}.tar' | tar -x

  # The URLs of a list, through 1 GiB of memory at most
  haul cat --memory 1GiB --list urls.txt | wc -c

  # With a token
  haul cat -H 'Authorization: Bearer TOKEN' https://host/private/data.jsonl | head

  # A Hugging Face dataset's training shards, in order, into a training loop
  haul cat hf://datasets/org/shards/train | python train.py
";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// URLs or range templates (`https://host/shard-{0000..0999}.tar`), or Hugging Face
    /// repositories (`hf://[datasets/]ORG/NAME[@REVISION][/PATH]`: every file under the path,
    /// in path order, each checked against its size and, for LFS files, its SHA-256),
    /// written in this order.
    sources: Vec<String>,
    /// A file of URLs, one per line, or - for stdin (as `get --list`; names are ignored).
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// An extra request header, `NAME: VALUE`, sent to each URL's own host (not to a host a
    /// redirect leads to); repeat for more.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = crate::get::parse_header)]
    headers: Vec<(String, String)>,
    #[command(flatten)]
    fetch: FetchArgs,
    // --include and --exclude select the files of hf:// sources.
    #[command(flatten)]
    patterns: crate::patterns::PatternArgs,
    #[command(flatten, next_help_heading = "Network options")]
    net: crate::net::NetArgs,
    #[command(flatten, next_help_heading = "Hugging Face options")]
    hf: crate::hf::HfArgs,
}

/// The flags of both `cat`s: how many GETs, how much memory, how large a part.
#[derive(Debug, clap::Args)]
pub(crate) struct FetchArgs {
    /// Pin the parallel GETs to N. By default their number adapts to each host or bucket
    /// (it grows while more GETs bring more bytes a second, backs off on 429, 503 and
    /// SlowDown).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// The most bytes held at once: fetched objects waiting for their turn, and parts of
    /// large ones. At least one part per worker when they are pinned (one part when the
    /// GETs adapt: they start as many as the budget holds parts, at most sixteen).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = crate::net::parse_size)]
    memory: u64,
    /// Objects above 64 MiB are fetched in ranged parts of this size.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = crate::net::parse_size)]
    part_size: u64,
}

impl FetchArgs {
    /// The fetcher these flags ask for, retrying as `net` says.
    pub(crate) fn fetcher(&self, net: &crate::net::NetArgs) -> Result<Fetcher, UsageError> {
        let concurrency = self
            .workers
            .map_or_else(Concurrency::adaptive, Concurrency::fixed);
        // One part per pinned worker; an adaptive pool starts as many as the budget holds.
        let at_start = if concurrency.is_fixed() {
            concurrency.max()
        } else {
            1
        };
        Fetcher::builder()
            .concurrency(concurrency)
            .per_request_workers(concurrency.max())
            .part_size(self.part_size)
            .memory_budget(
                self.memory
                    .max(self.part_size.saturating_mul(at_start as u64)),
            )
            .retry(net.retry())
            .build()
            .map_err(|e| UsageError(e.to_string()))
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn Error>> {
    if args.sources.is_empty() && args.list.is_none() {
        return Err(UsageError("give at least one URL or template, or --list FILE".into()).into());
    }
    let fetcher = args.fetch.fetcher(&args.net)?;
    let hf = args
        .sources
        .iter()
        .filter(|s| haul::HfPath::is_hf(s))
        .count();
    if hf > 0 {
        // One source of headers: the Hub's token must not go to other hosts.
        if hf < args.sources.len() || args.list.is_some() {
            return Err(UsageError(
                "hf:// sources cannot be mixed with URLs or --list in one cat".into(),
            )
            .into());
        }
        let select = args.patterns.selection()?;
        let client = args.hf.client(&args.net)?;
        let mut keys = Vec::new();
        let mut web = None;
        for source in &args.sources {
            let snapshot = crate::hf::snapshot(&client, source, &select)?;
            keys.extend(snapshot.fetch_keys());
            web.get_or_insert_with(|| snapshot.web());
        }
        let web = with_headers(web.unwrap_or_default(), &args.headers);
        return write_in_order(fetcher.fetch(web, keys));
    }
    if !args.patterns.selection()?.is_all() {
        return Err(
            UsageError("--include and --exclude select the files of hf:// sources".into()).into(),
        );
    }
    // Every source is checked before the first byte is written: a typo in the last
    // template is a usage error, not a stream cut short.
    let urls = crate::get::expand_urls(&args.sources, args.list.as_deref())?;
    if urls.is_empty() {
        return Err(UsageError("the sources and the list name no URL".into()).into());
    }
    let urls: Vec<String> = urls.into_iter().map(|(_, url)| url).collect();
    let web = haul::Web::new(haul::HttpClient::new(args.net.http()?));
    write_in_order(fetcher.fetch(with_headers(web, &args.headers), urls))
}

fn with_headers(web: haul::Web, headers: &[(String, String)]) -> haul::Web {
    headers.iter().fold(web, |web, (name, value)| {
        web.header(name.as_str(), value.as_str())
    })
}

/// Writes each object to stdout as it comes, in order; an object that failed is left out
/// and named on stderr (exit 1 at the end). A reader that goes away (`| head`) ends it
/// quietly, with the broken-pipe exit status.
pub(crate) fn write_in_order(objects: haul::Objects) -> Result<ExitCode, Box<dyn Error>> {
    // Unbuffered: objects are written whole, and stdout's line buffering would split
    // binary data at every newline.
    let mut out =
        std::fs::File::from(std::os::fd::AsFd::as_fd(&io::stdout()).try_clone_to_owned()?);
    let started = std::time::Instant::now();
    let (mut landed, mut bytes, mut failures) = (0, 0, Vec::new());
    for object in objects {
        match object {
            Ok(object) => {
                let written = match object.bytes() {
                    Some(all) => out.write_all(all).map(|()| all.len() as u64),
                    None => io::copy(&mut object.into_reader(), &mut out),
                };
                match written {
                    Ok(n) => {
                        bytes += n;
                        landed += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        return Ok(ExitCode::from(run::BROKEN_PIPE_EXIT));
                    }
                    // A streamed object that broke off after its first bytes were written
                    // cannot be left out: the stream ends there, the object named as failed.
                    Err(e) => match e
                        .get_ref()
                        .and_then(|e| e.downcast_ref::<haul::FetchError>())
                    {
                        Some(error) => {
                            tell!("failed: {}", haul::error_chain(error));
                            tell!("stopped: the objects after it were not written");
                            failures.push(fetch_failure_json(error));
                            break;
                        }
                        None => return Err(e.into()),
                    },
                }
            }
            Err(e) => {
                tell!("failed: {}", haul::error_chain(&e));
                failures.push(fetch_failure_json(&e));
            }
        }
    }
    out.flush()?;
    Ok(run::report_stream(
        landed,
        &failures,
        bytes,
        started.elapsed(),
    ))
}

/// One key a `cat` could not fetch, in the JSON `failure_json` gives a download's.
fn fetch_failure_json(error: &haul::FetchError) -> serde_json::Value {
    use haul::FetchErrorKind as Kind;
    let (status, reason) = match &error.kind {
        Kind::NotFound => (Some(404), "HTTP status 404".to_owned()),
        Kind::Status { status } => (Some(*status), format!("HTTP status {status}")),
        Kind::Request(_) => (None, "request failed".to_owned()),
        Kind::Body { .. } => (None, "body broke off".to_owned()),
        Kind::Length { .. } | Kind::NoLength => (None, "wrong length".to_owned()),
        Kind::Digest(mismatch) => (None, format!("{} mismatch", mismatch.algorithm)),
        Kind::Changed(_) => (None, "changed while fetched".to_owned()),
        Kind::Unusable(_) => (None, "unusable response".to_owned()),
        Kind::Cancelled => (None, "cancelled".to_owned()),
        Kind::Url(_) => (None, "malformed URL".to_owned()),
        _ => (None, "failed".to_owned()),
    };
    serde_json::json!({
        "name": error.key,
        "url": error.url,
        "status": status,
        "reason": reason,
        "error": haul::error_chain(error),
    })
}
