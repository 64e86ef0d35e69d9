//! Running jobs on a Downloader and reporting them: shared by `haul get` and `haul demo`.

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use haul::{Detail, Downloader, JobId, JobStatus};

/// A usage mistake found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// What a run of jobs did.
pub(crate) struct Summary {
    pub(crate) statuses: Vec<JobStatus>,
    pub(crate) elapsed: Duration,
}

impl Summary {
    pub(crate) fn landed(&self) -> u64 {
        self.statuses.iter().map(|s| s.finished).sum()
    }

    pub(crate) fn failed(&self) -> u64 {
        self.statuses.iter().map(|s| s.failed).sum()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.statuses.iter().map(|s| s.bytes).sum()
    }

    fn count(&self, f: impl Fn(&JobStatus) -> u64) -> u64 {
        self.statuses.iter().map(f).sum()
    }

    /// Prints the summary and each failure; the exit code says whether everything landed.
    pub(crate) fn report(&self) -> ExitCode {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{} landed, {} failed, {} skipped, {} cancelled; {} bytes in {secs:.3} s: {:.1} MB/s, {:.0} objects/s",
            self.landed(),
            self.failed(),
            self.count(|s| s.skipped),
            self.count(|s| s.cancelled),
            self.bytes(),
            self.bytes() as f64 / 1e6 / secs,
            self.landed() as f64 / secs,
        );
        for status in &self.statuses {
            for failure in &status.failures {
                eprintln!("failed: {}: {}", failure.name, chain(&*failure.error));
            }
        }
        if self.failed() > 0 || self.count(|s| s.cancelled) > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Waits for every job and collects their final statuses.
pub(crate) fn wait_all(
    downloader: &Downloader,
    jobs: &[JobId],
    started: Instant,
) -> Result<Summary, Box<dyn Error>> {
    let mut statuses = Vec::with_capacity(jobs.len());
    for &job in jobs {
        while !downloader.wait(job, Duration::from_secs(3600))? {}
        statuses.push(downloader.status(job, Detail::All)?);
    }
    Ok(Summary {
        statuses,
        elapsed: started.elapsed(),
    })
}

/// An error and its sources, joined with ": ".
pub(crate) fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
