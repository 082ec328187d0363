//! The error type of this crate.

use crate::CodecId;

/// Everything that can go wrong in `mmh-codecs`.
///
/// Messages say what failed and where; they are meant to be wrapped by callers
/// that know the chunk and the archive (only the CLI formats errors for people).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A codec id byte that this version does not know (from a newer writer, or corruption).
    #[error(
        "unknown codec id {id} (this version knows 0 store, 1 zstd, 2 lz4, 3 pattern, 7 bf16, 8 f16, 9 f32, 10 f64, 11 f8-e4m3, 12 f8-e5m2, 13 rans)"
    )]
    UnknownCodec {
        /// The byte as read.
        id: u8,
    },

    /// A codec or codec-choice name that is not one of the known names.
    #[error("unknown codec name {name:?} (expected one of: {expected})")]
    UnknownCodecName {
        /// The name as given.
        name: String,
        /// The accepted names, comma separated.
        expected: &'static str,
    },

    /// A zstd level outside `1..=22`.
    #[error("invalid zstd level {level}: must be in 1..=22")]
    InvalidLevel {
        /// The level as given.
        level: i32,
    },

    /// Content-defined chunking parameters that fastcdc v2020 would reject or mishandle.
    #[error("invalid CDC parameters min={min} avg={avg} max={max}: {reason}")]
    InvalidCdcParams {
        /// Minimum chunk size in bytes.
        min: u32,
        /// Average (target) chunk size in bytes.
        avg: u32,
        /// Maximum chunk size in bytes.
        max: u32,
        /// Which rule they break.
        reason: &'static str,
    },

    /// An accelerator backend failed whatever the data: no device, a kernel that does not
    /// build, a device that runs out of memory or reports an error.
    #[error("{backend} backend: {reason}")]
    Backend {
        /// The backend's name, such as `"opencl"`.
        backend: &'static str,
        /// What failed, with the call or device involved.
        reason: String,
    },

    /// A stored chunk that does not decode to exactly its recorded raw length.
    #[error("corrupt {codec} chunk: {reason}")]
    Corrupt {
        /// The codec the chunk claims to use.
        codec: CodecId,
        /// What was wrong, with the numbers involved.
        reason: String,
    },

    /// The codec library itself failed, whatever the data: in practice, zstd could not
    /// allocate a context. (Data that does not shrink is not an error; it is stored.)
    #[error("the {codec} library failed: {reason}")]
    Library {
        /// The codec that failed.
        codec: CodecId,
        /// The library's own error text.
        reason: String,
    },
}
