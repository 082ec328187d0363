use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use crate::consts::{CODEC_STORE, CODEC_ZSTD, FRAME_HEADER_LEN, HEADER_LEN, TRAILER_LEN};
use crate::index::{Digest, FrameRecord, Index};
use crate::layout::{FrameHeader, FrameKind, Header, Trailer};
use crate::{Error, Result};

/// A source that can read at any offset without moving a shared cursor, so that many
/// threads can fetch chunks of one archive at once.
pub trait ReadAt: Sync {
    /// Fills `buf` from byte `offset`; a short source is `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Total size of the source.
    fn size(&self) -> io::Result<u64>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
        }
        #[cfg(windows)]
        {
            let (mut buf, mut offset) = (buf, offset);
            while !buf.is_empty() {
                match std::os::windows::fs::FileExt::seek_read(self, buf, offset)? {
                    0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                    n => {
                        buf = &mut buf[n..];
                        offset += n as u64;
                    }
                }
            }
            Ok(())
        }
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

/// An archive opened for random access: the header, trailer and index are read and
/// checked up front; frames are read on demand.
#[derive(Debug)]
pub struct Archive<R> {
    source: R,
    header: Header,
    index: Index,
    index_digest: Digest,
}

impl<R: ReadAt> Archive<R> {
    /// Opens an archive: reads the header, then the trailer at the end, then the index
    /// it points to, checking each (magic, version, limits, SHA-256 of the index).
    pub fn open(source: R) -> Result<Self> {
        let size = source
            .size()
            .map_err(Error::io("reading the archive size"))?;
        let mut header_bytes = [0u8; HEADER_LEN];
        source
            .read_exact_at(&mut header_bytes, 0)
            .map_err(Error::read("file header", 0))?;
        let header = Header::parse(&header_bytes)?;
        let min_size = (HEADER_LEN + FRAME_HEADER_LEN + TRAILER_LEN) as u64;
        if size < min_size {
            return Err(Error::Truncated {
                what: "archive (shorter than header, index frame and trailer)",
                offset: size,
            });
        }
        let trailer_offset = size - TRAILER_LEN as u64;
        let mut trailer_bytes = [0u8; TRAILER_LEN];
        source
            .read_exact_at(&mut trailer_bytes, trailer_offset)
            .map_err(Error::read("trailer", trailer_offset))?;
        let trailer = Trailer::parse(&trailer_bytes, trailer_offset)?;
        // Trailer::parse has checked that the index ends at the trailer, so this
        // allocation is bounded by both the size limit and the file's real size.
        let mut frame = vec![0u8; FRAME_HEADER_LEN + trailer.index_len as usize];
        source
            .read_exact_at(&mut frame, trailer.index_offset)
            .map_err(Error::read("index frame", trailer.index_offset))?;
        let index = parse_index_frame(&frame, &trailer, header.version)?;
        Ok(Archive {
            source,
            header,
            index,
            index_digest: trailer.index_digest,
        })
    }

    /// The file header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The SHA-256 of the index, from the trailer: what identifies this archive as the
    /// base of another ([`crate::BaseRef::index_digest`]).
    pub fn index_digest(&self) -> Digest {
        self.index_digest
    }

    /// Reads frame `number`'s stored bytes into `buf` and checks its header against the
    /// index and its checksum; returns the stored bytes.
    pub fn read_frame<'b>(&self, number: u32, buf: &'b mut Vec<u8>) -> Result<&'b [u8]> {
        let record = self
            .index
            .frames
            .get(number as usize)
            .ok_or_else(|| Error::InvalidIndex {
                reason: format!("no frame {number}"),
            })?;
        buf.clear();
        buf.resize(FRAME_HEADER_LEN + record.stored_len as usize, 0);
        self.source
            .read_exact_at(buf, record.offset)
            .map_err(Error::read("frame", record.offset))?;
        let (head, stored) = buf.split_at(FRAME_HEADER_LEN);
        let frame = FrameHeader::parse(head.try_into().expect("frame header"), record.offset)?;
        check_frame_matches(&frame, record)?;
        frame.check(stored, record.offset)?;
        Ok(stored)
    }
}

