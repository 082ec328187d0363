//! The crate's one error type.

use std::ops::Range;

use crate::{DType, ModelFormat};

/// Why a file that claims to be a model cannot be read as one.
///
/// Offsets called `data_offsets` are relative to the start of the tensor data, as the
/// safetensors header writes them; "byte" offsets are absolute in the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed more leading bytes than the file holds.
    #[error("the head holds {head_len} bytes but the file is only {file_len} bytes long")]
    HeadPastEnd {
        /// Bytes passed as the head.
        head_len: u64,
        /// The file size passed with it.
        file_len: u64,
    },
    /// The header length at byte 0 exceeds [`MAX_HEADER_LEN`](crate::MAX_HEADER_LEN).
    #[error("safetensors header length at byte 0 is {claimed} bytes; the limit is {max}")]
    HeaderTooLarge {
        /// The length the file claims.
        claimed: u64,
        /// The limit.
        max: u64,
    },
    /// The header would end past the end of the file.
    #[error(
        "safetensors header would end at byte {header_end}, \
         past the end of the {file_len}-byte file (truncated?)"
    )]
    HeaderPastEnd {
        /// 8 + the header length the file claims.
        header_end: u64,
        /// The file's size.
        file_len: u64,
    },
    /// The header is not a JSON object (or not UTF-8).
    #[error("safetensors header (bytes 8..{header_end}) is not a valid JSON object: {source}")]
    Json {
        /// Where the header ends.
        header_end: u64,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// A tensor's entry lacks a field or has one of the wrong type.
    #[error("safetensors tensor {name:?}: malformed entry: {source}")]
    Entry {
        /// The tensor's name.
        name: String,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// A tensor's `data_offsets` end before they begin.
    #[error("safetensors tensor {name:?}: data_offsets [{begin}, {end}] end before they begin")]
    OffsetsReversed {
        /// The tensor's name.
        name: String,
        /// Its first data offset.
        begin: u64,
        /// Its end data offset.
        end: u64,
    },
    /// A tensor's data would end past the end of the file.
    #[error(
        "safetensors tensor {name:?}: data_offsets end at {end}, \
         but the data section holds only {data_len} bytes"
    )]
    TensorPastEnd {
        /// The tensor's name.
        name: String,
        /// Its end data offset.
        end: u64,
        /// Bytes from the end of the header to the end of the file.
        data_len: u64,
    },
    /// The shape's element count times the element size does not fit in 64 bits.
    #[error("{format} tensor {name:?}: shape {shape:?} of {dtype} overflows 64 bits of bytes")]
    ShapeOverflow {
        /// The file's format.
        format: ModelFormat,
        /// The tensor's name.
        name: String,
        /// Its element type.
        dtype: DType,
        /// Its shape.
        shape: Vec<u64>,
    },
    /// The data's byte length does not match the shape and element type.
    #[error(
        "safetensors tensor {name:?}: {dtype} {shape:?} needs {expected} bytes, \
         its data_offsets give {actual}"
    )]
    LengthMismatch {
        /// The tensor's name.
        name: String,
        /// Its element type.
        dtype: DType,
        /// Its shape.
        shape: Vec<u64>,
        /// Bytes the shape and type need.
        expected: u64,
        /// Bytes the offsets give.
        actual: u64,
    },
    /// Two tensors share bytes.
    #[error(
        "{format} tensors {first:?} (ending at byte {first_end}) and \
         {second:?} (starting at byte {second_start}) overlap"
    )]
    Overlap {
        /// The file's format.
        format: ModelFormat,
        /// The tensor that starts first.
        first: String,
        /// Its absolute end.
        first_end: u64,
        /// The tensor that starts inside it.
        second: String,
        /// Its absolute start.
        second_start: u64,
    },
    /// A structure the file describes would end past the end of the file.
    #[error(
        "{format}: {what} would end at byte {end}, \
         past the end of the {file_len}-byte file (truncated?)"
    )]
    Truncated {
        /// The file's format.
        format: ModelFormat,
        /// What was being read.
        what: &'static str,
        /// Where it would end.
        end: u64,
        /// The file's size.
        file_len: u64,
    },
    /// A length or count the file claims exceeds this crate's limit.
    #[error("{format}: {what} claims {claimed}; the limit is {max}")]
    TooLarge {
        /// The file's format.
        format: ModelFormat,
        /// What claims it.
        what: &'static str,
        /// The claim.
        claimed: u64,
        /// The limit.
        max: u64,
    },
    /// The file breaks a rule of its format (a bad value, an unknown code, …).
    #[error("{format}: at byte {offset}: {reason}")]
    Malformed {
        /// The file's format.
        format: ModelFormat,
        /// Absolute offset in the file of the offending bytes.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Reading the file through a [`ModelSource`](crate::ModelSource) failed.
    #[error("cannot read bytes {}..{} of the model file: {source}", range.start, range.end)]
    Read {
        /// The bytes asked for.
        range: Range<u64>,
        /// What the source answered.
        #[source]
        source: std::io::Error,
    },
    /// Placing the tensors would read more of the file than [`layout`](crate::layout)
    /// allows.
    #[error("placing the tensors would read more than {limit} bytes of the model file")]
    ReadLimit {
        /// The most bytes [`layout`](crate::layout) reads.
        limit: u64,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
