//! Files the load commands write (`--hgrm`, `--html`, `--svg`): each is
//! created before any work starts, so that a bad path is refused at once
//! with one line, and written whole at the end.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Exit status for a file that cannot be read or written, or is not what
/// it should be.
pub const EXIT_BAD_FILE: u8 = 2;

/// A file asked for, created before the run so that a bad path is
/// refused before any load is sent.
pub struct Output {
    path: PathBuf,
    file: File,
}

impl Output {
    /// Creates `path`, or says in one line why it cannot.
    pub fn create(path: &Path) -> Result<Output, String> {
        File::create(path)
            .map(|file| Output {
                path: path.to_path_buf(),
                file,
            })
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Writes `text` as the whole file, or says in one line why it could not.
    pub fn write(mut self, text: &str) -> Result<(), String> {
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}
