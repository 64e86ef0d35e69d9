//! The `haul` binary, run for real against the loopback origin.

use std::process::{Command, Output};

use haul_origin::{Origin, body};

use crate::support::{TestDir, files_under, guard};

fn haul(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haul"))
        .args(args)
        .output()
        .expect("run haul")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The run's summary: the last line on stderr that counts what landed.
#[track_caller]
fn summary(out: &Output) -> String {
    let stderr = text(&out.stderr);
    stderr
        .lines()
        .rev()
        .find(|l| l.contains(" landed, ") || l.starts_with("dry run: "))
        .unwrap_or_else(|| panic!("no summary on stderr: {stderr}"))
        .to_owned()
}

/// `out` exited with `code` and its stderr says `needle`.
#[track_caller]
fn exits_with(out: &Output, code: i32, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
}

#[test]
fn demo_downloads_verifies_and_reports() {
    guard(|| {
        let out = haul(&[
            "demo",
            "--objects",
            "300",
            "--size",
            "10000",
            "--workers",
            "4",
        ]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        assert!(
            summary(&out).starts_with("300 landed, 0 failed, 0 skipped, 0 cancelled; 2.86 MiB in "),
            "{}",
            summary(&out)
        );
        assert!(
            stdout.contains("verified: every byte of all 300 objects matches"),
            "{stdout}"
        );
    });
}

#[test]
fn get_downloads_a_template_into_several_directories() {
    guard(|| {
        let origin = Origin::builder().object_size(3000).start().unwrap();
        let dir = TestDir::new();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let template = origin.url("/g/o-{00..49}.bin");
        let out = haul(&[
            "get",
            "-o",
            a.to_str().unwrap(),
            "-o",
            b.to_str().unwrap(),
            &template,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            summary(&out).starts_with("50 landed, 0 failed"),
            "{}",
            text(&out.stderr)
        );
        let (in_a, in_b) = (files_under(&a), files_under(&b));
        assert_eq!(in_a.len() + in_b.len(), 50);
        assert!(!in_a.is_empty() && !in_b.is_empty(), "HRW uses both");
        for (root, files) in [(&a, in_a), (&b, in_b)] {
            for f in files {
                assert!(std::fs::read(root.join(&f)).unwrap() == body(&format!("/g/{f}"), 3000));
            }
        }
    });
}

#[test]
fn get_with_a_list_file_honours_comments_and_names() {
    guard(|| {
        let origin = Origin::builder().object_size(10).start().unwrap();
        let dir = TestDir::new();
        let list = dir.path().join("urls.txt");
        let out_dir = dir.path().join("out");
        std::fs::write(
            &list,
            format!(
                "# shards\n{}\n\nrenamed.bin\t{}\n  # indented comment\n",
                origin.url("/l/plain.bin"),
                origin.url("/l/other.bin")
            ),
        )
        .unwrap();
        let out = haul(&[
            "get",
            "--list",
            list.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(files_under(&out_dir), ["plain.bin", "renamed.bin"]);
        assert_eq!(
            std::fs::read(out_dir.join("renamed.bin")).unwrap(),
            body("/l/other.bin", 10)
        );
    });
}

#[test]
fn get_exits_1_and_names_each_failed_object() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let bad = origin.url("/f/missing.bin?status=404");
        let good = origin.url("/f/good.bin?size=5");
        let out = haul(&["get", "-o", dir.path().to_str().unwrap(), &good, &bad]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("failed: missing.bin: GET {bad}: HTTP status 404")),
            "{stderr}"
        );
        assert!(summary(&out).starts_with("1 landed, 1 failed"));
        assert_eq!(files_under(dir.path()), ["good.bin"]);
    });
}

#[test]
fn the_summary_shows_the_bytes_moved_beside_the_bytes_landed() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        // 40,000 bytes of this one come before the connection drops; with one attempt the
        // object fails, and those bytes were moved but did not land.
        let broken = origin.url("/f/broken.bin?size=100000&drop_after=40000");
        let good = origin.url("/f/good.bin?size=100000");
        let out = haul(&[
            "get",
            "--attempts",
            "1",
            "-o",
            dir.path().to_str().unwrap(),
            &good,
            &broken,
        ]);
        assert_eq!(out.status.code(), Some(1));
        let summary = summary(&out);
        assert!(
            summary.starts_with(
                "1 landed, 1 failed, 0 skipped, 0 cancelled; 97.66 KiB (136.72 KiB moved) in "
            ),
            "{summary}"
        );
        assert_eq!(origin.stats().body_bytes, 140_000);
    });
}

#[test]
fn usage_errors_exit_2_with_a_helpful_message() {
    guard(|| {
        let out = haul(&["frobnicate"]);
        exits_with(&out, 2, "unrecognized subcommand 'frobnicate'");
        let out = haul(&["demo", "--objects", "many"]);
        exits_with(&out, 2, "invalid value 'many' for '--objects <N>'");
        let out = haul(&["get"]);
        exits_with(&out, 2, "give at least one URL or template, or --list FILE");
        let out = haul(&["get", "http://h/o-{1..}.bin"]);
        exits_with(&out, 2, "bad range template: malformed group");
    });
}

