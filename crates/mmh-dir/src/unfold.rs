use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;

use mmh_codecs::Accelerator;
use mmh_format::{
    Archive, ChunkSource, Digest, Entry, EntryKind, Index, ReadAt, StreamFrame, StreamReader,
};
use mmh_verify::{
    Chain, ChunkRun, FileRun, checked_by_its_chunk, decode_files, decode_frame_bytes, decode_run,
};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::fold::system_time;
use crate::output::{Overwrite, PendingFile};
use crate::{Error, Observer, Result};

/// Opens an archive file for random access (header, trailer and index are checked),
/// with the base archives it references found next to it ([`crate::open_chain`] takes
/// them from elsewhere too).
pub fn open_archive(path: &Path) -> Result<Chain<File>> {
    crate::open_chain(path, &[])
}

/// Opens one archive file without resolving its bases: enough to list it or compare
/// indexes, not to read content held by a base.
pub fn open_file(path: &Path) -> Result<Archive<File>> {
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
    archive: &Chain<R>,
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
    archive: &Chain<R>,
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

/// Unfolds consecutive file entries to their paths in one pass over their chunks
/// ([`decode_files`]), so that a frame shared by many small files is decoded once, not
/// once per file. Each file is written under a temporary name, checked against its
/// SHA-256, given its metadata and renamed into place before the next one starts.
/// Returns the bytes written.
pub(crate) fn unfold_files<R: ReadAt>(
    archive: &Chain<R>,
    files: &[(std::path::PathBuf, &Entry)],
    overwrite: Overwrite,
    observer: &dyn Observer,
) -> Result<u64> {
    let parts = files
        .iter()
        .map(|(_, entry)| file_parts(entry))
        .collect::<Result<Vec<_>>>()?;
    let runs: Vec<FileRun<'_>> = parts
        .iter()
        .map(|p| FileRun {
            name: p.name,
            chunks: p.chunks,
        })
        .collect();
    let mut writer = FileSequence {
        files,
        parts: &parts,
        next: 0,
        open: None,
        index: archive.index(),
        overwrite,
        failure: None,
    };
    let decoded = decode_files(archive, &runs, |file, bytes| {
        if observer.cancelled() {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        observer.progress(bytes.len() as u64);
        writer.write(file, bytes).map_err(|e| {
            writer.failure = Some(e);
            std::io::Error::other("stopped")
        })
    });
    if let Some(failure) = writer.failure.take() {
        return Err(failure);
    }
    decoded.map_err(cancelled)?;
    writer.open_until(files.len())?;
    Ok(parts.iter().map(|p| p.size).sum())
}

/// The files of [`unfold_files`], written one after the other as their bytes arrive.
struct FileSequence<'a, 'e> {
    files: &'a [(std::path::PathBuf, &'e Entry)],
    parts: &'a [FileParts<'e>],
    /// The next file to open.
    next: usize,
    /// The file being written and its digest so far (none when its one chunk's digest,
    /// already checked, is the file's).
    open: Option<(PendingFile, Option<Sha256>)>,
    index: &'a Index,
    overwrite: Overwrite,
    /// What stopped the writing, to report instead of the decoder's "stopped".
    failure: Option<Error>,
}

impl FileSequence<'_, '_> {
    /// Appends one chunk's bytes to file `file`, first completing the files before it.
    fn write(&mut self, file: usize, bytes: &[u8]) -> Result<()> {
        if self.next != file + 1 {
            self.open_until(file)?;
            self.open_next()?;
        }
        let (pending, hasher) = self.open.as_mut().expect("opened above");
        if let Some(hasher) = hasher {
            hasher.update(bytes);
        }
        pending
            .file()
            .write_all(bytes)
            .map_err(Error::io("cannot write", Some(&self.files[file].0)))
    }

    /// Seals the open file, and makes every file before `file` that has no bytes to come
    /// (empty files).
    fn open_until(&mut self, file: usize) -> Result<()> {
        self.seal()?;
        while self.next < file {
            self.open_next()?;
            self.seal()?;
        }
        Ok(())
    }

    fn open_next(&mut self) -> Result<()> {
        let pending = PendingFile::create(&self.files[self.next].0, self.overwrite)?;
        let parts = &self.parts[self.next];
        let checked = checked_by_its_chunk(self.index, parts.chunks, parts.digest);
        self.open = Some((pending, (!checked).then(Sha256::new)));
        self.next += 1;
        Ok(())
    }

    /// Checks the open file's digest, gives it its metadata and renames it into place.
    fn seal(&mut self) -> Result<()> {
        if let Some((mut pending, hasher)) = self.open.take() {
            let number = self.next - 1;
            if let Some(hasher) = hasher {
                check_entry_digest(&self.parts[number], hasher)?;
            }
            apply_metadata(pending.file(), self.files[number].1)?;
            pending.commit_without_sync()?;
        }
        Ok(())
    }
}

