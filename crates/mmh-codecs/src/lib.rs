//! Chunk codecs for MMH-RS, and the operations a GPU can take over.
//!
//! An MMH-RS archive is a sequence of chunks, each stored with one codec. This crate
//! turns a raw chunk into its stored bytes and back:
//!
//! - [`encode`] picks a codec per chunk ([`CodecChoice::Auto`]) or uses the one asked
//!   for, and never returns more bytes than it was given: a chunk that would grow is
//!   stored as it is.
//! - [`decode`] rebuilds exactly the recorded raw length, and treats `stored` as hostile:
//!   it returns [`Error::Corrupt`] rather than panicking, and allocates no more than the
//!   raw length.
//!
//! The codecs are [`CodecId::Store`], [`CodecId::Zstd`], [`CodecId::Lz4`] and
//! [`CodecId::Pattern`]. `mmh-format` stores a codec id as an opaque byte and knows
//! nothing about codecs, so new ones (tensor-aware transforms, for example) plug in here
//! as new [`CodecId`] variants without touching the container format code.
//!
//! The [`Accelerator`] trait covers the bulk work that a device backend (`mmh-gpu`, with
//! the `mmh-opencl` and `mmh-cuda` devices) may take over: SHA-256 of chunk batches,
//! content-defined chunk boundaries and the tensor codec, whose host half such a backend
//! shares with the CPU codec through [`gpu`]. [`CpuAccelerator`] is the reference every
//! backend must match byte for byte, and [`parity`] the checks that say so.
//!
//! On x86-64 CPUs with AVX2 the tensor codec runs its rANS lanes and, for 16-bit values,
//! its value splitting and assembly with SIMD (`simd.rs`, chosen at run time, the crate's
//! only unsafe code); the scalar code is the reference it is tested against.
//!
//! This crate has no Cargo features.
//!
//! # Example
//!
//! ```
//! use mmh_codecs::{CodecChoice, CodecId, CpuAccelerator, EncodeParams, decode, encode};
//!
//! let raw = b"weights weights weights and some more weights".repeat(100);
//! let params = EncodeParams {
//!     choice: CodecChoice::Auto,
//!     ..EncodeParams::default()
//! };
//!
//! let mut stored = Vec::new();
//! let codec = encode(&raw, &params, &mut stored)?;
//! assert!(stored.len() < raw.len());
//! assert_ne!(codec, CodecId::Store);
//!
//! // The container records the codec id and the raw length next to the stored bytes.
//! let mut back = Vec::new();
//! decode(codec, &stored, raw.len(), &CpuAccelerator, &mut back)?;
//! assert_eq!(back, raw);
//! # Ok::<(), mmh_codecs::Error>(())
//! ```
// Unsafe code only where SIMD intrinsics need it: the `simd` module, which allows it.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod accel;
mod blocks;
mod codec;
mod error;
pub mod parity;
mod pattern;
mod planes;
mod rans;
// x86-64 SIMD intrinsics read and write through pointers and run code compiled for CPU
// features that are detected at run time: unsafe, confined here (see its invariants).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd;
mod tensor;

pub use accel::{Accelerator, CdcParams, CpuAccelerator, Digest};
pub use codec::{CodecChoice, CodecId, EncodeParams, decode, encode, encode_tensor};
pub use error::Error;
pub use pattern::MAX_PATTERN_PERIOD;
pub use planes::{join_planes, split_planes};
pub use tensor::{BLOCK_VALUES, FloatKind};

/// The host half of the tensor codec, for GPU backends: a backend does the work that
/// grows with the values on its device (split values, count symbols, pack raw bits, run
/// the rANS lanes) and leaves to these functions, the CPU codec's own, what grows with
/// the alphabet or the block count (frequencies, encoder constants, tables, the payload's
/// layout and every check of a payload before decoding). FORMAT.md §7.1 and §7.2 give the
/// layout; the doc comments here say what each part holds.
pub mod gpu {
    pub use crate::rans::{
        EncSymbol, LANES, PROB_BITS, STATE_LOW, encoder_table, normalize, packable,
    };
    pub use crate::tensor::{
        BlockToDecode, EncodedBlock, Payload, read_payload, write_payload, zero_bits,
    };
}
