//! Cutting a file into chunks: on tensor boundaries first, then content-defined.
//!
//! Chunks are the unit of dedup, so a cut must depend only on the content around it:
//! the same bytes cut the same way in any file, any version, any archive. Model files
//! (those `mmh-model` recognises) are cut at every tensor boundary, and inside a tensor
//! at fixed offsets from its start: a tensor that changed does not move the cuts of its
//! neighbours, and its pieces line up with the same tensor's pieces in a base archive,
//! which is what delta coding pairs. Tensor bytes are never inserted or removed, only
//! rewritten, so fixed offsets lose nothing against content-defined cuts there.
//! Everything else (headers, text, unknown formats) is cut by FastCDC through the
//! [`Accelerator`], which finds the same boundaries on any backend.
//!
//! A model's layout comes from the file's head ([`mmh_model::sniff`]) whenever the head
//! can give it, however the file is read; only the formats whose index lies elsewhere
//! (PyTorch zips, npz, ONNX) are placed by random access ([`mmh_model::layout`]), when the file
//! can be read anywhere: a file on disk, or a base archive's entry. Through a pipe they are
//! cut by content.

use std::cell::OnceCell;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;

use mmh_codecs::{Accelerator, CdcParams, FloatKind};
use mmh_format::MAX_DELTA_PLANES;
use mmh_model::{DType, Layout, ModelSource, Sniff};

use crate::{Error, Result};

/// The piece of a tensor (or of a run of small tensors) a chunk holds: what pairs it
/// with the same piece of the same tensor in a base archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TensorPiece {
    /// The name of the (first) tensor of the region.
    pub name: String,
    /// Offset of the piece from the start of the region.
    pub offset: u64,
    /// Length of the piece.
    pub len: u32,
    /// Bytes per element of the (first) tensor, 1 to 8: how a delta splits into planes.
    pub width: u8,
    /// The tensor's float format, when the tensor codec has planes for it.
    pub float: Option<FloatKind>,
}

/// A stretch of a file cut one way.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Region {
    start: u64,
    end: u64,
    /// Tensor data, cut every `piece` bytes from `start`; `None`: cut by content.
    tensor: Option<RegionTensor>,
}

/// The (first) tensor of a tensor region.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RegionTensor {
    name: String,
    /// Bytes per element, 1 to 8.
    width: u8,
    float: Option<FloatKind>,
}

/// Receives each chunk and the tensor piece it holds; returns false to stop the cut.
pub(crate) type Emit<'e> = dyn FnMut(&[u8], Option<TensorPiece>) -> Result<bool> + 'e;

/// How a fold cuts files.
#[derive(Debug, Clone)]
pub(crate) struct Chunker<'a> {
    pub accelerator: &'a dyn Accelerator,
    pub cdc: CdcParams,
}

/// The most of a file's head read to find its model layout: a model whose header is
/// larger is cut by content alone.
const MAX_HEAD: u64 = 64 << 20;

