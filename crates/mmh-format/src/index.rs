//! The index (FORMAT.md §4): every chunk, every entry and the Merkle root, serialized
//! with postcard. It is the table of contents a seeking reader loads first.

use serde::{Deserialize, Serialize};

use crate::consts::{FRAME_HEADER_LEN, HEADER_LEN, MAX_CHUNK_RAW_LEN};
use crate::{Error, Result};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Where one chunk's frame is and what it decodes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Byte offset of the chunk's frame header in the archive.
    pub offset: u64,
    /// Decoded size.
    pub raw_len: u32,
    /// Size of the stored (coded) bytes after the frame header.
    pub stored_len: u32,
    /// Codec id (see mmh-codecs).
    pub codec: u8,
    /// SHA-256 of the decoded bytes.
    pub digest: Digest,
}

impl ChunkRecord {
    /// Byte offset just past the chunk's frame.
    pub fn end(&self) -> u64 {
        self.offset + FRAME_HEADER_LEN as u64 + u64::from(self.stored_len)
    }
}

/// A point in time as seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z (negative before).
    pub secs: i64,
    /// Nanoseconds within the second, below 1e9.
    pub nanos: u32,
}

/// One archived item: its name, metadata and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the archive root, `/`-separated.
    pub name: String,
    /// Unix permission bits (0 when unknown).
    pub mode: u32,
    /// Last modification time.
    pub mtime: Timestamp,
    /// What the entry is.
    pub kind: EntryKind,
}

/// The kinds of entries. New kinds are appended at the end so that older indexes keep
/// decoding (postcard numbers enum variants in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file: its bytes are the listed chunks in order.
    File {
        /// Size in bytes (the sum of its chunks' raw lengths).
        size: u64,
        /// SHA-256 of the whole content.
        digest: Digest,
        /// Indexes into [`Index::chunks`], in content order; a chunk may be listed by
        /// several entries (dedup).
        chunks: Vec<u32>,
    },
    /// A directory.
    Directory,
    /// A symbolic link, stored as a link.
    Symlink {
        /// The link's target, as written.
        target: String,
    },
    /// A further name of a file stored earlier in the archive (a hard link).
    HardLink {
        /// Name of the earlier file entry.
        target: String,
    },
}

/// The archive's table of contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Every chunk frame, in archive order.
    pub chunks: Vec<ChunkRecord>,
    /// Every entry, in archive order.
    pub entries: Vec<Entry>,
    /// Merkle root over the chunk digests (see mmh-verify).
    pub merkle_root: Digest,
}

impl Index {
    /// Serializes the index.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("serializing to a Vec cannot fail")
    }

    /// Decodes an index and checks it against an archive whose index frame starts at
    /// `index_offset`.
    pub fn from_bytes(bytes: &[u8], index_offset: u64) -> Result<Index> {
        let (index, rest): (Index, _) =
            postcard::take_from_bytes(bytes).map_err(|e| Error::InvalidIndex {
                reason: format!("cannot decode: {e}"),
            })?;
        if !rest.is_empty() {
            return Err(Error::InvalidIndex {
                reason: format!("{} trailing bytes after the index", rest.len()),
            });
        }
        index.validate(index_offset)?;
        Ok(index)
    }

    /// Checks that chunk frames lie in order between the header and the index without
    /// overlapping, and that every file's chunks exist and add up to its size.
    pub fn validate(&self, index_offset: u64) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidIndex { reason });
        let mut next_free = HEADER_LEN as u64;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if chunk.offset < next_free {
                return invalid(format!(
                    "chunk {i} at offset {} overlaps the previous frame (ends at {next_free})",
                    chunk.offset
                ));
            }
            if chunk.raw_len > MAX_CHUNK_RAW_LEN || chunk.stored_len > chunk.raw_len {
                return invalid(format!(
                    "chunk {i} has impossible lengths (raw {}, stored {})",
                    chunk.raw_len, chunk.stored_len
                ));
            }
            next_free = chunk.end();
        }
        if next_free > index_offset {
            return invalid(format!(
                "the last chunk ends at {next_free}, past the index at {index_offset}"
            ));
        }
        let mut files = std::collections::HashSet::new();
        for entry in &self.entries {
            if entry.name.contains('\0') {
                return invalid(format!("entry name {:?} contains a NUL byte", entry.name));
            }
            if let EntryKind::HardLink { target } = &entry.kind
                && !files.contains(target.as_str())
            {
                return invalid(format!(
                    "hard link {:?} points at {target:?}, which is not an earlier file",
                    entry.name
                ));
            }
            if let EntryKind::File { size, chunks, .. } = &entry.kind {
                let mut total = 0u64;
                for &c in chunks {
                    let Some(chunk) = self.chunks.get(c as usize) else {
                        return invalid(format!(
                            "entry {:?} refers to chunk {c}, but there are {}",
                            entry.name,
                            self.chunks.len()
                        ));
                    };
                    total += u64::from(chunk.raw_len);
                }
                if total != *size {
                    return invalid(format!(
                        "entry {:?} declares {size} bytes but its chunks hold {total}",
                        entry.name
                    ));
                }
                files.insert(entry.name.as_str());
            }
        }
        Ok(())
    }
}
