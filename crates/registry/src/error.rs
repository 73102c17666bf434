//! Warnings for skipped lines and errors for files that cannot be used at all.

use std::fmt;
use std::path::PathBuf;

/// A line that was skipped or read with a caveat: regedit would have skipped it silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file the line is in.
    pub file: PathBuf,
    /// 1-based line where the statement starts (0 when the problem is not tied to a line).
    pub line: usize,
    /// What was wrong and what was done about it.
    pub reason: String,
}

impl fmt::Display for Warning {
    /// `file:line: reason`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// A `.reg` file that cannot be applied at all.
#[derive(Debug, thiserror::Error)]
pub enum RegError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The first line is neither `Windows Registry Editor Version 5.00` nor `REGEDIT4`.
    #[error(
        "{}:1: not a .reg file: the first line is {found:?}, expected \
         \"Windows Registry Editor Version 5.00\" or \"REGEDIT4\"",
        file.display()
    )]
    BadHeader {
        /// The file.
        file: PathBuf,
        /// The first line as found (cut to 80 characters).
        found: String,
    },
}
