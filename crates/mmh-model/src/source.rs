//! Random access: [`layout`] reads a file through [`ModelSource`], within a byte budget.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;

use crate::{Error, Layout, MAX_HEADER_LEN, Result, Sniff, onnx, sniff, zip};

/// The most bytes [`layout`] reads from one file, whatever the file claims: a head and
/// headers of up to [`MAX_HEADER_LEN`], a zip's central directory and a pickle of up to
/// as much each, the small zip record headers, and the blocks that hold an ONNX model's
/// field headers, names and dims.
pub const MAX_LAYOUT_READ: u64 = 4 * MAX_HEADER_LEN;

/// Bytes read first: the whole header of most model files.
const FIRST_HEAD: u64 = 64 << 10;

/// A file that can be read anywhere: what [`layout`] needs to place the tensors of
/// formats whose index is not at the start of the file.
pub trait ModelSource {
    /// The file's size in bytes.
    fn size(&self) -> u64;

    /// Appends the bytes at `range` to `buf`. A source that ends before `range.end` is an
    /// error (`UnexpectedEof`), not a short read.
    fn read_at(&self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()>;
}

/// For `&[u8]` rather than `[u8]`, so that a slice can be passed as `&dyn ModelSource`.
impl ModelSource for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
        let bytes = usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .and_then(|(start, end)| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.extend_from_slice(bytes);
        Ok(())
    }
}

impl ModelSource for Vec<u8> {
    fn size(&self) -> u64 {
        (&self[..]).size()
    }

    fn read_at(&self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
        (&self[..]).read_at(range, buf)
    }
}

/// Reads through the file's own cursor (`&File` is `Read + Seek`), which moves: a caller
/// that also streams the file seeks back afterwards. The size is asked of the file
/// system each time, so a file that shrinks reads as truncated, not as out of bounds.
impl ModelSource for File {
    fn size(&self) -> u64 {
        self.metadata().map_or(0, |meta| meta.len())
    }

    fn read_at(&self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut file = self;
        file.seek(SeekFrom::Start(range.start))?;
        let want = range.end.saturating_sub(range.start);
        let read = file.take(want).read_to_end(buf)?;
        if (read as u64) < want {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// A source read within [`MAX_LAYOUT_READ`] bytes.
pub(crate) struct Budgeted<'s> {
    source: &'s dyn ModelSource,
    size: u64,
    left: Cell<u64>,
}

impl Budgeted<'_> {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Reads `range` (which the caller has checked against [`Budgeted::size`]) into a new
    /// buffer, or fails when the budget is spent. The buffer grows as bytes arrive, so a
    /// source shorter than it claimed costs no more than its real bytes.
    pub(crate) fn read(&self, range: Range<u64>) -> Result<Vec<u8>> {
        let len = range.end.saturating_sub(range.start);
        let left = self.left.get();
        if len > left {
            return Err(Error::ReadLimit {
                limit: MAX_LAYOUT_READ,
            });
        }
        self.left.set(left - len);
        let mut buf = Vec::new();
        self.source
            .read_at(range.clone(), &mut buf)
            .map_err(|source| Error::Read { range, source })?;
        Ok(buf)
    }
}

/// Finds out whether the file `source` reads is a model file and, if so, where its
/// tensors lie: every format of [`sniff`] (through its first 64 KiB, then as much of the
/// head as a header needs), then the zip-based formats (PyTorch checkpoints, npz), whose
/// record offsets are in the zip's central directory at the end of the file, then ONNX,
/// whose initializers are found by walking the protobuf fields of the whole file.
///
/// `None` when the file is not a model file this crate recognises. At most
/// [`MAX_LAYOUT_READ`] bytes are read, however the file is built.
///
/// # Errors
/// [`Error::Read`] when the source fails (its `io::Error` is the source, unchanged), and
/// the errors of [`sniff`] and of each format's rules when the file claims a format but
/// breaks them; callers treat such a file as plain bytes.
pub fn layout(source: &dyn ModelSource) -> Result<Option<Layout>> {
    let budgeted = Budgeted {
        source,
        size: source.size(),
        left: Cell::new(MAX_LAYOUT_READ),
    };
    let size = budgeted.size;
    let mut head = budgeted.read(0..FIRST_HEAD.min(size))?;
    loop {
        match sniff(&head, size)? {
            Sniff::Model(layout) => return Ok(Some(layout)),
            // sniff never asks for more than the file or less than it has been given
            // plus one byte, so each pass reads strictly more and the loop ends.
            Sniff::NeedHead(needed) if needed > head.len() as u64 && needed <= size => {
                let more = budgeted.read(head.len() as u64..needed)?;
                head.extend_from_slice(&more);
            }
            Sniff::NeedHead(_) | Sniff::NotAModel => break,
        }
    }
    match zip::layout(&head, &budgeted)? {
        Some(layout) => Ok(Some(layout)),
        None => onnx::layout(&head, &budgeted),
    }
}
