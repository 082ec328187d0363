use std::io;
use std::path::PathBuf;

/// Everything that can stop a fold, an unfold or a read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The archive container is damaged or unreadable.
    #[error(transparent)]
    Format(#[from] mmh_format::Error),
    /// Decoded content failed a check, or its consumer failed.
    #[error(transparent)]
    Verify(Box<mmh_verify::Error>),
    /// A codec refused its parameters or failed.
    #[error(transparent)]
    Codec(#[from] mmh_codecs::Error),
    /// A file or stream could not be read or written.
    #[error("{context} {}: {source}", path.as_ref().map_or_else(|| "(stream)".into(), |p| p.display().to_string()))]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file concerned, if any.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The output exists and overwriting was not asked for.
    #[error("{} already exists (use --force to overwrite)", path.display())]
    OutputExists {
        /// The existing output.
        path: PathBuf,
    },
    /// The operation was cancelled (Ctrl-C); no output was left under its final name.
    #[error("cancelled")]
    Cancelled,
    /// The archive has no entry of that name.
    #[error("no entry named {name:?} in the archive")]
    NoSuchEntry {
        /// The name asked for.
        name: String,
    },
    /// The entry is not a regular file.
    #[error("entry {name:?} is not a regular file")]
    NotAFile {
        /// The entry's name.
        name: String,
    },
    /// The operation needs an archive holding exactly one file.
    #[error(
        "the archive holds {entries} entries; this operation needs exactly one file (name the entry to extract it)"
    )]
    NotSingleFile {
        /// How many entries it holds.
        entries: usize,
    },
    /// A byte range starts past the end of the entry or is reversed.
    #[error("range {start}..{end} is outside entry {name:?} of {size} bytes")]
    BadRange {
        /// The entry.
        name: String,
        /// Start of the range asked for.
        start: u64,
        /// End of the range asked for.
        end: u64,
        /// Size of the entry.
        size: u64,
    },
    /// The archive's chunks are not in content order, so it cannot be unfolded front to
    /// back from a pipe.
    #[error("this archive's chunks are not in content order; read it from a file, not a pipe")]
    NotStreamable,
    /// Following symbolic links led back to a directory being walked.
    #[error("{} leads back to its ancestor {}; cannot follow symbolic links here", path.display(), ancestor.display())]
    SymlinkLoop {
        /// The link (or the path through it) that loops.
        path: PathBuf,
        /// The directory it leads back to.
        ancestor: PathBuf,
    },
    /// An entry name that would write outside the target directory or through a link.
    #[error("refusing entry {name:?}: {reason}")]
    UnsafePath {
        /// The entry's name as stored.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An accelerator backend broke its contract.
    #[error("the {backend} backend failed: {reason}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A base archive that the archive references is neither given nor beside it.
    #[error("base archive {name:?} (referenced by {}) is neither next to it nor among the archives given with --base", archive.display())]
    BaseNotFound {
        /// The base's recorded file name.
        name: String,
        /// The archive that references it.
        archive: PathBuf,
    },
    /// The file is not a model file this build recognises.
    #[error("{path:?} is not a model file this build recognises")]
    NotAModel {
        /// The file (an entry name or a path).
        path: String,
    },
    /// The model file has no tensor of that name.
    #[error("no tensor named {name:?} in {file:?}")]
    NoSuchTensor {
        /// The model file (an entry name or a path).
        file: String,
        /// The name asked for.
        name: String,
    },
    /// Two tensors of one model have the same name, so the model has no fingerprint.
    #[error("tensor {name:?} is in both {first:?} and {second:?}")]
    DuplicateTensor {
        /// The tensor's name.
        name: String,
        /// The model file of its first occurrence.
        first: String,
        /// The model file of the other.
        second: String,
    },
    /// A path given as a model holds no tensors.
    #[error("{} holds no tensors (no model file this build recognises)", path.display())]
    NoTensors {
        /// The file, directory or archive.
        path: PathBuf,
    },
    /// A command-line or API option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

impl From<mmh_verify::Error> for Error {
    fn from(e: mmh_verify::Error) -> Self {
        Error::Verify(Box::new(e))
    }
}

impl Error {
    /// True when the archive's bytes are at fault, damaged or hostile (exit code 3 in
    /// the CLI).
    pub fn is_integrity(&self) -> bool {
        match self {
            Error::Format(e) => e.is_integrity(),
            Error::Verify(e) => e.is_integrity(),
            Error::UnsafePath { .. } => true,
            _ => false,
        }
    }

    /// True when the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        match self {
            Error::Cancelled => true,
            Error::Verify(e) => matches!(
                &**e,
                mmh_verify::Error::Sink { source, .. } if source.kind() == io::ErrorKind::Interrupted
            ),
            _ => false,
        }
    }

    pub(crate) fn io(
        context: &'static str,
        path: Option<&std::path::Path>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.map(std::path::Path::to_path_buf);
        move |source| Error::Io {
            context,
            path,
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
