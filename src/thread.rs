//! Named threads joined on drop (jod-thread's shape): no thread outlives its owner; and
//! the count of a growing pool's threads against its cap.

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// How many threads a pool that grows has started, counted against its cap. A start is
/// claimed before its thread is spawned, so threads that grow the pool at once (each on a
/// response, or as it takes work) never start more than the cap between them: counted only
/// after the spawn, a few hundred at once each saw room for the same threads (a fetcher of
/// cap 256 ran 1,190 threads under load).
#[derive(Debug)]
pub(crate) struct Headcount {
    started: AtomicUsize,
    cap: usize,
}

impl Headcount {
    /// No thread started yet, at most `cap` ever.
    pub(crate) fn new(cap: usize) -> Headcount {
        Headcount {
            started: AtomicUsize::new(0),
            cap,
        }
    }

    /// Claims up to `want` more starts within the cap: the indexes of the threads to start
    /// (empty when the cap is reached).
    pub(crate) fn claim(&self, want: usize) -> Range<usize> {
        let mut got = 0;
        let before = self
            .started
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |started| {
                got = want.min(self.cap.saturating_sub(started));
                (got > 0).then_some(started + got)
            });
        match before {
            Ok(started) => started..started + got,
            Err(started) => started..started,
        }
    }

    /// Gives back `n` claimed starts whose threads could not be spawned.
    pub(crate) fn unclaim(&self, n: usize) {
        self.started.fetch_sub(n, Ordering::AcqRel);
    }

    /// Threads started (claimed) so far.
    pub(crate) fn started(&self) -> usize {
        self.started.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_growing_a_pool_at_once_claim_no_more_than_its_cap() {
        let headcount = Headcount::new(24);
        assert_eq!(headcount.claim(8), 0..8);
        let barrier = std::sync::Barrier::new(16);
        let claimed: usize = std::thread::scope(|s| {
            let growers: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        headcount.claim(8).len()
                    })
                })
                .collect();
            growers.into_iter().map(|g| g.join().unwrap()).sum()
        });
        assert_eq!(claimed, 16, "the room left under the cap, once");
        assert_eq!(headcount.started(), 24);
        assert!(headcount.claim(1).is_empty());
        headcount.unclaim(2);
        assert_eq!(headcount.claim(5), 22..24);
    }
}
