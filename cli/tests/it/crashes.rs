//! The `haul` binary killed mid-job, or writing to a full disk: nothing partial is ever
//! visible, nothing is left behind that cannot be resumed, and the next run continues.

use std::time::Duration;

use haul::Sha256Digest;
use haul_origin::{Origin, body};

use crate::support::{TestDir, files_under, guard};

const SIZE: u64 = 500_000;

#[test]
fn a_full_disk_is_a_clear_error_naming_the_file_and_the_work_file_is_removed() {
    guard(|| {
        // A really full disk: a 256 KiB tmpfs as the output directory, in a mount namespace
        // of the haul binary's own (`unshare`, util-linux; no privileges needed), which
        // reports what it left there before the mount goes away with it.
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let out_dir = dir.path().join("full");
        std::fs::create_dir_all(&out_dir).unwrap();
        let script = format!(
            "mount -t tmpfs -o size=256k tmpfs {out} && {haul} get --workers 1 -q -o {out} \
             --attempts 1 '{small}' '{big}'; echo rc=$?; \
             find {out} -type f | sort; sha256sum {out}/small.bin",
            out = out_dir.display(),
            haul = env!("CARGO_BIN_EXE_haul"),
            small = origin.url("/small.bin?size=1000"),
            big = origin.url(&format!("/big.bin?size={SIZE}")),
        );
        let run = std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
            .output()
            .expect("unshare (util-linux) runs");
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stdout.contains("rc=1"), "{stdout}\n{stderr}");
        assert!(
            stderr.contains("failed: big.bin: writing ")
                && stderr.contains(".haul-work/")
                && stderr.contains("No space left on device"),
            "{stderr}"
        );
        // The small object landed whole; the big one left nothing, not even a work file.
        let small = Sha256Digest::of(&body("/small.bin", 1000)).to_string();
        assert!(stdout.contains(&small), "{stdout}");
        let files: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with(&*out_dir.to_string_lossy()))
            .collect();
        assert_eq!(
            files,
            [format!("{}/small.bin", out_dir.display())],
            "{stdout}"
        );
    });
}

#[test]
fn sigkill_mid_job_leaves_no_partial_file_and_a_rerun_completes_fetching_less() {
    guard(|| {
        const N: u64 = 6;
        // Above the size that gets a sidecar (haul resumes only objects of 1 MiB or more
        // after a crash; smaller ones come again whole).
        const BIG: u64 = 2 << 20;
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        // o-0 and o-1 land; o-2..o-5 stop at the origin's gate after 1 MiB, so the kill
        // provably lands with two transfers mid-body (two workers, jobs served in turn).
        let whole = origin.url(&format!("/k/o-{{0..1}}.bin?size={BIG}"));
        let held = origin.url(&format!(
            "/k/o-{{2..5}}.bin?size={BIG}&gate_after={}",
            1 << 20
        ));
        let haul = |extra: &[&str]| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_haul"));
            cmd.args(["get", &whole, &held, "--workers-per-target", "2", "-o"])
                .arg(dir.path())
                .args(extra)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            cmd
        };
        let visible = || -> Vec<String> {
            files_under(dir.path())
                .into_iter()
                .filter(|f| !f.starts_with(".haul-work/"))
                .collect()
        };
        let partial_work_files = || {
            files_under(dir.path())
                .iter()
                .filter(|f| {
                    f.ends_with(".part")
                        && std::fs::metadata(dir.path().join(f)).is_ok_and(|m| m.len() > 0)
                })
                .count()
        };
        let mut child = haul(&[]).spawn().unwrap();
        assert!(origin.gate().wait_arrivals(2, Duration::from_secs(60)));
        assert!(
            crate::support::wait_until(|| visible().len() == 2 && partial_work_files() == 2),
            "never saw two landed objects beside two transfers in progress"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        origin.gate().release(); // the rerun passes

        // No partial file under a visible name: what is visible is whole.
        let landed_before = visible();
        assert!(!landed_before.is_empty() && (landed_before.len() as u64) < N);
        for name in &landed_before {
            let bytes = std::fs::read(dir.path().join(name)).unwrap();
            assert!(
                bytes == body(&format!("/k/{name}"), BIG),
                "{name} is partial"
            );
        }
        assert_eq!(partial_work_files(), 2, "the crash left its work files");
        let kept: u64 = files_under(dir.path())
            .iter()
            .filter(|f| f.ends_with(".part"))
            .map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len())
            .sum();

        // The held responses of the killed process end before the rerun is counted.
        assert!(crate::support::wait_until(|| origin.stats().active == 0));
        origin.reset_stats();
        let status = haul(&["--skip-existing"]).status().unwrap();
        assert!(status.success());
        for i in 0..N {
            let name = format!("o-{i}.bin");
            let bytes = std::fs::read(dir.path().join(&name)).unwrap();
            assert!(bytes == body(&format!("/k/{name}"), BIG), "{name}");
        }
        let work: Vec<String> = files_under(dir.path())
            .into_iter()
            .filter(|f| f.starts_with(".haul-work/"))
            .collect();
        assert!(work.is_empty(), "{work:?}");
        let stats = origin.stats();
        // The two work files resumed (206 for their rest), the two others came whole, and
        // nothing that had landed or was kept came again.
        assert_eq!(
            (stats.status_count(206), stats.status_count(200)),
            (2, 2),
            "{stats:?}"
        );
        let missing = (N - landed_before.len() as u64) * BIG;
        assert_eq!(stats.body_bytes, missing - kept);
    });
}

