//! The fixed-size structures of the format (unchanged since v1): file header, frame header and trailer.
//! Parsed field by field with `from_le_bytes`; each parse validates before anyone
//! allocates on the strength of a declared size.

use crate::consts::*;
use crate::{Error, Result};

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}

fn check_magic(what: &'static str, offset: u64, found: &[u8], expected: &[u8]) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(Error::BadMagic {
            what,
            offset,
            found: found.to_vec(),
            expected: expected.to_vec(),
        })
    }
}

/// The file header (FORMAT.md §2): magic, version, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version of the archive.
    pub version: u16,
}

impl Header {
    /// The header this crate writes.
    pub const CURRENT: Header = Header {
        version: FORMAT_VERSION,
    };

    /// Serializes the header.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        // Bytes 10..16 (flags and reserved) stay zero (no version defines them).
        b
    }

    /// Parses and validates a header read from the start of an archive.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header> {
        check_magic("file header", 0, &b[0..8], &MAGIC)?;
        let version = u16_at(b, 8);
        if version == 0 || version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let flags = u16_at(b, 10);
        if flags != 0 {
            return Err(Error::Malformed {
                what: "file header",
                offset: 0,
                reason: format!("unknown flags {flags:#06x} (no version defines any)"),
            });
        }
        if u32_at(b, 12) != 0 {
            return Err(Error::Malformed {
                what: "file header",
                offset: 0,
                reason: "reserved bytes 12..16 are not zero".into(),
            });
        }
        Ok(Header { version })
    }
}

/// What a frame carries (FORMAT.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Data (one or more chunks side by side), coded by the codec in the frame header.
    Data,
    /// The index; it ends the frame sequence.
    Index,
}

/// A frame header (FORMAT.md §3): what follows, how long it is, and its fast checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame carries.
    pub kind: FrameKind,
    /// Codec id of the stored bytes (interpreted by mmh-codecs, opaque here).
    pub codec: u8,
    /// Size of the decoded bytes.
    pub raw_len: u32,
    /// Size of the stored bytes that follow the header.
    pub stored_len: u32,
    /// XXH3-64 of the stored bytes.
    pub checksum: u64,
}

impl FrameHeader {
    /// Builds the header for `stored` bytes, computing the checksum.
    pub fn new(kind: FrameKind, codec: u8, raw_len: u32, stored: &[u8]) -> Result<FrameHeader> {
        let stored_len = u32::try_from(stored.len()).map_err(|_| Error::LimitExceeded {
            what: "frame",
            offset: 0,
            declared: stored.len() as u64,
            limit: u32::MAX.into(),
        })?;
        let header = FrameHeader {
            kind,
            codec,
            raw_len,
            stored_len,
            checksum: checksum(stored),
        };
        header.validate(0)?;
        Ok(header)
    }

