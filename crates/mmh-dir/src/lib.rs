//! The MMH-RS fold/unfold pipeline: the library that every front end (the `mmh` CLI,
//! the Python module, `cargo xtask`) calls.
//!
//! Folding reads the input in batches of chunks, hashes them through an
//! [`mmh_codecs::Accelerator`], codes them in parallel (rayon) and writes them in order
//! with [`mmh_format::ArchiveWriter`]; memory holds two batches whatever the input size.
//! Unfolding decodes chunks in parallel through [`mmh_verify::decode_run`], so no byte
//! is written that has not matched its SHA-256, and outputs reach their final name only
//! once complete and verified ([`PendingFile`]).
//!
//! A directory folds into one archive ([`fold_tree`]): entries in a deterministic
//! order, content-defined chunks (model files cut on tensor boundaries first) stored once;
//! [`unfold_tree`] recreates it without ever writing outside the target. A fold against
//! an earlier archive ([`FoldBase`]) stores only the chunks it lacks, and codes changed
//! tensors as deltas against it; reads resolve such archives through a [`Chain`].
//!
//! The tensors of archived model files can be listed with the archive bytes each takes
//! ([`list_tensors`]) and read one by one ([`find_tensor`], [`read_range`]); a model's
//! weights, whether in a file, a directory of shards or an archive, are identified by
//! [`model_fingerprint`] (docs/FINGERPRINT.md).
//!
//! ```
//! use mmh_dir::{Chain, EntryMeta, FoldOptions, Quiet, fold_stream, unfold_entry, single_file};
//! use mmh_format::Archive;
//!
//! let data = b"weights ".repeat(10_000);
//! let mut archive = Vec::new();
//! let meta = EntryMeta { name: "w.bin".into(), mode: 0o644, mtime: Default::default() };
//! let summary = fold_stream(&data[..], meta, &mut archive, &FoldOptions::default(), &Quiet)?;
//! assert!(summary.archive_bytes < 1_000);
//!
//! // An archive folded without a base is a chain of one.
//! let archive = Chain::standalone(Archive::open(archive)?)?;
//! let mut out = Vec::new();
//! unfold_entry(&archive, single_file(archive.index())?, &mut out, &Quiet)?;
//! assert_eq!(out, data);
//! # Ok::<(), mmh_dir::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backend;
mod base;
mod chunking;
mod diff;
mod error;
mod fingerprint;
mod fold;
mod list;
mod output;
mod pipeline;
mod safe_path;
mod tensor_listing;
mod tensors;
mod tree;
mod unfold;
mod walk;

pub use backend::{AccelChoice, Backend, describe_backends};
pub use base::{BaseMode, FoldBase, open_chain};
pub use chunking::float_kind;
pub use diff::{Diff, diff, index_against};
pub use error::{Error, Result};
pub use fingerprint::{ModelFingerprint, model_fingerprint};
pub use fold::{DEFAULT_FRAME_SIZE, EntryMeta, FoldOptions, fold_path, fold_stream};
pub use list::{EntryListing, list_entries};
pub use mmh_codecs::CdcParams;
pub use mmh_verify::Chain;
pub use output::{Overwrite, PendingFile};
pub use pipeline::FoldSummary;
pub use tensor_listing::{TensorListing, find_tensor, list_tensors};
pub use tensors::{file_tensor_layout, tensor_layout};
pub use tree::{TreeSummary, fold_tree, unfold_path, unfold_tree};
pub use unfold::{
    StreamSummary, find_entry, open_archive, open_file, read_range, single_file, spool_archive,
    unfold_entry, unfold_stream, unfold_stream_to_path, unfold_to_path,
};
pub use walk::WalkOptions;

/// Watches a long operation: receives progress and may ask it to stop.
pub trait Observer: Sync {
    /// `bytes` more bytes of content were processed.
    fn progress(&self, bytes: u64) {
        let _ = bytes;
    }
    /// Polled between batches; returning true stops the operation with
    /// [`Error::Cancelled`] and leaves no output under its final name.
    fn cancelled(&self) -> bool {
        false
    }
}

/// An observer that ignores progress and never cancels.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {}