impl Chunker<'_> {
    /// Tensor pieces are as long as the longest content-defined chunk.
    fn piece_len(&self) -> u64 {
        u64::from(self.cdc.max_size)
    }

    /// Bytes kept in view while cutting: several chunks, so that only the last,
    /// unfinished chunk of each window is scanned twice.
    fn window(&self) -> usize {
        (self.cdc.max_size as usize * 16).max(4 << 20)
    }

    /// Reads `input` to its end and hands each chunk to `emit` in order, with the tensor
    /// piece it holds, if any. `emit` returns false to stop early. `path` is where `input`
    /// lies on disk, when it does: the formats placed by random access are then placed.
    pub fn cut(
        &self,
        input: &mut dyn Read,
        path: Option<&Path>,
        emit: &mut Emit<'_>,
    ) -> Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(self.window());
        let mut eof = fill(input, &mut buf, self.window())?;
        let mut more = |buf: &mut Vec<u8>, n: usize| fill(input, buf, n);
        let layout = head_layout(&mut buf, &mut eof, &mut more)?;
        let layout = match (layout, path) {
            (Some(layout), _) => Some(layout),
            (None, Some(path)) => match DiskSource::new(&buf, path) {
                Some(source) => random_access_layout(&source)?,
                None => None,
            },
            (None, None) => None,
        };
        let regions = self.regions(layout.as_ref());
        let piece_len = self.piece_len();
        let mut pos = 0u64;
        let mut region = 0;
        loop {
            if !eof && buf.len() < self.window() {
                eof = fill(input, &mut buf, self.window())?;
            }
            if buf.is_empty() {
                return Ok(());
            }
            while regions[region].end <= pos {
                region += 1;
            }
            let Region { start, end, tensor } = &regions[region];
            let left_in_region = end - pos;
            let complete = eof || left_in_region <= buf.len() as u64;
            let avail = left_in_region.min(buf.len() as u64) as usize;
            let mut consumed = 0;
            match tensor {
                Some(RegionTensor { name, width, float }) => {
                    while consumed < avail {
                        let offset = pos + consumed as u64 - start;
                        let len = (piece_len - offset % piece_len).min((avail - consumed) as u64);
                        if len < piece_len && !complete && consumed > 0 {
                            break;
                        }
                        let piece = TensorPiece {
                            name: name.clone(),
                            offset,
                            len: len as u32,
                            width: *width,
                            float: *float,
                        };
                        let bytes = &buf[consumed..consumed + len as usize];
                        if !emit(bytes, Some(piece))? {
                            return Ok(());
                        }
                        consumed += len as usize;
                    }
                }
                None => {
                    let mut cuts = self
                        .accelerator
                        .find_chunk_boundaries(&buf[..avail], &self.cdc)?;
                    // The last chunk of an unfinished window may continue past it.
                    if !complete && cuts.len() > 1 {
                        cuts.pop();
                    }
                    for cut in cuts {
                        if !emit(&buf[consumed..cut], None)? {
                            return Ok(());
                        }
                        consumed = cut;
                    }
                }
            }
            buf.drain(..consumed);
            pos += consumed as u64;
        }
    }

    /// The regions of a file with this layout (all content-defined without one).
    fn regions(&self, layout: Option<&Layout>) -> Vec<Region> {
        match layout {
            Some(layout) => self.tensor_regions(layout),
            None => vec![Region {
                start: 0,
                end: u64::MAX,
                tensor: None,
            }],
        }
    }

    /// Content-defined regions around the tensors, and one region per tensor, except
    /// that runs of tensors shorter than a piece share one region (a chunk per bias
    /// vector would cost more in index than it could save).
    fn tensor_regions(&self, layout: &Layout) -> Vec<Region> {
        let mut regions: Vec<Region> = Vec::new();
        let mut pos = 0;
        for tensor in &layout.tensors {
            let (start, end) = (tensor.range.start, tensor.range.end);
            if start == end {
                continue;
            }
            if start > pos {
                regions.push(Region {
                    start: pos,
                    end: start,
                    tensor: None,
                });
            }
            let small = end - start < self.piece_len();
            match regions.last_mut() {
                Some(last)
                    if small
                        && last.end == start
                        && last.tensor.is_some()
                        && end - last.start <= self.piece_len() =>
                {
                    last.end = end;
                }
                _ => regions.push(Region {
                    start,
                    end,
                    tensor: Some(RegionTensor {
                        name: tensor.name.clone(),
                        width: tensor
                            .dtype
                            .size_bytes()
                            .filter(|w| (1..=u64::from(MAX_DELTA_PLANES)).contains(w))
                            .map_or(1, |w| w as u8),
                        float: float_kind(&tensor.dtype),
                    }),
                }),
            }
            pos = end;
        }
        regions.push(Region {
            start: pos,
            end: u64::MAX,
            tensor: None,
        });
        regions
    }

    /// The tensor piece each chunk of a file holds, given the file's layout (as
    /// [`cut_layout`] finds it) and its chunk lengths (how a base archive's chunks are
    /// paired with a new fold's pieces).
    pub fn pieces_of(
        &self,
        layout: Option<&Layout>,
        chunk_lens: &[u32],
    ) -> Vec<Option<TensorPiece>> {
        if layout.is_none() {
            return vec![None; chunk_lens.len()];
        }
        let regions = self.regions(layout);
        let mut pos = 0u64;
        let mut region = 0;
        chunk_lens
            .iter()
            .map(|&len| {
                while regions[region].end <= pos {
                    region += 1;
                }
                let r = &regions[region];
                let piece = r.tensor.as_ref().map(|t| TensorPiece {
                    name: t.name.clone(),
                    offset: pos - r.start,
                    len,
                    width: t.width,
                    float: t.float,
                });
                pos += u64::from(len);
                piece
            })
            .collect()
    }
}

