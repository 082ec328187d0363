//! The index (FORMAT.md §4): every frame, chunk, entry and base archive, and the Merkle
//! root, serialized with postcard. It is the table of contents a seeking reader loads first.

use serde::{Deserialize, Serialize};

use crate::consts::{FRAME_HEADER_LEN, HEADER_LEN, MAX_FRAME_RAW_LEN};
use crate::{Error, Result};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// One frame of coded bytes: where it is and how it decodes. A frame holds one or
/// more chunks side by side (FORMAT.md §4), so that small chunks share one compression
/// context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRecord {
    /// Byte offset of the frame header in the archive.
    pub offset: u64,
    /// Decoded size.
    pub raw_len: u32,
    /// Size of the stored (coded) bytes after the frame header.
    pub stored_len: u32,
    /// Codec id (see mmh-codecs).
    pub codec: u8,
}

impl FrameRecord {
    /// Byte offset just past the frame.
    pub fn end(&self) -> u64 {
        // Saturating: a hostile offset near u64::MAX must fail validation, not wrap.
        self.offset
            .saturating_add(FRAME_HEADER_LEN as u64 + u64::from(self.stored_len))
    }
}

/// One chunk: a piece of content identified by its SHA-256, which file entries list and
/// other archives may reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Decoded size.
    pub raw_len: u32,
    /// SHA-256 of the decoded bytes.
    pub digest: Digest,
    /// Where the bytes come from.
    pub source: ChunkSource,
}

/// Where a chunk's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkSource {
    /// Bytes `start..start + raw_len` of a decoded frame of this archive.
    Frame {
        /// Index into [`Index::frames`].
        frame: u32,
        /// Offset in the decoded frame.
        start: u32,
    },
    /// The identical chunk of a base archive.
    Base {
        /// Index into [`Index::bases`].
        base: u16,
        /// Chunk number in the base archive.
        chunk: u32,
    },
    /// Bytes `start..start + raw_len` of a decoded frame, regrouped from `planes` byte
    /// planes, XORed with a chunk of the same length in a base archive (a tensor that
    /// changed slightly since the base).
    Delta {
        /// Index into [`Index::frames`].
        frame: u32,
        /// Offset in the decoded frame.
        start: u32,
        /// Index into [`Index::bases`].
        base: u16,
        /// Chunk number in the base archive.
        chunk: u32,
        /// How many byte planes the XOR is stored as (the tensor's element size; 1 for
        /// plain bytes), from 1 to [`MAX_DELTA_PLANES`].
        planes: u8,
    },
}

/// The most byte planes a delta chunk may be stored as (the width of an f64).
pub const MAX_DELTA_PLANES: u8 = 8;

/// An archive whose chunks this one references: the chain a reader must resolve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRef {
    /// SHA-256 of the base's index, from its trailer: identifies the base exactly.
    pub index_digest: Digest,
    /// The base's file name when this archive was folded, to find it next to this one.
    pub name: String,
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// Every frame, in archive order.
    pub frames: Vec<FrameRecord>,
    /// Every chunk; file entries list them by number.
    pub chunks: Vec<ChunkRecord>,
    /// Every entry, in archive order.
    pub entries: Vec<Entry>,
    /// The archives that [`ChunkSource::Base`] and [`ChunkSource::Delta`] refer to.
    pub bases: Vec<BaseRef>,
    /// Merkle root over the chunk digests, in chunk order (see mmh-verify).
    pub merkle_root: Digest,
}