#[test]
fn a_crashed_download_from_an_s3_prefix_resumes_on_the_next_run() {
    guard(|| {
        const BIG: u64 = 3 << 20;
        let server = crate::support::s3::S3Server::start(&["crash"]);
        let bytes = body("/crash/big.bin", BIG);
        server.seed_file("crash", "in/big.bin", &bytes);
        let dir = TestDir::new();
        let source = format!("s3://{}/in/", server.bucket_name("crash"));
        let run = |extra: &[&str]| {
            let mut command = crate::haul_for(&server);
            command
                .args(["s3", "get", &source, "-o"])
                .arg(dir.path())
                .args(extra)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            command
        };
        let work_bytes = || {
            files_under(dir.path())
                .iter()
                .filter(|f| f.ends_with(".part"))
                .map(|f| std::fs::metadata(dir.path().join(f)).map_or(0, |m| m.len()))
                .sum::<u64>()
        };
        // Slow enough that the kill lands mid-body, with a megabyte in the work file.
        let mut child = run(&["--rate-limit", "256KiB"]).spawn().unwrap();
        assert!(crate::support::wait_until(|| work_bytes() > 0));
        child.kill().unwrap(); // SIGKILL: no clean-up runs
        child.wait().unwrap();
        let kept = work_bytes();
        assert!(kept > 0 && kept < BIG, "{kept}");

        let rerun = run(&["-vv"]).output().unwrap();
        let log = String::from_utf8_lossy(&rerun.stderr);
        assert!(rerun.status.success(), "{log}");
        assert!(
            log.contains(&format!("resuming a work file holding {kept} bytes")),
            "the rerun did not resume the crashed run's work file: {log}"
        );
        assert!(std::fs::read(dir.path().join("big.bin")).unwrap() == bytes);
    });
}

#[test]
fn a_full_output_directory_stops_taking_objects_with_one_line_and_the_others_carry_on() {
    guard(|| {
        // Two output directories: a 256 KiB tmpfs (in the haul binary's own mount namespace,
        // as above) that fills after some twenty of its objects, and an ordinary one.
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let full = dir.path().join("full");
        let roomy = dir.path().join("roomy");
        std::fs::create_dir_all(&full).unwrap();
        std::fs::create_dir_all(&roomy).unwrap();
        let script = format!(
            "mount -t tmpfs -o size=256k tmpfs {full} && {haul} get --workers 1 -o {full} \
             -o {roomy} --attempts 1 '{template}' 2> {out}/errors; \
             echo rc=$?; find {full} -type f | wc -l",
            full = full.display(),
            roomy = roomy.display(),
            out = dir.path().display(),
            haul = env!("CARGO_BIN_EXE_haul"),
            template = origin.url("/fill/o-{000..199}.bin?size=10000"),
        );
        let run = std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
            .output()
            .expect("unshare (util-linux) runs");
        let stdout = String::from_utf8_lossy(&run.stdout);
        let errors = std::fs::read_to_string(dir.path().join("errors")).unwrap();
        let summary = errors
            .lines()
            .find(|l| l.contains(" landed, "))
            .unwrap_or_else(|| panic!("no summary in {errors}"));
        assert!(stdout.contains("rc=1"), "{stdout}\n{errors}");
        let in_full: u64 = stdout.lines().last().unwrap().trim().parse().unwrap();
        let in_roomy = files_under(&roomy).len() as u64;
        // Every object of the ordinary directory landed; the full one took some.
        let landed: u64 = summary.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(landed, in_full + in_roomy, "{summary}");
        assert!(in_roomy > 50 && in_full > 0, "{in_full} {in_roomy}");
        let failed: Vec<&str> = errors
            .lines()
            .filter(|l| l.starts_with("failed: "))
            .collect();
        assert_eq!(failed.len(), 2, "{errors}");
        assert!(failed[0].contains("No space left on device"), "{errors}");
        let untried = 200 - landed - 1;
        assert!(
            failed[1].starts_with(&format!(
                "failed: {untried} more objects not written: output directory {} stopped taking \
                 objects (No space left on device",
                full.display()
            )),
            "{errors}"
        );
        assert_eq!(
            errors.matches("no more objects are written there").count(),
            1,
            "{errors}"
        );
    });
}
