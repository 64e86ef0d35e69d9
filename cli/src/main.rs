//! The `haul` command line.

#![forbid(unsafe_code)]

/// `println!` that a closed stdout cannot make panic: the line is lost (`haul … | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that a closed stderr cannot make panic (`haul … 2>&1 | head`).
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cat;
mod demo;
mod generate;
mod get;
mod hf;
mod jobs;
mod logs;
mod net;
mod patterns;
mod plan;
mod progress;
mod put;
mod run;
mod s3;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Move large batches of objects over HTTP(S), fast, with nothing half-written.
#[derive(Debug, Parser)]
#[command(name = "haul", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print nothing but failures and errors (no progress, no summary, no warnings).
    #[arg(short, long, global = true, help_heading = "Output")]
    quiet: bool,
    /// Print the result as JSON (fields in docs/json.md): the final status as one object on
    /// stdout; `s3 ls` one object per key; `cat`, `s3 cat`, `get --stdout` and `-O -`, whose stdout
    /// is the data, their status on stderr.
    #[arg(long, global = true, help_heading = "Output")]
    json: bool,
    /// Like --json, and one JSON status line (the same fields, "done": false) every second
    /// while the jobs run.
    #[arg(long, global = true, help_heading = "Output")]
    json_progress: bool,
    /// Log more: -v info, -vv debug, -vvv trace (RUST_LOG, when set, decides instead).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Output")]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download URLs, range templates, hf:// repositories or a manifest into directories or
    /// an S3 bucket.
    #[command(after_help = get::EXAMPLES)]
    Get(get::Args),
    /// Upload local files and directories into s3://bucket/prefix (parallel, multipart for
    /// large files, skipping files the bucket already holds unchanged).
    #[command(
        override_usage = "haul put [OPTIONS] PATH... s3://BUCKET/PREFIX",
        after_help = put::EXAMPLES
    )]
    Put(put::Args),
    /// Write URLs, templates or hf:// files to stdout in order, fetched in parallel within a
    /// memory budget.
    ///
    /// An object that cannot be fetched (after its retries) is left out and named on
    /// stderr, and the exit status is 1; one that breaks off after its first bytes were
    /// written ends the stream there.
    #[command(after_help = cat::EXAMPLES)]
    Cat(cat::Args),
    /// Write a manifest that pins a set of objects to stdout.
    ///
    /// Of URLs, templates, lists, hf:// repositories or bucket prefixes: every object's
    /// name, size, SHA-256 and ETag where known, one a line, the total, and an estimate of
    /// the time. `get --manifest` downloads exactly that set; `verify` checks a copy.
    #[command(after_help = plan::EXAMPLES)]
    Plan(plan::Args),
    /// Check a directory against a manifest.
    ///
    /// Every listed file's size and SHA-256 (hashed in parallel); missing, mismatched and
    /// extra files named on stderr; exit 1 unless the directory is exactly the manifest's.
    Verify(verify::Args),
    /// S3 commands: ls, get, cat.
    S3(s3::Args),
    /// Start a loopback origin in this process, download a range job from it into a
    /// temporary directory, verify every byte, and print what happened.
    Demo(demo::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff) to stdout: `haul man > haul.1`, or `haul man | man -l -`.
    Man,
}

/// The command line's definition, as parsed and as `completions` and `man` print it.
pub(crate) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command().mut_subcommand("put", put::reword)
}

/// The arguments as the command line reads them.
fn parse<I: IntoIterator<Item = T>, T: Into<std::ffi::OsString> + Clone>(
    args: I,
) -> Result<Cli, clap::Error> {
    let matches = command().try_get_matches_from(args)?;
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
}

