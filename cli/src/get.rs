//! `haul get`: URLs, range templates and URL lists into one or more output directories, or a
//! bucket prefix.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use haul::JobSpec;

use crate::run::{self, UsageError};

/// `haul get --help`'s examples: each command in it is parsed by a test.
pub(crate) const EXAMPLES: &str = "\
Examples:
  # A range of shards into data/ (run it again after Ctrl-C or a crash: it continues)
  haul get 'https://host/shard-{0000..0999}.tar' -o data/

  # A list of URLs, spread over two disks
  haul get --list urls.txt -o /mnt/a -o /mnt/b

  # The list from stdin
  cat urls.txt | haul get --list - -o data/

  # One object under a name of your choosing (wget -O, curl -o)
  haul get https://host/model.bin -O model.bin

  # Into a pipe, in the order given
  haul get https://host/a.csv https://host/b.csv --stdout | wc -l

  # Into a bucket prefix
  haul get 'https://host/shard-{0000..0999}.tar' -o s3://bucket/shards/

  # Fetch everything again, replacing what is there
  haul get --force --list urls.txt -o data/

  # A Hugging Face dataset at a tag, its Parquet files only (HF_TOKEN for a gated one)
  haul get 'hf://datasets/org/corpus@v1.0' --include '*.parquet' -o corpus/
";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// URLs, range templates (`https://host/shard-{0000..0999}.tar`) or Hugging Face
    /// repositories (`hf://[datasets/]ORG/NAME[@REVISION][/PATH]`: every file under the path
    /// at the commit the revision names, each under its path in the repository, LFS files
    /// checked against their SHA-256); each is one job.
    sources: Vec<String>,
    /// A file of URLs, one per line, or - for stdin: `#` starts a comment (at the start of a
    /// line, or after a space), `name<TAB>url` names the object. A bad line, or two lines
    /// with one name, is an error naming the line numbers
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// A manifest (`haul plan` wrote it): download exactly its objects, each under its name
    /// and checked against its size, SHA-256 and ETag where listed; an object that no longer
    /// matches fails, named. Resumable and shardable as any job
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sources", "list", "output_document", "stdout"])]
    manifest: Option<PathBuf>,
    /// An extra request header, `NAME: VALUE`; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Write the objects to stdout, one after another in the order given, instead of into
    /// files (one connection; the summary goes to stderr).
    #[arg(long, conflicts_with_all = ["skip_existing", "revalidate", "force"])]
    stdout: bool,
    /// Write the one object to FILE instead of under its own name in -o (wget's -O, curl's
    /// -o); - writes it to stdout. Takes one URL
    #[arg(short = 'O', long = "output-document", value_name = "FILE", conflicts_with_all = ["list", "out", "stdout"])]
    output_document: Option<PathBuf>,
    #[command(flatten)]
    patterns: crate::patterns::PatternArgs,
    #[command(flatten, next_help_heading = "Job options")]
    job: crate::jobs::JobArgs,
    #[command(flatten, next_help_heading = "Network options")]
    net: crate::net::NetArgs,
    #[command(flatten, next_help_heading = "S3 options")]
    s3: crate::net::S3Args,
    #[command(flatten, next_help_heading = "Hugging Face options")]
    hf: crate::hf::HfArgs,
}