/// Grows a head to `n` bytes; true when the file ends first.
pub(crate) type More<'m> = dyn FnMut(&mut Vec<u8>, usize) -> Result<bool> + 'm;

/// The layout [`Chunker::cut`] cuts a file by, for a file whose bytes `source` reads and
/// whose first bytes are `head` (all of them, or at least 64 KiB): what a base archive's
/// files were cut by. `source` places the formats that need random access.
pub(crate) fn cut_layout(
    head: &mut Vec<u8>,
    more: &mut More<'_>,
    source: &dyn ModelSource,
) -> Result<Option<Layout>> {
    let mut eof = (head.len() as u64) >= source.size();
    match head_layout(head, &mut eof, more)? {
        Some(layout) => Ok(Some(layout)),
        None => random_access_layout(source),
    }
}

/// The layout that the head of a file gives, growing the head through `more` as its
/// header needs (up to [`MAX_HEAD`]). The stream's length is unknown here; the layout only
/// places cuts, so a claim that runs past the real end costs nothing but a shorter last
/// piece.
fn head_layout(head: &mut Vec<u8>, eof: &mut bool, more: &mut More<'_>) -> Result<Option<Layout>> {
    loop {
        match mmh_model::sniff(head, u64::MAX) {
            Ok(Sniff::Model(layout)) => return Ok(Some(layout)),
            Ok(Sniff::NeedHead(n)) if !*eof && n <= MAX_HEAD && n > head.len() as u64 => {
                *eof = more(head, n as usize)?;
            }
            _ => return Ok(None),
        }
    }
}

/// The layout of a format that only random access places (see the module docs): every
/// other format is left to [`head_layout`], so that a file is cut the same way whether it
/// is read from disk or from a pipe.
fn random_access_layout(source: &dyn ModelSource) -> Result<Option<Layout>> {
    match placed(mmh_model::layout(source))? {
        Some(layout) if layout.format.needs_random_access() => Ok(Some(layout)),
        _ => Ok(None),
    }
}

/// What a layout error means to a fold or a listing: a failed read is an error (an archive's
/// own error comes back as itself); any other error says that the file is not a model this
/// crate places, and it is plain bytes.
pub(crate) fn placed(found: mmh_model::Result<Option<Layout>>) -> Result<Option<Layout>> {
    match found {
        Ok(layout) => Ok(layout),
        Err(mmh_model::Error::Read { source, .. }) => Err(match source.downcast::<Error>() {
            Ok(ours) => ours,
            Err(source) => Error::io("cannot read the model file", None)(source),
        }),
        Err(_) => Ok(None),
    }
}

/// A file on disk whose first bytes are in memory: ranges inside them are served from
/// there, and the file is opened (a second handle, leaving the stream's cursor alone) only
/// for the ranges past them, which only a zip's central directory needs.
struct DiskSource<'h> {
    head: &'h [u8],
    path: &'h Path,
    size: u64,
    file: OnceCell<io::Result<File>>,
}

impl<'h> DiskSource<'h> {
    /// `None` when the file's size cannot be read (it is then cut as a stream).
    fn new(head: &'h [u8], path: &'h Path) -> Option<Self> {
        let size = std::fs::metadata(path).ok()?.len();
        Some(DiskSource {
            head,
            path,
            size,
            file: OnceCell::new(),
        })
    }
}

