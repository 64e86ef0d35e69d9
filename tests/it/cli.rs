//! The `haul` binary, run for real.

use std::process::Command;

use crate::support::guard;

fn haul() -> Command {
    Command::new(env!("CARGO_BIN_EXE_haul"))
}

#[test]
fn demo_downloads_verifies_and_reports() {
    guard(|| {
        let out = haul()
            .args([
                "demo",
                "--objects",
                "300",
                "--size",
                "10000",
                "--workers",
                "4",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("downloaded 300 objects, 3000000 bytes in "),
            "{stdout}"
        );
        assert!(
            stdout.contains("verified: every byte of all 300 objects matches"),
            "{stdout}"
        );
    });
}

#[test]
fn usage_errors_exit_2() {
    guard(|| {
        let out = haul().arg("frobnicate").output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command \"frobnicate\""));
        let out = haul().args(["demo", "--objects", "many"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--objects: \"many\" is not a number")
        );
    });
}
