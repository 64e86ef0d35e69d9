//! Sync for backend jobs (AIStore's *synchronize*): what haul downloaded from a prefix is
//! kept in a record, and the next run of the same job compares the listing with it.
//!
//! The record is one file per job source (bucket, prefix, suffix, subdirectory, shard), in
//! the work directory of the mountpath HRW picks for it: `.haul-work/sync/<hash>.tsv`, a
//! header line, then `key TAB size TAB etag` lines in key order. S3 lists keys in that order
//! too, so the dispatcher merges the two as the listing goes, holding one record line and
//! the objects in flight — never the whole job:
//!
//! - a key listed with the size and ETag the record has is *expected*: its jogger skips it
//!   when the file is there with that size, without a request;
//! - a key in the record that the listing passed over is gone remotely: its file is deleted
//!   (when it still has the recorded size: a file changed since is left alone);
//! - the new record is written as objects finish, in key order: landed and skipped objects
//!   with what the listing said, failed and cancelled ones with their old line, so a file
//!   haul wrote stays known as haul's.
//!
//! Files haul did not download are never in a record, so never deleted. The new record
//! replaces the old one when the job finishes. Deletions stop, and the old record stays,
//! when the listing turns out not to be in key order; keys after an abort or a failed
//! listing keep their lines and are not deleted.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use log::{debug, warn};

use crate::downloader::key_names::KeyNames;
use crate::downloader::store::Job;
use crate::s3::ListedObject;
use crate::target::mountpath::Mountpath;
use crate::target::name::ObjectName;

const HEADER: &str = "haul-sync 1";

/// One line of a record: a key as listed, with its size and ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) etag: Option<String>,
}

impl From<&ListedObject> for Entry {
    fn from(object: &ListedObject) -> Entry {
        Entry {
            key: object.key.clone(),
            size: object.size,
            etag: object.etag.clone(),
        }
    }
}

/// What the dispatcher tells a jogger about one object of a sync job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    /// The object's place in the new record.
    pub(crate) seq: u64,
    /// Skip the object when its file is there with this size: the record and the listing
    /// agree on its size and ETag.
    pub(crate) expect: Option<u64>,
}

/// A slot of the new record, in key order, until it can be written.
#[derive(Debug)]
enum Slot {
    /// An object in flight: its old line, and its new one should it land or be skipped.
    Waiting { old: Option<Entry>, new: Entry },
    /// Decided: this line, or none.
    Ready(Option<Entry>),
}

/// Why a sync's record could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Another run of the same source holds it.
    Running(PathBuf),
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        OpenError::Io(e)
    }
}

/// One sync job's run: the old record being read, the new one being written.
#[derive(Debug)]
pub(crate) struct SyncRun {
    /// Held for the run's whole life: no other run of this source touches the record.
    /// (`None` in a dry run, which writes nothing.)
    _lock: Option<File>,
    /// A dry run: what would be deleted is counted, not deleted.
    dry_run: bool,
    record: PathBuf,
    next: PathBuf,
    old: Option<std::io::Lines<BufReader<File>>>,
    peek: Option<Entry>,
    writer: Option<BufWriter<File>>,
    pending: VecDeque<Slot>,
    /// The seq of `pending`'s front.
    front: u64,
    last_key: Option<String>,
    /// False once the listing was seen out of key order: nothing more is deleted, and the
    /// old record stays.
    ordered: bool,
    /// Where deleted objects' files are: the mountpaths, and their HRW ids in that order.
    mountpaths: Vec<std::sync::Arc<Mountpath>>,
    ids: Vec<u64>,
    /// How keys are named: where a deleted object's file is.
    names: KeyNames,
}

impl SyncRun {
    /// Opens the record for `source` (a description of the job's source that tells it from
    /// every other) on the mountpath HRW picks for it, and starts the new one beside it.
    ///
    /// The run holds a lock on `<record>.lock` (`flock`) from here until it is dropped, so
    /// a second sync of the same source — in this process or another — is refused instead
    /// of rewriting the record the first is writing.
    pub(crate) fn open(
        source: &str,
        mountpaths: Vec<(u64, std::sync::Arc<Mountpath>)>,
        names: KeyNames,
    ) -> Result<SyncRun, OpenError> {
        SyncRun::start(source, mountpaths, names, false)
    }

    /// A dry run's: the record is read (when there is one), nothing is locked, written or
    /// deleted.
    pub(crate) fn planned(
        source: &str,
        mountpaths: Vec<(u64, std::sync::Arc<Mountpath>)>,
        names: KeyNames,
    ) -> Result<SyncRun, OpenError> {
        SyncRun::start(source, mountpaths, names, true)
    }