    /// Serializes the header.
    pub fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0..4].copy_from_slice(&FRAME_MAGIC);
        b[4] = match self.kind {
            FrameKind::Data => FRAME_KIND_DATA,
            FrameKind::Index => FRAME_KIND_INDEX,
        };
        b[5] = self.codec;
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.stored_len.to_le_bytes());
        b[16..24].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    /// Parses and validates a frame header found at byte `offset` of the archive.
    pub fn parse(b: &[u8; FRAME_HEADER_LEN], offset: u64) -> Result<FrameHeader> {
        check_magic("frame header", offset, &b[0..4], &FRAME_MAGIC)?;
        let kind = match b[4] {
            FRAME_KIND_DATA => FrameKind::Data,
            FRAME_KIND_INDEX => FrameKind::Index,
            other => {
                return Err(Error::Malformed {
                    what: "frame header",
                    offset,
                    reason: format!("unknown frame kind {other}"),
                });
            }
        };
        let header = FrameHeader {
            kind,
            codec: b[5],
            raw_len: u32_at(b, 8),
            stored_len: u32_at(b, 12),
            checksum: u64_at(b, 16),
        };
        if u16_at(b, 6) != 0 {
            return Err(Error::Malformed {
                what: "frame header",
                offset,
                reason: "reserved bytes 6..8 are not zero".into(),
            });
        }
        header.validate(offset)?;
        Ok(header)
    }

    fn validate(&self, offset: u64) -> Result<()> {
        let (what, limit) = match self.kind {
            FrameKind::Data => ("data frame", MAX_FRAME_RAW_LEN),
            FrameKind::Index => ("index frame", MAX_INDEX_LEN),
        };
        if self.raw_len > limit {
            return Err(Error::LimitExceeded {
                what,
                offset,
                declared: self.raw_len.into(),
                limit: limit.into(),
            });
        }
        // Writers store a chunk raw rather than let it grow, so a stored size above the
        // raw size is damage, and this keeps every allocation under the raw limit.
        if self.stored_len > self.raw_len {
            return Err(Error::Malformed {
                what,
                offset,
                reason: format!(
                    "stored length {} exceeds raw length {}",
                    self.stored_len, self.raw_len
                ),
            });
        }
        // Which codecs an index may use depends on the version: the reader checks that.
        if self.kind == FrameKind::Index
            && self.codec == CODEC_STORE
            && self.stored_len != self.raw_len
        {
            return Err(Error::Malformed {
                what,
                offset,
                reason: "a stored index frame must have equal stored and raw lengths".into(),
            });
        }
        Ok(())
    }

    /// Checks `stored` (the bytes after this header at `offset`) against the checksum.
    pub fn check(&self, stored: &[u8], offset: u64) -> Result<()> {
        let actual = checksum(stored);
        if actual == self.checksum {
            Ok(())
        } else {
            Err(Error::FrameChecksum {
                offset,
                expected: self.checksum,
                actual,
            })
        }
    }
}

/// The fast checksum of a frame's stored bytes: it catches damage before a codec sees
/// the bytes; SHA-256 of the decoded bytes is the real integrity check.
pub fn checksum(stored: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(stored)
}

/// The trailer (FORMAT.md §5): where the index is and its SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Byte offset of the index frame's header.
    pub index_offset: u64,
    /// Length of the serialized index.
    pub index_len: u64,
    /// SHA-256 of the serialized index.
    pub index_digest: [u8; 32],
}

impl Trailer {
    /// Serializes the trailer.
    pub fn to_bytes(self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..8].copy_from_slice(&self.index_offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.index_len.to_le_bytes());
        b[16..48].copy_from_slice(&self.index_digest);
        b[48..56].copy_from_slice(&TRAILER_MAGIC);
        b
    }

    /// Parses the trailer read at byte `offset` and checks that its index lies between
    /// the header and the trailer.
    pub fn parse(b: &[u8; TRAILER_LEN], offset: u64) -> Result<Trailer> {
        check_magic("trailer", offset + 48, &b[48..56], &TRAILER_MAGIC)?;
        let trailer = Trailer {
            index_offset: u64_at(b, 0),
            index_len: u64_at(b, 8),
            index_digest: b[16..48].try_into().expect("32-byte slice"),
        };
        if trailer.index_len > MAX_INDEX_LEN.into() {
            return Err(Error::LimitExceeded {
                what: "trailer's index length",
                offset,
                declared: trailer.index_len,
                limit: MAX_INDEX_LEN.into(),
            });
        }
        let expected_end = trailer
            .index_offset
            .checked_add(FRAME_HEADER_LEN as u64 + trailer.index_len);
        if trailer.index_offset < HEADER_LEN as u64 || expected_end != Some(offset) {
            return Err(Error::Malformed {
                what: "trailer",
                offset,
                reason: format!(
                    "index at {} with length {} does not end where the trailer starts",
                    trailer.index_offset, trailer.index_len
                ),
            });
        }
        Ok(trailer)
    }
}