#[test]
fn cat_writes_urls_templates_and_lists_in_order_and_names_what_failed() {
    guard(|| {
        let origin = Origin::start().unwrap();
        // The early shards answer late: the order is haul's doing, not the origin's.
        for i in 0..6 {
            origin.set_query(
                &format!("/cat/s-{i}.bin"),
                &format!("size={}&delay_ms={}", 1000 + i, 60 - 10 * i),
            );
        }
        let dir = TestDir::new();
        let list = dir.path().join("urls.txt");
        std::fs::write(
            &list,
            format!(
                "# two more\n{}\n{}\n",
                origin.url("/cat/s-1.bin"),
                origin.url("/cat/s-0.bin")
            ),
        )
        .unwrap();
        let template = origin.url("/cat/s-{0..5}.bin");
        let out = haul(&["cat", &template, "--list", list.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut want = Vec::new();
        for i in (0..6).chain([1, 0]) {
            want.extend(body(&format!("/cat/s-{i}.bin"), 1000 + i));
        }
        assert!(
            out.stdout == want,
            "{} bytes, not the shards in order",
            out.stdout.len()
        );
        assert!(
            text(&out.stderr).contains("8 written, 0 failed"),
            "{}",
            text(&out.stderr)
        );

        // A missing object is left out and named; the others are written; exit 1.
        origin.set_query("/cat/gone.bin", "status=404");
        let (a, gone) = (origin.url("/cat/s-2.bin"), origin.url("/cat/gone.bin"));
        let out = haul(&["cat", &a, &gone, &a]);
        exits_with(&out, 1, &format!("failed: GET {gone}: not found"));
        let mut twice = body("/cat/s-2.bin", 1002);
        twice.extend(body("/cat/s-2.bin", 1002));
        assert!(out.stdout == twice);

        // Bad input is refused before anything is fetched.
        let before = origin.stats().requests;
        exits_with(&haul(&["cat", &a, "ftp://host/x"]), 2, "http or https");
        exits_with(&haul(&["cat", &origin.url("/cat/s-{0..")]), 2, "");
        exits_with(&haul(&["cat"]), 2, "give at least one URL");
        // As `get --stdout` refuses them: one check of every URL, before any request.
        exits_with(
            &haul(&["get", "--stdout", &a, "ftp://host/x"]),
            2,
            "http or https",
        );
        assert_eq!(origin.stats().requests, before, "a refused command fetched");
    });
}

#[test]
fn cat_stops_at_an_object_that_breaks_off_after_its_first_bytes_were_written() {
    guard(|| {
        let origin = Origin::start().unwrap();
        // Above 64 MiB: streamed in ranged parts; its ETag changes on every answer, and
        // `If-Match` is ignored, so the second part is of another version.
        let size = 70_000_000u64;
        origin.set_query(
            "/cat/moving.bin",
            &format!("size={size}&etag=changing&ignore_conditions=1"),
        );
        origin.set_query("/cat/after.bin", "size=100");
        let out = haul(&[
            "cat",
            "--workers",
            "2",
            &origin.url("/cat/moving.bin"),
            &origin.url("/cat/after.bin"),
        ]);
        exits_with(&out, 1, "changed");
        assert!(
            text(&out.stderr).contains("stopped"),
            "{}",
            text(&out.stderr)
        );
        let written = out.stdout.len() as u64;
        assert!(written < size, "{written} bytes of a broken object");
        assert!(
            out.stdout == body("/cat/moving.bin", size)[..out.stdout.len()],
            "the bytes written are not the object's first"
        );
    });
}

#[test]
fn s3_cat_writes_objects_in_order_and_ls_lists_them() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["data"]);
        let data = server.bucket_name("data");
        let names = ["c", "a", "b", "a"];
        for name in ["a", "b", "c"] {
            server.seed_file("data", &format!("k/{name}"), format!("<{name}>").as_bytes());
        }
        let s3 = |args: &[&str]| haul_s3(&server, args);
        let urls: Vec<String> = names.iter().map(|n| format!("s3://{data}/k/{n}")).collect();
        let mut args = vec!["s3", "cat"];
        args.extend(urls.iter().map(String::as_str));
        let out = s3(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "<c><a><b><a>");

        let (a, zz) = (format!("s3://{data}/k/a"), format!("s3://{data}/k/zz"));
        let out = s3(&["s3", "cat", &a, &zz]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(text(&out.stdout), "<a>");
        assert!(
            text(&out.stderr).contains(&format!("failed: GET {zz}: not found")),
            "{}",
            text(&out.stderr)
        );

        let out = s3(&["s3", "ls", &format!("s3://{data}/k/")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "           3 k/a\n           3 k/b\n           3 k/c\n"
        );

        let out = s3(&["s3", "cat", "http://not-s3"]);
        assert_eq!(out.status.code(), Some(2));

        // A backend job: every object under the prefix, into files named by key.
        let dir = TestDir::new();
        let out = s3(&[
            "s3",
            "get",
            &format!("s3://{data}/k/"),
            "-o",
            dir.path().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            summary(&out).starts_with("3 landed, 0 failed"),
            "{}",
            text(&out.stderr)
        );
        // Keys relative to the prefix, as aws s3 cp --recursive, s5cmd and rclone land them.
        assert_eq!(files_under(dir.path()), ["a", "b", "c"]);
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"<b>");
        // --full-keys keeps the whole key; a wildcard (s5cmd's: `*` crosses `/`) selects.
        let whole = TestDir::new();
        let out = haul_s3(
            &server,
            &[
                "s3",
                "get",
                "--full-keys",
                &format!("s3://{data}/k/[ab]*"),
                "-o",
                whole.path().to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(files_under(whole.path()), ["k/a", "k/b"]);

        // A mistyped prefix (or a suffix that matches none) is not a silent success: exit 1,
        // naming it, as s5cmd does; the prefix that lists something still lands.
        let typo = format!("s3://{data}/kk/");
        let both = format!("s3://{data}/k/");
        let dir = TestDir::new();
        let out = s3(&[
            "s3",
            "get",
            &typo,
            &both,
            "-o",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&format!("haul: no objects matched {typo}\n")),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(files_under(dir.path()), ["a", "b", "c"]);
        let dir = TestDir::new();
        let into = dir.path().to_str().unwrap();
        let out = s3(&["s3", "get", &both, "--suffix", ".tar", "-o", into]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&format!("haul: no objects matched {both} (--suffix .tar)")),
            "{}",
            text(&out.stderr)
        );
    });
}

/// The keys come from the profile `AWS_PROFILE` or `--profile` names in the shared
/// credentials file when the environment has none (only `[default]` was ever read).
#[test]
fn s3_keys_come_from_the_profile_aws_profile_or_profile_names() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["prof"]);
        server.seed_file("prof", "k/a", b"<a>");
        let (key, secret) = server.keys();
        let dir = TestDir::new();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            format!(
                "[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong\n\n\
                 [prod]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
            ),
        )
        .unwrap();
        let url = format!("s3://{}/k/", server.bucket_name("prof"));
        let ls = |profile: Option<&str>, flags: &[&str]| {
            let mut command = crate::haul_for(&server);
            for name in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
            ] {
                command.env_remove(name);
            }
            command
                .env("AWS_SHARED_CREDENTIALS_FILE", &file)
                .env_remove("AWS_PROFILE");
            if let Some(profile) = profile {
                command.env("AWS_PROFILE", profile);
            }
            command.args(["s3", "ls"]).args(flags).arg(&url);
            command.output().unwrap()
        };
        let listed = "           3 k/a\n";
        let out = ls(Some("prod"), &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), listed);
        let out = ls(None, &["--profile", "prod"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), listed);
        // `[default]`'s keys are refused by the store.
        let out = ls(None, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    });
}

