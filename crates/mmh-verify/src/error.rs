use std::fmt;
use std::ops::Range;

/// Where a chunk sits: the first entry that uses it, the byte range it covers in that
/// entry, and where its frame is in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Name of the entry, when an entry uses the chunk.
    pub entry: Option<String>,
    /// Byte range of the chunk within that entry.
    pub range: Range<u64>,
    /// Byte offset of the chunk's frame in the archive.
    pub archive_offset: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(name) => write!(
                f,
                "entry {name:?}, bytes {}..{}, frame at archive offset {}",
                self.range.start, self.range.end, self.archive_offset
            ),
            None => write!(f, "frame at archive offset {}", self.archive_offset),
        }
    }
}

/// What verification or a verified read found wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The container itself is damaged (or the OS failed a read).
    #[error(transparent)]
    Format(#[from] mmh_format::Error),
    /// A frame is damaged (bad header, checksum mismatch, cut short).
    #[error("frame {frame} at archive offset {archive_offset} is damaged: {source}")]
    Frame {
        /// Frame number.
        frame: u32,
        /// Where its header starts.
        archive_offset: u64,
        /// What the container reader found.
        #[source]
        source: mmh_format::Error,
    },
    /// A frame's stored bytes do not decode.
    #[error("frame {frame} at archive offset {archive_offset} cannot be decoded: {source}")]
    Decode {
        /// Frame number.
        frame: u32,
        /// Where its header starts.
        archive_offset: u64,
        /// What the codec said.
        #[source]
        source: mmh_codecs::Error,
    },
    /// A chunk decodes to bytes whose SHA-256 is not the one in the index.
    #[error("chunk {chunk} ({location}) is corrupt: its SHA-256 does not match the index")]
    ChunkDigest {
        /// Chunk number.
        chunk: u32,
        /// Where it is.
        location: Location,
    },
    /// A file's content does not hash to its recorded SHA-256.
    #[error("entry {name:?} is corrupt: the SHA-256 of its {size} bytes does not match the index")]
    EntryDigest {
        /// Entry name.
        name: String,
        /// Its size.
        size: u64,
    },
    /// The Merkle root over the chunk digests is not the one in the index.
    #[error("Merkle root mismatch: the index's chunk digests do not produce its root")]
    MerkleRoot,
    /// Reading a chunk held by a base archive failed there.
    #[error("in base archive {name:?}: {source}")]
    InBase {
        /// The base's recorded file name.
        name: String,
        /// What went wrong in it.
        #[source]
        source: Box<Error>,
    },
    /// The archive references a base archive that was not given.
    #[error("base archive {name:?} is needed: this archive references chunks it holds")]
    MissingBase {
        /// The base's file name when the archive was folded.
        name: String,
    },
    /// The archive given as a base is not the one that was referenced.
    #[error(
        "the archive given for base {name:?} is not the one this archive was folded against (its index SHA-256 differs)"
    )]
    WrongBase {
        /// The base's file name when the archive was folded.
        name: String,
    },
    /// Bases of bases go deeper than [`crate::MAX_CHAIN_DEPTH`].
    #[error("the chain of base archives is deeper than {limit}")]
    ChainTooDeep {
        /// The limit.
        limit: usize,
    },
    /// Whoever consumed the verified bytes failed (a write error, a cancelled run).
    #[error("{context}: {source}")]
    Sink {
        /// What the consumer was doing.
        context: &'static str,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True when the archive's bytes are at fault, false for I/O and consumer failures.
    pub fn is_integrity(&self) -> bool {
        match self {
            Error::Format(source) | Error::Frame { source, .. } => source.is_integrity(),
            Error::Sink { .. } | Error::MissingBase { .. } => false,
            Error::InBase { source, .. } => source.is_integrity(),
            _ => true,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
