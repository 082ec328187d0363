//! Comparing two archives entry by entry and chunk by chunk.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use mmh_format::{Archive, Digest, Entry, EntryKind, Index};

use crate::{BaseMode, Error, FoldBase, FoldOptions, Quiet, Result, WalkOptions};

/// How a later archive differs from an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff<'a> {
    /// Entries only the later archive has, in its order.
    pub added: Vec<&'a Entry>,
    /// Entries only the earlier archive has, in its order.
    pub removed: Vec<&'a Entry>,
    /// Entries of the later archive whose kind, content, link target, mode or mtime
    /// changed.
    pub changed: Vec<&'a Entry>,
    /// Entries that are the same in both.
    pub unchanged: u64,
    /// Distinct chunks the later archive's files use that the earlier archive lacks.
    pub new_chunks: u64,
    /// Their bytes: what a fold of the later tree against the earlier archive must store.
    pub new_chunk_bytes: u64,
}

/// Compares the entries of `old` and `new` by name, and the chunks of `new`'s files
/// with every chunk `old` holds, by SHA-256.
pub fn diff<'a>(old: &'a Index, new: &'a Index) -> Diff<'a> {
    let old_entries: HashMap<&str, &Entry> =
        old.entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let new_names: HashSet<&str> = new.entries.iter().map(|e| e.name.as_str()).collect();
    let mut diff = Diff::default();
    for entry in &new.entries {
        match old_entries.get(entry.name.as_str()) {
            None => diff.added.push(entry),
            Some(before) if same(before, entry) => diff.unchanged += 1,
            Some(_) => diff.changed.push(entry),
        }
    }
    diff.removed = old
        .entries
        .iter()
        .filter(|e| !new_names.contains(e.name.as_str()))
        .collect();
    let old_chunks: HashSet<&Digest> = old.chunks.iter().map(|c| &c.digest).collect();
    let mut counted: HashSet<&Digest> = HashSet::new();
    for entry in &new.entries {
        if let EntryKind::File { chunks, .. } = &entry.kind {
            for chunk in chunks.iter().filter_map(|&c| new.chunks.get(c as usize)) {
                if !old_chunks.contains(&chunk.digest) && counted.insert(&chunk.digest) {
                    diff.new_chunks += 1;
                    diff.new_chunk_bytes += u64::from(chunk.raw_len);
                }
            }
        }
    }
    diff
}

/// Same kind, content (by SHA-256, not by chunking), target, mode and mtime.
fn same(a: &Entry, b: &Entry) -> bool {
    let content = match (&a.kind, &b.kind) {
        (
            EntryKind::File {
                size: sa,
                digest: da,
                ..
            },
            EntryKind::File {
                size: sb,
                digest: db,
                ..
            },
        ) => sa == sb && da == db,
        (ka, kb) => ka == kb,
    };
    content && a.mode == b.mode && a.mtime == b.mtime
}

/// The index that folding `source` (a file or a directory) against the archive at `old`
/// records, so that [`diff`] can compare what is on disk with an archive. The fold goes
/// to an anonymous temporary file and stores only what `old` lacks; `options` should
/// chunk as `old` was chunked, or every chunk counts as new.
pub fn index_against(
    source: &Path,
    old: &Path,
    walk: &WalkOptions,
    options: &FoldOptions,
) -> Result<Index> {
    let options = FoldOptions {
        base: Some(FoldBase::open(old, BaseMode::Reference, &[])?),
        ..options.clone()
    };
    let mut temp =
        tempfile::tempfile().map_err(Error::io("cannot create a temporary file", None))?;
    crate::fold_path(
        source,
        walk,
        std::io::BufWriter::new(&mut temp),
        &options,
        &Quiet,
    )?;
    Ok(Archive::open(temp)?.index().clone())
}
