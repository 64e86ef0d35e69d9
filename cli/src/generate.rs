//! `haul completions SHELL` and `haul man`: shell completions and a man page, generated
//! from the same clap definitions as `--help`.

use std::error::Error;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell. Install, for example, with
    /// `haul completions bash > ~/.local/share/bash-completion/completions/haul`
    shell: clap_complete::Shell,
}

/// Writes the completion script for the shell asked for to stdout.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<ExitCode, Box<dyn Error>> {
    let mut command = crate::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "haul", &mut out);
    std::io::stdout().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the man page (roff, section 1) to stdout: `haul man > haul.1`, or
/// `haul man | man -l -`.
pub(crate) fn man() -> Result<ExitCode, Box<dyn Error>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(crate::command()).render(&mut out)?;
    std::io::stdout().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}
