//! `haul demo`: the main job on an embedded default, against a loopback origin.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use haul::origin::Origin;
use haul::{CancelToken, HttpClient, HttpConfig, Mountpath, ObjectTask, Progress, Template};
use rayon::prelude::*;

pub(crate) struct Options {
    objects: u64,
    size: u64,
    workers: usize,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Options, Box<dyn Error>> {
        let mut options = Options {
            objects: 3000,
            size: 64 * 1024,
            workers: 16,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{flag}: {value:?} is not a number"))
            };
            match flag.as_str() {
                "--objects" => options.objects = number()?,
                "--size" => options.size = number()?,
                "--workers" => options.workers = number()? as usize,
                _ => return Err(format!("unknown option {flag:?}").into()),
            }
        }
        if options.objects == 0 || options.workers == 0 {
            return Err("--objects and --workers must be at least 1".into());
        }
        Ok(options)
    }
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

pub(crate) fn run(options: &Options) -> Result<(), Box<dyn Error>> {
    let origin = Origin::builder().object_size(options.size).start()?;
    let last = options.objects - 1;
    let width = last.to_string().len().max(4);
    let template =
        Template::parse(&origin.url(&format!("/demo/shard-{{{:0width$}..{last}}}.bin", 0)))?;
    let dir = TempDir::new()?;
    let mountpath = Mountpath::new(&dir.0)?;
    let client = HttpClient::new(HttpConfig::default().idle_connections_per_host(options.workers));
    println!(
        "haul demo: {} objects x {} bytes from {} into {}",
        template.len(),
        options.size,
        origin.addr(),
        dir.0.display()
    );

    let started = Instant::now();
    let next = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let failures = parking_lot::Mutex::new(Vec::new());
    let cancel = CancelToken::new();
    std::thread::scope(|scope| {
        for _ in 0..options.workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(url) = template.get(i) else { break };
                    let result = ObjectTask::from_url(url.clone())
                        .map_err(haul::DownloadError::from)
                        .and_then(|task| {
                            haul::download(&client, &task, &mountpath, &Progress::new(), &cancel)
                        });
                    match result {
                        Ok(landed) => {
                            bytes.fetch_add(landed.bytes, Ordering::Relaxed);
                        }
                        Err(e) => failures.lock().push(format!("{url}: {}", chain(&e))),
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let failures = failures.into_inner();
    let bytes = bytes.into_inner();

    let mismatched = verify(&template, mountpath.root(), options.size)?;
    let stats = origin.stats();
    let mb_s = bytes as f64 / 1e6 / elapsed.as_secs_f64();
    println!(
        "downloaded {} objects, {bytes} bytes in {:.3} s: {mb_s:.1} MB/s, {:.0} objects/s",
        template.len() - failures.len() as u64,
        elapsed.as_secs_f64(),
        template.len() as f64 / elapsed.as_secs_f64(),
    );
    println!(
        "origin saw {} requests on {} connections, peak {} at once",
        stats.requests, stats.connections, stats.peak_concurrent
    );
    for failure in failures.iter().take(10) {
        eprintln!("failed: {failure}");
    }
    if !failures.is_empty() || mismatched > 0 {
        return Err(format!(
            "{} objects failed, {mismatched} did not match the origin's bytes",
            failures.len()
        )
        .into());
    }
    println!(
        "verified: every byte of all {} objects matches",
        template.len()
    );
    Ok(())
}

/// Checks every landed file against the origin's bytes (CPU-bound: rayon). Returns how many
/// did not match.
fn verify(template: &Template, root: &Path, size: u64) -> Result<u64, Box<dyn Error>> {
    let names: Vec<String> = template.iter().collect();
    let mismatched = names
        .par_iter()
        .filter(|url| {
            let name = url.rsplit('/').next().unwrap_or_default();
            let path_in_url = format!("/demo/{name}");
            match std::fs::read(root.join(name)) {
                Ok(bytes) => bytes != haul::origin::body(&path_in_url, size),
                Err(_) => true,
            }
        })
        .count();
    Ok(mismatched as u64)
}

/// An error and its sources, joined with ": ".
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
