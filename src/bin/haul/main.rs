//! The `haul` command line.

#![forbid(unsafe_code)]

mod demo;

use std::process::ExitCode;

const USAGE: &str = "\
usage: haul <command> [options]

commands:
  demo [--objects N] [--size BYTES] [--workers N]
      start a loopback origin in this process, download a range job of N objects
      (default 3000 x 64 KiB) into a temporary directory, verify every byte, and
      print what happened
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => match demo::Options::parse(&args[1..]) {
            Err(e) => {
                eprint!("haul demo: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
            Ok(options) => match demo::run(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("haul demo: {e}");
                    ExitCode::FAILURE
                }
            },
        },
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprint!("haul: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
