//! Where each tensor lies in a model file.
//!
//! The folding pipeline cuts model files on tensor boundaries and pairs the tensors of two
//! versions of a model by name. [`sniff`] gives it, from the first bytes of a file, the byte
//! range, name, [`DType`] and shape of every tensor; [`layout`] does the same for a file it
//! can read anywhere ([`ModelSource`]), which also places formats whose index is at the end.
//! It parses and never executes (a pickle is replayed on plain values, never run), and it
//! treats every input as hostile: every length and offset is checked against the file size
//! and [`MAX_HEADER_LEN`] before it is used, with checked arithmetic, nothing is allocated
//! from a claimed size, and [`layout`] reads at most [`MAX_LAYOUT_READ`] bytes.
//!
//! Recognised formats ([`ModelFormat`]): safetensors, GGUF and npy from a head (so through a
//! stream too); PyTorch zip checkpoints, npz files and ONNX models (the `raw_data` of their
//! graph's initializers) through [`layout`] only. Each format has its own parser module.
//!
//! ```
//! use mmh_model::{DType, Sniff, sniff};
//!
//! let json = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
//! let mut file = (json.len() as u64).to_le_bytes().to_vec();
//! file.extend_from_slice(json);
//! file.extend_from_slice(&[0; 8]);
//! let file_len = file.len() as u64;
//!
//! // Too short a head: the answer says how many leading bytes to read.
//! assert_eq!(sniff(&file[..4], file_len)?, Sniff::NeedHead(8));
//! let Sniff::Model(layout) = sniff(&file, file_len)? else { panic!("not a model") };
//! assert_eq!(layout.header_len, 8 + json.len() as u64);
//! assert_eq!(layout.tensors[0].dtype, DType::F32);
//! assert_eq!(layout.tensors[0].range, layout.header_len..file_len);
//!
//! assert_eq!(sniff(b"plain text, not a model", 23)?, Sniff::NotAModel);
//!
//! // A seekable source: the same answer, read by `layout`.
//! assert_eq!(mmh_model::layout(&file)?, Some(layout));
//! # Ok::<(), mmh_model::Error>(())
//! ```
//!
//! The crate has no Cargo features.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod gguf;
mod npy;
mod onnx;
mod pickle;
mod pytorch;
mod safetensors;
mod source;
mod zip;

use std::fmt;
use std::ops::Range;

pub use error::{Error, Result};
pub use source::{MAX_LAYOUT_READ, ModelSource, layout};

/// The largest model header [`sniff`] accepts (100 MiB), and the largest zip central
/// directory or pickle [`layout`] reads. A larger claim is an error, never an allocation.
pub const MAX_HEADER_LEN: u64 = 100 << 20;

/// A model file format that [`sniff`] or [`layout`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelFormat {
    /// Hugging Face safetensors: an 8-byte little-endian header length, a JSON header, then
    /// the tensor data.
    Safetensors,
    /// llama.cpp GGUF (versions 2 and 3): a binary header of metadata and tensor infos,
    /// then the aligned tensor data.
    Gguf,
    /// A PyTorch zip checkpoint (`torch.save`): a pickle naming the tensors and one stored
    /// zip record per storage. Placed by [`layout`] only: the records' offsets are in the
    /// zip's central directory, at the end of the file.
    PyTorch,
    /// One NumPy array (`.npy`): a Python-literal header, then the array's bytes.
    Npy,
    /// A zip of `.npy` members (`numpy.savez`). Placed by [`layout`] only, as
    /// [`ModelFormat::PyTorch`]; only stored (uncompressed) members are placed.
    Npz,
    /// An ONNX model: one protobuf `ModelProto`, whose graph's initializers hold the
    /// weights in their `raw_data`. Placed by [`layout`] only: it has no magic number and
    /// its initializers lie anywhere in the file, found by walking the protobuf fields.
    Onnx,
}

impl ModelFormat {
    /// Whether only [`layout`] (which reads anywhere in the file) places this format's
    /// tensors; [`sniff`] (which sees the head) answers [`Sniff::NotAModel`] for it.
    pub fn needs_random_access(self) -> bool {
        matches!(
            self,
            ModelFormat::PyTorch | ModelFormat::Npz | ModelFormat::Onnx
        )
    }
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Gguf => "GGUF",
            ModelFormat::PyTorch => "PyTorch zip",
            ModelFormat::Npy => "npy",
            ModelFormat::Npz => "npz",
            ModelFormat::Onnx => "ONNX",
        })
    }
}