fn main() -> ExitCode {
    let cli = parse(std::env::args_os()).unwrap_or_else(|e| e.exit()); // usage errors exit with 2
    // -q leaves errors only: no retry warnings either.
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    if !cli.quiet {
        // A dry run's decisions, one line per object: what --dry-run prints.
        logger.filter_module(haul::DRY_RUN_LOG_TARGET, log::LevelFilter::Info);
        // Which files a sync deleted: one line each.
        logger.filter_module(haul::DELETIONS_LOG_TARGET, log::LevelFilter::Info);
    }
    // Log lines go above the progress display while one is drawn (whole lines through
    // `logs`), coloured as env_logger would colour a terminal unless RUST_LOG_STYLE says.
    // Milliseconds: a transfer across a WAN is a few round trips, and the log is where a
    // user sees when each thing happened.
    logger.format_timestamp_millis();
    logger.target(env_logger::Target::Pipe(
        Box::new(logs::LogLines::default()),
    ));
    if std::env::var_os("RUST_LOG_STYLE").is_none() {
        let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var_os("NO_COLOR").is_none();
        logger.write_style(if colour {
            env_logger::WriteStyle::Always
        } else {
            env_logger::WriteStyle::Never
        });
    }
    logger.init();
    run::set_output(run::Output {
        quiet: cli.quiet,
        json: cli.json || cli.json_progress,
        json_progress: cli.json_progress,
    });
    run::abort_on_stop_signals();
    let result = match cli.command {
        Command::Get(args) => get::run(args),
        Command::Cat(args) => cat::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Put(args) => put::run(args),
        Command::S3(args) => s3::run(args),
        Command::Completions(args) => generate::completions(&args),
        Command::Man => generate::man(),
    };
    match result {
        Ok(code) => code,
        // The reader of our output went away (`| head`): stop, quietly, as `cat` does.
        Err(e) if run::broken_pipe(&*e) => ExitCode::from(run::BROKEN_PIPE_EXIT),
        Err(e) => {
            tell!("haul: {}", haul::error_chain(&*e));
            ExitCode::from(if e.is::<run::UsageError>() { 2 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    /// Parses each `haul` command in `lines` (after a pipe into it, before a pipe or a
    /// redirection out of it or a `#` comment); returns how many there were.
    fn parse_each(lines: &str) -> usize {
        let mut parsed = 0;
        for line in lines.lines() {
            let at = line
                .find("haul ")
                .filter(|&at| line[..at].trim().is_empty() || line[..at].ends_with("| "));
            let Some(at) = at else { continue };
            let command = line[at..]
                .split(" | ")
                .next()
                .and_then(|c| c.split(" > ").next())
                .and_then(|c| c.split("  #").next())
                .unwrap_or_default();
            let args: Vec<String> = command
                .split_whitespace()
                .map(|word| word.trim_matches('\'').to_owned())
                .collect();
            if let Err(e) = super::parse(&args) {
                panic!("{command}: {e}");
            }
            parsed += 1;
        }
        parsed
    }

    /// Every example in `--help` parses: none names a flag that is gone or a pair that
    /// conflicts.
    #[test]
    fn every_example_in_the_help_parses() {
        let all = [
            crate::get::EXAMPLES,
            crate::put::EXAMPLES,
            crate::cat::EXAMPLES,
            crate::plan::EXAMPLES,
        ]
        .into_iter()
        .chain(crate::s3::EXAMPLES);
        let parsed: usize = all.map(parse_each).sum();
        assert!(parsed >= 18, "only {parsed} examples found");
    }

    /// So does every `haul` command in the README's shell blocks.
    #[test]
    fn every_command_in_the_readme_parses() {
        let readme = include_str!("../../README.md");
        let parsed: usize = readme
            .split("```sh\n")
            .skip(1)
            .filter_map(|block| block.split("```").next())
            .map(parse_each)
            .sum();
        assert!(parsed >= 20, "only {parsed} commands found");
    }

    /// `put`'s selection options speak of files, the others' of objects.
    #[test]
    fn put_words_its_selection_for_files() {
        let mut command = super::command();
        let put = command
            .find_subcommand_mut("put")
            .unwrap()
            .render_help()
            .to_string();
        assert!(put.contains("Leave out files smaller than this"), "{put}");
        assert!(!put.contains("objects smaller"), "{put}");
        let s3 = command.find_subcommand_mut("s3").unwrap();
        let ls = s3
            .find_subcommand_mut("ls")
            .unwrap()
            .render_help()
            .to_string();
        assert!(ls.contains("Leave out objects smaller than this"), "{ls}");
    }
}