impl Index {
    /// Serializes the index in the current version's layout (before any compression).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(&v2::Index::from(self)).expect("serializing to a Vec cannot fail")
    }

    /// Decodes the index of an archive of format `version` and checks it against an
    /// archive whose index frame starts at `index_offset`.
    pub fn from_bytes(bytes: &[u8], version: u16, index_offset: u64) -> Result<Index> {
        let index = match version {
            1 => decode::<v1::Index>(bytes)?.into(),
            2 => decode::<v2::Index>(bytes)?.into_index()?,
            _ => {
                return Err(Error::UnsupportedVersion {
                    found: version,
                    supported: crate::consts::FORMAT_VERSION,
                });
            }
        };
        index.validate(index_offset)?;
        Ok(index)
    }

    /// Checks that frames lie in order between the header and the index without
    /// overlapping, that every chunk lies inside its frame and names a listed base, and
    /// that every file's chunks exist and add up to its size.
    pub fn validate(&self, index_offset: u64) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidIndex { reason });
        let mut next_free = HEADER_LEN as u64;
        for (i, frame) in self.frames.iter().enumerate() {
            if frame.offset < next_free {
                return invalid(format!(
                    "frame {i} at offset {} overlaps the previous frame (ends at {next_free})",
                    frame.offset
                ));
            }
            if frame.raw_len > MAX_FRAME_RAW_LEN || frame.stored_len > frame.raw_len {
                return invalid(format!(
                    "frame {i} has impossible lengths (raw {}, stored {})",
                    frame.raw_len, frame.stored_len
                ));
            }
            next_free = frame.end();
        }
        if next_free > index_offset {
            return invalid(format!(
                "the last frame ends at {next_free}, past the index at {index_offset}"
            ));
        }
        if self.bases.len() > usize::from(u16::MAX) + 1 {
            return invalid(format!("{} bases (at most 65536)", self.bases.len()));
        }
        for (i, chunk) in self.chunks.iter().enumerate() {
            self.validate_chunk(chunk)
                .or_else(|reason| invalid(format!("chunk {i} {reason}")))?;
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

    /// Why `chunk` cannot be resolved, if it cannot.
    fn validate_chunk(&self, chunk: &ChunkRecord) -> std::result::Result<(), String> {
        if chunk.raw_len > MAX_FRAME_RAW_LEN {
            return Err(format!("is longer ({}) than any frame", chunk.raw_len));
        }
        let (frame, base) = match chunk.source {
            ChunkSource::Frame { frame, start } => (Some((frame, start)), None),
            ChunkSource::Base { base, .. } => (None, Some(base)),
            ChunkSource::Delta {
                frame,
                start,
                base,
                planes,
                ..
            } => {
                if !(1..=MAX_DELTA_PLANES).contains(&planes) {
                    return Err(format!(
                        "is a delta in {planes} byte planes (1 to {MAX_DELTA_PLANES})"
                    ));
                }
                (Some((frame, start)), Some(base))
            }
        };
        if let Some((number, start)) = frame {
            let Some(frame) = self.frames.get(number as usize) else {
                return Err(format!(
                    "lies in frame {number}, but there are {}",
                    self.frames.len()
                ));
            };
            if u64::from(start) + u64::from(chunk.raw_len) > u64::from(frame.raw_len) {
                return Err(format!(
                    "(bytes {start}..{}) runs past the end of frame {number} ({} bytes)",
                    u64::from(start) + u64::from(chunk.raw_len),
                    frame.raw_len
                ));
            }
        }
        if let Some(base) = base
            && usize::from(base) >= self.bases.len()
        {
            return Err(format!(
                "refers to base {base}, but there are {}",
                self.bases.len()
            ));
        }
        Ok(())
    }
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    let (index, rest): (T, _) =
        postcard::take_from_bytes(bytes).map_err(|e| Error::InvalidIndex {
            reason: format!("cannot decode: {e}"),
        })?;
    if !rest.is_empty() {
        return Err(Error::InvalidIndex {
            reason: format!("{} trailing bytes after the index", rest.len()),
        });
    }
    Ok(index)
}

/// The index as v2 stores it: the in-memory types, except that a file of exactly one
/// chunk leaves out its SHA-256, which is that chunk's (FORMAT.md §4.2). In a tree of
/// small files the digests are most of the index, and this halves them.
mod v2 {
    use serde::{Deserialize, Serialize};

    use super::{BaseRef, ChunkRecord, Digest, FrameRecord, Timestamp};
    use crate::{Error, Result};

    #[derive(Serialize, Deserialize)]
    pub(super) struct Index {
        frames: Vec<FrameRecord>,
        chunks: Vec<ChunkRecord>,
        entries: Vec<Entry>,
        bases: Vec<BaseRef>,
        merkle_root: Digest,
    }

    #[derive(Serialize, Deserialize)]
    struct Entry {
        name: String,
        mode: u32,
        mtime: Timestamp,
        kind: EntryKind,
    }