pub(crate) fn run(mut args: Args) -> Result<ExitCode, Box<dyn Error>> {
    if args.sources.is_empty() && args.list.is_none() && args.manifest.is_none() {
        return Err(UsageError(
            "give at least one URL or template, or --list FILE, or --manifest FILE".into(),
        )
        .into());
    }
    let document = match args.output_document.take() {
        Some(file) => Some(one_document(&mut args, file)?),
        None => None,
    };
    let select = args.patterns.selection()?;
    let mut specs = Vec::new();
    // What each job is called when it takes nothing.
    let mut shown = Vec::new();
    let mut hub = None;
    // An hf:// source none of whose files the selection takes.
    let mut empty = false;
    for source in &args.sources {
        if haul::HfPath::is_hf(source) {
            if args.stdout {
                return Err(UsageError(format!(
                    "--stdout takes URLs: for {source}, `haul cat` writes its files in order"
                ))
                .into());
            }
            let client = match &hub {
                Some(client) => client,
                None => hub.insert(args.hf.client(&args.net)?),
            };
            let snapshot = crate::hf::snapshot(client, source, &select)?;
            if snapshot.files().is_empty() {
                tell!("{source}: no files matched");
                empty = true;
                continue;
            }
            specs.push(snapshot.job());
            shown.push(source.clone());
            continue;
        }
        // A URL (or template) whose path ends in '/' names no file: said before anything runs.
        if document.is_none()
            && let Err(e @ haul::UrlError::NoFileName { .. }) = haul::name_from_url(source)
        {
            return Err(UsageError(format!(
                "{e}: -O FILE names one object, NAME<TAB>URL lines in a --list name each"
            ))
            .into());
        }
        specs.push(match &document {
            Some(name) => JobSpec::single_named(source.as_str(), name.as_str()),
            None => JobSpec::range(source.as_str()),
        });
        shown.push(source.clone());
    }
    if let Some(path) = &args.manifest {
        let manifest = read_manifest(path)?;
        if manifest.is_empty() {
            return Err(UsageError(format!("--manifest {} has no objects", path.display())).into());
        }
        // The Hub's files get its token (if there is one), other URLs none, each bucket's
        // objects are a job of that bucket's.
        let client = args.hf.client(&args.net)?;
        let endpoint = format!("{}/", client.endpoint());
        let (mut on_hub, mut web, mut s3) = Default::default();
        for entry in manifest.entries() {
            let part: &mut haul::Manifest = if entry.url.starts_with("s3://") {
                &mut s3
            } else if entry.url.starts_with(&endpoint) {
                &mut on_hub
            } else {
                &mut web
            };
            part.push(entry.clone());
        }
        let (on_hub, web, s3): (haul::Manifest, haul::Manifest, haul::Manifest) = (on_hub, web, s3);
        let mut parts = Vec::new();
        for (part, token) in [(on_hub, client.auth_header()), (web, None)] {
            if !part.is_empty() {
                let spec = part.job();
                parts.push(match token {
                    Some((name, value)) => spec.header(name, value),
                    None => spec,
                });
            }
        }
        if !s3.is_empty() {
            let config = args.s3.config(&args.net)?;
            parts.extend(s3.jobs(&config).map_err(|e| UsageError(e.to_string()))?);
        }
        for spec in parts {
            specs.push(spec);
            shown.push(format!("--manifest {}", path.display()));
        }
    }
    if let Some(path) = &args.list {
        let pairs = read_list(path)?;
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
                .map_err(|e| crate::run::refused(&e))?,
        );
    }
    let summary = run::wait_all(&downloader, &jobs, started, args.job.dry_run)?;
    let code = summary.report();
    let filters: Vec<String> = (!select.is_all())
        .then(|| select.shown())
        .into_iter()
        .collect();
    // Only a selection can leave a job with nothing (an empty template or list is refused).
    let none = !select.is_all() && summary.unmatched(&shown, &filters);
    Ok(if none || empty {
        ExitCode::FAILURE
    } else {
        code
    })
}

/// `-O FILE`: checks that one object is asked for, and points `-o` at FILE's directory (or
/// stdout, for `-O -`); the name FILE's object lands under.
fn one_document(args: &mut Args, file: PathBuf) -> Result<String, UsageError> {
    let one = match args.sources.as_slice() {
        [source] if haul::HfPath::is_hf(source) => None,
        [source] => haul::Template::parse(source)
            .ok()
            .filter(|t| t.len() == 1)
            .and_then(|t| t.get(0)),
        _ => None,
    };
    let Some(url) = one else {
        return Err(UsageError(
            "-O FILE takes one URL (for several, -o DIR lands each under its own name)".into(),
        ));
    };
    args.sources = vec![url];
    if file.as_os_str() == "-" {
        args.stdout = true;
        return Ok("-".to_owned());
    }
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| haul::ObjectName::new(*n).is_ok())
        .ok_or_else(|| {
            UsageError(format!(
                "-O {}: not a file name haul can write",
                file.display()
            ))
        })?;
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    args.job.out = vec![crate::jobs::Out::Dir(dir)];
    Ok(name.to_owned())
}

/// `-H 'NAME: VALUE'`.
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
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
    let urls = expand_urls(&args.sources, args.list.as_deref())?;
    let client = haul::HttpClient::new(args.net.http()?);
    // Unbuffered: the body arrives in large blocks, and stdout's line buffering would split
    // binary data at every newline.
    let mut out =
        std::fs::File::from(std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned()?);
    let started = Instant::now();
    let (mut landed, mut failures, mut bytes) = (0u64, Vec::new(), 0u64);
    for (name, url) in urls {
        let name = name.or_else(|| haul::name_from_url(&url).ok().map(|n| n.to_string()));
        if name.as_deref().is_some_and(|n| !select.matches(n)) {
            continue;
        }
        let shown = name.clone().unwrap_or_else(|| haul::redact_url(&url));
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
            Err(e) if run::broken_pipe(&e) => {
                return Ok(ExitCode::from(run::BROKEN_PIPE_EXIT));
            }
            Err(e) => {
                tell!("failed: {}", haul::error_chain(&e));
                failures.push(run::failure_json(&shown, &e));
            }
        }
    }
    Ok(run::report_stream(
        landed,
        &failures,
        bytes,
        started.elapsed(),
    ))
}

