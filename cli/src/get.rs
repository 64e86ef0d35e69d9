//! `haul get`: URLs, range templates and URL lists into one or more output directories, or a
//! bucket prefix.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use haul::JobSpec;

use crate::run::{self, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// URLs or range templates (`https://host/shard-{0000..0999}.tar`); each is one job.
    sources: Vec<String>,
    /// A file of URLs, one per line (`#` starts a comment; `name<TAB>url` names the object).
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// An extra request header, `NAME: VALUE`; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Write the objects to stdout, one after another in the order given, instead of into
    /// files (one connection; the summary goes to stderr).
    #[arg(long, conflicts_with_all = ["skip_existing", "revalidate"])]
    stdout: bool,
    #[command(flatten)]
    patterns: crate::patterns::PatternArgs,
    #[command(flatten, next_help_heading = "Job options")]
    job: crate::jobs::JobArgs,
    #[command(flatten, next_help_heading = "Network options")]
    net: crate::net::NetArgs,
    #[command(flatten, next_help_heading = "S3 options")]
    s3: crate::net::S3Args,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn Error>> {
    if args.sources.is_empty() && args.list.is_none() {
        return Err(UsageError("give at least one URL or template, or --list FILE".into()).into());
    }
    let select = args.patterns.selection()?;
    let mut specs = Vec::new();
    // What each job is called when it takes nothing.
    let mut shown = Vec::new();
    for source in &args.sources {
        specs.push(JobSpec::range(source.as_str()));
        shown.push(source.clone());
    }
    if let Some(path) = &args.list {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read --list {}: {e}", path.display())))?;
        let pairs = parse_list(&text);
        if pairs.is_empty() {
            return Err(UsageError(format!("--list {} has no URLs", path.display())).into());
        }
        specs.push(JobSpec::new(haul::Source::Multi(pairs)));
        shown.push(format!("--list {}", path.display()));
    }
    let digests = args.job.digests()?;
    if args.stdout {
        return to_stdout(&args, &digests, &select);
    }
    let downloader = args.job.downloader(&args.net, &args.s3)?;
    let started = Instant::now();
    let mut jobs = Vec::new();
    for spec in specs {
        let mut spec = args
            .job
            .apply(spec, &args.net, &digests)
            .select(select.clone());
        for (name, value) in &args.headers {
            spec = spec.header(name.as_str(), value.as_str());
        }
        jobs.push(
            downloader
                .submit(spec)
                .map_err(|e| UsageError(haul::error_chain(&e)))?,
        );
    }
    let mut summary = run::wait_all(&downloader, &jobs, started)?;
    summary.dry_run = args.job.dry_run;
    let code = summary.report();
    let filters: Vec<String> = (!select.is_all())
        .then(|| select.shown())
        .into_iter()
        .collect();
    // Only a selection can leave a job with nothing (an empty template or list is refused).
    let none = !select.is_all() && summary.unmatched(&shown, &filters);
    Ok(if none { ExitCode::FAILURE } else { code })
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
    select: &haul::KeySelection,
) -> Result<ExitCode, Box<dyn Error>> {
    let mut urls: Vec<(Option<String>, String)> = Vec::new();
    for source in &args.sources {
        let template =
            haul::Template::parse(source).map_err(|e| UsageError(haul::error_chain(&e)))?;
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
        let name = name.or_else(|| haul::name_from_url(&url).ok().map(|n| n.to_string()));
        if name.as_deref().is_some_and(|n| !select.matches(n)) {
            continue;
        }
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
                eprintln!("failed: {}", haul::error_chain(&e));
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