fn check_frame_matches(frame: &FrameHeader, record: &FrameRecord) -> Result<()> {
    if frame.kind != FrameKind::Data
        || frame.codec != record.codec
        || frame.raw_len != record.raw_len
        || frame.stored_len != record.stored_len
    {
        return Err(Error::Malformed {
            what: "frame",
            offset: record.offset,
            reason: format!(
                "frame header (kind {:?}, codec {}, raw {}, stored {}) disagrees with the index (codec {}, raw {}, stored {})",
                frame.kind,
                frame.codec,
                frame.raw_len,
                frame.stored_len,
                record.codec,
                record.raw_len,
                record.stored_len
            ),
        });
    }
    Ok(())
}

/// Checks an index frame (header + bytes) against the trailer and decodes the index.
fn parse_index_frame(frame: &[u8], trailer: &Trailer, version: u16) -> Result<Index> {
    let (head, bytes) = frame.split_at(FRAME_HEADER_LEN);
    let offset = trailer.index_offset;
    let header = FrameHeader::parse(head.try_into().expect("frame header"), offset)?;
    if header.kind != FrameKind::Index || u64::from(header.stored_len) != trailer.index_len {
        return Err(Error::Malformed {
            what: "index frame",
            offset,
            reason: "the trailer points at a frame that is not the index it describes".into(),
        });
    }
    header.check(bytes, offset)?;
    if <[u8; 32]>::from(Sha256::digest(bytes)) != trailer.index_digest {
        return Err(Error::IndexDigest { offset });
    }
    decode_index(&header, bytes, version, offset)
}

/// Decompresses (if need be) and decodes the index from its frame's stored bytes, whose
/// checksum and SHA-256 have been checked.
fn decode_index(header: &FrameHeader, stored: &[u8], version: u16, offset: u64) -> Result<Index> {
    let bytes = match (header.codec, version) {
        (CODEC_STORE, _) => std::borrow::Cow::Borrowed(stored),
        (CODEC_ZSTD, 2..) => {
            // Grows with what really decompresses, never with the declared size alone.
            let mut out = Vec::new();
            // One zstd frame, as FORMAT.md §7 requires of every zstd frame.
            zstd::stream::read::Decoder::new(stored)
                .map(|d| d.single_frame())
                .and_then(|d| d.take(u64::from(header.raw_len) + 1).read_to_end(&mut out))
                .map_err(|e| Error::Malformed {
                    what: "index frame",
                    offset,
                    reason: format!("its zstd data does not decode: {e}"),
                })?;
            if out.len() != header.raw_len as usize {
                return Err(Error::Malformed {
                    what: "index frame",
                    offset,
                    reason: format!(
                        "decompresses to {} bytes, its header declares {}",
                        out.len(),
                        header.raw_len
                    ),
                });
            }
            std::borrow::Cow::Owned(out)
        }
        (codec, _) => {
            return Err(Error::Malformed {
                what: "index frame",
                offset,
                reason: format!("codec {codec} is not one an index may use in version {version}"),
            });
        }
    };
    Index::from_bytes(&bytes, version, offset)
}

/// One frame as met by a [`StreamReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFrame {
    /// Byte offset of the frame header.
    pub offset: u64,
    /// The frame header (checksum already verified).
    pub frame: FrameHeader,
}

/// Reads an archive front to back from a source that cannot seek (a pipe).
///
/// Chunks come out in archive order with their frame checksums verified; the index
/// arrives last, after which [`StreamReader::into_index`] gives it and every frame met on
/// the way has been checked against it.
#[derive(Debug)]
pub struct StreamReader<R> {
    input: R,
    position: u64,
    version: u16,
    seen: Vec<StreamFrame>,
    index: Option<Index>,
}