#[test]
fn get_checks_a_sha256_manifest_continues_on_rerun_unless_forced_and_refuses_private_addresses() {
    guard(|| {
        let origin = Origin::builder().object_size(5000).start().unwrap();
        let dir = TestDir::new();
        let out_dir = dir.path().join("out");
        let manifest = dir.path().join("SHA256SUMS");
        let good = haul::Sha256Digest::of(&body("/m/a.bin", 5000));
        let wrong = haul::Sha256Digest::of(b"not b");
        std::fs::write(&manifest, format!("{good}  a.bin\n{wrong} *b.bin\n")).unwrap();
        let template = origin.url("/m/{a,b,c}.bin");
        let get = |extra: &[&str]| {
            let mut args = vec!["get", "-o", out_dir.to_str().unwrap(), &template];
            args.extend_from_slice(extra);
            haul(&args)
        };
        let out = get(&["--sha256", manifest.to_str().unwrap(), "--attempts", "2"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "failed: b.bin: GET {}: sha256 mismatch: expected {wrong}, got ",
                origin.url("/m/b.bin")
            )),
            "{stderr}"
        );
        assert_eq!(files_under(&out_dir), ["a.bin", "c.bin"]);

        // A plain rerun continues: a and c are asked about and unchanged, b is fetched (no
        // manifest now).
        let rerun = |extra: &[&str], expected: &str| {
            let out = get(extra);
            assert!(out.status.success(), "{}", text(&out.stderr));
            assert!(
                summary(&out).starts_with(expected),
                "{extra:?}: {}",
                text(&out.stderr)
            );
        };
        rerun(&[], "1 landed, 0 failed, 2 skipped");
        // --revalidate says the default; --force fetches all again; --skip-existing asks
        // nothing.
        rerun(&["--revalidate"], "0 landed, 0 failed, 3 skipped");
        rerun(&["--force"], "3 landed, 0 failed, 0 skipped");
        let requests = origin.stats().requests;
        rerun(&["--skip-existing"], "0 landed, 0 failed, 3 skipped");
        assert_eq!(origin.stats().requests, requests);

        let requests = origin.stats().requests;
        let out = get(&["--public-only"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr)
                .contains("refused: egress policy refuses 127.0.0.1: 127.0.0.1 is loopback"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(
            origin.stats().requests,
            requests,
            "--public-only sent nothing"
        );

        // Bad input is a usage error (exit 2) that names it.
        std::fs::write(&manifest, "xyz  a.bin\n").unwrap();
        let out = get(&["--sha256", manifest.to_str().unwrap()]);
        exits_with(&out, 2, "line 1: bad SHA-256 digest \"xyz\"");
        let out = get(&["--stall-window", "0"]);
        exits_with(
            &out,
            2,
            "--stall-window must be a positive number of seconds",
        );
    });
}

#[test]
fn get_stdout_writes_objects_in_order_and_the_summary_to_stderr() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let out = haul(&[
            "get",
            "--stdout",
            &origin.url("/o/{b,a}.bin?size=70000"),
            &origin.url("/o/c.bin?size=10"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut expected = body("/o/b.bin", 70000);
        expected.extend(body("/o/a.bin", 70000));
        expected.extend(body("/o/c.bin", 10));
        assert!(out.stdout == expected, "stdout holds the objects in order");
        assert!(
            text(&out.stderr).starts_with("3 written, 0 failed; 136.73 KiB in "),
            "{}",
            text(&out.stderr)
        );
    });
}

#[test]
fn json_output_parses_and_matches_the_files_and_quiet_prints_nothing() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let out = haul(&[
            "get",
            "--json",
            "-H",
            "X-Token: abc",
            "-o",
            dir.path().to_str().unwrap(),
            &origin.url("/j/{a,b,c}.bin?size=1000&need_header=x-token:abc"),
            &origin.url("/j/missing.bin?status=404"),
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(json["landed"], 3);
        assert_eq!(json["failed"], 1);
        assert_eq!(json["bytes"], 3000);
        assert_eq!(json["jobs"].as_array().unwrap().len(), 2);
        let failure = &json["jobs"][1]["failures"][0];
        assert_eq!(failure["name"], "missing.bin");
        assert!(
            failure["error"]
                .as_str()
                .unwrap()
                .ends_with("HTTP status 404")
        );
        assert_eq!(files_under(dir.path()), ["a.bin", "b.bin", "c.bin"]);

        let out = haul(&[
            "get",
            "-q",
            "-o",
            dir.path().to_str().unwrap(),
            &origin.url("/j/d.bin"),
        ]);
        assert!(out.status.success());
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{}",
            text(&out.stderr)
        );
    });
}

/// Slow objects, so that the job is mid-transfer when the test acts.
fn slow_template(origin: &Origin) -> String {
    origin.url("/slow/o-{0..7}.bin?size=4000000&rate=1000000")
}

/// The signals that stop a run, and the exit code each gives (128 + its number): Ctrl-C,
/// what Kubernetes and systemd send, and a closed terminal.
const STOPS: [(&str, i32); 3] = [("INT", 130), ("TERM", 143), ("HUP", 129)];

