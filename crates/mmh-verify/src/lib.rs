//! Integrity for MMH-RS archives: SHA-256 of every chunk and every entry, a Merkle root
//! over the chunk digests, and verification that decodes and checks everything.
//!
//! Readers never hand out a decoded byte that has not matched its chunk's SHA-256:
//! [`Chain::decode_chunks`] (and [`decode_run`] over it) is the one path from stored
//! bytes to content, used by verification, unfolding and range reads alike. A [`Chain`]
//! is an archive with the base archives it references, each checked to be exactly the
//! one referenced. [`verify_archive`] re-reads a whole archive and
//! names the first bad chunk with its entry and byte range.
//!
//! ```
//! use mmh_verify::{leaf_hash, merkle_root, sha256};
//!
//! let digests = [sha256(b"first chunk"), sha256(b"second chunk")];
//! let root = merkle_root(&digests);
//! assert_ne!(root, leaf_hash(&digests[0]));
//! assert_eq!(merkle_root(&[]), [0; 32]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod merkle;
mod read;

pub use error::{Error, Location, Result};
pub use merkle::{leaf_hash, merkle_root, node_hash};
pub use read::{
    Chain, ChunkRun, FileRun, MAX_CHAIN_DEPTH, Report, checked_by_its_chunk, decode_files,
    decode_frame_bytes, decode_run, verify_archive,
};

use mmh_format::Digest;
use sha2::{Digest as _, Sha256};

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}
