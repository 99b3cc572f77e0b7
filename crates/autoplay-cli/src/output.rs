//! stdout for payloads (one flushed write per item, so pipes see every line at
//! once), stderr for everything about the connection.

use std::fmt;
use std::io::{self, Write};

/// Locked stdout; every [`emit`](Self::emit) is flushed.
pub struct Stdout {
    inner: io::StdoutLock<'static>,
}

/// Why an item could not be written.
pub enum WriteError {
    /// The reader went away (EPIPE, e.g. `| head`): end quietly.
    Closed,
    /// Anything else.
    Failed(io::Error),
}

impl Stdout {
    pub fn new() -> Self {
        Self {
            inner: io::stdout().lock(),
        }
    }

    /// Writes `text` (which ends with a newline) and flushes it.
    pub fn emit(&mut self, text: &[u8]) -> Result<(), WriteError> {
        self.inner.write_all(text)?;
        self.inner.flush()?;
        Ok(())
    }
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::BrokenPipe => WriteError::Closed,
            _ => WriteError::Failed(e),
        }
    }
}

/// One status line on stderr, `autoplay: <message>`. Never panics, even when stderr
/// is closed.
pub fn status(message: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "autoplay: {message}");
}
