use std::io::Write;

use sha2::{Digest as _, Sha256};

use crate::consts::{CODEC_STORE, CODEC_ZSTD, HEADER_LEN, INDEX_ZSTD_LEVEL, TRAILER_LEN};
use crate::index::{BaseRef, ChunkRecord, Digest, Entry, FrameRecord, Index};
use crate::layout::{FrameHeader, FrameKind, Header, Trailer};
use crate::{Error, Result};

/// Writes an archive front to back, never seeking, so it can write to a pipe.
///
/// Frames are appended as they come; [`ArchiveWriter::finish`] writes the index and the
/// trailer. Until then the output is not a valid archive, which is why callers write to
/// a temporary name.
#[derive(Debug)]
pub struct ArchiveWriter<W: Write> {
    out: W,
    position: u64,
    frames: Vec<FrameRecord>,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive by writing the file header.
    pub fn new(mut out: W) -> Result<Self> {
        out.write_all(&Header::CURRENT.to_bytes())
            .map_err(Error::io("writing the archive header"))?;
        Ok(ArchiveWriter {
            out,
            position: HEADER_LEN as u64,
            frames: Vec::new(),
        })
    }

    /// Appends one frame of coded bytes and returns its number in the index.
    pub fn push_frame(&mut self, codec: u8, raw_len: u32, stored: &[u8]) -> Result<u32> {
        let header = FrameHeader::new(FrameKind::Data, codec, raw_len, stored)?;
        let number = u32::try_from(self.frames.len()).map_err(|_| Error::InvalidIndex {
            reason: "more than 2^32 frames".into(),
        })?;
        let offset = self.write_frame(header, stored)?;
        self.frames.push(FrameRecord {
            offset,
            raw_len,
            stored_len: header.stored_len,
            codec,
        });
        Ok(number)
    }

    /// Writes the index (the frames written so far and the given rest) and the trailer,
    /// flushes, and gives back the output and the archive's total length.
    pub fn finish(
        mut self,
        chunks: Vec<ChunkRecord>,
        entries: Vec<Entry>,
        bases: Vec<BaseRef>,
        merkle_root: Digest,
    ) -> Result<(W, u64)> {
        let index = Index {
            frames: std::mem::take(&mut self.frames),
            chunks,
            entries,
            bases,
            merkle_root,
        };
        let index_offset = self.position;
        index.validate(index_offset)?;
        let bytes = index.to_bytes();
        let raw_len = u32::try_from(bytes.len()).map_err(|_| Error::LimitExceeded {
            what: "index",
            offset: index_offset,
            declared: bytes.len() as u64,
            limit: u32::MAX.into(),
        })?;
        // Compressed when that makes it smaller, like any frame.
        let compressed = zstd::bulk::compress(&bytes, INDEX_ZSTD_LEVEL)
            .map_err(Error::io("compressing the index"))?;
        let (codec, stored) = if compressed.len() < bytes.len() {
            (CODEC_ZSTD, compressed.as_slice())
        } else {
            (CODEC_STORE, bytes.as_slice())
        };
        let header = FrameHeader::new(FrameKind::Index, codec, raw_len, stored)?;
        self.write_frame(header, stored)?;
        let trailer = Trailer {
            index_offset,
            index_len: stored.len() as u64,
            index_digest: Sha256::digest(stored).into(),
        };
        self.out
            .write_all(&trailer.to_bytes())
            .map_err(Error::io("writing the archive trailer"))?;
        self.out
            .flush()
            .map_err(Error::io("flushing the archive"))?;
        Ok((self.out, self.position + TRAILER_LEN as u64))
    }

    fn write_frame(&mut self, header: FrameHeader, stored: &[u8]) -> Result<u64> {
        let offset = self.position;
        self.out
            .write_all(&header.to_bytes())
            .and_then(|()| self.out.write_all(stored))
            .map_err(Error::io("writing a frame"))?;
        self.position += (header.to_bytes().len() + stored.len()) as u64;
        Ok(offset)
    }
}