#[test]
fn ctrl_c_sigterm_and_sighup_stop_cleanly_with_a_summary_and_the_rerun_continues() {
    guard(|| {
        for (signal, code) in STOPS {
            let origin = Origin::start().unwrap();
            let dir = TestDir::new();
            let child = Command::new(env!("CARGO_BIN_EXE_haul"))
                .args([
                    "get",
                    "-o",
                    dir.path().to_str().unwrap(),
                    &slow_template(&origin),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // Mid-transfer, provably: work files with bytes in them.
            assert!(crate::support::wait_until(|| files_under(dir.path())
                .iter()
                .any(|f| f.ends_with(".part")
                    && std::fs::metadata(dir.path().join(f))
                        .is_ok_and(|m| m.len() > 0))));
            let kill = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(code),
                "SIG{signal}: {}",
                text(&out.stderr)
            );
            assert!(
                summary(&out).contains(" cancelled; "),
                "SIG{signal}: {}",
                text(&out.stderr)
            );
            assert!(
                text(&out.stderr).contains(&format!(
                    "haul: stopped by SIG{signal}; the same command again continues"
                )),
                "SIG{signal}: {}",
                text(&out.stderr)
            );
            // What was under way waits in work files (with sidecars) for the rerun, which
            // fetches only the bytes still missing.
            let kept = crate::support::kept(dir.path());
            assert!(!kept.is_empty(), "SIG{signal}: nothing kept");
            // Each kept file's good bytes (a split one lists its ranges), each the object's.
            let kept_bytes: u64 = kept
                .iter()
                .map(|k| k.assert_good(&body(k.path.split('?').next().unwrap(), 4_000_000)))
                .sum();
            let landed = crate::support::visible(dir.path());
            assert!(crate::support::wait_until(|| origin.stats().active == 0));
            origin.reset_stats();
            let rerun = Command::new(env!("CARGO_BIN_EXE_haul"))
                // No hedge and no split: a second request for a slow first byte, or the
                // bytes a server had sent past where a split cut a stream, would count twice.
                .args([
                    "get",
                    "-q",
                    "--no-hedge",
                    "--no-tail-split",
                    "-o",
                    dir.path().to_str().unwrap(),
                ])
                .arg(slow_template(&origin))
                .output()
                .unwrap();
            assert!(rerun.status.success(), "{}", text(&rerun.stderr));
            for i in 0..8 {
                let bytes = std::fs::read(dir.path().join(format!("o-{i}.bin"))).unwrap();
                assert!(
                    bytes == body(&format!("/slow/o-{i}.bin"), 4_000_000),
                    "o-{i}"
                );
            }
            let missing = (8 - landed.len() as u64) * 4_000_000 - kept_bytes;
            assert_eq!(origin.stats().body_bytes, missing, "SIG{signal}");
            assert!(crate::support::kept(dir.path()).is_empty());
        }
    });
}

/// As a person sees it: `haul get` under a pseudo-terminal (util-linux `script`, part of
/// every Debian system) draws the progress display, then clears it for the summary.
#[test]
fn on_a_terminal_progress_is_drawn_and_ends_in_the_summary() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let command = format!(
            "{} get -o {} '{}'",
            env!("CARGO_BIN_EXE_haul"),
            dir.path().display(),
            origin.url("/tty/o-{0..3}.bin?size=600000&rate=1000000"),
        );
        let out = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stdout));
        let screen = text(&out.stdout);
        assert!(
            screen.contains("/4 objects"),
            "no progress line in {screen:?}"
        );
        assert!(
            screen.contains("o-0.bin") || screen.contains("o-1.bin"),
            "no per-object line"
        );
        let summary = screen.rfind("4 landed, 0 failed").expect("a summary");
        assert!(
            summary > screen.find("/4 objects").unwrap(),
            "the summary comes last"
        );
    });
}

/// `haul` with the in-process S3 server's endpoint and keys in the standard AWS variables.
fn haul_s3(server: &crate::support::s3::S3Server, args: &[&str]) -> Output {
    crate::haul_for(server).args(args).output().unwrap()
}

#[test]
fn get_into_an_s3_bucket_and_s3_get_from_bucket_to_bucket() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["land"]);
        let land = server.bucket_name("land");
        let bucket = server.bucket("land");
        let origin = Origin::start().unwrap();
        let template = origin.url("/cs/o-{00..19}.bin?size=7000");
        let out = haul_s3(
            &server,
            &["get", "-o", &format!("s3://{land}/in"), &template],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            summary(&out).starts_with("20 landed, 0 failed"),
            "{}",
            text(&out.stderr)
        );
        let keys = |prefix: &str| -> Vec<(String, u64)> {
            bucket
                .list(prefix)
                .map(|o| o.unwrap())
                .map(|o| (o.key, o.size))
                .collect()
        };
        let expected: Vec<(String, u64)> = (0..20)
            .map(|i| (format!("in/o-{i:02}.bin"), 7000))
            .collect();
        assert_eq!(keys("in/"), expected);

        // Bucket to bucket: a backend job whose target is another prefix, with --json.
        let out = haul_s3(
            &server,
            &[
                "s3",
                "get",
                "--json",
                &format!("s3://{land}/in/"),
                "-o",
                &format!("s3://{land}/copy"),
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(
            (json["landed"].as_u64(), json["bytes"].as_u64()),
            (Some(20), Some(140_000))
        );
        let copied: Vec<(String, u64)> = (0..20)
            .map(|i| (format!("copy/o-{i:02}.bin"), 7000))
            .collect();
        assert_eq!(keys("copy/"), copied);

        // Directories and buckets cannot be mixed; a bad size is a usage error.
        let out = haul_s3(
            &server,
            &[
                "get",
                "-o",
                "/tmp",
                "-o",
                &format!("s3://{land}/x"),
                &template,
            ],
        );
        exits_with(&out, 2, "-o takes directories or s3:// targets, not both");
        let out = haul_s3(&server, &["get", "--memory", "lots", &template]);
        exits_with(&out, 2, "expected a size such as");
        let out = haul_s3(
            &server,
            &[
                "get",
                "-o",
                &format!("s3://{land}/x"),
                "--part-size",
                "1MiB",
                &template,
            ],
        );
        exits_with(
            &out,
            2,
            "part_size is 1048576, below its minimum of 5242880",
        );
    });
}

#[test]
fn json_progress_prints_status_lines_while_the_job_runs_then_the_final_status() {
    use std::io::BufRead;
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        // The object stops mid-body at the gate until a progress line has been read.
        let url = origin.url("/jp/held.bin?size=300000&gate_after=100000");
        let mut child = Command::new(env!("CARGO_BIN_EXE_haul"))
            .args([
                "get",
                "--json-progress",
                "-o",
                dir.path().to_str().unwrap(),
                &url,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).expect("a JSON line");
        assert_eq!(first["done"], false);
        let busy = &first["jobs"][0]["in_flight"][0];
        assert_eq!(busy["name"], "held.bin");
        assert_eq!(busy["bytes_total"], 300_000);
        origin.gate().release();
        let rest: Vec<serde_json::Value> = lines
            .map(|l| serde_json::from_str(&l.unwrap()).expect("JSON lines only"))
            .collect();
        let last = rest.last().expect("a final status");
        assert_eq!(last["done"], true);
        assert_eq!(
            (last["landed"].as_u64(), last["bytes"].as_u64()),
            (Some(1), Some(300_000))
        );
        assert!(rest[..rest.len() - 1].iter().all(|l| l["done"] == false));
        assert!(child.wait().unwrap().success());
        assert_eq!(files_under(dir.path()), ["held.bin"]);
    });
}

