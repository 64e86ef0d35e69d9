//! The dispatcher: one thread (`haul-dispatch`) that owns every active job's lazy expansion,
//! places each object on a mountpath by HRW, and feeds that mountpath's bounded queue.
//!
//! It waits on three things at once — a command, a task done, room in the queue its next
//! task goes to — so a full queue never makes it deaf to `abort` or to shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Select, Sender};
use log::debug;

use crate::downloader::hrw;
use crate::downloader::job::JobId;
use crate::downloader::store::{Job, Store};
use crate::downloader::sync::{SyncRun, Ticket};
use crate::engine::error::DownloadError;
use crate::source::template::Names;
use crate::source::url::{self, UrlError};
use crate::target::name::ObjectName;

/// One object for a jogger.
#[derive(Debug)]
pub(crate) struct Task {
    pub(crate) job: Arc<Job>,
    /// The URL; for an object of the job's bucket, `s3://bucket/key`.
    pub(crate) url: String,
    /// The object's key in the job's bucket (a backend job): presigned per request, so a
    /// task that waits long in a queue never carries an expired signature, and a crashed
    /// run's work file is known again by its key.
    pub(crate) key: Option<String>,
    pub(crate) name: ObjectName,
    /// Its place in a sync job's record.
    pub(crate) sync: Option<Ticket>,
    /// Its size, when a listing (or the file system) gave it.
    pub(crate) size: Option<u64>,
    /// When it was last written, when a listing of its bucket said.
    pub(crate) modified: Option<std::time::SystemTime>,
    /// The local file to upload, for a job of local files.
    pub(crate) local: Option<std::path::PathBuf>,
    /// What the target holds at the object's key, when the job looked (local files only).
    pub(crate) stored: Option<crate::s3::ListedObject>,
}

/// A jogger finished a task of `job`; for a sync job, its ticket's seq and whether the
/// object is there now (landed or skipped).
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) job: Arc<Job>,
    pub(crate) sync: Option<(u64, bool)>,
}

/// What the handle tells the dispatcher. A closed set.
#[derive(Debug)]
pub(crate) enum Command {
    /// A new job and its objects, still unexpanded, and its sync record when it syncs.
    Submit(Arc<Job>, Expansion, Option<Box<SyncRun>>),
    /// A job was aborted (its flag is already set): stop expanding it now.
    Abort,
}

/// A job's objects, produced one at a time.
#[derive(Debug)]
pub(crate) enum Expansion {
    /// Names already validated at submit.
    List(std::vec::IntoIter<(String, ObjectName)>),
    /// A template's URLs; each name is made (and may fail) as it is reached.
    Range {
        names: Names,
        subdir: Option<String>,
        /// Which names it takes (patterns only), when not all.
        select: Option<Box<crate::KeySelection>>,
    },
    /// A bucket prefix, listed a page at a time as objects are needed. Pulling a new page
    /// blocks the dispatcher for one listing request (once per 1,000 objects).
    Listed(Box<Listed>),
    /// Named keys of the job's bucket, validated at submit.
    Keys {
        bucket: String,
        keys: std::vec::IntoIter<(String, ObjectName)>,
    },
    /// Local files for S3 targets, walked a directory at a time.
    Local(Box<crate::downloader::uploads::LocalFiles>),
}

#[derive(Debug)]
pub(crate) struct Listed {
    pub(crate) bucket: crate::s3::Bucket,
    pub(crate) listing: crate::s3::Listing,
    /// The prefix's length: keys are selected by what follows it.
    pub(crate) prefix_len: usize,
    pub(crate) select: crate::KeySelection,
    pub(crate) suffix: Option<String>,
    pub(crate) names: crate::downloader::key_names::KeyNames,
    /// The listing broke off: keys after the last one listed are unknown.
    pub(crate) failed: bool,
}

