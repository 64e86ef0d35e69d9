//! The version of an object a transfer is pinned to.

use parking_lot::Mutex;

use crate::engine::request::Location;
use crate::engine::response::ObjectInfo;

/// The version of the object a transfer is pinned to: set by its first response (or known
/// from a listing or a crashed run's sidecar), shared by the parts of one object so that
/// no part of another version is ever stitched in. It also keeps where a redirect moved the
/// object, so later requests (resumes, other parts) go there directly.
#[derive(Debug, Default)]
pub(crate) struct Pin(Mutex<Pinned>);

#[derive(Debug, Default)]
struct Pinned {
    info: Option<ObjectInfo>,
    location: Option<Location>,
}

impl Pin {
    pub(crate) fn new() -> Pin {
        Pin::default()
    }

    /// Pinned to `info` from the start.
    pub(crate) fn of(info: ObjectInfo) -> Pin {
        Pin(Mutex::new(Pinned {
            info: Some(info),
            location: None,
        }))
    }

    pub(crate) fn get(&self) -> Option<ObjectInfo> {
        self.0.lock().info.clone()
    }

    pub(crate) fn set(&self, info: ObjectInfo) {
        self.0.lock().info = Some(info);
    }

    /// Forgets the version (the object starts over) and where it was.
    pub(crate) fn clear(&self) {
        *self.0.lock() = Pinned::default();
    }

    pub(crate) fn location(&self) -> Option<Location> {
        self.0.lock().location.clone()
    }

    pub(crate) fn set_location(&self, location: &Location) {
        self.0.lock().location = Some(location.clone());
    }

    /// Pins `info` when nothing is pinned yet; otherwise why it is another version, if it
    /// is. A size the pinned version did not know is learned.
    pub(crate) fn settle(&self, info: &ObjectInfo) -> Result<(), String> {
        let mut pinned = self.0.lock();
        match &mut pinned.info {
            None => {
                pinned.info = Some(info.clone());
                Ok(())
            }
            Some(known) => match known.differs(info) {
                Some(why) => Err(why),
                None => {
                    known.total = known.total.or(info.total);
                    Ok(())
                }
            },
        }
    }
}
