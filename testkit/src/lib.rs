//! haul's test kit: the hang guard, temporary directories, and the servers tests run
//! against — an S3 store in the process (s3s + s3s-fs, or an outside one), a TCP fault proxy,
//! a server that stops reading. For haul's own tests and the CLI's; not published.

pub mod credentials;
pub mod proxy;
pub mod s3;
pub mod s3_store;
pub mod stuck;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a test may run before the guard fails it.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs `test` on its own thread and fails if it does not finish within [`LIMIT`]: a hang
/// fails the test instead of stalling the suite. A panic in `test` is re-raised.
#[track_caller]
pub fn guard<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    guard_for(LIMIT, test)
}

/// [`guard`] with an explicit limit.
#[track_caller]
pub fn guard_for<T: Send + 'static>(
    limit: Duration,
    test: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let handle = std::thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test));
            let _ = tx.send(result);
        })
        .expect("spawn test thread");
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => {
            handle.join().expect("test thread");
            value
        }
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("test did not finish within {limit:?}: it hangs"),
    }
}

/// Polls `condition` until it holds or [`LIMIT`] passes; returns whether it held. For
/// conditions no channel can signal (a counter inside another component reaching a value).
/// It waits for the condition itself, never for a guessed duration.
pub fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + LIMIT;
    while !condition() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::park_timeout(Duration::from_millis(1));
    }
    true
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl Default for TestDir {
    fn default() -> TestDir {
        TestDir::new()
    }
}

impl TestDir {
    pub fn new() -> TestDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("haul-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        TestDir(dir)
    }

    /// A fresh directory on tmpfs (`/dev/shm`) when the machine has one, for tests that
    /// create many files; else like [`TestDir::new`].
    pub fn new_fast() -> TestDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return TestDir::new();
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = shm.join(format!("haul-test-{}-fast-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        TestDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Every file under `dir` (as [`files_under`] names them) with its bytes: a snapshot that
/// shows whether anything was written, changed or removed.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).expect("read a file");
            (name, bytes)
        })
        .collect()
}

/// Files outside any work directory (`.haul-work/`) under `dir`: what a reader sees.
pub fn visible(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| !f.starts_with(".haul-work/") && !f.contains("/.haul-work/"))
        .collect()
}

/// A work file an interrupted transfer kept for a later run.
pub struct Kept {
    /// The URL (path and query) its sidecar names, without scheme and host.
    pub path: String,
    /// The bytes in it.
    pub bytes: Vec<u8>,
    /// Its sidecar's text.
    pub sidecar: String,
}

impl Kept {
    /// The byte ranges its sidecar lists as good (a split object's); `None` for a file whose
    /// bytes from the start are all good.
    pub fn have(&self) -> Option<Vec<std::ops::Range<u64>>> {
        let ranges: Vec<_> = self
            .sidecar
            .lines()
            .filter_map(|l| l.strip_prefix("have "))
            .map(|r| {
                let (a, b) = r.split_once('-').expect("START-END");
                a.parse().expect("a start")..b.parse().expect("an end")
            })
            .collect();
        self.sidecar
            .lines()
            .any(|l| l.starts_with("size "))
            .then_some(ranges)
    }

    /// The good bytes it holds (all of them, or the listed ranges'); fails the test when one
    /// differs from `object`, the whole object's bytes.
    pub fn assert_good(&self, object: &[u8]) -> u64 {
        match self.have() {
            None => {
                let n = self.bytes.len();
                assert!(
                    self.bytes[..] == object[..n],
                    "{}: not the first {n} bytes",
                    self.path
                );
                n as u64
            }
            Some(have) => {
                assert_eq!(
                    self.bytes.len(),
                    object.len(),
                    "{}: not sized to the object",
                    self.path
                );
                for r in &have {
                    let (a, b) = (r.start as usize, r.end as usize);
                    assert!(
                        self.bytes[a..b] == object[a..b],
                        "{}: bytes {a}..{b} differ",
                        self.path
                    );
                }
                have.iter().map(|r| r.end - r.start).sum()
            }
        }
    }
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("path", &self.path)
            .field("bytes", &self.bytes.len())
            .field("sidecar", &self.sidecar)
            .finish()
    }
}

/// The work files kept under `dir`'s work directories, sorted by the path their sidecars
/// name; each must have its sidecar (a test fails on one without).
pub fn kept(dir: &Path) -> Vec<Kept> {
    kept_where(dir, true)
}

/// The work files under `dir` that have a sidecar, as [`kept`] reads them; those without one
/// are left out (after a SIGKILL, an object under 1 MiB has none: a rerun fetches it whole).
pub fn resumable(dir: &Path) -> Vec<Kept> {
    kept_where(dir, false)
}

/// The work files under `dir`; one without a sidecar fails the test when `sidecars_needed`.
fn kept_where(dir: &Path, sidecars_needed: bool) -> Vec<Kept> {
    let files = files_under(dir);
    let mut kept: Vec<Kept> = files
        .iter()
        .filter(|f| f.contains(".haul-work/") && f.ends_with(".part"))
        .filter_map(|work| {
            let sidecar = match std::fs::read_to_string(dir.join(format!("{work}.meta"))) {
                Ok(sidecar) => sidecar,
                Err(e) if sidecars_needed => panic!("{work} has no sidecar ({e}): {files:?}"),
                Err(_) => return None,
            };
            let source = sidecar.lines().next().unwrap_or_default();
            let url = source.strip_prefix("source ").unwrap_or(source);
            let path = url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
                .unwrap_or_else(|| url.to_owned());
            Some(Kept {
                path,
                bytes: std::fs::read(dir.join(work)).expect("read a work file"),
                sidecar,
            })
        })
        .collect();
    kept.sort_by(|a, b| a.path.cmp(&b.path));
    kept
}

/// An error and its sources, joined with ": " (the library's formatter).
pub use haul::error_chain as chain;
