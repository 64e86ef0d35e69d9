//! A job of local files ([`Source::Local`](crate::Source::Local)) for S3 targets: the walk,
//! the selection, and what each target already holds, read from one listing of its prefix
//! alongside the walk instead of a request per file.
//!
//! The walk yields names in the byte order of keys, the order a listing comes in, so each
//! target's listing is read once, as far as the walk has got: a page per 1,000 keys. A name
//! out of that order (a second directory given, whose names start again from the
//! beginning) starts the listing over. A listing that fails leaves what is stored unknown:
//! the files are uploaded, which costs bytes but loses nothing.

use std::collections::HashSet;

use log::{debug, warn};

use crate::downloader::dispatcher::Next;
use crate::engine::error::DownloadError;
use crate::s3::{ListedObject, Listing};
use crate::source::walk::{Walk, WalkError};
use crate::target::name::ObjectName;
use crate::target::s3::S3Target;

/// A local-files job's objects, produced one at a time.
#[derive(Debug)]
pub(crate) struct LocalFiles {
    walk: Walk,
    select: crate::KeySelection,
    subdir: Option<String>,
    /// The names so far, when several paths were given (their names could meet).
    seen: Option<HashSet<String>>,
    /// What each target holds (in the downloader's target order), when the job asks.
    stored: Vec<Option<Stored>>,
}

impl LocalFiles {
    /// The files under `paths`, for `targets`; `look` when the job needs to know which of
    /// their keys are there already.
    pub(crate) fn new(
        paths: &[std::path::PathBuf],
        select: crate::KeySelection,
        subdir: Option<String>,
        targets: &[&S3Target],
        look: bool,
    ) -> LocalFiles {
        LocalFiles {
            walk: Walk::new(paths),
            select,
            subdir,
            seen: (paths.len() > 1).then(HashSet::new),
            stored: targets
                .iter()
                .map(|t| look.then(|| Stored::new(t)))
                .collect(),
        }
    }

    /// The next file selected: its name, or why it has none.
    pub(crate) fn next(&mut self) -> Option<Next> {
        loop {
            let file = match self.walk.next()? {
                Ok(file) => file,
                Err(WalkError {
                    path,
                    action,
                    source,
                }) => {
                    let shown = path.display().to_string();
                    return Some(Next::of(
                        shown,
                        Err(DownloadError::Local {
                            action,
                            path,
                            source,
                        }),
                    ));
                }
            };
            let listed = ListedObject {
                key: file.name.clone(),
                size: file.size,
                etag: None,
                last_modified: file.modified,
            };
            if !self.select.matches_listed(&file.name, &listed) {
                continue;
            }
            let shown = file.path.display().to_string();
            let naming = |why: String| DownloadError::Local {
                action: "naming",
                path: file.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
            };
            let name = ObjectName::new(&file.name).map_err(|e| e.to_string());
            let name = match (name, &self.subdir) {
                (Ok(name), Some(dir)) => name.under(dir).map_err(|e| e.to_string()),
                (name, _) => name,
            };
            let name = name.map_err(naming).and_then(|name| {
                let first = self
                    .seen
                    .as_mut()
                    .is_none_or(|seen| seen.insert(name.to_string()));
                if first {
                    Ok(name)
                } else {
                    Err(naming(format!(
                        "another file given is named {name} too: they would have one key"
                    )))
                }
            });
            return Some(Next {
                listed: Some(listed),
                local: Some(file.path),
                ..Next::of(shown, name)
            });
        }
    }

    /// What target `index` holds at object `name`'s key, as its listing says.
    pub(crate) fn stored_at(&mut self, index: usize, name: &ObjectName) -> Option<ListedObject> {
        self.stored.get_mut(index)?.as_mut()?.find(name)
    }
}

/// One target's listing, read as far as the walk has got.
#[derive(Debug)]
struct Stored {
    target: S3Target,
    listing: Listing,
    /// The first key listed and not yet passed.
    head: Option<ListedObject>,
    /// The last key asked for.
    last: String,
    /// The listing failed: nothing more is known.
    failed: bool,
}

impl Stored {
    fn new(target: &S3Target) -> Stored {
        Stored {
            listing: target.bucket().list(target.prefix()),
            target: target.clone(),
            head: None,
            last: String::new(),
            failed: false,
        }
    }

    /// The object stored at `name`'s key, if the listing has it.
    fn find(&mut self, name: &ObjectName) -> Option<ListedObject> {
        if self.failed {
            return None;
        }
        let key = self.target.key_of(name);
        if key < self.last {
            debug!(
                "{}: {key} comes before {}: listing again from the start",
                self.target.shown(),
                self.last
            );
            self.listing = self.target.bucket().list(self.target.prefix());
            self.head = None;
        }
        self.last.clone_from(&key);
        loop {
            let head = match self.head.take() {
                Some(head) => head,
                None => match self.listing.next()? {
                    Ok(object) => object,
                    Err(e) => {
                        warn!(
                            "{}: {}; the files from {key} on are uploaded without checking \
                             what is there",
                            self.target.shown(),
                            crate::engine::retry::error_chain(&e)
                        );
                        self.failed = true;
                        return None;
                    }
                },
            };
            match head.key.as_str().cmp(&key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    self.head = Some(head.clone());
                    return Some(head);
                }
                std::cmp::Ordering::Greater => {
                    self.head = Some(head);
                    return None;
                }
            }
        }
    }
}
