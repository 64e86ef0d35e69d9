//! One object's bytes from a local file into a [`Destination`]: what an upload of local
//! files ([`JobSpec::local`](crate::JobSpec::local)) reads.
//!
//! The file is opened without following a symbolic link planted at its name since it was
//! listed, read through the same progress count, cancel check and rate limit as a body,
//! and must not change while it is read: a file that grows, shrinks or is written to (its
//! size or modification time moves) fails instead of being stored half old, half new.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::engine::Context;
use crate::engine::dest::Destination;
use crate::engine::error::DownloadError;
use crate::engine::response::ObjectInfo;
use crate::progress::ProgressReader;

/// Reads the file at `path` into `dest`; returns its length.
pub(crate) fn read_file(
    ctx: &Context<'_>,
    path: &Path,
    dest: &mut dyn Destination,
) -> Result<u64, DownloadError> {
    let local = |action, source| DownloadError::Local {
        action,
        path: path.to_owned(),
        source,
    };
    let shown = path.display().to_string();
    if ctx.cancel.is_cancelled() {
        return Err(DownloadError::Cancelled { url: shown });
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| local("opening", e))?;
    let before = file.metadata().map_err(|e| local("reading", e))?;
    if !before.is_file() {
        let why = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        return Err(local("reading", why));
    }
    let len = before.len();
    ctx.progress.set_total(Some(len));
    dest.begin(&ObjectInfo::default(), Some(len))?;
    let counted = ProgressReader::new(&file, ctx.progress, ctx.cancel);
    let mut reader = crate::engine::rate::limited(counted, ctx.limiter, ctx.cancel);
    let mut got = 0u64;
    let changed = || {
        local(
            "reading",
            io::Error::other(
                "the file changed while it was read; run again to upload it as it is now",
            ),
        )
    };
    let read_on = |e| DownloadError::from_read(e, &shown, |e| local("reading", e));
    while got < len {
        let space = dest.space()?;
        let n = space
            .len()
            .min(usize::try_from(len - got).unwrap_or(usize::MAX));
        match reader.read(&mut space[..n]) {
            Ok(0) => return Err(changed()), // shorter than it was
            Ok(n) => {
                dest.filled(n)?;
                got += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_on(e)),
        }
    }
    if grew(&mut reader).map_err(read_on)? || !same(&file, &before) {
        return Err(changed());
    }
    dest.flush()?;
    Ok(got)
}

/// Whether anything follows the bytes read.
fn grew(reader: &mut dyn Read) -> io::Result<bool> {
    loop {
        match reader.read(&mut [0; 1]) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Whether the open file still has the size and modification time it had.
fn same(file: &File, before: &std::fs::Metadata) -> bool {
    file.metadata().is_ok_and(|after| {
        after.len() == before.len() && after.modified().ok() == before.modified().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::read_file;
    use crate::CancelToken;
    use crate::engine::dest::{Destination, MemoryDest};
    use crate::engine::error::DownloadError;
    use crate::engine::response::ObjectInfo;
    use crate::engine::{Context, RetryPolicy};
    use crate::http::HttpClient;
    use crate::progress::Progress;

    /// A memory destination that cancels the transfer when its last byte arrives.
    struct CancelAtEnd<'a> {
        inner: MemoryDest,
        len: u64,
        cancel: &'a CancelToken,
    }

    impl Destination for CancelAtEnd<'_> {
        fn held(&self) -> u64 {
            self.inner.held()
        }
        fn begin(&mut self, info: &ObjectInfo, len: Option<u64>) -> Result<(), DownloadError> {
            self.inner.begin(info, len)
        }
        fn space(&mut self) -> Result<&mut [u8], DownloadError> {
            self.inner.space()
        }
        fn filled(&mut self, n: usize) -> Result<(), DownloadError> {
            self.inner.filled(n)?;
            if self.inner.held() == self.len {
                self.cancel.cancel();
            }
            Ok(())
        }
        fn flush(&mut self) -> Result<(), DownloadError> {
            self.inner.flush()
        }
        fn restart(&mut self) -> Result<u64, DownloadError> {
            self.inner.restart()
        }
    }

    /// A cancel that lands once the last byte is read, as the end of the file is checked
    /// for, is a cancel, not a failure to read the file.
    #[test]
    fn a_cancel_at_the_end_of_the_file_is_a_cancel() {
        haul_testkit::guard(|| {
            let dir = haul_testkit::TestDir::new();
            let path = dir.path().join("f.bin");
            std::fs::write(&path, [7u8; 1000]).unwrap();
            let (client, retry) = (HttpClient::default(), RetryPolicy::default());
            let (progress, cancel) = (Progress::new(), CancelToken::new());
            let ctx = Context {
                client: &client,
                headers: &[],
                timeout: None,
                limiter: None,
                retry: &retry,
                retries: None,
                progress: &progress,
                cancel: &cancel,
                flow: None,
            };
            let mut dest = CancelAtEnd {
                inner: MemoryDest::new(1000),
                len: 1000,
                cancel: &cancel,
            };
            let read = read_file(&ctx, &path, &mut dest);
            assert!(
                matches!(read, Err(DownloadError::Cancelled { .. })),
                "{read:?}"
            );
        });
    }
}