    fn start(
        source: &str,
        mountpaths: Vec<(u64, std::sync::Arc<Mountpath>)>,
        names: KeyNames,
        dry_run: bool,
    ) -> Result<SyncRun, OpenError> {
        let hash = crate::downloader::hrw::hash(source.as_bytes());
        let (ids, mountpaths): (Vec<u64>, Vec<_>) = mountpaths.into_iter().unzip();
        let home = &mountpaths[crate::downloader::hrw::pick(hash, &ids).expect("a mountpath")];
        let dir = home.work_dir().join("sync");
        let record = dir.join(format!("{hash:016x}.tsv"));
        let next = dir.join(format!("{hash:016x}.tsv.new"));
        let lock = if dry_run {
            None
        } else {
            fs::create_dir_all(&dir)?;
            let lock = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join(format!("{hash:016x}.lock")))?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Err(OpenError::Running(record)),
                Err(fs::TryLockError::Error(e)) => return Err(OpenError::Io(e)),
            }
            Some(lock)
        };
        let header = format!("{HEADER} {}", escape(source));
        let old = match File::open(&record) {
            Ok(file) => {
                let mut lines = BufReader::new(file).lines();
                match lines.next() {
                    Some(Ok(first)) if first == header => Some(lines),
                    _ => {
                        warn!(
                            "{}: not a sync record of this job; ignored",
                            record.display()
                        );
                        None
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let writer = if dry_run {
            None
        } else {
            let mut writer = BufWriter::new(File::create(&next)?);
            writeln!(writer, "{header}")?;
            Some(writer)
        };
        let mut run = SyncRun {
            _lock: lock,
            dry_run,
            record,
            next,
            old,
            peek: None,
            writer,
            pending: VecDeque::new(),
            front: 0,
            last_key: None,
            ordered: true,
            mountpaths,
            ids,
            names,
        };
        run.advance();
        Ok(run)
    }

    /// Moves to the old record's next line.
    fn advance(&mut self) {
        self.peek = None;
        let Some(lines) = &mut self.old else {
            return;
        };
        match lines.next() {
            None => self.old = None,
            Some(Ok(line)) => match parse(&line) {
                Some(entry) => self.peek = Some(entry),
                None => {
                    warn!(
                        "{}: unreadable line {line:?}; the rest is ignored",
                        self.record.display()
                    );
                    self.old = None;
                }
            },
            Some(Err(e)) => {
                warn!("{}: {e}; the rest is ignored", self.record.display());
                self.old = None;
            }
        }
    }

    /// A key of this job was listed (and is this shard's). Records with smaller keys that
    /// the listing passed over are gone remotely; returns the object's ticket.
    pub(crate) fn listed(&mut self, object: &ListedObject, job: &Job) -> Ticket {
        if self.ordered
            && self
                .last_key
                .as_deref()
                .is_some_and(|last| last >= &*object.key)
        {
            warn!(
                "{}: the listing is not in key order at {:?}: sync deletes nothing more and keeps its old record",
                job.id, object.key
            );
            self.ordered = false;
        }
        self.last_key = Some(object.key.clone());
        let mut old = None;
        while let Some(entry) = self.peek.take() {
            if entry.key < object.key {
                self.gone(entry, job);
                self.advance();
            } else {
                if entry.key == object.key {
                    old = Some(entry);
                    self.advance();
                } else {
                    self.peek = Some(entry);
                }
                break;
            }
        }
        let new = Entry::from(object);
        let expect = old
            .as_ref()
            .filter(|o| o.size == new.size && o.etag.is_some() && o.etag == new.etag)
            .map(|o| o.size);
        let seq = self.front + self.pending.len() as u64;
        self.pending.push_back(Slot::Waiting { old, new });
        Ticket { seq, expect }
    }

    /// Objects listed whose lines wait to be written: the oldest unfinished one and every
    /// one listed after it.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The object of ticket `seq` is done: `kept` when it landed or was skipped.
    pub(crate) fn done(&mut self, seq: u64, kept: bool) {
        let Some(slot) = seq
            .checked_sub(self.front)
            .and_then(|i| self.pending.get_mut(i as usize))
        else {
            return;
        };
        if let Slot::Waiting { old, new } = slot {
            let line = if kept { Some(new.clone()) } else { old.take() };
            *slot = Slot::Ready(line);
        }
        self.flush();
    }

    /// Writes the decided slots at the front.
    fn flush(&mut self) {
        while let Some(Slot::Ready(_)) = self.pending.front() {
            let Some(Slot::Ready(line)) = self.pending.pop_front() else {
                unreachable!("checked above");
            };
            self.front += 1;
            if let Some(entry) = line {
                self.write(&entry);
            }
        }
    }

    fn write(&mut self, entry: &Entry) {
        let Some(writer) = &mut self.writer else {
            return;
        };
        let written = writeln!(
            writer,
            "{}\t{}\t{}",
            escape(&entry.key),
            entry.size,
            entry.etag.as_deref().map(escape).unwrap_or_default()
        );
        if let Err(e) = written {
            warn!("{}: {e}; the old record stays", self.next.display());
            self.writer = None;
        }
    }

    /// A recorded key the listing does not have: its file goes, unless it changed since.
    fn gone(&mut self, entry: Entry, job: &Job) {
        if !self.ordered {
            self.pending.push_back(Slot::Ready(Some(entry)));
            self.flush();
            return;
        }
        let Some((mountpath, name)) = self.place_of(&entry.key) else {
            return;
        };
        let path = mountpath.path_of(&name);
        // Never through a symbolic link: not one on the way, and not the file itself.
        if let Err((link, why)) = mountpath.check_way(&name) {
            warn!(
                "{}: not deleting {}: {}: {why}",
                job.id,
                path.display(),
                link.display()
            );
            self.pending.push_back(Slot::Ready(Some(entry)));
            self.flush();
            return;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == entry.size && self.dry_run => {
                log::info!(
                    target: crate::DRY_RUN_LOG_TARGET,
                    "{}: would delete {}",
                    job.id,
                    path.display()
                );
                job.deleted();
            }
            Ok(meta) if meta.is_file() && meta.len() == entry.size => {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        log::info!(
                            target: crate::DELETIONS_LOG_TARGET,
                            "{}: deleted {}: gone remotely",
                            job.id,
                            path.display()
                        );
                        job.deleted();
                    }
                    Err(e) => {
                        warn!("{}: cannot delete {}: {e}", job.id, path.display());
                        self.pending.push_back(Slot::Ready(Some(entry)));
                        self.flush();
                    }
                }
            }
            Ok(_) => debug!(
                "{}: keeping {}: gone remotely, but changed since haul wrote it",
                job.id,
                path.display()
            ),
            Err(_) => {} // already gone
        }
    }

    /// Where the object of `key` landed: its mountpath (by HRW) and name.
    fn place_of(&self, key: &str) -> Option<(&Mountpath, ObjectName)> {
        let name = self.names.name(key).ok()?;
        let hash = crate::downloader::hrw::hash(name.as_str().as_bytes());
        let index = crate::downloader::hrw::pick(hash, &self.ids)?;
        Some((&self.mountpaths[index], name))
    }

    /// The job is over: nothing of it is in flight. `listed_all` when its listing ended
    /// normally and it was not aborted: recorded keys after the last one listed are gone.
    /// Otherwise they keep their lines. Then the new record replaces the old one.
    pub(crate) fn finish(mut self, listed_all: bool, job: &Job) {
        // Tickets never reported (the downloader shut down) keep their old lines.
        for slot in &mut self.pending {
            if let Slot::Waiting { old, .. } = slot {
                *slot = Slot::Ready(old.take());
            }
        }
        self.flush();
        while let Some(entry) = self.peek.take() {
            if listed_all {
                self.gone(entry, job);
            } else {
                self.write(&entry);
            }
            self.advance();
        }
        self.flush();
        let Some(writer) = self.writer.take() else {
            return;
        };
        if !self.ordered {
            let _ = fs::remove_file(&self.next);
            return;
        }
        let done = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .and_then(|()| fs::rename(&self.next, &self.record));
        match done {
            Ok(()) => debug!("{}: sync record {}", job.id, self.record.display()),
            Err(e) => warn!("{}: {e}; the old record stays", self.next.display()),
        }
    }
}