/// A job's next object: its URL, its name (or why it has none), and what the listing said
/// of it, for a listed job.
pub(crate) struct Next {
    pub(crate) url: String,
    pub(crate) key: Option<String>,
    pub(crate) name: Result<ObjectName, DownloadError>,
    pub(crate) listed: Option<crate::s3::ListedObject>,
    /// The local file, for a job of local files.
    pub(crate) local: Option<std::path::PathBuf>,
    /// A failure of the whole job rather than of one object (its listing broke off): every
    /// shard reports it, since every shard's share is incomplete.
    pub(crate) whole_job: bool,
}

impl Next {
    pub(crate) fn of(url: String, name: Result<ObjectName, DownloadError>) -> Next {
        Next {
            url,
            key: None,
            name,
            listed: None,
            local: None,
            whole_job: false,
        }
    }
}

impl Expansion {
    /// Whether the expansion ended with every object it should have: not a listing that
    /// broke off.
    fn complete(&self) -> bool {
        match self {
            Expansion::Listed(listed) => !listed.failed,
            _ => true,
        }
    }

    /// The next object: a URL and its name, or a URL and why it has none. `cancel` (the
    /// job's) stops a listing request, or its backoff, when the job is aborted.
    fn next(&mut self, cancel: &crate::cancel::CancelToken) -> Option<Next> {
        match self {
            Expansion::Local(files) => files.next(),
            Expansion::List(list) => list.next().map(|(url, name)| Next::of(url, Ok(name))),
            Expansion::Keys { bucket, keys } => keys.next().map(|(key, name)| Next {
                key: Some(key.clone()),
                ..Next::of(format!("s3://{bucket}/{key}"), Ok(name))
            }),
            Expansion::Range {
                names,
                subdir,
                select,
            } => loop {
                let url = names.next()?;
                let name = url::name_from_url(&url);
                if let (Ok(name), Some(select)) = (&name, select.as_ref())
                    && !select.matches(name.as_str())
                {
                    continue;
                }
                let name = name.and_then(|name| match subdir {
                    Some(dir) => name.under(dir).map_err(|source| UrlError::Name {
                        url: url::redact_url(&url),
                        source,
                    }),
                    None => Ok(name),
                });
                return Some(Next::of(url, name.map_err(DownloadError::from)));
            },
            Expansion::Listed(listed) => loop {
                let Listed {
                    bucket,
                    listing,
                    prefix_len,
                    select,
                    suffix,
                    names,
                    failed,
                } = &mut **listed;
                let object = match crate::http::transport::with_cancel(cancel, || listing.next())? {
                    Ok(object) => object,
                    Err(e) => {
                        // The listing cannot go on: one failure names why, and the job
                        // ends with what was listed so far.
                        let shown = format!("s3://{}/", bucket.name());
                        let failure = DownloadError::Request {
                            url: shown.clone(),
                            source: Box::new(e),
                        };
                        *listing = crate::s3::Listing::done(bucket);
                        *failed = true;
                        if cancel.is_cancelled() {
                            return None; // aborted: not a failure of the listing
                        }
                        return Some(Next {
                            whole_job: true,
                            ..Next::of(shown, Err(failure))
                        });
                    }
                };
                let key = &object.key;
                if key.ends_with('/')
                    || suffix.as_deref().is_some_and(|s| !key.ends_with(s))
                    || !select.matches_listed(key.get(*prefix_len..).unwrap_or(key), &object)
                {
                    continue; // a directory marker, or not selected
                }
                let shown = format!("s3://{}/{key}", bucket.name());
                let name = match names.name(key) {
                    Ok(name) => name,
                    Err(source) => {
                        let error = DownloadError::Url(UrlError::Name {
                            url: shown.clone(),
                            source,
                        });
                        return Some(Next::of(shown, Err(error)));
                    }
                };
                return Some(Next {
                    key: Some(key.clone()),
                    listed: Some(object),
                    ..Next::of(shown, Ok(name))
                });
            },
        }
    }
}

