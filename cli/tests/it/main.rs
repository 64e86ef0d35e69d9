//! The `haul` binary, run for real against the loopback origin and S3 stores on 127.0.0.1;
//! a hang guard on every test.

mod commands;
mod crashes;
mod credentials;
mod datasets;
mod hf;
mod json;
mod pipes;
mod put;
mod reruns;
mod shards;

use haul_testkit as support;

/// The `haul` binary built for these tests.
pub(crate) const HAUL: &str = env!("CARGO_BIN_EXE_haul");

/// `server`'s `haul`: the binary with the store's endpoint and keys in the AWS variables.
pub(crate) fn haul_for(server: &support::s3::S3Server) -> std::process::Command {
    server.command(HAUL)
}
