//! What can go wrong with a downloader: building it, submitting a job, a call about a job,
//! a filter, shutting it down.

use std::path::PathBuf;

use crate::downloader::job::JobId;
use crate::source::template::TemplateError;
use crate::source::url::UrlError;
use crate::target::name::NameError;

/// Why a [`Downloader`](crate::Downloader) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No target was given: a mountpath (an output directory) or an S3 target (a bucket
    /// prefix).
    #[error("no target: give at least one output directory or bucket prefix")]
    NoTarget,
    /// Both mountpaths and S3 targets were given: a downloader lands its objects in one kind
    /// of place.
    #[error(
        "output directories (mountpaths) and bucket prefixes (S3 targets) cannot be mixed in one downloader"
    )]
    MixedTargets,
    /// The same target (a directory, or a bucket and prefix) was given twice.
    #[error("target {0} given twice")]
    DuplicateTarget(String),
    /// A figure is out of its range.
    #[error("{name} is {value}, below its minimum of {min}")]
    TooSmall {
        /// What.
        name: &'static str,
        /// The value given.
        value: u64,
        /// The least it may be.
        min: u64,
    },
    /// A mountpath could not be created or opened.
    #[error("cannot open output directory {path}")]
    Mountpath {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A figure that must be at least 1 was 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A thread could not be spawned; the threads already started were stopped.
    #[error("cannot spawn thread {name}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a job was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// Too many jobs are waiting: try again later.
    #[error("job queue is full ({capacity} jobs waiting)")]
    QueueFull {
        /// The job queue's capacity.
        capacity: usize,
    },
    /// The job has no objects.
    #[error("job has no objects")]
    Empty,
    /// The range template is malformed.
    #[error("bad range template")]
    Template(#[from] TemplateError),
    /// A URL is malformed or implies no safe name.
    #[error("bad URL")]
    Url(#[from] UrlError),
    /// An explicit object name or the subdirectory is not a safe name.
    #[error("bad object name")]
    Name(#[from] NameError),
    /// An option has a value that cannot work.
    #[error("bad option {option}: {reason}")]
    Option {
        /// The option.
        option: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// Two objects of the job would land under the same name: one would silently replace
    /// the other, so the job is refused. Give them distinct names.
    #[error("objects {first} and {second} of the job both land as {name}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The position (from 0) of the first object with it.
        first: usize,
        /// The position of the second.
        second: usize,
    },
    /// The downloader is shutting down.
    #[error("downloader is shut down")]
    ShutDown,
    /// Another sync of the same source (bucket, prefix, suffix, subdirectory, shard) is
    /// running, in this process or another, and holds its record: two would each rewrite
    /// it. Wait for it, or abort it.
    #[error("another sync of this source is running (its record {record} is locked)")]
    SyncRunning {
        /// The record the running sync holds.
        record: PathBuf,
    },
    /// A sync job's record could not be opened or started.
    #[error("cannot open the sync record")]
    SyncRecord {
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a call about one job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// No job has this id (it never existed or was removed).
    #[error("unknown job {0}")]
    Unknown(JobId),
    /// The job is still running; abort it or wait for it first.
    #[error("{0} is still running")]
    Running(JobId),
}

/// A pattern for [`Downloader::list`](crate::Downloader::list) was not a valid regular expression.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bad job filter {pattern:?}: {reason}")]
pub struct FilterError {
    /// The pattern.
    pub pattern: String,
    /// Why it is not a regular expression.
    pub reason: String,
}

/// A thread of the downloader panicked; found at [`Downloader::shutdown`](crate::Downloader::shutdown).
#[derive(Debug, Clone, thiserror::Error)]
#[error("downloader threads panicked: {}", threads.join(", "))]
pub struct ShutdownError {
    /// The names of the threads that panicked.
    pub threads: Vec<String>,
}