impl<R: Read> StreamReader<R> {
    /// Reads and checks the file header.
    pub fn new(mut input: R) -> Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        input
            .read_exact(&mut header)
            .map_err(Error::read("file header", 0))?;
        let version = Header::parse(&header)?.version;
        Ok(StreamReader {
            input,
            position: HEADER_LEN as u64,
            version,
            seen: Vec::new(),
            index: None,
        })
    }

    /// Reads the next frame's stored bytes into `buf`. Returns `None` once the index
    /// and trailer have been read and checked, and nothing follows them.
    pub fn next_frame(&mut self, buf: &mut Vec<u8>) -> Result<Option<StreamFrame>> {
        if self.index.is_some() {
            return Ok(None);
        }
        let offset = self.position;
        let mut head = [0u8; FRAME_HEADER_LEN];
        self.input
            .read_exact(&mut head)
            .map_err(Error::read("frame header", offset))?;
        let frame = FrameHeader::parse(&head, offset)?;
        buf.clear();
        buf.resize(frame.stored_len as usize, 0);
        self.input
            .read_exact(buf)
            .map_err(Error::read("frame body", offset))?;
        frame.check(buf, offset)?;
        self.position += (FRAME_HEADER_LEN + buf.len()) as u64;
        match frame.kind {
            FrameKind::Data => {
                let chunk = StreamFrame { offset, frame };
                self.seen.push(chunk);
                Ok(Some(chunk))
            }
            FrameKind::Index => {
                self.finish_with_index(offset, &frame, buf)?;
                Ok(None)
            }
        }
    }

    fn finish_with_index(
        &mut self,
        index_offset: u64,
        header: &FrameHeader,
        bytes: &[u8],
    ) -> Result<()> {
        let trailer_offset = self.position;
        let mut trailer_bytes = [0u8; TRAILER_LEN];
        self.input
            .read_exact(&mut trailer_bytes)
            .map_err(Error::read("trailer", trailer_offset))?;
        let trailer = Trailer::parse(&trailer_bytes, trailer_offset)?;
        if trailer.index_offset != index_offset {
            return Err(Error::Malformed {
                what: "trailer",
                offset: trailer_offset,
                reason: format!(
                    "points at an index at {}, but the index frame is at {index_offset}",
                    trailer.index_offset
                ),
            });
        }
        if <[u8; 32]>::from(Sha256::digest(bytes)) != trailer.index_digest {
            return Err(Error::IndexDigest {
                offset: index_offset,
            });
        }
        if u64::from(header.stored_len) != trailer.index_len {
            return Err(Error::Malformed {
                what: "trailer",
                offset: trailer_offset,
                reason: "its index length is not the index frame's".into(),
            });
        }
        let index = decode_index(header, bytes, self.version, index_offset)?;
        if index.frames.len() != self.seen.len() {
            return Err(Error::InvalidIndex {
                reason: format!(
                    "the index lists {} frames, the stream held {}",
                    index.frames.len(),
                    self.seen.len()
                ),
            });
        }
        for (record, seen) in index.frames.iter().zip(&self.seen) {
            if record.offset != seen.offset {
                return Err(Error::InvalidIndex {
                    reason: format!(
                        "the index places a frame at {}, the stream had it at {}",
                        record.offset, seen.offset
                    ),
                });
            }
            check_frame_matches(&seen.frame, record)?;
        }
        let end = self.position + TRAILER_LEN as u64;
        let mut extra = [0u8; 1];
        match self.input.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => {
                return Err(Error::Malformed {
                    what: "archive",
                    offset: end,
                    reason: "bytes follow the trailer".into(),
                });
            }
            Err(e) => return Err(Error::io("reading past the trailer")(e)),
        }
        self.seen = Vec::new();
        self.index = Some(index);
        Ok(())
    }

    /// Takes the index, once the stream has been read to its end.
    pub fn into_index(self) -> Option<Index> {
        self.index
    }
}