impl ModelSource for DiskSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
        let in_head = usize::try_from(range.end)
            .ok()
            .and_then(|end| self.head.get(range.start as usize..end));
        if let Some(bytes) = in_head {
            buf.extend_from_slice(bytes);
            return Ok(());
        }
        match self.file.get_or_init(|| File::open(self.path)) {
            Ok(file) => file.read_at(range, buf),
            Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
        }
    }
}

/// The tensor codec's kind for tensors of `dtype`, if it codes them.
pub fn float_kind(dtype: &DType) -> Option<FloatKind> {
    Some(match dtype {
        DType::BF16 => FloatKind::Bf16,
        DType::F16 => FloatKind::F16,
        DType::F32 => FloatKind::F32,
        DType::F64 => FloatKind::F64,
        DType::F8E4M3 => FloatKind::F8E4M3,
        DType::F8E5M2 => FloatKind::F8E5M2,
        _ => return None,
    })
}

/// Reads into `buf` until it holds `target` bytes or the input ends; true at the end.
fn fill(input: &mut dyn Read, buf: &mut Vec<u8>, target: usize) -> Result<bool> {
    if buf.len() >= target {
        return Ok(false);
    }
    let want = (target - buf.len()) as u64;
    let read = input
        .take(want)
        .read_to_end(buf)
        .map_err(Error::io("cannot read the input", None))?;
    Ok((read as u64) < want)
}

#[cfg(test)]
mod tests {
    use mmh_codecs::CpuAccelerator;

    use super::*;

    fn chunker() -> Chunker<'static> {
        Chunker {
            accelerator: &CpuAccelerator,
            cdc: CdcParams {
                min_size: 1024,
                avg_size: 4096,
                max_size: 16384,
            },
        }
    }

    fn cut_all(data: &[u8]) -> Vec<(usize, Option<TensorPiece>)> {
        let mut out = Vec::new();
        chunker()
            .cut(&mut &data[..], None, &mut |bytes, piece| {
                out.push((bytes.len(), piece));
                Ok(true)
            })
            .unwrap();
        out
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn plain_data_is_cut_exactly_as_one_whole_content_defined_pass() {
        let data = noise(3 << 20, 7);
        let whole = CpuAccelerator
            .find_chunk_boundaries(&data, &chunker().cdc)
            .unwrap();
        let mut end = 0;
        let streamed: Vec<usize> = cut_all(&data)
            .into_iter()
            .map(|(len, piece)| {
                assert!(piece.is_none());
                end += len;
                end
            })
            .collect();
        assert_eq!(streamed, whole);
    }

    #[test]
    fn safetensors_tensors_are_cut_on_their_boundaries_then_every_piece() {
        let header = br#"{"a":{"dtype":"F32","shape":[10000],"data_offsets":[0,40000]},"b":{"dtype":"F32","shape":[4],"data_offsets":[40000,40016]},"c":{"dtype":"F32","shape":[2],"data_offsets":[40016,40024]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        let data_start = file.len() as u64;
        file.extend(noise(40024, 3));
        file.extend(b"trailing");
        let cuts = cut_all(&file);
        let piece = |name: &str, offset, len| {
            Some(TensorPiece {
                name: name.into(),
                offset,
                len,
                width: 4,
                float: Some(FloatKind::F32),
            })
        };
        assert_eq!(
            cuts,
            vec![
                (data_start as usize, None),
                (16384, piece("a", 0, 16384)),
                (16384, piece("a", 16384, 16384)),
                (7232, piece("a", 32768, 7232)),
                (24, piece("b", 0, 24)),
                (8, None),
            ]
        );
        let lens: Vec<u32> = cuts.iter().map(|(l, _)| *l as u32).collect();
        let pieces: Vec<_> = cuts.into_iter().map(|(_, p)| p).collect();
        let layout = cut_layout(&mut file.clone(), &mut |_, _| Ok(true), &&file[..]).unwrap();
        assert_eq!(chunker().pieces_of(layout.as_ref(), &lens), pieces);
    }
}