    #[derive(Serialize, Deserialize)]
    enum EntryKind {
        File {
            size: u64,
            /// `None` when the file is exactly one chunk: its digest is the chunk's.
            digest: Option<Digest>,
            chunks: Vec<u32>,
        },
        Directory,
        Symlink {
            target: String,
        },
        HardLink {
            target: String,
        },
    }

    impl From<&super::Index> for Index {
        fn from(index: &super::Index) -> Self {
            let entries = index
                .entries
                .iter()
                .map(|e| Entry {
                    name: e.name.clone(),
                    mode: e.mode,
                    mtime: e.mtime,
                    kind: match &e.kind {
                        super::EntryKind::File {
                            size,
                            digest,
                            chunks,
                        } => {
                            let implied = match chunks[..] {
                                [only] => index.chunks.get(only as usize).map(|c| c.digest),
                                _ => None,
                            };
                            EntryKind::File {
                                size: *size,
                                digest: (implied != Some(*digest)).then_some(*digest),
                                chunks: chunks.clone(),
                            }
                        }
                        super::EntryKind::Directory => EntryKind::Directory,
                        super::EntryKind::Symlink { target } => EntryKind::Symlink {
                            target: target.clone(),
                        },
                        super::EntryKind::HardLink { target } => EntryKind::HardLink {
                            target: target.clone(),
                        },
                    },
                })
                .collect();
            Index {
                frames: index.frames.clone(),
                chunks: index.chunks.clone(),
                entries,
                bases: index.bases.clone(),
                merkle_root: index.merkle_root,
            }
        }
    }

    impl Index {
        pub(super) fn into_index(self) -> Result<super::Index> {
            let chunks = self.chunks;
            let entries = self
                .entries
                .into_iter()
                .map(|e| {
                    let kind = match e.kind {
                        EntryKind::File {
                            size,
                            digest,
                            chunks: list,
                        } => {
                            let digest = match (digest, &list[..]) {
                                (Some(digest), _) => digest,
                                (None, [only]) if (*only as usize) < chunks.len() => {
                                    chunks[*only as usize].digest
                                }
                                (None, _) => {
                                    return Err(Error::InvalidIndex {
                                        reason: format!(
                                            "entry {:?} has no digest but is not one chunk",
                                            e.name
                                        ),
                                    });
                                }
                            };
                            super::EntryKind::File {
                                size,
                                digest,
                                chunks: list,
                            }
                        }
                        EntryKind::Directory => super::EntryKind::Directory,
                        EntryKind::Symlink { target } => super::EntryKind::Symlink { target },
                        EntryKind::HardLink { target } => super::EntryKind::HardLink { target },
                    };
                    Ok(super::Entry {
                        name: e.name,
                        mode: e.mode,
                        mtime: e.mtime,
                        kind,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(super::Index {
                frames: self.frames,
                chunks,
                entries,
                bases: self.bases,
                merkle_root: self.merkle_root,
            })
        }
    }
}

/// The index of format v1, where every frame held exactly one chunk. Read only: it is
/// converted to the current [`Index`] on opening.
mod v1 {
    use serde::Deserialize;

    use super::{ChunkSource, Digest, Entry, FrameRecord};

    #[derive(Deserialize)]
    pub(super) struct Index {
        chunks: Vec<ChunkRecord>,
        entries: Vec<Entry>,
        merkle_root: Digest,
    }

    #[derive(Deserialize)]
    struct ChunkRecord {
        offset: u64,
        raw_len: u32,
        stored_len: u32,
        codec: u8,
        digest: Digest,
    }

    impl From<Index> for super::Index {
        fn from(v1: Index) -> Self {
            let (frames, chunks) = v1
                .chunks
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    let frame = FrameRecord {
                        offset: c.offset,
                        raw_len: c.raw_len,
                        stored_len: c.stored_len,
                        codec: c.codec,
                    };
                    let chunk = super::ChunkRecord {
                        raw_len: c.raw_len,
                        digest: c.digest,
                        source: ChunkSource::Frame {
                            frame: i as u32,
                            start: 0,
                        },
                    };
                    (frame, chunk)
                })
                .unzip();
            super::Index {
                frames,
                chunks,
                entries: v1.entries,
                bases: Vec::new(),
                merkle_root: v1.merkle_root,
            }
        }
    }
}
