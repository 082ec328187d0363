//! The MMH-RS on-disk container, format v1 (the byte-level spec is docs/FORMAT.md).
//!
//! An archive is a 16-byte header, a sequence of self-describing frames (chunk frames,
//! then one index frame), and a 56-byte trailer that points at the index and carries its
//! SHA-256. A writer never seeks, so archives can be written to a pipe; a reader either
//! seeks (trailer, index, then only the chunks it needs: [`Archive`]) or reads front to
//! back from a pipe ([`StreamReader`]).
//!
//! This crate knows nothing about codecs, hashing policy or GPUs: codec ids are opaque
//! bytes and digests are given to it. Every declared size is bounded
//! ([`consts::MAX_CHUNK_RAW_LEN`], [`consts::MAX_INDEX_LEN`]) and checked before
//! anything is allocated, so a hostile archive cannot make a reader allocate without
//! bound.
//!
//! ```
//! use mmh_format::{Archive, ArchiveWriter, Entry, EntryKind, Timestamp};
//!
//! let mut writer = ArchiveWriter::new(Vec::new())?;
//! let chunk = writer.push_chunk(0, 5, b"hello", [7; 32])?;
//! let entry = Entry {
//!     name: "greeting".into(),
//!     mode: 0o644,
//!     mtime: Timestamp::default(),
//!     kind: EntryKind::File { size: 5, digest: [9; 32], chunks: vec![chunk] },
//! };
//! let (bytes, len) = writer.finish(vec![entry], [0; 32])?;
//! assert_eq!(len, bytes.len() as u64);
//!
//! let archive = Archive::open(bytes)?;
//! let mut buf = Vec::new();
//! assert_eq!(archive.read_stored(0, &mut buf)?, b"hello");
//! # Ok::<(), mmh_format::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod consts;
mod error;
mod index;
mod layout;
mod reader;
mod writer;

pub use error::{Error, Result};
pub use index::{ChunkRecord, Digest, Entry, EntryKind, Index, Timestamp};
pub use layout::{FrameHeader, FrameKind, Header, Trailer, checksum};
pub use reader::{Archive, ReadAt, StreamChunk, StreamReader};
pub use writer::ArchiveWriter;