/// A job the dispatcher is responsible for until it finishes.
#[derive(Debug)]
struct Tracked {
    job: Arc<Job>,
    /// Tasks sent to a queue and not yet reported done.
    in_flight: usize,
    /// No more tasks will be sent (the expansion ended or the job was aborted).
    dispatch_done: bool,
    /// The expansion ended with every object it should have (not a listing that broke
    /// off); an abort, checked when the job finishes, overrides it.
    complete: bool,
    /// A sync job's record.
    sync: Option<Box<SyncRun>>,
}

#[derive(Debug)]
struct Active {
    job: Arc<Job>,
    names: Expansion,
}

pub(crate) struct Dispatcher {
    pub(crate) commands: Receiver<Command>,
    pub(crate) done: Receiver<Done>,
    pub(crate) queues: Vec<Sender<Task>>,
    /// Each mountpath's stable HRW identity, in the order of `queues`.
    pub(crate) target_ids: Vec<u64>,
    pub(crate) store: Arc<Store>,
    pub(crate) max_active: usize,
    /// The most objects of a sync job between its oldest unfinished one and its newest.
    pub(crate) sync_window: usize,
    /// Jobs submitted and not yet active; shared with the handle for `QueueFull`.
    pub(crate) unstarted: Arc<AtomicUsize>,
    /// Whether it found a task to send when it last looked, shared with the pools: work
    /// waits to start even while every queue is empty (a listing's next page on its way,
    /// or this thread not yet run again), so no idle jogger is lent to a tail.
    pub(crate) has_work: Arc<AtomicBool>,
}

struct State {
    waiting: VecDeque<Active>,
    active: VecDeque<Active>,
    tracked: HashMap<JobId, Tracked>,
    /// A task picked and placed, waiting for room in its queue.
    pending: Option<(usize, Task)>,
}

impl Dispatcher {
    pub(crate) fn run(self) {
        debug!("dispatcher started");
        let mut state = State {
            waiting: VecDeque::new(),
            active: VecDeque::new(),
            tracked: HashMap::new(),
            pending: None,
        };
        loop {
            self.promote(&mut state);
            if let Some((_, task)) = &state.pending
                && task.job.is_aborted()
            {
                // Never scheduled: `close_dispatch` counts it as cancelled.
                state.pending = None;
            }
            if state.pending.is_none() {
                state.pending = self.next_task(&mut state);
                self.has_work
                    .store(state.pending.is_some(), Ordering::Release);
                // Looking for a task can finish a job (one that learns only now that it has
                // no more objects): its place goes to a waiting job before anything blocks.
                if state.pending.is_none()
                    && !state.waiting.is_empty()
                    && state.active.len() < self.max_active
                {
                    continue;
                }
            }
            let keep_going = match state.pending.as_ref().map(|(mp, _)| *mp) {
                Some(mp) => self.wait_with_task(&mut state, mp),
                None => self.wait_idle(&mut state),
            };
            if !keep_going {
                break;
            }
        }
        // Shutdown: the handle has aborted every job; what was never sent counts as cancelled
        // when the handle closes each job's dispatch.
        state.pending = None;
        for active in state.waiting.iter().chain(&state.active) {
            active.job.abort();
        }
        debug!("dispatcher stopped");
    }

