//! The transfer engine: one object's bytes from an HTTP(S) source, safely.

pub(crate) mod parts;
pub(crate) mod rate;
pub(crate) mod retry;
pub(crate) mod verify;