/// The manifest at `path`, read and checked (a bad line is a usage error naming it).
pub(crate) fn read_manifest(path: &std::path::Path) -> Result<haul::Manifest, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read --manifest {}: {e}", path.display())))?;
    haul::Manifest::parse(&text)
        .map_err(|e| UsageError(format!("--manifest {}: {e}", path.display())))
}

/// The `(name, url)` pairs of URL and template sources, then of `--list PATH`, in order: a
/// template's URLs have no name of their own (`None`), a list's lines may. Every URL is
/// checked, so a typo anywhere is a usage error before anything runs.
pub(crate) fn expand_urls<'a>(
    sources: impl IntoIterator<Item = &'a String>,
    list: Option<&std::path::Path>,
) -> Result<Vec<(Option<String>, String)>, UsageError> {
    let mut urls = Vec::new();
    for source in sources {
        let template =
            haul::Template::parse(source).map_err(|e| UsageError(haul::error_chain(&e)))?;
        for url in template.iter() {
            haul::check_url(&url).map_err(|e| UsageError(e.to_string()))?;
            urls.push((None, url));
        }
    }
    if let Some(path) = list {
        urls.extend(read_list(path)?);
    }
    Ok(urls)
}

/// The `(name, url)` pairs of `--list PATH` (`-`: stdin), checked as [`parse_list`] says.
pub(crate) fn read_list(
    path: &std::path::Path,
) -> Result<Vec<(Option<String>, String)>, UsageError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| UsageError(format!("cannot read --list {}: {e}", path.display())))?;
    parse_list(&text).map_err(|e| UsageError(format!("--list {}: {e}", path.display())))
}

/// Lines of `url` or `name<TAB>url`: blank lines and comments (`#` at the start of a line or
/// after whitespace, as in aria2c's input files) are skipped. A line whose URL is not one,
/// or two lines that land under one name, are an error naming the line numbers (from 1).
fn parse_list(text: &str) -> Result<Vec<(Option<String>, String)>, String> {
    let mut pairs = Vec::new();
    // The line each name came from.
    let mut names: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        let (name, url) = match line.split_once('\t') {
            Some((name, url)) => (Some(name.trim().to_owned()), url.trim()),
            None => (None, line),
        };
        if url.contains(char::is_whitespace) {
            return Err(format!(
                "line {number}: {url:?} is not one URL (spaces inside; a name goes before a tab)"
            ));
        }
        haul::check_url(url).map_err(|e| format!("line {number}: {}", haul::error_chain(&e)))?;
        let landed = match &name {
            Some(name) if name.is_empty() => return Err(format!("line {number}: an empty name")),
            Some(name) => name.clone(),
            None => haul::name_from_url(url)
                .map_err(|e| format!("line {number}: {}", haul::error_chain(&e)))?
                .to_string(),
        };
        if let Some(first) = names.insert(landed.clone(), number) {
            return Err(format!(
                "lines {first} and {number} would both land as {landed:?} \
                 (name one of them: NAME<TAB>URL)"
            ));
        }
        pairs.push((name, url.to_owned()));
    }
    Ok(pairs)
}

/// `line` without a comment: from a `#` that starts it or follows whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let at = (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()));
    at.map_or(line, |i| &line[..i])
}

#[cfg(test)]
mod tests {
    use super::parse_list;

    #[test]
    fn lists_take_comments_names_and_say_which_line_is_wrong() {
        let text = "# header\nhttp://h/a.bin   # trailing comment\n\nb.bin\thttp://h/x?y=1#frag\n";
        assert_eq!(
            parse_list(text),
            Ok(vec![
                (None, "http://h/a.bin".to_owned()),
                (Some("b.bin".to_owned()), "http://h/x?y=1#frag".to_owned())
            ])
        );
        let bad = parse_list("http://h/a\nhttp://h/b c\n").unwrap_err();
        assert!(bad.starts_with("line 2: "), "{bad}");
        let bad = parse_list("http://h/a\nftp://h/b\n").unwrap_err();
        assert!(bad.starts_with("line 2: "), "{bad}");
        let twice = parse_list("http://h/a.bin\n# c\nhttp://other/a.bin\n").unwrap_err();
        assert!(
            twice.starts_with("lines 1 and 3 would both land as \"a.bin\""),
            "{twice}"
        );
    }
}