#[test]
fn s3_get_sync_skips_the_unchanged_and_deletes_the_gone() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["mirror"]);
        let mirror = server.bucket_name("mirror");
        for name in ["a", "b", "c"] {
            server.seed_file(
                "mirror",
                &format!("m/{name}"),
                format!("<{name}>").as_bytes(),
            );
        }
        let dir = TestDir::new();
        let args = [
            "s3",
            "get",
            "--sync",
            "--json",
            &format!("s3://{mirror}/m/"),
            "-o",
            dir.path().to_str().unwrap(),
        ];
        let out = haul_s3(&server, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (json["landed"].as_u64(), json["deleted"].as_u64()),
            (Some(3), Some(0))
        );
        server.bucket("mirror").delete("m/b").unwrap();
        let out = haul_s3(&server, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let counts = ["landed", "skipped", "deleted"].map(|k| json[k].as_u64().unwrap());
        assert_eq!(counts, [0, 2, 1]);
        let left: Vec<String> = files_under(dir.path())
            .into_iter()
            .filter(|f| !f.starts_with(".haul-work"))
            .collect();
        assert_eq!(left, ["a", "c"]);
        // Without --json the summary names the deletions.
        server.bucket("mirror").delete("m/c").unwrap();
        let out = haul_s3(
            &server,
            &args[..3]
                .iter()
                .chain(&args[4..])
                .copied()
                .collect::<Vec<_>>(),
        );
        assert!(
            summary(&out).starts_with("0 landed, 0 failed, 1 skipped, 0 cancelled, 1 deleted; "),
            "{}",
            text(&out.stderr)
        );
        // And each file deleted is named, as it goes (-q keeps quiet).
        let deleted = format!("deleted {}: gone remotely", dir.path().join("c").display());
        assert!(
            text(&out.stderr).contains(&deleted),
            "{}",
            text(&out.stderr)
        );
        server.bucket("mirror").delete("m/a").unwrap();
        server.seed_file("mirror", "m/d", b"<d>");
        let mut quiet: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
        quiet.push("-q");
        let out = haul_s3(&server, &quiet);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "");
        assert!(!dir.path().join("a").exists());
    });
}