/// Writes bytes `range` of the file entry `name` to `out`, decoding only the chunks
/// that overlap it (each checked against its SHA-256). The end is clamped to the size.
pub fn read_range<R: ReadAt>(
    archive: &Chain<R>,
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

/// Unfolds an archive read front to back from a pipe: frames are decoded in parallel
/// and written in order as they arrive. Digests are in the index at the end of the
/// stream, so the content's SHA-256 is checked after the bytes are written: an error
/// then means the output is damaged, and a caller writing a file must not commit it.
/// Works for archives holding one file whose chunks fill the frames in order, which is
/// what folding a stream or a file without a base produces.
pub fn unfold_stream(
    input: impl Read + Send,
    mut out: impl Write + Send,
    accelerator: &dyn Accelerator,
    observer: &dyn Observer,
) -> Result<StreamSummary> {
    let mut reader = StreamReader::new(input)?;
    let mut hasher = Sha256::new();
    let batch_len = rayon::current_num_threads() * 2;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut write = sink(&mut out, &mut hasher, observer);
    let mut frames = read_frames(&mut reader, batch_len)?;
    let mut first_frame = 0;
    // Three stages overlap: reading the next batch from the pipe, decoding this one,
    // and writing the previous one.
    while !frames.is_empty() {
        let count = frames.len();
        let ((next, decoded), sunk) = rayon::join(
            || {
                rayon::join(
                    || read_frames(&mut reader, batch_len),
                    || decode_frames(first_frame, frames, accelerator),
                )
            },
            || write_batch(&mut write, &pending),
        );
        sunk?;
        pending = decoded?;
        first_frame += count;
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
    if !fills_frames_in_order(&index, parts.chunks) {
        return Err(Error::NotStreamable);
    }
    let digests: Vec<Digest> = index.chunks.iter().map(|c| c.digest).collect();
    if mmh_verify::merkle_root(&digests) != index.merkle_root {
        return Err(mmh_verify::Error::MerkleRoot.into());
    }
    check_entry_digest(&parts, hasher)?;
    Ok(StreamSummary {
        entry: entry.clone(),
        bytes: parts.size,
    })
}

/// True when `chunks` are all the index's chunks, in order, and lie back to back in
/// the frames from the first byte of the first frame to the last byte of the last: then
/// the decoded frames, in order, are the content.
fn fills_frames_in_order(index: &Index, chunks: &[u32]) -> bool {
    if chunks.len() != index.chunks.len() {
        return false;
    }
    let (mut frame, mut at) = (0u32, 0u32);
    for (i, &c) in chunks.iter().enumerate() {
        let record = &index.chunks[c as usize];
        if c as usize != i {
            return false;
        }
        if index
            .frames
            .get(frame as usize)
            .is_some_and(|f| at == f.raw_len)
        {
            frame += 1;
            at = 0;
        }
        if record.source != (ChunkSource::Frame { frame, start: at }) {
            return false;
        }
        at += record.raw_len;
    }
    let frames = index.frames.len() as u32;
    match frames {
        0 => chunks.is_empty(),
        _ => frame + 1 == frames && index.frames[frame as usize].raw_len == at,
    }
}

/// Copies an archive read from a pipe into a temporary file in `dir`, so that it can be
/// read by seeking like any archive file (a tree, subsets, an archive folded against a
/// base: none of these can be unfolded front to back, since the index comes last). The
/// file is removed when the returned handle is dropped.
pub fn spool_archive(mut input: impl Read, dir: &Path) -> Result<tempfile::NamedTempFile> {
    let mut spool = tempfile::Builder::new()
        .prefix(".mmh-spool.")
        .tempfile_in(dir)
        .map_err(Error::io("cannot create a temporary file in", Some(dir)))?;
    std::io::copy(&mut input, spool.as_file_mut()).map_err(Error::io(
        "cannot copy the archive from the pipe into",
        Some(spool.path()),
    ))?;
    Ok(spool)
}

/// Unfolds an archive read from a pipe into the file `dest`: written under a temporary
/// name, checked against the entry's SHA-256 and the index (chunk boundaries arrive after
/// the content, so chunks are not checked one by one), given its permissions and mtime,
/// then renamed into place.
pub fn unfold_stream_to_path(
    input: impl Read + Send,
    dest: &Path,
    overwrite: Overwrite,
    accelerator: &dyn Accelerator,
    observer: &dyn Observer,
) -> Result<StreamSummary> {
    let mut pending = PendingFile::create(dest, overwrite)?;
    let summary = unfold_stream(input, pending.file(), accelerator, observer)?;
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
) -> Result<Vec<(StreamFrame, Vec<u8>)>> {
    let mut frames = Vec::with_capacity(batch_len);
    while frames.len() < batch_len {
        let mut stored = Vec::new();
        match reader.next_frame(&mut stored)? {
            Some(chunk) => frames.push((chunk, stored)),
            None => break,
        }
    }
    Ok(frames)
}

/// Decodes frames numbered from `first_frame` on. The entry they belong to is named only
/// by the index at the end of the stream, so errors locate them by archive offset.
fn decode_frames(
    first_frame: usize,
    frames: Vec<(StreamFrame, Vec<u8>)>,
    accelerator: &dyn Accelerator,
) -> Result<Vec<Vec<u8>>> {
    let results: Vec<Result<Vec<u8>>> = frames
        .into_par_iter()
        .enumerate()
        .map(|(i, (frame, stored))| {
            let mut out = Vec::new();
            decode_frame_bytes(
                frame.frame.codec,
                frame.frame.raw_len,
                &stored,
                accelerator,
                &mut out,
            )
            .map_err(|source| mmh_verify::Error::Decode {
                frame: (first_frame + i) as u32,
                archive_offset: frame.offset,
                source,
            })?;
            Ok(out)
        })
        .collect();
    results.into_iter().collect()
}
