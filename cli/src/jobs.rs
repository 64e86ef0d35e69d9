//! What `haul get` and `haul s3 get` share: where objects go (`-o DIR` or
//! `-o s3://bucket/prefix`), how each job runs, and the downloader that runs them.

use std::path::PathBuf;

use haul::{Concurrency, Downloader, Existing, JobSpec, S3Target};

use crate::net::{NetArgs, S3Args, parse_size};
use crate::run::UsageError;

/// Where objects land: a local directory, or a bucket and prefix of an S3 store.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// `-o DIR` or `-o s3://bucket/prefix`.
pub(crate) fn parse_out(text: &str) -> Result<Out, String> {
    match text.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{text:?}: expected s3://bucket/prefix"));
            }
            Ok(Out::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            })
        }
        None => Ok(Out::Dir(PathBuf::from(text))),
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct JobArgs {
    /// Where objects land: a directory (repeat it for several disks; objects are spread over
    /// them by highest-random-weight hashing of their names), or s3://bucket/prefix to store
    /// them in an S3-compatible store (multipart for large objects; an object appears only
    /// when complete).
    #[arg(short = 'o', long = "out", value_name = "DIR|s3://BUCKET/PREFIX", default_value = ".", value_parser = parse_out)]
    pub(crate) out: Vec<Out>,
    /// Pin the download threads per output directory (or S3 target) to N. By default the
    /// number of transfers adapts to each host: it grows while more of them bring more
    /// bytes a second, and backs off when they stop helping or the host answers 429/503.
    #[arg(long, visible_alias = "workers", value_name = "N")]
    pub(crate) workers_per_target: Option<usize>,
    /// Never send a second request for a slow response. By default a request whose response
    /// is later than its host's 95th percentile (and twice its median, and 20 ms) gets a
    /// hedge, at most one in twenty; the first to answer wins.
    #[arg(long)]
    pub(crate) no_hedge: bool,
    /// Never cut the rest of a slow object into ranged pieces for idle workers. By default,
    /// once nothing else is left to start, an object of at least 2 MiB still streaming slowly
    /// from a server that takes ranges is finished over several connections.
    #[arg(long)]
    pub(crate) no_tail_split: bool,
    /// At most this many of each job's objects in flight at once (default: no limit beyond
    /// the workers').
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// At most this many bytes per second for each job (its transfers together), e.g. 20MiB
    /// (K/KiB, M/MiB, G/GiB are powers of 1024, KB, MB, GB of 1000; default: no limit).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) rate_limit: Option<u64>,
    /// Show what would be done and do nothing: each object that would be downloaded,
    /// skipped or (with --sync) deleted, one line each on stderr, then the counts and bytes
    /// (as listed; URLs are not asked for their sizes). Nothing is requested but listings,
    /// nothing is written or deleted, not even the output directory.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Download every object again and replace what is there. By default a rerun
    /// continues: into directories an object whose file is there is asked about in one
    /// bodiless request and skipped when the server says it is unchanged and complete
    /// (files land whole, so a file there is one); into an S3 target an object whose key is
    /// there is skipped (one HEAD). A transfer an earlier run left unfinished (stopped,
    /// killed, or failed past its retries) resumes from its bytes either way.
    #[arg(long, conflicts_with_all = ["skip_existing", "revalidate"])]
    pub(crate) force: bool,
    /// Skip objects already there (a file, or a key in the S3 target) without asking the
    /// source whether they changed: the fastest rerun.
    #[arg(long, conflicts_with = "revalidate")]
    pub(crate) skip_existing: bool,
    /// Ask about each file already there before skipping it: the default into directories
    /// (accepted for scripts that say so).
    #[arg(long, hide = true)]
    pub(crate) revalidate: bool,
    /// A `sha256sum` manifest (`HEX  NAME` lines, NAME as the object lands): each object
    /// listed must have that digest, or it fails (after its retries).
    #[arg(long, visible_alias = "sha256", value_name = "FILE")]
    pub(crate) sha256_manifest: Option<PathBuf>,
    /// Take only shard I of N of every job (0-based): N machines running the same command
    /// with shards 0..N download every object exactly once, with no coordinator.
    #[arg(long, value_name = "I/N", value_parser = crate::net::parse_shard)]
    pub(crate) shard: Option<(u32, u32)>,
    /// fsync each object (and its directory) before it counts as landed, so it survives a
    /// power cut; off by default, as in curl and wget. Directories only.
    #[arg(long)]
    pub(crate) fsync: bool,
    /// Connections per large object. Into directories: objects above 64 MiB are fetched in
    /// ranged parts of --part-size over this many connections (default 1: one connection
    /// per object). Into S3: this many parts of an object upload at once while its body is
    /// read on (default 4).
    #[arg(long, value_name = "N")]
    pub(crate) parts: Option<usize>,
    /// The part size: of ranged parts with --parts (default 16MiB), and of multipart uploads
    /// into an S3 target (default 8MiB, at least 5MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) part_size: Option<u64>,
    /// For S3 targets: the most bytes buffered at once, all workers together (each object in
    /// flight buffers one part, or all of it when smaller). Default: one part per worker.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) memory: Option<u64>,
}

