//! A closed stdout (or stderr) ends a command quietly: `haul s3 ls | head` exits 0 with
//! nothing on stderr, `cat`, `s3 cat` and `get --stdout` stop and exit 141 (128 + SIGPIPE, what
//! `cat` and `curl` give a pipeline with `pipefail`), and nothing panics — also with
//! `2>&1 | head`, where the messages go into the closed pipe too.

use std::process::Command;

use crate::support::guard;
use crate::support::s3::S3Server;

/// Runs `haul ARGS REDIRECT | head -c BYTES` in bash with the store's environment; the
/// exit code of haul and what reached the terminal's stderr.
fn piped(server: &S3Server, args: &str, redirect: &str, bytes: usize) -> (i32, String) {
    let script = format!(
        "{} {args} {redirect} | head -c {bytes} > /dev/null; echo \"rc=${{PIPESTATUS[0]}}\" >&2",
        crate::HAUL
    );
    let mut command: Command = server.command("bash");
    let out = command.args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (rest, rc) = stderr.trim_end().rsplit_once("rc=").expect("an exit code");
    (rc.trim().parse().unwrap(), rest.to_owned())
}

#[test]
fn a_closed_pipe_ends_ls_cat_and_stdout_quietly() {
    guard(|| {
        let server = S3Server::start(&["pipes"]);
        let bucket = server.bucket_name("pipes");
        // Listings and bodies far larger than a pipe's 64 KiB buffer.
        let objects = (0..3000)
            .map(|i| {
                (
                    format!("k/key-{i:05}-padding-padding-padding"),
                    vec![b'x'; 10],
                )
            })
            .collect();
        server.seed_many("pipes", objects);
        server.seed_file("pipes", "big/a", &vec![b'a'; 4 << 20]);
        server.seed_file("pipes", "big/b", &vec![b'b'; 4 << 20]);
        let ls = format!("s3 ls s3://{bucket}/k/");
        let cat = format!("s3 cat s3://{bucket}/big/a s3://{bucket}/big/b");
        for redirect in ["", "2>&1"] {
            let (rc, stderr) = piped(&server, &ls, redirect, 100);
            assert_eq!((rc, stderr.as_str()), (0, ""), "ls {redirect}");
            let (rc, stderr) = piped(&server, &cat, redirect, 100);
            assert_eq!((rc, stderr.as_str()), (141, ""), "cat {redirect}");
        }
        let origin = haul_origin::Origin::start().unwrap();
        let stdout = format!(
            "get --stdout {}",
            origin.url("/p/o-{1..3}.bin?size=4000000")
        );
        let web_cat = format!("cat {}", origin.url("/p/o-{1..3}.bin?size=4000000"));
        for redirect in ["", "2>&1"] {
            let (rc, stderr) = piped(&server, &stdout, redirect, 100);
            assert_eq!((rc, stderr.as_str()), (141, ""), "get --stdout {redirect}");
            let (rc, stderr) = piped(&server, &web_cat, redirect, 100);
            assert_eq!((rc, stderr.as_str()), (141, ""), "cat {redirect}");
        }
    });
}