/// The element type of a tensor.
///
/// [`Display`](fmt::Display) writes the safetensors name (`"BF16"`, `"F8_E4M3"`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// Boolean, one byte per element.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16: the upper half of an IEEE 754 single.
    BF16,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// 8-bit float, 4 exponent and 3 mantissa bits (OCP FP8 E4M3).
    F8E4M3,
    /// 8-bit float, 5 exponent and 2 mantissa bits (OCP FP8 E5M2).
    F8E5M2,
    /// A type this crate does not know, by the name the file gives it. Its size is unknown,
    /// so the byte length of such tensors is not checked against their shape.
    Other(String),
}

impl DType {
    /// Bytes per element, or `None` for [`DType::Other`].
    pub fn size_bytes(&self) -> Option<u64> {
        Some(match self {
            DType::Bool | DType::U8 | DType::I8 | DType::F8E4M3 | DType::F8E5M2 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
            DType::Other(_) => return None,
        })
    }

    /// Whether the type is a floating-point type this crate knows; `false` for
    /// [`DType::Other`], whatever its name.
    pub fn is_float(&self) -> bool {
        matches!(
            self,
            DType::F16 | DType::BF16 | DType::F32 | DType::F64 | DType::F8E4M3 | DType::F8E5M2
        )
    }

    /// The known types with their safetensors names, the one table both directions use.
    const NAMES: [(DType, &'static str); 15] = [
        (DType::Bool, "BOOL"),
        (DType::U8, "U8"),
        (DType::I8, "I8"),
        (DType::I16, "I16"),
        (DType::U16, "U16"),
        (DType::I32, "I32"),
        (DType::U32, "U32"),
        (DType::I64, "I64"),
        (DType::U64, "U64"),
        (DType::F16, "F16"),
        (DType::BF16, "BF16"),
        (DType::F32, "F32"),
        (DType::F64, "F64"),
        (DType::F8E4M3, "F8_E4M3"),
        (DType::F8E5M2, "F8_E5M2"),
    ];

    /// Parses a safetensors dtype name; names this crate does not know become `Other`.
    fn from_safetensors_name(name: &str) -> DType {
        DType::NAMES
            .into_iter()
            .find(|(_, known)| *known == name)
            .map_or_else(|| DType::Other(name.to_owned()), |(dtype, _)| dtype)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DType::Other(name) => name.as_str(),
            known => DType::NAMES
                .iter()
                .find(|(dtype, _)| dtype == known)
                .map_or("?", |(_, name)| name),
        };
        f.write_str(name)
    }
}

/// One tensor of a model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// The tensor's name, as the file gives it.
    pub name: String,
    /// Its element type.
    pub dtype: DType,
    /// Its dimensions, outermost first; empty for a scalar.
    pub shape: Vec<u64>,
    /// Absolute byte offsets of its data in the file; empty for a tensor without elements.
    pub range: Range<u64>,
}

/// Where every tensor of a model file lies.
///
/// **Invariant:** `header_len <= tensors[0].range.start`, every `range.start <= range.end
/// <= file_len`, and `tensors[i].range.end <= tensors[i + 1].range.start`: the ranges are
/// sorted and disjoint (an empty range may touch its neighbours but never lies inside
/// another tensor). Gaps between tensors and bytes after the last one are allowed. Every
/// tensor in `shared` has its range inside (or equal to) the range of one tensor in
/// `tensors`, so cutting a file on the boundaries of `tensors` never cuts a tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The file's format.
    pub format: ModelFormat,
    /// Bytes before the first tensor's data: `8 + n` for safetensors with an `n`-byte
    /// header, the end of the tensor infos and their alignment padding for GGUF, the end
    /// of the pickle (or the first tensor, if earlier) for a PyTorch zip, the end of the
    /// header for npy, the end of the first placed member's header for npz, the start of
    /// the first placed tensor (the file's length when none is placed) for ONNX.
    pub header_len: u64,
    /// The tensors, sorted by `range.start` (then `range.end`, then name).
    pub tensors: Vec<Tensor>,
    /// Tensors whose bytes are bytes of a tensor in `tensors` (tied weights, views of one
    /// storage in a PyTorch checkpoint), sorted as `tensors` are. Empty for every format
    /// but PyTorch zip, whose tensors may share storage; formats that give each tensor
    /// its own bytes reject overlaps instead.
    pub shared: Vec<Tensor>,
}

