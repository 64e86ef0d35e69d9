//! Where log lines go: stderr, or above the progress display while one is drawn, so that a
//! retry warning is a line of its own instead of text dropped into a frame (which leaves a
//! stale frame behind).

use std::io::{self, Write};
use std::sync::{Mutex, PoisonError};

use indicatif::MultiProgress;

/// The display drawn now, if any.
static DISPLAY: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Log lines go above `display` from now on (`None`: straight to stderr again).
pub(crate) fn above(display: Option<MultiProgress>) {
    *DISPLAY.lock().unwrap_or_else(PoisonError::into_inner) = display;
}

/// The logger's output: whole lines, each to stderr or above the display.
#[derive(Debug, Default)]
pub(crate) struct LogLines {
    pending: Vec<u8>,
}

impl LogLines {
    fn emit(line: &[u8]) {
        // A handle of its own: no lock is held while the line is written.
        let display = DISPLAY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match &display {
            Some(multi) => {
                let text = String::from_utf8_lossy(line);
                let _ = multi.println(text.trim_end_matches('\n'));
            }
            // A closed stderr loses the line, as `tell!` does.
            None => {
                let _ = io::stderr().write_all(line);
            }
        }
    }
}

impl Write for LogLines {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let rest = self.pending.split_off(end + 1);
            let line = std::mem::replace(&mut self.pending, rest);
            LogLines::emit(&line);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            LogLines::emit(&std::mem::take(&mut self.pending));
        }
        Ok(())
    }
}