impl Drop for SyncRun {
    fn drop(&mut self) {
        // Not finished (the downloader shut down mid-job): the old record stays.
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.next);
        }
    }
}

/// Keys may hold any character: tabs, newlines and `%` are percent-escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\t' => out.push_str("%09"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        let c = match code {
            Some("25") => '%',
            Some("09") => '\t',
            Some("0A") => '\n',
            Some("0D") => '\r',
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
                continue;
            }
        };
        out.push(c);
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

fn parse(line: &str) -> Option<Entry> {
    let mut fields = line.split('\t');
    let key = unescape(fields.next()?);
    let size = fields.next()?.parse().ok()?;
    let etag = fields.next().filter(|e| !e.is_empty()).map(unescape);
    Some(Entry { key, size, etag })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_keys_come_back_unchanged() {
        for key in [
            "plain/key.bin",
            "tab\there",
            "new\nline",
            "50%25 %09 literal",
            "ü✓ ?#",
        ] {
            let entry = Entry {
                key: key.to_owned(),
                size: 7,
                etag: Some("abc-2".to_owned()),
            };
            let line = format!("{}\t{}\t{}", escape(&entry.key), entry.size, "abc-2");
            assert_eq!(parse(&line), Some(entry), "{key:?}");
        }
        assert_eq!(parse("k\t1\t").unwrap().etag, None);
        assert_eq!(parse("k\tnot-a-size\tx"), None);
    }
}
