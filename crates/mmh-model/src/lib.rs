//! Where each tensor lies in a model file.
//!
//! The folding pipeline cuts model files on tensor boundaries and pairs the tensors of two
//! versions of a model by name. [`sniff`] gives it, from the first bytes of a file, the byte
//! range, name, [`DType`] and shape of every tensor. It parses and never executes, and it
//! treats every input as hostile: every length and offset is checked against the file size
//! and [`MAX_HEADER_LEN`] before it is used, with checked arithmetic, and nothing is
//! allocated from a claimed size.
//!
//! Recognised formats ([`ModelFormat`]): safetensors. More formats slot in as more variants,
//! each with its own parser module that [`sniff`] tries in turn.
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
//! # Ok::<(), mmh_model::Error>(())
//! ```
//!
//! The crate has no Cargo features.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod safetensors;

use std::fmt;
use std::ops::Range;

pub use error::{Error, Result};

/// The largest model header [`sniff`] accepts (100 MiB). A larger claim is an error, never
/// an allocation.
pub const MAX_HEADER_LEN: u64 = 100 << 20;

/// A model file format that [`sniff`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelFormat {
    /// Hugging Face safetensors: an 8-byte little-endian header length, a JSON header, then
    /// the tensor data.
    Safetensors,
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
/// another tensor). Gaps between tensors and bytes after the last one are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The file's format.
    pub format: ModelFormat,
    /// Bytes before the first tensor's data: `8 + n` for safetensors with an `n`-byte header.
    pub header_len: u64,
    /// The tensors, sorted by `range.start` (then `range.end`, then name).
    pub tensors: Vec<Tensor>,
}

/// What [`sniff`] found at the start of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// The bytes are not a model file this crate recognises.
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
/// decide, [`Sniff::NotAModel`] when the bytes do not look like any known format, and an
/// error when they clearly claim a format but break its rules (a truncated file, offsets
/// past the end, overlapping tensors, …); callers treat such a file as plain bytes.
///
/// # Errors
/// [`Error::HeadPastEnd`] when `head` is longer than `file_len`; otherwise an error naming
/// the broken rule, the tensor and the numbers involved.
pub fn sniff(head: &[u8], file_len: u64) -> Result<Sniff> {
    let head_len = head.len() as u64;
    if head_len > file_len {
        return Err(Error::HeadPastEnd { head_len, file_len });
    }
    // Each format in turn; the first that does not answer NotAModel decides.
    const PARSERS: [Parser; 1] = [safetensors::sniff];
    for parse in PARSERS {
        match parse(head, file_len)? {
            Sniff::NotAModel => {}
            found => return Ok(found),
        }
    }
    Ok(Sniff::NotAModel)
}
