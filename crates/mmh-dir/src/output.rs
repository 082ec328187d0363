use std::fs::File;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::{Error, Result};

/// Whether an existing output may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Fail with [`Error::OutputExists`] (the default).
    #[default]
    Refuse,
    /// Replace it once the new output is complete.
    Replace,
}

/// An output file written under a temporary name beside its destination and renamed
/// into place only by [`PendingFile::commit`]. Dropped without a commit (an error, a
/// cancelled run), it removes itself: a partial output never appears under the final
/// name.
#[derive(Debug)]
pub struct PendingFile {
    temp: NamedTempFile,
    dest: PathBuf,
    overwrite: Overwrite,
}

impl PendingFile {
    /// Creates the temporary file; fails at once if `dest` exists and may not be replaced.
    pub fn create(dest: &Path, overwrite: Overwrite) -> Result<Self> {
        if overwrite == Overwrite::Refuse && dest.symlink_metadata().is_ok() {
            return Err(Error::OutputExists {
                path: dest.to_path_buf(),
            });
        }
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let prefix = format!(
            ".{}.",
            dest.file_name().unwrap_or_default().to_string_lossy()
        );
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".mmh-partial");
        // Temporary files are private by default; the finished output should get the
        // ordinary mode of a new file (0666 less the umask), as `cp` or `zstd` give it.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let temp = builder.tempfile_in(dir).map_err(Error::io(
            "cannot create a temporary file beside",
            Some(dest),
        ))?;
        Ok(PendingFile {
            temp,
            dest: dest.to_path_buf(),
            overwrite,
        })
    }

    /// The temporary file, to write to.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// Flushes to disk and renames the file to its destination.
    pub fn commit(self) -> Result<()> {
        self.temp
            .as_file()
            .sync_all()
            .map_err(Error::io("cannot flush", Some(&self.dest)))?;
        self.rename()
    }

    /// Renames the file to its destination, leaving the flush to disk to the OS, as
    /// `tar -x` does: for the many files of a tree, where a flush each would cost far
    /// more than the writing (20× on 20,000 small files). The file still appears only
    /// complete and verified; only a power cut can lose it.
    pub fn commit_without_sync(self) -> Result<()> {
        self.rename()
    }

    fn rename(self) -> Result<()> {
        let dest = self.dest;
        let persisted = match self.overwrite {
            Overwrite::Refuse => self.temp.persist_noclobber(&dest),
            Overwrite::Replace => self.temp.persist(&dest),
        };
        persisted.map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::OutputExists { path: dest.clone() }
            } else {
                Error::io("cannot rename the finished output to", Some(&dest))(e.error)
            }
        })?;
        Ok(())
    }
}
