use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;

use mmh_format::{Archive, Digest, Entry, EntryKind, Index, ReadAt, StreamChunk, StreamReader};
use mmh_verify::{ChunkRun, Location, decode_chunk, decode_run};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::fold::system_time;
use crate::output::{Overwrite, PendingFile};
use crate::{Error, Observer, Result};

/// Opens an archive file for random access (header, trailer and index are checked).
pub fn open_archive(path: &Path) -> Result<Archive<File>> {
    let file = File::open(path).map_err(Error::io("cannot open archive", Some(path)))?;
    Ok(Archive::open(file)?)
}

/// A file entry's parts.
struct FileParts<'a> {
    name: &'a str,
    size: u64,
    digest: &'a Digest,
    chunks: &'a [u32],
}

fn file_parts(entry: &Entry) -> Result<FileParts<'_>> {
    match &entry.kind {
        EntryKind::File {
            size,
            digest,
            chunks,
        } => Ok(FileParts {
            name: &entry.name,
            size: *size,
            digest,
            chunks,
        }),
        _ => Err(Error::NotAFile {
            name: entry.name.clone(),
        }),
    }
}

/// The archive's only entry, which must be a file.
pub fn single_file(index: &Index) -> Result<&Entry> {
    match index.entries.as_slice() {
        [entry] => file_parts(entry).map(|_| entry),
        entries => Err(Error::NotSingleFile {
            entries: entries.len(),
        }),
    }
}

/// The entry called `name`.
pub fn find_entry<'a>(index: &'a Index, name: &str) -> Result<&'a Entry> {
    index
        .entries
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::NoSuchEntry { name: name.into() })
}

/// Writes bytes to `out`, feeds them to the entry digest and reports progress, failing
/// with `Interrupted` once the observer asks to stop.
fn sink<'a>(
    out: &'a mut (impl Write + Send),
    hasher: &'a mut Sha256,
    observer: &'a dyn Observer,
) -> impl FnMut(&[u8]) -> std::io::Result<()> + Send + 'a {
    move |bytes| {
        if observer.cancelled() {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        hasher.update(bytes);
        out.write_all(bytes)?;
        observer.progress(bytes.len() as u64);
        Ok(())
    }
}

fn check_entry_digest(parts: &FileParts<'_>, hasher: Sha256) -> Result<()> {
    if <Digest>::from(hasher.finalize()) != *parts.digest {
        return Err(mmh_verify::Error::EntryDigest {
            name: parts.name.into(),
            size: parts.size,
        }
        .into());
    }
    Ok(())
}

/// Writes a file entry's content to `out`: every chunk is checked against its SHA-256
/// before it is written, and the whole content against the entry's SHA-256 at the end
/// (so a caller writing to a temporary file learns of damage before committing it).
pub fn unfold_entry<R: ReadAt>(
    archive: &Archive<R>,
    entry: &Entry,
    mut out: impl Write + Send,
    observer: &dyn Observer,
) -> Result<u64> {
    let parts = file_parts(entry)?;
    let mut hasher = Sha256::new();
    let run = ChunkRun {
        entry: Some(parts.name),
        start: 0,
        chunks: parts.chunks,
    };
    decode_run(archive, run, sink(&mut out, &mut hasher, observer)).map_err(cancelled)?;
    check_entry_digest(&parts, hasher)?;
    out.flush()
        .map_err(Error::io("cannot flush the output", None))?;
    Ok(parts.size)
}

fn cancelled(e: mmh_verify::Error) -> Error {
    let e = Error::from(e);
    if e.is_cancelled() {
        Error::Cancelled
    } else {
        e
    }
}

/// Gives an unfolded file its recorded permissions and modification time.
fn apply_metadata(file: &File, entry: &Entry) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o7777))
            .map_err(Error::io("cannot set permissions of the output", None))?;
    }
    if let Some(time) = system_time(entry.mtime) {
        file.set_modified(time).map_err(Error::io(
            "cannot set the modification time of the output",
            None,
        ))?;
    }
    Ok(())
}

