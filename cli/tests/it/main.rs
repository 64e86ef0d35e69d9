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

/// `haul ARGS` that finds no Hugging Face token of this machine's: `home` as its HOME, none
/// of the HF_ variables but those in `env`.
pub(crate) fn haul_without_hf_token(
    home: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = std::process::Command::new(HAUL);
    command.args(args).env("HOME", home);
    for name in [
        "HF_TOKEN",
        "HF_HOME",
        "HF_TOKEN_PATH",
        "XDG_CACHE_HOME",
        "HF_ENDPOINT",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().expect("run haul")
}

/// What a run said on stderr.
pub(crate) fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
