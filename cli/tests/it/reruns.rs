//! A rerun continues: a job stopped (SIGTERM, Ctrl-C's SIGINT) or killed (SIGKILL) at
//! random points and run again each time moves the dataset little more than once, and what
//! is visible after every stop is whole.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use haul_origin::{Origin, body, seed};

use crate::support::{TestDir, files_under, guard_for, resumable, wait_until};

const SMALL: u64 = 256 << 10;
const SMALLS: u64 = 990;
const BIG: u64 = 16 << 20;
const BIGS: u64 = 10;
const DATASET: u64 = SMALL * SMALLS + BIG * BIGS;
/// The origin's pace, 16 MB/s a connection, as a server across a network sends. Unpaced,
/// a loopback origin writes megabytes into each connection's kernel buffers before any
/// client reads them: bytes a stop loses, which the origin counts as sent.
const PACE: &str = "rate=16000000";

/// The bytes of the object named `name`.
fn object(name: &str) -> Vec<u8> {
    let size = if name.starts_with('b') { BIG } else { SMALL };
    body(&format!("/r/{name}"), size)
}

/// Every visible file under `out` is whole: the object of its name, byte for byte.
fn assert_visible_whole(out: &Path, after: &str) -> usize {
    let visible: Vec<String> = files_under(out)
        .into_iter()
        .filter(|f| !f.starts_with(".haul-work/"))
        .collect();
    for name in &visible {
        let bytes = std::fs::read(out.join(name)).unwrap();
        assert!(bytes == object(name), "{name} is not whole after {after}");
    }
    visible.len()
}

/// The bytes a rerun resumes from under `out`: every work file with a sidecar holds the
/// object's own bytes where its sidecar says (checked), and these are counted.
fn resumable_bytes(out: &Path) -> u64 {
    resumable(out)
        .iter()
        .map(|kept| {
            let name = kept
                .path
                .strip_prefix("/r/")
                .and_then(|p| p.split_once('?'))
                .map_or_else(
                    || panic!("{}: not an object of the job", kept.path),
                    |n| n.0,
                );
            kept.assert_good(&object(name))
        })
        .sum()
}

#[test]
fn a_job_stopped_five_times_and_rerun_each_time_moves_the_dataset_about_once() {
    guard_for(Duration::from_secs(240), || {
        let origin = Origin::start().unwrap();
        let dir = TestDir::new();
        let out = dir.path().join("out");
        let smalls = origin.url(&format!("/r/s-{{000..989}}.bin?size={SMALL}&{PACE}"));
        let bigs = origin.url(&format!("/r/b-{{0..9}}.bin?size={BIG}&{PACE}"));
        let haul = || {
            let mut command = Command::new(crate::HAUL);
            // Sixteen transfers at once, pinned: what a SIGKILL costs grows with the
            // transfers in flight (an object under 1 MiB has no sidecar and is fetched again
            // whole; each stream's unwritten buffer is lost), and on a loaded machine the
            // adaptive limit wanders between 16 and 80 from run to run. This test is about
            // what a rerun resumes; the adaptive limit has tests of its own.
            command
                .args(["get", "-q", "--workers", "16", &smalls, &bigs, "-o"])
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            command
        };
        // (signal for kill(1), the exit it makes: 128 + its number, or death by SIGKILL)
        let stops = [
            ("TERM", Some(143)),
            ("KILL", None),
            ("INT", Some(130)),
            ("TERM", Some(143)),
            ("KILL", None),
        ];
        for (i, (signal, code)) in stops.into_iter().enumerate() {
            // Stop after a random 4–12% of the dataset more has come: every stop lands
            // mid-run, before the job can finish.
            let share = 0.04 + (seed(&format!("stop {i}")) % 1000) as f64 / 1000.0 * 0.08;
            let at = origin.stats().body_bytes + (share * DATASET as f64) as u64;
            let mut child = haul().spawn().unwrap();
            assert!(
                wait_until(|| origin.stats().body_bytes >= at),
                "run {i} never moved {share:.2} of the dataset"
            );
            assert!(child.try_wait().unwrap().is_none(), "run {i} ended early");
            let killed = Command::new("kill")
                .args([format!("-{signal}"), child.id().to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
            let run = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            match code {
                Some(code) => assert_eq!(run.status.code(), Some(code), "{signal}: {stderr}"),
                None => assert_eq!(run.status.signal(), Some(9), "{stderr}"),
            }
            let landed = assert_visible_whole(&out, &format!("SIG{signal}"));
            let visible: u64 = files_under(&out)
                .iter()
                .filter(|f| !f.starts_with(".haul-work/"))
                .map(|f| object(f).len() as u64)
                .sum();
            let held = visible + resumable_bytes(&out);
            // What each stop cost (moved less held: what a rerun fetches again), for a CI
            // log when the total is over.
            let moved = origin.stats().body_bytes;
            eprintln!(
                "after SIG{signal}: {landed} objects visible; {:.3} × the dataset moved, \
                 {:.3} × held",
                moved as f64 / DATASET as f64,
                held as f64 / DATASET as f64,
            );
            assert!(
                landed < (SMALLS + BIGS) as usize,
                "run {i} finished the job"
            );
        }
        let last = haul().output().unwrap();
        assert!(
            last.status.success(),
            "{}",
            String::from_utf8_lossy(&last.stderr)
        );
        assert_eq!(
            assert_visible_whole(&out, "the last run"),
            (SMALLS + BIGS) as usize
        );
        let work: Vec<String> = files_under(&out)
            .into_iter()
            .filter(|f| f.starts_with(".haul-work/"))
            .collect();
        assert!(work.is_empty(), "{work:?}");
        let moved = origin.stats().body_bytes as f64 / DATASET as f64;
        eprintln!("five stops and reruns moved {moved:.2} × the dataset");
        assert!(moved <= 1.2, "moved {moved:.2} × the dataset");
    });
}