/// Unfolds `entry` to the file `dest`: written under a temporary name, verified, given
/// its permissions and mtime, then renamed into place.
pub fn unfold_to_path<R: ReadAt>(
    archive: &Archive<R>,
    entry: &Entry,
    dest: &Path,
    overwrite: Overwrite,
    observer: &dyn Observer,
) -> Result<u64> {
    let mut pending = PendingFile::create(dest, overwrite)?;
    let size = unfold_entry(archive, entry, pending.file(), observer)?;
    apply_metadata(pending.file(), entry)?;
    pending.commit()?;
    Ok(size)
}

/// Writes bytes `range` of the file entry `name` to `out`, decoding only the chunks
/// that overlap it (each checked against its SHA-256). The end is clamped to the size.
pub fn read_range<R: ReadAt>(
    archive: &Archive<R>,
    name: &str,
    range: Range<u64>,
    mut out: impl Write + Send,
) -> Result<u64> {
    let parts = file_parts(find_entry(archive.index(), name)?)?;
    if range.start > range.end || range.start > parts.size {
        return Err(Error::BadRange {
            name: name.into(),
            start: range.start,
            end: range.end,
            size: parts.size,
        });
    }
    let end = range.end.min(parts.size);
    let records = &archive.index().chunks;
    let mut chunk_start = 0u64;
    let mut first = None;
    let mut last = 0;
    for (i, &c) in parts.chunks.iter().enumerate() {
        let chunk_end = chunk_start + u64::from(records[c as usize].raw_len);
        if chunk_end > range.start && chunk_start < end {
            first.get_or_insert((i, chunk_start));
            last = i;
        }
        chunk_start = chunk_end;
    }
    let Some((first, first_start)) = first else {
        return Ok(0);
    };
    let mut at = first_start;
    let run = ChunkRun {
        entry: Some(name),
        start: first_start,
        chunks: &parts.chunks[first..=last],
    };
    decode_run(archive, run, |bytes| {
        let from = range.start.saturating_sub(at).min(bytes.len() as u64) as usize;
        let to = (end - at).min(bytes.len() as u64) as usize;
        at += bytes.len() as u64;
        out.write_all(&bytes[from..to])
    })?;
    Ok(end - range.start)
}

/// What [`unfold_stream`] found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The entry that was unfolded.
    pub entry: Entry,
    /// Bytes written.
    pub bytes: u64,
}