impl Layout {
    /// Every tensor of the file: [`tensors`](Layout::tensors), then
    /// [`shared`](Layout::shared). What a listing, a lookup by name or a fingerprint
    /// covers.
    pub fn all_tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.tensors.iter().chain(&self.shared)
    }
}

/// What [`sniff`] found at the start of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// The bytes are not a model file that this crate can place from a head (a PyTorch zip,
    /// an npz or an ONNX model is `NotAModel` here: see [`layout`]).
    NotAModel,
    /// Parse again with at least this many leading bytes of the file (never more than the
    /// file's length, and at most `8 + MAX_HEADER_LEN`).
    NeedHead(u64),
    /// A model file and where its tensors lie.
    Model(Layout),
}

/// One format's recogniser: the contract of [`sniff`], for that format alone.
type Parser = fn(&[u8], u64) -> Result<Sniff>;

/// Finds out whether a file is a model file and, if so, where its tensors lie.
///
/// `head` is the first bytes of the file (any length, possibly the whole file) and
/// `file_len` the file's total size. Returns [`Sniff::NeedHead`] when `head` is too short to
/// decide, [`Sniff::NotAModel`] when the bytes do not look like any format placeable from
/// a head (safetensors, GGUF, npy), and an error when they clearly claim a format but
/// break its rules (a truncated file, offsets past the end, overlapping tensors, …);
/// callers treat such a file as plain bytes. A caller that can read anywhere in the file
/// calls [`layout`] instead, which also places PyTorch zips, npz files and ONNX models.
///
/// # Errors
/// [`Error::HeadPastEnd`] when `head` is longer than `file_len`; otherwise an error naming
/// the broken rule, the tensor and the numbers involved.
pub fn sniff(head: &[u8], file_len: u64) -> Result<Sniff> {
    let head_len = head.len() as u64;
    if head_len > file_len {
        return Err(Error::HeadPastEnd { head_len, file_len });
    }
    // Each format in turn; the first that does not answer NotAModel decides. The magic
    // numbers of GGUF and npy cannot open a plausible safetensors header (see
    // `safetensors::opens_header`), so the order does not change any answer.
    const PARSERS: [Parser; 3] = [safetensors::sniff, gguf::sniff, npy::sniff];
    for parse in PARSERS {
        match parse(head, file_len)? {
            Sniff::NotAModel => {}
            found => return Ok(found),
        }
    }
    Ok(Sniff::NotAModel)
}

/// Bytes a tensor of `dtype` and `shape` holds (any zero dimension: no elements, whatever
/// the others claim); `None` for [`DType::Other`].
fn byte_len(format: ModelFormat, name: &str, dtype: &DType, shape: &[u64]) -> Result<Option<u64>> {
    let Some(size) = dtype.size_bytes() else {
        return Ok(None);
    };
    elements_times(format, name, dtype, shape, size).map(Some)
}

/// The element count of `shape` times `size`, or [`Error::ShapeOverflow`].
fn elements_times(
    format: ModelFormat,
    name: &str,
    dtype: &DType,
    shape: &[u64],
    size: u64,
) -> Result<u64> {
    if shape.contains(&0) {
        return Ok(0);
    }
    shape
        .iter()
        .try_fold(size, |bytes, &dim| bytes.checked_mul(dim))
        .ok_or_else(|| Error::ShapeOverflow {
            format,
            name: name.to_owned(),
            dtype: dtype.clone(),
            shape: shape.to_vec(),
        })
}

/// Sorts tensors as [`Layout::tensors`] are sorted.
fn sort_tensors(tensors: &mut [Tensor]) {
    tensors.sort_unstable_by(|a, b| {
        (a.range.start, a.range.end, &a.name).cmp(&(b.range.start, b.range.end, &b.name))
    });
}

/// Sorts `tensors` and checks that no two share a byte ([`Error::Overlap`] otherwise).
fn sorted_disjoint(format: ModelFormat, mut tensors: Vec<Tensor>) -> Result<Vec<Tensor>> {
    sort_tensors(&mut tensors);
    if let Some(pair) = tensors
        .windows(2)
        .find(|pair| pair[0].range.end > pair[1].range.start)
    {
        let (first, second) = (&pair[0], &pair[1]);
        return Err(Error::Overlap {
            format,
            first: first.name.clone(),
            first_end: first.range.end,
            second: second.name.clone(),
            second_start: second.range.start,
        });
    }
    Ok(tensors)
}