/// `--include` / `--exclude` on the names objects land under, for templates, lists and
/// `--stdout`: what is left out is never requested; a selection that takes nothing exits 1.
#[test]
fn get_takes_only_the_names_its_patterns_select() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let into = dir.path().to_str().unwrap();
        let template = origin.url("/sel/o-{1..5}.bin?size=10");
        let out = haul(&["get", "--include", "o-[24].bin", "-o", into, &template]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(files_under(dir.path()), ["o-2.bin", "o-4.bin"]);
        assert_eq!(origin.stats().requests, 2);

        let list = dir.path().join("urls.txt");
        std::fs::write(
            &list,
            format!("{}\n{}\n", origin.url("/l/a.tar"), origin.url("/l/a.idx")),
        )
        .unwrap();
        let listed = TestDir::new();
        let out = haul(&[
            "get",
            "--exclude",
            "*.idx",
            "--list",
            list.to_str().unwrap(),
            "-o",
            listed.path().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(files_under(listed.path()), ["a.tar"]);

        let out = haul(&["get", "--stdout", "--include", "o-3.bin", &template]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(out.stdout, body("/sel/o-3.bin", 10));

        origin.reset_stats();
        let out = haul(&["get", "--exclude", "*", "-o", into, &template]);
        exits_with(
            &out,
            1,
            &format!("haul: no objects matched {template} (--exclude *)"),
        );
        assert_eq!(origin.stats().requests, 0);
    });
}

#[test]
fn dry_run_prints_what_get_and_sync_would_do_and_writes_nothing() {
    guard(|| {
        // get: three objects, no request for any, no output directory made.
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let out_dir = dir.path().join("out");
        let out = haul(&[
            "get",
            "--dry-run",
            "-o",
            out_dir.to_str().unwrap(),
            &origin.url("/dry/o-{1..3}.bin"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            summary(&out),
            "dry run: would download 3 objects (0 B as listed), skip 0, delete 0; nothing was written"
        );
        assert!(out.stdout.is_empty(), "stdout is for data and --json");
        let stderr = text(&out.stderr);
        for i in 1..=3 {
            assert!(
                stderr.contains(&format!("would download o-{i}.bin")),
                "{stderr}"
            );
        }
        assert_eq!(origin.stats().requests, 0);
        assert!(!out_dir.exists());

        // s3 get --sync: after a real sync, one object gone and one new.
        let server = crate::support::s3::S3Server::start(&["drymirror"]);
        let mirror = server.bucket_name("drymirror");
        for name in ["a", "b", "c"] {
            server.seed_file(
                "drymirror",
                &format!("m/{name}"),
                name.repeat(10).as_bytes(),
            );
        }
        let sync = |dry: bool| {
            let url = format!("s3://{mirror}/m/");
            let mut args = vec![
                "s3",
                "get",
                "--sync",
                &url,
                "-o",
                dir.path().to_str().unwrap(),
            ];
            if dry {
                args.push("--dry-run");
            }
            haul_s3(&server, &args)
        };
        assert!(sync(false).status.success());
        server.bucket("drymirror").delete("m/b").unwrap();
        server.seed_file("drymirror", "m/d", b"dddd");
        let before = crate::support::tree(dir.path());
        let out = sync(true);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            summary(&out),
            "dry run: would download 1 objects (4 B as listed), skip 2, delete 1; nothing was written"
        );
        let stderr = text(&out.stderr);
        assert!(stderr.contains("would download d (4 bytes)"), "{stderr}");
        let deleted = dir.path().join("b");
        assert!(
            stderr.contains(&format!("would delete {}", deleted.display())),
            "{stderr}"
        );
        assert!(
            crate::support::tree(dir.path()) == before,
            "the dry run changed files"
        );
        // The sync itself then does just that.
        let out = sync(false);
        assert!(
            summary(&out).starts_with("1 landed, 0 failed, 2 skipped, 0 cancelled, 1 deleted; "),
            "{}",
            text(&out.stderr)
        );
    });
}

#[test]
fn get_options_take_effect_at_the_origin() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let out_dir = dir.path().to_str().unwrap();
        // --max-connections: eight workers, one object of the job at a time.
        let out = haul(&[
            "get",
            "--workers",
            "8",
            "--max-connections",
            "1",
            "--rate-limit",
            "64MiB",
            "--fsync",
            "-o",
            out_dir,
            &origin.url("/opt/c-{0..9}.bin?size=20000"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(origin.stats().peak_concurrent, 1);
        assert_eq!(
            files_under(dir.path())
                .iter()
                .filter(|f| f.starts_with("c-"))
                .count(),
            10
        );

        // --parts with --part-size: one large object in ranged parts.
        origin.reset_stats();
        let size = 66 << 20;
        let out = haul(&[
            "get",
            "--parts",
            "4",
            "--part-size",
            "1MiB",
            "-o",
            out_dir,
            &origin.url(&format!("/opt/big.bin?size={size}")),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            origin.stats().status_count(206) >= 3,
            "{:?}",
            origin.stats().statuses
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("big.bin")).unwrap().len(),
            size
        );

        // --header-timeout with --attempts 1: a slow server fails the object, named.
        let out = haul(&[
            "get",
            "--header-timeout",
            "0.2",
            "--attempts",
            "1",
            "-o",
            out_dir,
            &origin.url("/opt/slow.bin?delay_ms=3000"),
        ]);
        exits_with(&out, 1, "failed: slow.bin: GET ");
        assert!(
            text(&out.stderr).contains("timeout"),
            "{}",
            text(&out.stderr)
        );

        // --no-tail-split: a slow object alone (6 MiB at 3 MB/s a connection) stays on one
        // connection; without it, idle workers fetch pieces of its rest.
        for (flag, one_request) in [(Some("--no-tail-split"), true), (None, false)] {
            origin.reset_stats();
            let name = if one_request { "whole" } else { "split" };
            let url = origin.url(&format!("/opt/{name}.bin?size={}&rate=3000000", 6 << 20));
            let mut args = vec!["get", "-o", out_dir, &url];
            args.extend(flag);
            let out = haul(&args);
            assert!(out.status.success(), "{}", text(&out.stderr));
            let requests = origin.stats().requests;
            assert_eq!(requests == 1, one_request, "{flag:?}: {requests} requests");
        }

        // -v logs each job at info level.
        let out = haul(&["get", "-v", "-o", out_dir, &origin.url("/opt/v.bin")]);
        assert!(out.status.success());
        assert!(
            text(&out.stderr).contains("job-1 submitted"),
            "{}",
            text(&out.stderr)
        );
    });
}

#[test]
fn s3_options_endpoint_region_suffix_and_cat_memory_take_effect() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["opts"]);
        let opts = server.bucket_name("opts");
        let big: Vec<u8> = haul_origin::body("/big", 3 << 20);
        server.seed_file("opts", "p/big.bin", &big);
        server.seed_file("opts", "p/small.txt", b"small");
        // The environment names a dead endpoint; --endpoint overrides it.
        let run = |args: &[&str]| {
            crate::haul_for(&server)
                .args(args)
                .args(["--endpoint", &server.endpoint(), "--region", "us-east-1"])
                .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
                .output()
                .unwrap()
        };
        let out = run(&["s3", "ls", &format!("s3://{opts}/p/")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            format!("{:>12} p/big.bin\n           5 p/small.txt\n", 3 << 20)
        );

        // A 3 MiB object streamed through a 1 MiB budget in 1 MiB parts.
        let out = run(&[
            "s3",
            "cat",
            "--memory",
            "1MiB",
            "--part-size",
            "1MiB",
            "--workers",
            "1",
            &format!("s3://{opts}/p/big.bin"),
            &format!("s3://{opts}/p/small.txt"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(out.stdout[..big.len()] == big[..] && &out.stdout[big.len()..] == b"small");

        let dir = TestDir::new();
        let out = run(&[
            "s3",
            "get",
            "--suffix",
            ".txt",
            &format!("s3://{opts}/p/"),
            "-o",
            dir.path().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(files_under(dir.path()), ["small.txt"]);
    });
}

#[test]
fn a_stop_signal_mid_upload_into_s3_leaves_no_object_and_no_upload() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["intr"]);
        let bucket = server.bucket("intr");
        for (signal, code) in STOPS {
            let origin = Origin::start().unwrap();
            // Two 5 MiB parts go up, then the body waits at the gate.
            let url = origin.url(&format!(
                "/intr/big.bin?size={}&gate_after={}",
                30 << 20,
                12 << 20
            ));
            let child = crate::haul_for(&server)
                .args([
                    "get",
                    "--part-size",
                    "5MiB",
                    "-o",
                    &format!("s3://{}/p", bucket.name()),
                    &url,
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            assert!(
                origin
                    .gate()
                    .wait_arrivals(1, std::time::Duration::from_secs(60))
            );
            assert!(crate::support::wait_until(|| bucket
                .uploads("")
                .unwrap()
                .len()
                == 1));
            let kill = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(code),
                "SIG{signal}: {}",
                text(&out.stderr)
            );
            assert!(summary(&out).contains(" cancelled; "), "SIG{signal}");
            assert_eq!(
                bucket.uploads("").unwrap(),
                vec![],
                "SIG{signal}: the upload was aborted"
            );
            assert_eq!(
                bucket.head("p/big.bin").unwrap(),
                None,
                "SIG{signal}: no partial object"
            );
            origin.gate().release();
        }
    });
}

/// `--include` / `--exclude` (rclone's globs, on keys relative to the prefix), a URL's
/// wildcard, `--min-size` / `--max-size`, `--files-from` and `--min-age` / `--max-age` for
/// `s3 ls`, `s3 get` and `--sync`; a sync with a selection deletes only within it; a
/// selection that matches nothing exits 1 naming it; a malformed glob or age is a usage error.
#[test]
fn s3_ls_get_and_sync_take_only_the_selected_keys() {
    guard(|| {
        let server = crate::support::s3::S3Server::start(&["sel"]);
        for key in [
            "d/train/a.tar",
            "d/train/b.idx",
            "d/train/x/c.tar",
            "d/val/v.tar",
            "d/README",
        ] {
            server.seed_file("sel", key, key.as_bytes());
        }
        let bucket = server.bucket_name("sel");
        let prefix = format!("s3://{bucket}/d/");
        let run = |args: &[&str]| crate::haul_for(&server).args(args).output().unwrap();
        // What landed (the sync records aside).
        let landed = |dir: &TestDir| -> Vec<String> {
            files_under(dir.path())
                .into_iter()
                .filter(|f| !f.starts_with(".haul-work/"))
                .collect()
        };
        let out = run(&[
            "s3",
            "ls",
            &prefix,
            "--include",
            "*.tar",
            "--exclude",
            "val/**",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let listed = text(&out.stdout);
        let keys: Vec<&str> = listed
            .lines()
            .filter_map(|l| l.rsplit(' ').next())
            .collect();
        assert_eq!(keys, ["d/train/a.tar", "d/train/x/c.tar"]);
        // A wildcard in the URL: `*` crosses `/` (s5cmd's meaning), and the literal part
        // before it is the prefix listed.
        let out = run(&["s3", "ls", &format!("s3://{bucket}/d/tr*.tar")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "          13 d/train/a.tar\n          15 d/train/x/c.tar\n"
        );
        // Sizes (each object holds its key: 8 to 15 bytes).
        let out = run(&["s3", "ls", &prefix, "--min-size", "12", "--max-size", "14"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "          13 d/train/a.tar\n          13 d/train/b.idx\n"
        );

        let dir = TestDir::new();
        let into = dir.path().to_str().unwrap();
        let sync = |include: &str| {
            let out = run(&[
                "s3",
                "get",
                &prefix,
                "--include",
                include,
                "--sync",
                "-o",
                into,
            ]);
            assert!(out.status.success(), "{}", text(&out.stderr));
        };
        sync("train/*");
        assert_eq!(landed(&dir), ["train/a.tar", "train/b.idx"]);
        // Another selection into the same directory keeps a record of its own: it never
        // deletes the files the first one downloaded.
        sync("README");
        assert_eq!(landed(&dir), ["README", "train/a.tar", "train/b.idx"]);
        // Within a selection: an object gone from the bucket goes from the directory.
        server.bucket("sel").delete("d/train/b.idx").unwrap();
        sync("train/*");
        assert_eq!(landed(&dir), ["README", "train/a.tar"]);

        let out = run(&["s3", "get", &prefix, "--include", "*.zip", "-o", into]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains(&format!(
                "haul: no objects matched {prefix} (--include *.zip)"
            )),
            "{}",
            text(&out.stderr)
        );
        let small = TestDir::new();
        let into = small.path().to_str().unwrap();
        let out = run(&["s3", "get", &prefix, "--max-size", "9", "-o", into]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(files_under(small.path()), ["README"]);
        let out = run(&["s3", "ls", &prefix, "--include", "a["]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

        // --files-from: only the keys listed (relative to the prefix; comments skipped).
        let list = TestDir::new();
        let keys = list.path().join("keys.txt");
        std::fs::write(&keys, "train/a.tar\n# not a key\n\nREADME\n").unwrap();
        let listed = TestDir::new();
        let into = listed.path().to_str().unwrap();
        let files_from = keys.to_str().unwrap();
        let out = run(&["s3", "get", &prefix, "--files-from", files_from, "-o", into]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(files_under(listed.path()), ["README", "train/a.tar"]);
        // Ages, from the listing's LastModified: every object (four left) was written now.
        let out = run(&["s3", "ls", &prefix, "--max-age", "1h"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout).lines().count(),
            4,
            "{}",
            text(&out.stdout)
        );
        let out = run(&["s3", "get", &prefix, "--min-age", "1h", "-o", into]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("(--min-age 3600s)"),
            "{}",
            text(&out.stderr)
        );
        let out = run(&["s3", "ls", &prefix, "--min-age", "1y"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    });
}

#[test]
fn a_bucket_in_another_region_is_followed_with_one_warning_naming_it() {
    guard(|| {
        let server = crate::support::s3::S3Server::start_local(&["elsewhere"]);
        server.seed_file("elsewhere", "k/a", b"aaa");
        server.home_region(
            "ap-southeast-2",
            crate::support::s3_store::WrongRegion::Redirect,
        );
        let dir = TestDir::new();
        let out = haul_s3(
            &server,
            &[
                "s3",
                "get",
                "s3://elsewhere/k/",
                "-o",
                dir.path().to_str().unwrap(),
                "--region",
                "us-east-1",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        let warning = "s3://elsewhere: the bucket is in region ap-southeast-2, not us-east-1: \
                       following it (--region ap-southeast-2 or AWS_REGION=ap-southeast-2 saves a request)";
        assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"aaa");
        // Told the region, haul is refused nothing.
        let refused = server.region_refusals();
        let out = haul_s3(
            &server,
            &[
                "s3",
                "ls",
                "s3://elsewhere/k/",
                "--region",
                "ap-southeast-2",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(server.region_refusals(), refused);
        assert!(!text(&out.stderr).contains("following it"));
        // -q leaves errors only: the warning too is gone.
        let out = haul_s3(
            &server,
            &[
                "-q",
                "s3",
                "ls",
                "s3://elsewhere/k/",
                "--region",
                "us-east-1",
            ],
        );
        assert!(out.status.success());
        assert_eq!(
            server.region_refusals(),
            refused + 1,
            "refused, and followed"
        );
        assert_eq!(text(&out.stderr), "");
    });
}

#[test]
fn addressing_style_and_resolve_reach_a_virtual_hosted_bucket() {
    guard(|| {
        let server = crate::support::s3::S3Server::start_virtual_hosted(&["vbucket"]);
        server.seed_file("vbucket", "k/a", b"aaa");
        let port = server.socket_addr().port();
        let only_bucket = format!("vbucket.s3.haul.test:{port}:127.0.0.1");
        let ls = |style: &str| {
            haul_s3(
                &server,
                &[
                    "s3",
                    "ls",
                    "s3://vbucket/k/",
                    "--addressing-style",
                    style,
                    "--resolve",
                    &only_bucket,
                    "--attempts",
                    "1",
                ],
            )
        };
        let out = ls("virtual");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "           3 k/a\n");
        // A custom endpoint is path style by default: to s3.haul.test itself, which only
        // the bucket's name was given an address for.
        for style in ["auto", "path"] {
            let out = ls(style);
            assert_eq!(out.status.code(), Some(1), "{style}: {}", text(&out.stderr));
            assert!(
                text(&out.stderr).contains("request failed"),
                "{style}: {}",
                text(&out.stderr)
            );
        }
    });
}

#[test]
fn a_list_comes_from_stdin_and_its_bad_lines_are_named_by_number() {
    use std::io::Write as _;
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let list = format!(
            "# from a pipe\n{}   # the first\nsecond.bin\t{}\n",
            origin.url("/in/a.bin?size=10"),
            origin.url("/in/b.bin?size=20")
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_haul"))
            .args(["get", "--list", "-", "-o", dir.path().to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(list.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(files_under(dir.path()), ["a.bin", "second.bin"]);
        assert_eq!(origin.stats().requests, 2);

        let file = dir.path().join("bad.txt");
        let a = origin.url("/in/a.bin");
        for (text_of, needle) in [
            (format!("{a}\n\nnot a url\n"), "line 3: "),
            (
                format!("# c\n{a}\n{}\n", origin.url("/other/a.bin")),
                "lines 2 and 3 would both land as \"a.bin\"",
            ),
        ] {
            std::fs::write(&file, text_of).unwrap();
            let out = haul(&[
                "get",
                "--list",
                file.to_str().unwrap(),
                "-o",
                dir.path().to_str().unwrap(),
            ]);
            exits_with(&out, 2, needle);
        }
        assert_eq!(origin.stats().requests, 2, "a bad list requests nothing");
    });
}

#[test]
fn version_completions_and_the_man_page_come_from_the_clap_definitions() {
    guard(|| {
        let out = haul(&["--version"]);
        assert_eq!(
            text(&out.stdout),
            format!("haul {}\n", env!("CARGO_PKG_VERSION"))
        );
        let dir = TestDir::new();
        let bash = haul(&["completions", "bash"]);
        assert!(bash.status.success(), "{}", text(&bash.stderr));
        let script = dir.path().join("haul.bash");
        std::fs::write(&script, &bash.stdout).unwrap();
        let checked = Command::new("bash")
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap();
        assert!(checked.status.success(), "{}", text(&checked.stderr));
        let bash = text(&bash.stdout);
        for word in ["put", "--include", "--addressing-style", "--dry-run"] {
            assert!(bash.contains(word), "{word} not in the bash completions");
        }
        for (shell, marker) in [("zsh", "#compdef haul"), ("fish", "complete -c haul")] {
            let out = haul(&["completions", shell]);
            assert!(text(&out.stdout).contains(marker), "{shell}");
        }
        let out = haul(&["completions", "tcsh"]);
        exits_with(&out, 2, "invalid value 'tcsh'");
        let man = text(&haul(&["man"]).stdout);
        assert!(
            man.contains(".TH haul 1") && man.contains("haul\\-put"),
            "{man}"
        );
    });
}

#[test]
fn one_object_can_be_given_a_file_name_or_sent_to_stdout_with_capital_o() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let url = origin.url("/named/original.bin?size=5000");
        let file = dir.path().join("sub/chosen.dat");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let out = haul(&["get", &url, "-O", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(files_under(dir.path()), ["sub/chosen.dat"]);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            body("/named/original.bin", 5000)
        );

        let out = haul(&["get", &url, "-O", "-"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(out.stdout, body("/named/original.bin", 5000));

        let two = origin.url("/named/o-{1..2}.bin");
        exits_with(
            &haul(&["get", &two, "-O", file.to_str().unwrap()]),
            2,
            "-O FILE takes one URL",
        );
        let out = haul(&["get", &url, "-O", "x", "-o", dir.path().to_str().unwrap()]);
        exits_with(&out, 2, "cannot be used with");
    });
}

#[test]
fn refused_options_are_named_by_their_flags_and_places_by_what_users_call_them() {
    guard(|| {
        let dir = TestDir::new();
        let out_dir = dir.path().to_str().unwrap();
        let url = "http://127.0.0.1:9/x.bin";
        let rate = haul(&["get", "--rate-limit", "0", "-o", out_dir, url]);
        exits_with(
            &rate,
            2,
            "haul: --rate-limit: must be at least 1 byte per second",
        );
        let connections = haul(&["get", "--max-connections", "0", "-o", out_dir, url]);
        exits_with(
            &connections,
            2,
            "haul: --max-connections: must be at least 1",
        );
        let mixed = haul(&["get", "-o", out_dir, "-o", "s3://bucket/p", url]);
        exits_with(&mixed, 2, "-o takes directories or s3:// targets, not both");
        for out in [&rate, &connections, &mixed] {
            let stderr = text(&out.stderr);
            assert!(
                !stderr.contains("mountpath") && !stderr.contains("rate_limit"),
                "{stderr}"
            );
        }
    });
}

/// A URL whose path ends in `/` names no file: a usage error before anything runs, saying
/// how to name it; with `-O FILE` it is fetched under that name.
#[test]
fn a_url_ending_in_a_slash_is_refused_with_a_way_to_name_it() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let url = origin.url("/site/");
        let out = haul(&["get", "-o", dir.path().to_str().unwrap(), &url]);
        exits_with(&out, 2, "names no file (its path ends in '/')");
        exits_with(&out, 2, "-O FILE names one object");
        assert_eq!(origin.stats().requests, 0);
        let named = dir.path().join("index.html");
        let out = haul(&["get", &url, "-O", named.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            std::fs::read(&named).unwrap().len() as u64,
            haul_origin::DEFAULT_OBJECT_BYTES
        );
    });
}

/// Text as a terminal shows it, roughly: CSI escape sequences removed, and split where a
/// carriage return or newline starts a new line.
fn screen_lines(raw: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
        .split(['\r', '\n'])
        .map(str::to_owned)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// One large object, on a terminal: the run's line shows bytes of the total, the percentage,
/// the rate, an ETA and the elapsed time (not only objects); a retry warning meanwhile is a
/// line of its own above the display, never text inside a frame.
#[test]
fn on_a_terminal_one_large_object_shows_bytes_percent_eta_and_warnings_above_the_bars() {
    guard(|| {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        // 4,000,000 bytes at 1 MB/s; the first response breaks off at 1 MB (a retry warning),
        // the resume brings the rest.
        let url =
            origin.url("/tty/big.bin?size=4000000&rate=1000000&drop_after=1000000&faults_first=1");
        let command = format!(
            "{} get --workers 1 -o {} '{url}'",
            env!("CARGO_BIN_EXE_haul"),
            dir.path().display(),
        );
        let out = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .output()
            .unwrap();
        let raw = text(&out.stdout);
        assert!(out.status.success(), "{raw}");
        let lines = screen_lines(&raw);
        let progress: Vec<&String> = lines.iter().filter(|l| l.contains(" / 3.81 MiB")).collect();
        assert!(!progress.is_empty(), "no bytes of the total in {lines:#?}");
        assert!(
            progress
                .iter()
                .any(|l| l.contains('%') && l.contains("ETA ") && l.contains("elapsed ")),
            "{progress:#?}"
        );
        let warnings: Vec<&String> = lines.iter().filter(|l| l.contains("WARN")).collect();
        assert!(!warnings.is_empty(), "no retry warning in {lines:#?}");
        for warning in warnings {
            assert!(
                warning.starts_with('['),
                "a warning inside a frame: {warning:?}"
            );
        }
        assert!(
            lines.last().unwrap().starts_with("1 landed, 0 failed"),
            "the summary comes last: {lines:#?}"
        );
    });
}