/// Unfolds an archive read front to back from a pipe: chunks are decoded in parallel
/// and written in order as they arrive. Chunk and content digests are in the index at
/// the end of the stream, so they are checked after the bytes are written: an error
/// then means the output is damaged, and a caller writing a file must not commit it.
/// Works for archives holding one file whose chunks are in archive order, which is what
/// folding a stream or a file produces.
pub fn unfold_stream(
    input: impl Read + Send,
    mut out: impl Write + Send,
    observer: &dyn Observer,
) -> Result<StreamSummary> {
    let mut reader = StreamReader::new(input)?;
    let mut hasher = Sha256::new();
    let mut digests: Vec<Digest> = Vec::new();
    let batch_len = rayon::current_num_threads() * 2;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut write = sink(&mut out, &mut hasher, observer);
    let mut frames = read_frames(&mut reader, batch_len)?;
    // Three stages overlap: reading the next batch from the pipe, decoding this one,
    // and writing the previous one.
    while !frames.is_empty() {
        let first_chunk = digests.len() + pending.len();
        let ((next, decoded), sunk) = rayon::join(
            || {
                rayon::join(
                    || read_frames(&mut reader, batch_len),
                    || decode_frames(first_chunk, frames),
                )
            },
            || write_batch(&mut write, &pending),
        );
        sunk?;
        pending.clear();
        for (bytes, digest) in decoded? {
            digests.push(digest);
            pending.push(bytes);
        }
        frames = next?;
    }
    write_batch(&mut write, &pending)?;
    drop(write);
    out.flush()
        .map_err(Error::io("cannot flush the output", None))?;
    let index = reader
        .into_index()
        .expect("the stream reader stops only after the index");
    let entry = single_file(&index)?;
    let parts = file_parts(entry)?;
    let in_order = parts.chunks.len() == index.chunks.len()
        && parts
            .chunks
            .iter()
            .enumerate()
            .all(|(i, &c)| c as usize == i);
    if !in_order {
        return Err(Error::NotStreamable);
    }
    let mut start = 0u64;
    for (number, (record, digest)) in index.chunks.iter().zip(&digests).enumerate() {
        let end = start + u64::from(record.raw_len);
        if record.digest != *digest {
            return Err(mmh_verify::Error::ChunkDigest {
                chunk: number as u32,
                location: Location {
                    entry: Some(parts.name.into()),
                    range: start..end,
                    archive_offset: record.offset,
                },
            }
            .into());
        }
        start = end;
    }
    if mmh_verify::merkle_root(&digests) != index.merkle_root {
        return Err(mmh_verify::Error::MerkleRoot.into());
    }
    check_entry_digest(&parts, hasher)?;
    Ok(StreamSummary {
        entry: entry.clone(),
        bytes: parts.size,
    })
}

/// Unfolds an archive read from a pipe into the file `dest`: written under a temporary
/// name, checked against every digest in the index, given its permissions and mtime,
/// then renamed into place.
pub fn unfold_stream_to_path(
    input: impl Read + Send,
    dest: &Path,
    overwrite: Overwrite,
    observer: &dyn Observer,
) -> Result<StreamSummary> {
    let mut pending = PendingFile::create(dest, overwrite)?;
    let summary = unfold_stream(input, pending.file(), observer)?;
    apply_metadata(pending.file(), &summary.entry)?;
    pending.commit()?;
    Ok(summary)
}

fn write_batch(
    write: &mut impl FnMut(&[u8]) -> std::io::Result<()>,
    batch: &[Vec<u8>],
) -> Result<()> {
    batch
        .iter()
        .try_for_each(|bytes| write(bytes))
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::Interrupted {
                Error::Cancelled
            } else {
                Error::io("cannot write the output", None)(e)
            }
        })
}

fn read_frames<R: Read>(
    reader: &mut StreamReader<R>,
    batch_len: usize,
) -> Result<Vec<(StreamChunk, Vec<u8>)>> {
    let mut frames = Vec::with_capacity(batch_len);
    while frames.len() < batch_len {
        let mut stored = Vec::new();
        match reader.next_chunk(&mut stored)? {
            Some(chunk) => frames.push((chunk, stored)),
            None => break,
        }
    }
    Ok(frames)
}

/// Decodes frames numbered from `first_chunk` on. The entry they belong to is named only
/// by the index at the end of the stream, so errors locate them by archive offset.
fn decode_frames(
    first_chunk: usize,
    frames: Vec<(StreamChunk, Vec<u8>)>,
) -> Result<Vec<(Vec<u8>, Digest)>> {
    let results: Vec<Result<(Vec<u8>, Digest)>> = frames
        .into_par_iter()
        .enumerate()
        .map(|(i, (chunk, stored))| {
            let mut out = Vec::new();
            let digest = decode_chunk(chunk.frame.codec, chunk.frame.raw_len, &stored, &mut out)
                .map_err(|source| mmh_verify::Error::Decode {
                    chunk: (first_chunk + i) as u32,
                    location: Location {
                        entry: None,
                        range: 0..u64::from(chunk.frame.raw_len),
                        archive_offset: chunk.offset,
                    },
                    source,
                })?;
            Ok((out, digest))
        })
        .collect();
    results.into_iter().collect()
}
