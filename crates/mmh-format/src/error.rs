use std::io;

/// Everything that can go wrong while reading or writing an archive container.
///
/// Every variant except [`Error::Io`] means the archive's bytes are wrong (damaged,
/// truncated, hostile or from a newer version); [`Error::is_integrity`] tells them apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system failed a read or a write.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive ends before a structure that should be there.
    #[error("archive is truncated: {what} at byte offset {offset} is incomplete")]
    Truncated {
        /// The structure that is cut short.
        what: &'static str,
        /// Where it starts.
        offset: u64,
    },
    /// A magic number does not match.
    #[error(
        "bad magic in {what} at byte offset {offset}: is {found:02x?}, should be {expected:02x?}"
    )]
    BadMagic {
        /// The structure whose magic is wrong.
        what: &'static str,
        /// Where the magic starts.
        offset: u64,
        /// The bytes found.
        found: Vec<u8>,
        /// The bytes expected.
        expected: Vec<u8>,
    },
    /// The archive was written by a newer (or unknown) format version.
    #[error("unsupported format version {found} (this build reads versions 1..={supported})")]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// A structure is malformed (reserved bits set, unknown kind, inconsistent fields).
    #[error("malformed {what} at byte offset {offset}: {reason}")]
    Malformed {
        /// The structure that is malformed.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A declared size is beyond what the format allows.
    #[error(
        "{what} at byte offset {offset} declares {declared} bytes, more than the limit of {limit}"
    )]
    LimitExceeded {
        /// What declares the size.
        what: &'static str,
        /// Where it is declared.
        offset: u64,
        /// The declared size.
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// The fast checksum of a frame's stored bytes does not match.
    #[error(
        "checksum mismatch in frame at byte offset {offset}: stored bytes hash to {actual:016x}, frame says {expected:016x}"
    )]
    FrameChecksum {
        /// Where the frame starts.
        offset: u64,
        /// The checksum in the frame header.
        expected: u64,
        /// The checksum of the bytes read.
        actual: u64,
    },
    /// The index's SHA-256 does not match the one in the trailer.
    #[error("index at byte offset {offset} does not match the SHA-256 in the trailer")]
    IndexDigest {
        /// Where the index frame starts.
        offset: u64,
    },
    /// The index decoded but contradicts itself or the frames.
    #[error("invalid index: {reason}")]
    InvalidIndex {
        /// What is inconsistent.
        reason: String,
    },
}

impl Error {
    /// True when the archive's bytes are at fault rather than the operating system.
    pub fn is_integrity(&self) -> bool {
        !matches!(self, Error::Io { .. })
    }

    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { context, source }
    }

    /// Maps a failed read of `what` at `offset`: a short read is a truncated archive.
    pub(crate) fn read(what: &'static str, offset: u64) -> impl FnOnce(io::Error) -> Error {
        move |source| {
            if source.kind() == io::ErrorKind::UnexpectedEof {
                Error::Truncated { what, offset }
            } else {
                Error::Io {
                    context: "reading the archive",
                    source,
                }
            }
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
