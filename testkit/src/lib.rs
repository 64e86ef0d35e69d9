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

/// An error and its sources, joined with ": " (the library's formatter).
pub use haul::error_chain as chain;
