//! Named threads joined on drop (jod-thread's shape): no thread outlives its owner.

use std::io;
use std::thread::JoinHandle;

/// A thread handle that joins when dropped and re-raises the thread's panic, unless the
/// current thread is already panicking.
#[derive(Debug)]
pub(crate) struct JoinOnDrop(Option<JoinHandle<()>>);

impl JoinOnDrop {
    /// Spawns `f` on a new thread called `name`.
    pub(crate) fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> io::Result<JoinOnDrop> {
        let handle = std::thread::Builder::new().name(name).spawn(f)?;
        Ok(JoinOnDrop(Some(handle)))
    }

    /// Joins now; `Err` carries the thread's name when it panicked.
    pub(crate) fn join(mut self) -> Result<(), String> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<(), String> {
        let Some(handle) = self.0.take() else {
            return Ok(());
        };
        let name = handle.thread().name().unwrap_or("haul thread").to_owned();
        handle.join().map_err(|_| name)
    }
}

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Err(name) = self.join_inner()
            && !std::thread::panicking()
        {
            panic!("thread {name} panicked");
        }
    }
}