impl JobArgs {
    /// Whether objects go to S3 targets.
    fn to_s3(&self) -> bool {
        self.out.iter().any(|o| matches!(o, Out::S3 { .. }))
    }

    /// The downloader for `-o` and the thread and memory options.
    pub(crate) fn downloader(
        &self,
        net: &NetArgs,
        s3: &S3Args,
    ) -> Result<Downloader, Box<dyn std::error::Error>> {
        let concurrency = self
            .workers_per_target
            .map_or_else(Concurrency::adaptive, Concurrency::fixed);
        let mut builder = Downloader::builder()
            .concurrency(concurrency)
            .hedging(!self.no_hedge)
            .split_tails(!self.no_tail_split)
            .fsync(self.fsync)
            .dry_run(self.dry_run)
            .http(net.http()?);
        if self.to_s3() {
            if self.out.iter().any(|o| matches!(o, Out::Dir(_))) {
                return Err(
                    UsageError("-o takes directories or s3:// targets, not both".into()).into(),
                );
            }
            let config = s3.config(net)?;
            for out in &self.out {
                if let Out::S3 { bucket, prefix } = out {
                    let bucket = haul::Bucket::new(bucket, &config)
                        .map_err(|e| UsageError(e.to_string()))?;
                    let mut target = S3Target::new(&bucket, prefix.as_str());
                    if let Some(size) = self.part_size {
                        target = target.part_size(size);
                    }
                    if let Some(n) = self.parts {
                        target = target.upload_connections(n);
                    }
                    builder = builder.s3_target(target);
                }
            }
            if let Some(bytes) = self.memory {
                builder = builder.memory_budget(bytes);
            }
        } else {
            for out in &self.out {
                if let Out::Dir(dir) = out {
                    builder = builder.mountpath(dir);
                }
            }
        }
        builder.build().map_err(|e| match e {
            haul::BuildError::TooSmall { .. } | haul::BuildError::DuplicateTarget(_) => {
                UsageError(haul::error_chain(&e)).into()
            }
            e => e.into(),
        })
    }

    /// What a job does with an object already there: see `--force`.
    pub(crate) fn existing(&self) -> Existing {
        if self.force {
            Existing::Replace
        } else if self.skip_existing || (self.to_s3() && !self.revalidate) {
            // A bucket prefix cannot be revalidated: an object there landed whole.
            Existing::Skip
        } else {
            Existing::Revalidate
        }
    }

    /// `spec` with the job options.
    pub(crate) fn apply(
        &self,
        mut spec: JobSpec,
        net: &NetArgs,
        digests: &[(String, haul::Sha256Digest)],
    ) -> JobSpec {
        spec = spec.existing(self.existing()).retry(net.retry());
        if let Some((index, count)) = self.shard {
            spec = spec.shard(index, count);
        }
        if let Some(rate) = self.rate_limit {
            spec = spec.rate_limit(rate);
        }
        if let Some(n) = self.max_connections {
            spec = spec.max_connections(n);
        }
        if let Some(n) = self.parts.filter(|&n| n > 1 && !self.to_s3()) {
            let mut policy = haul::PartsPolicy::new(n);
            if let Some(size) = self.part_size {
                policy = policy.part_bytes(size);
            }
            spec = spec.parts(policy);
        }
        for (name, digest) in digests {
            spec = spec.sha256(name.clone(), *digest);
        }
        spec
    }

    /// The `(name, digest)` pairs of the manifest, if one was given.
    pub(crate) fn digests(&self) -> Result<Vec<(String, haul::Sha256Digest)>, UsageError> {
        match &self.sha256_manifest {
            Some(path) => parse_manifest(path),
            None => Ok(Vec::new()),
        }
    }
}

/// The `(name, digest)` pairs of a `sha256sum` manifest: `HEX  NAME` or `HEX *NAME` lines.
pub(crate) fn parse_manifest(
    path: &std::path::Path,
) -> Result<Vec<(String, haul::Sha256Digest)>, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UsageError(format!(
            "cannot read --sha256-manifest {}: {e}",
            path.display()
        ))
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: String| {
            UsageError(format!(
                "--sha256-manifest {} line {}: {why}",
                path.display(),
                n + 1
            ))
        };
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
