//! haul's integration tests: one binary, real servers on 127.0.0.1, a hang guard on every test.
//! (The `haul` binary's own tests are the CLI crate's: `cli/tests/it`.)

mod checksums;
mod concurrency;
mod consistency;
mod downloader;
mod faults;
mod fetch_faults;
mod fetch_web;
mod fetcher;
mod hf;
mod landing;
mod manifest;
mod name;
mod origin;
mod put;
mod rerun;
mod s3;
mod s3_jobs;
mod shard;
mod sink;
mod sync;
mod tail;
mod task;
mod template;

use haul_testkit as support;

/// One `haul::download` of `task` into `mountpath` with a fresh progress and no cancel: the
/// plain call most tests make.
fn download_into(
    client: &haul::HttpClient,
    task: &haul::ObjectTask,
    mountpath: &haul::Mountpath,
) -> Result<haul::Landed, haul::DownloadError> {
    haul::download(
        client,
        task,
        mountpath,
        &haul::Progress::new(),
        &haul::CancelToken::new(),
    )
}
