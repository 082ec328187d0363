//! Folding against an earlier archive: its chunks are referenced (or copied) instead of
//! stored again, and changed tensors are coded as deltas against their old bytes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mmh_format::{BaseRef, ChunkSource, Digest, EntryKind};
use mmh_model::Layout;
use mmh_verify::{Chain, MAX_CHAIN_DEPTH};

use crate::chunking::{Chunker, TensorPiece, cut_layout};
use crate::tensors::EntrySource;
use crate::unfold::read_range;
use crate::{Error, Result};

/// How a fold uses its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BaseMode {
    /// Reference the base's chunks: the new archive is small but needs the base to
    /// unfold. Changed tensors may be coded as deltas against the base.
    #[default]
    Reference,
    /// Copy the frames holding the base's chunks as they are stored (nothing is coded
    /// again): the new archive stands alone.
    Copy,
}

/// An earlier archive (with its own bases) that a fold builds on.
#[derive(Debug, Clone)]
pub struct FoldBase {
    /// The base and what it references.
    pub chain: Arc<Chain<File>>,
    /// The base's file name, recorded so that a reader finds it next to the new archive.
    pub name: String,
    /// Reference or copy.
    pub mode: BaseMode,
}

impl FoldBase {
    /// Opens the archive at `path` as a base, resolving its own bases ([`open_chain`]).
    pub fn open(path: &Path, mode: BaseMode, bases: &[PathBuf]) -> Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::InvalidOption(format!("{} has no file name", path.display())))?;
        Ok(FoldBase {
            chain: Arc::new(open_chain(path, bases)?),
            name,
            mode,
        })
    }
}

/// Opens the archive at `path` with every base it references: each is looked for among
/// `bases` (matched by the SHA-256 of its index, whatever its name), then next to the
/// archive that references it under its recorded file name.
pub fn open_chain(path: &Path, bases: &[PathBuf]) -> Result<Chain<File>> {
    open_link(path, bases, 0)
}

fn open_link(path: &Path, bases: &[PathBuf], depth: usize) -> Result<Chain<File>> {
    let archive = crate::unfold::open_file(path)?;
    let mut resolved = Vec::new();
    for wanted in &archive.index().bases {
        if depth >= MAX_CHAIN_DEPTH {
            return Err(mmh_verify::Error::ChainTooDeep {
                limit: MAX_CHAIN_DEPTH,
            }
            .into());
        }
        // Only the last component of the recorded name: an archive must not send the
        // reader to arbitrary paths.
        let beside = Path::new(&wanted.name)
            .file_name()
            .map(|name| path.with_file_name(name));
        let found = bases
            .iter()
            .chain(beside.iter())
            .find(|candidate| {
                crate::unfold::open_file(candidate)
                    .is_ok_and(|a| a.index_digest() == wanted.index_digest)
            })
            .ok_or_else(|| Error::BaseNotFound {
                name: wanted.name.clone(),
                archive: path.to_path_buf(),
            })?;
        resolved.push(open_link(found, bases, depth + 1)?);
    }
    Ok(Chain::new(archive, resolved)?)
}

/// What a fold looks up in its base: chunks by digest, and tensor pieces by position.
pub(crate) struct BaseLookup<'a> {
    base: &'a FoldBase,
    by_digest: HashMap<Digest, u32>,
    by_piece: HashMap<TensorPiece, u32>,
}

impl<'a> BaseLookup<'a> {
    /// Indexes the base's chunks, and, when deltas are possible, the tensor piece each
    /// chunk of its model files holds (read from the files' headers, cut as `chunker`
    /// would cut them).
    pub fn new(base: &'a FoldBase, chunker: &Chunker<'_>) -> Result<Self> {
        let index = base.chain.index();
        let by_digest = index
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                base.mode == BaseMode::Reference || matches!(c.source, ChunkSource::Frame { .. })
            })
            .map(|(i, c)| (c.digest, i as u32))
            .collect();
        let mut by_piece = HashMap::new();
        if base.mode == BaseMode::Reference {
            for entry in &index.entries {
                let EntryKind::File { size, chunks, .. } = &entry.kind else {
                    continue;
                };
                if *size < u64::from(chunker.cdc.max_size) {
                    continue;
                }
                let layout = base_layout(&base.chain, &entry.name, *size)?;
                let lens: Vec<u32> = chunks
                    .iter()
                    .map(|&c| index.chunks[c as usize].raw_len)
                    .collect();
                let pieces = chunker.pieces_of(layout.as_ref(), &lens);
                for (piece, &chunk) in pieces.into_iter().zip(chunks) {
                    if let Some(piece) = piece {
                        by_piece.insert(piece, chunk);
                    }
                }
            }
        }
        Ok(BaseLookup {
            base,
            by_digest,
            by_piece,
        })
    }

    /// The base's chunk with this digest.
    pub fn chunk(&self, digest: &Digest) -> Option<u32> {
        self.by_digest.get(digest).copied()
    }

    /// The base's chunk holding the same piece of the same tensor.
    pub fn piece(&self, piece: &TensorPiece) -> Option<u32> {
        self.by_piece.get(piece).copied()
    }

    pub fn chain(&self) -> &Chain<File> {
        &self.base.chain
    }

    pub fn mode(&self) -> BaseMode {
        self.base.mode
    }

    /// The base frame holding `chunk`, and where in it, for a chunk stored in the base
    /// itself.
    pub fn frame_of(&self, chunk: u32) -> Result<(u32, u32)> {
        match self
            .base
            .chain
            .index()
            .chunks
            .get(chunk as usize)
            .map(|c| c.source)
        {
            Some(ChunkSource::Frame { frame, start }) => Ok((frame, start)),
            _ => Err(Error::InvalidOption(format!(
                "base chunk {chunk} is not stored in the base itself"
            ))),
        }
    }

    /// How the new archive names this base.
    pub fn reference(&self) -> BaseRef {
        BaseRef {
            index_digest: self.base.chain.archive().index_digest(),
            name: self.base.name.clone(),
        }
    }
}

/// The layout a fold cut the base file `name` (of `size` bytes) by, read from the base.
fn base_layout(chain: &Chain<File>, name: &str, size: u64) -> Result<Option<Layout>> {
    let mut head = Vec::new();
    read_range(chain, name, 0..64 << 10, &mut head)?;
    let mut more = |head: &mut Vec<u8>, n: usize| {
        let have = head.len() as u64;
        read_range(chain, name, have..n as u64, &mut *head)?;
        Ok((head.len() as u64) < n as u64)
    };
    cut_layout(&mut head, &mut more, &EntrySource::new(chain, name, size))
}