    /// Waits for room in queue `mp`, a command or a done task. False on shutdown.
    ///
    /// Without blocking first: a waiting command, the done tasks, then the pending task if
    /// its queue has room. Only when none of that moves does it block on all three at once,
    /// so a busy dispatcher does not build a `Select` or sleep per task.
    fn wait_with_task(&self, state: &mut State, mp: usize) -> bool {
        match self.commands.try_recv() {
            Ok(command) => {
                self.handle(state, command);
                return true;
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        for done in self.done.try_iter() {
            self.task_done(state, done);
        }
        let (_, task) = state.pending.take().expect("pending");
        let job = Arc::clone(&task.job);
        match self.queues[mp].try_send(task) {
            Ok(()) => {
                self.scheduled(state, &job);
                return true;
            }
            Err(crossbeam_channel::TrySendError::Full(task)) => state.pending = Some((mp, task)),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
        }
        let mut select = Select::new();
        let command = select.recv(&self.commands);
        select.recv(&self.done);
        let send = select.send(&self.queues[mp]);
        let op = select.select();
        match op.index() {
            i if i == send => {
                let (_, task) = state.pending.take().expect("pending");
                let job = Arc::clone(&task.job);
                match op.send(&self.queues[mp], task) {
                    Ok(()) => {
                        self.scheduled(state, &job);
                        true
                    }
                    // The joggers are gone: only on shutdown.
                    Err(_) => false,
                }
            }
            i if i == command => match op.recv(&self.commands) {
                Ok(command) => {
                    self.handle(state, command);
                    true
                }
                Err(_) => false,
            },
            _ => {
                if let Ok(done) = op.recv(&self.done) {
                    self.task_done(state, done);
                }
                true
            }
        }
    }

    /// A task of `job` went into a queue.
    fn scheduled(&self, state: &mut State, job: &Arc<Job>) {
        job.scheduled();
        if let Some(t) = state.tracked.get_mut(&job.id) {
            t.in_flight += 1;
        }
    }

    /// Nothing to send: waits for a command or a done task. False on shutdown.
    fn wait_idle(&self, state: &mut State) -> bool {
        crossbeam_channel::select! {
            recv(self.commands) -> command => match command {
                Ok(command) => {
                    self.handle(state, command);
                    true
                }
                Err(_) => false,
            },
            recv(self.done) -> done => {
                if let Ok(done) = done {
                    self.task_done(state, done);
                }
                true
            }
        }
    }

    fn handle(&self, state: &mut State, command: Command) {
        match command {
            Command::Submit(job, names, sync) => {
                debug!("{} accepted by the dispatcher", job.id);
                state.tracked.insert(
                    job.id,
                    Tracked {
                        job: Arc::clone(&job),
                        in_flight: 0,
                        dispatch_done: false,
                        complete: false,
                        sync,
                    },
                );
                state.waiting.push_back(Active { job, names });
            }
            Command::Abort => {
                // Aborted jobs stop expanding now, active or not.
                let (aborted, waiting): (Vec<_>, Vec<_>) =
                    state.waiting.drain(..).partition(|a| a.job.is_aborted());
                state.waiting = waiting.into();
                for a in aborted {
                    self.unstarted.fetch_sub(1, Ordering::AcqRel);
                    self.dispatch_over(state, &a.job, false);
                }
                let (aborted, active): (Vec<_>, Vec<_>) =
                    state.active.drain(..).partition(|a| a.job.is_aborted());
                state.active = active.into();
                for a in aborted {
                    self.dispatch_over(state, &a.job, false);
                }
            }
        }
    }

    fn task_done(&self, state: &mut State, done: Done) {
        let id = done.job.id;
        if let Some(t) = state.tracked.get_mut(&id) {
            t.in_flight = t.in_flight.saturating_sub(1);
            if let (Some(run), Some((seq, kept))) = (&mut t.sync, done.sync) {
                run.done(seq, kept);
            }
        }
        self.maybe_finish(state, id);
    }

    /// Moves waiting jobs to active while there is room.
    fn promote(&self, state: &mut State) {
        while state.active.len() < self.max_active {
            let Some(next) = state.waiting.pop_front() else {
                return;
            };
            self.unstarted.fetch_sub(1, Ordering::AcqRel);
            if next.job.is_aborted() {
                self.dispatch_over(state, &next.job, false);
            } else {
                debug!("{} active", next.job.id);
                state.active.push_back(next);
            }
        }
    }

    /// The job will send no more tasks; `complete` when its expansion ended with every
    /// object it should have.
    fn dispatch_over(&self, state: &mut State, job: &Arc<Job>, complete: bool) {
        job.close_dispatch();
        if let Some(t) = state.tracked.get_mut(&job.id) {
            t.dispatch_done = true;
            t.complete = complete;
        }
        self.maybe_finish(state, job.id);
    }

    fn maybe_finish(&self, state: &mut State, id: JobId) {
        let over = state
            .tracked
            .get(&id)
            .is_some_and(|t| t.dispatch_done && t.in_flight == 0);
        if over {
            let mut t = state.tracked.remove(&id).expect("tracked");
            if let Some(run) = t.sync.take() {
                // Deletions count before waiters wake.
                run.finish(t.complete && !t.job.is_aborted(), &t.job);
            }
            self.store.finish(&t.job);
        }
    }

    /// Whether the job may not send a task now: it is at its connection limit, or it is a
    /// sync whose record waits on [`sync_window`](Dispatcher::sync_window) objects behind
    /// its oldest unfinished one (a stalled object holds the job back instead of its queue
    /// growing without end).
    fn at_limit(&self, state: &State, job: &Job) -> bool {
        let Some(tracked) = state.tracked.get(&job.id) else {
            return false;
        };
        job.max_connections
            .is_some_and(|limit| tracked.in_flight >= limit)
            || tracked
                .sync
                .as_ref()
                .is_some_and(|run| run.pending() >= self.sync_window)
    }

    /// The next task, round-robin over active jobs so a small job is not starved behind a
    /// huge one. `None` when no job can send one now (all exhausted or at their limit).
    fn next_task(&self, state: &mut State) -> Option<(usize, Task)> {
        loop {
            let mut progressed = false;
            for _ in 0..state.active.len() {
                let mut active = state.active.pop_front().expect("counted");
                if active.job.is_aborted() {
                    self.dispatch_over(state, &active.job, false);
                    progressed = true;
                    continue;
                }
                if self.at_limit(state, &active.job) {
                    state.active.push_back(active);
                    continue;
                }
                let Some(Next {
                    url,
                    key,
                    name,
                    listed,
                    local,
                    ..
                }) = next_in_shard(&mut active)
                else {
                    let complete = active.names.complete();
                    self.dispatch_over(state, &active.job, complete);
                    progressed = true;
                    continue;
                };
                let job = Arc::clone(&active.job);
                let placed = name.map(|name| {
                    let mp = hrw::pick(hrw::hash(name.as_str().as_bytes()), &self.target_ids)
                        .expect("at least one mountpath");
                    // Blocks for a listing page of the target, once per 1,000 keys.
                    let stored = match &mut active.names {
                        Expansion::Local(files) => {
                            crate::http::transport::with_cancel(&job.cancel, || {
                                files.stored_at(mp, &name)
                            })
                        }
                        _ => None,
                    };
                    (mp, name, stored)
                });
                state.active.push_back(active);
                match placed {
                    Ok((mp, name, stored)) => {
                        let sync = match (&listed, state.tracked.get_mut(&job.id)) {
                            (
                                Some(object),
                                Some(Tracked {
                                    sync: Some(run), ..
                                }),
                            ) => Some(run.listed(object, &job)),
                            _ => None,
                        };
                        return Some((
                            mp,
                            Task {
                                job,
                                url,
                                key,
                                name,
                                sync,
                                size: listed.as_ref().map(|o| o.size),
                                modified: listed.as_ref().and_then(|o| o.last_modified),
                                local,
                                stored,
                            },
                        ));
                    }
                    Err(error) => {
                        job.scheduled();
                        job.failed(url::redact_url(&url), error);
                        progressed = true;
                    }
                }
            }
            if !progressed || state.active.is_empty() {
                return None;
            }
        }
    }
}

/// The job's next object that belongs to this process's shard (every object, unsharded).
/// An object without a name is reported by the shard its URL hashes to, so exactly one
/// shard reports it; a failure of the whole job (a listing that broke off) by every shard.
fn next_in_shard(active: &mut Active) -> Option<Next> {
    loop {
        let next = active.names.next(&active.job.cancel)?;
        let Some((index, ids)) = &active.job.shard else {
            return Some(next);
        };
        if next.whole_job {
            return Some(next);
        }
        let key = match &next.name {
            Ok(name) => name.as_str(),
            Err(_) => next.url.as_str(),
        };
        if hrw::shard_of(key, ids) == Some(*index) {
            return Some(next);
        }
    }
}
