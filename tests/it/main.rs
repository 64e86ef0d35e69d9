//! haul's integration tests: one binary, real servers on 127.0.0.1, a hang guard on every test.
//! (The `haul` binary's own tests are the CLI crate's: `cli/tests/it`.)

mod consistency;
mod downloader;
mod faults;
mod fetch_faults;
mod fetcher;
mod landing;
mod name;
mod origin;
mod s3;
mod s3_jobs;
mod shard;
mod sink;
mod sync;
mod task;
mod template;

use haul_testkit as support;
