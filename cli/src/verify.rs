//! `haul verify DIR --manifest FILE`: checks a local tree against a manifest — every listed
//! file's size and SHA-256, hashed in parallel — and names what is missing, extra or
//! different; exit 1 unless the tree is exactly the manifest's.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use crate::run::UsageError;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The directory to check (the -o a `get --manifest` wrote into).
    dir: PathBuf,
    /// The manifest (`haul plan` wrote it).
    #[arg(long, value_name = "FILE", required = true)]
    manifest: PathBuf,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn Error>> {
    let manifest = crate::get::read_manifest(&args.manifest)?;
    let out = crate::run::output();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let to_hash: u64 = manifest
        .entries()
        .iter()
        .filter(|e| e.sha256.is_some())
        .map(|e| e.size)
        .sum();
    let bar = (terminal && !out.quiet && !out.json).then(|| {
        let bar = ProgressBar::new(to_hash);
        bar.set_style(
            ProgressStyle::with_template(
                "verifying {bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let hashed = AtomicU64::new(0);
    let started = std::time::Instant::now();
    let report = manifest
        .verify(&args.dir, &|n| {
            let total = hashed.fetch_add(n, Ordering::Relaxed) + n;
            if let Some(bar) = &bar {
                bar.set_position(total);
            }
        })
        .map_err(|e| UsageError(format!("{}: {e}", args.dir.display())))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed();
    if out.json {
        let mismatched: Vec<_> = report
            .mismatched
            .iter()
            .map(|m| serde_json::json!({"name": m.name, "reason": m.reason}))
            .collect();
        say!(
            "{}",
            serde_json::json!({
                "clean": report.is_clean(),
                "good": report.good,
                "size_only": report.size_only,
                "bytes_hashed": report.bytes_hashed,
                "seconds": elapsed.as_secs_f64(),
                "missing": report.missing,
                "extra": report.extra,
                "mismatched": mismatched,
            })
        );
    } else {
        for name in &report.missing {
            tell!("missing: {name}");
        }
        for mismatch in &report.mismatched {
            tell!("mismatch: {}: {}", mismatch.name, mismatch.reason);
        }
        for name in &report.extra {
            tell!("extra: {name}");
        }
        if !out.quiet {
            let by_size = match report.size_only {
                0 => String::new(),
                n => format!(" ({n} by size alone: no digest listed)"),
            };
            tell!(
                "{} of {} files as listed{by_size}; {} missing, {} mismatched, {} extra; {} hashed in {}",
                report.good,
                manifest.len(),
                report.missing.len(),
                report.mismatched.len(),
                report.extra.len(),
                HumanBytes(report.bytes_hashed),
                crate::run::elapsed_text(elapsed),
            );
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
