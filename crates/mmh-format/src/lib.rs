//! The MMH-RS on-disk container, format v2 (the byte-level spec is docs/FORMAT.md);
//! v1 archives are still read.
//!
//! An archive is a 16-byte header, a sequence of self-describing frames (data frames,
//! then one index frame), and a 56-byte trailer that points at the index and carries its
//! SHA-256. The index lists the frames, the chunks (content pieces named by SHA-256,
//! each a slice of a frame or a reference into a base archive) and the entries. A writer never seeks, so archives can be written to a pipe; a reader either
//! seeks (trailer, index, then only the chunks it needs: [`Archive`]) or reads front to
//! back from a pipe ([`StreamReader`]).
//!
//! This crate knows nothing about codecs, hashing policy or GPUs: codec ids are opaque
//! bytes and digests are given to it. Every declared size is bounded
//! ([`consts::MAX_FRAME_RAW_LEN`], [`consts::MAX_INDEX_LEN`]) and checked before
//! anything is allocated, so a hostile archive cannot make a reader allocate without
//! bound.
//!
//! ```
//! use mmh_format::{Archive, ArchiveWriter, ChunkRecord, ChunkSource, Entry, EntryKind, Timestamp};
//!
//! let mut writer = ArchiveWriter::new(Vec::new())?;
//! let frame = writer.push_frame(0, 11, b"hello world")?;
//! let chunks = ["hello", " world"].iter().scan(0, |start, text| {
//!     let chunk = ChunkRecord {
//!         raw_len: text.len() as u32,
//!         digest: [7; 32],
//!         source: ChunkSource::Frame { frame, start: *start },
//!     };
//!     *start += text.len() as u32;
//!     Some(chunk)
//! });
//! let entry = Entry {
//!     name: "greeting".into(),
//!     mode: 0o644,
//!     mtime: Timestamp::default(),
//!     kind: EntryKind::File { size: 11, digest: [9; 32], chunks: vec![0, 1] },
//! };
//! let (bytes, len) = writer.finish(chunks.collect(), vec![entry], Vec::new(), [0; 32])?;
//! assert_eq!(len, bytes.len() as u64);
//!
//! let archive = Archive::open(bytes)?;
//! let mut buf = Vec::new();
//! assert_eq!(archive.read_frame(0, &mut buf)?, b"hello world");
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
pub use index::{
    BaseRef, ChunkRecord, ChunkSource, Digest, Entry, EntryKind, FrameRecord, Index,
    MAX_DELTA_PLANES, Timestamp,
};
pub use layout::{FrameHeader, FrameKind, Header, Trailer, checksum};
pub use reader::{Archive, ReadAt, StreamFrame, StreamReader};
pub use writer::ArchiveWriter;
