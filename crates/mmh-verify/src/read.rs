use std::collections::HashMap;
use std::io;

use std::sync::Arc;

use mmh_codecs::{Accelerator, CodecId, CpuAccelerator};
use mmh_format::{Archive, ChunkSource, Digest, EntryKind, Index, ReadAt};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::{Error, Location, Result, merkle_root, sha256};

/// Bases may themselves have bases; a chain deeper than this is refused rather than
/// followed (each link is a file the caller opened, so this only bounds mistakes).
pub const MAX_CHAIN_DEPTH: usize = 64;

/// An archive together with the base archives its chunks reference, each checked to be
/// exactly the archive that was referenced (by the SHA-256 of its index).
///
/// Every read goes through a chain, even of one archive: a chunk's bytes may sit in a
/// frame of this archive, in a base, or be a delta against a base.
#[derive(Debug)]
pub struct Chain<R> {
    archive: Archive<R>,
    bases: Vec<Chain<R>>,
    /// What decodes tensor frames: the CPU unless [`Chain::with_accelerator`] says.
    accelerator: Arc<dyn Accelerator>,
}

impl<R: ReadAt> Chain<R> {
    /// Joins `archive` with its bases, in the order of its index's
    /// [`bases`](mmh_format::Index::bases) list.
    pub fn new(archive: Archive<R>, bases: Vec<Chain<R>>) -> Result<Self> {
        let wanted = &archive.index().bases;
        if bases.len() != wanted.len() {
            return Err(Error::MissingBase {
                name: wanted
                    .get(bases.len())
                    .map_or_else(String::new, |b| b.name.clone()),
            });
        }
        for (base, wanted) in bases.iter().zip(wanted) {
            if base.archive.index_digest() != wanted.index_digest {
                return Err(Error::WrongBase {
                    name: wanted.name.clone(),
                });
            }
            if base.depth() + 1 > MAX_CHAIN_DEPTH {
                return Err(Error::ChainTooDeep {
                    limit: MAX_CHAIN_DEPTH,
                });
            }
        }
        Ok(Chain {
            archive,
            bases,
            accelerator: Arc::new(CpuAccelerator),
        })
    }

    /// Decodes this chain's frames, bases included, with `accelerator`.
    pub fn with_accelerator(mut self, accelerator: Arc<dyn Accelerator>) -> Self {
        self.bases = self
            .bases
            .into_iter()
            .map(|base| base.with_accelerator(accelerator.clone()))
            .collect();
        self.accelerator = accelerator;
        self
    }

    /// The backend that decodes this chain's tensor frames.
    pub fn accelerator(&self) -> &dyn Accelerator {
        self.accelerator.as_ref()
    }

    /// An archive that references no base.
    pub fn standalone(archive: Archive<R>) -> Result<Self> {
        Chain::new(archive, Vec::new())
    }

    /// The archive at the head of the chain.
    pub fn archive(&self) -> &Archive<R> {
        &self.archive
    }

    /// The head archive's index.
    pub fn index(&self) -> &Index {
        self.archive.index()
    }

    /// The resolved bases, in the index's order.
    pub fn bases(&self) -> &[Chain<R>] {
        &self.bases
    }

    fn depth(&self) -> usize {
        self.bases.iter().map(|b| b.depth() + 1).max().unwrap_or(0)
    }

    /// Decodes chunks `numbers` (a run of `entry`'s content starting at byte `start`,
    /// for error messages), each checked against its SHA-256, in the order given.
    ///
    /// Each frame is read and decoded once however many of the chunks it holds, frames
    /// in parallel; chunks from a base are fetched from it the same way, in one call per
    /// base.
    pub fn decode_chunks(
        &self,
        numbers: &[u32],
        entry: Option<&str>,
        start: u64,
    ) -> Result<Vec<Vec<u8>>> {
        let index = self.index();
        let records = numbers
            .iter()
            .map(|&n| {
                index.chunks.get(n as usize).ok_or_else(|| {
                    Error::from(mmh_format::Error::InvalidIndex {
                        reason: format!("no chunk {n}"),
                    })
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut frames: Vec<u32> = Vec::new();
        let mut from_bases: Vec<Vec<u32>> = vec![Vec::new(); self.bases.len()];
        for record in &records {
            match record.source {
                ChunkSource::Frame { frame, .. } => frames.push(frame),
                ChunkSource::Base { base, chunk } => from_bases[usize::from(base)].push(chunk),
                ChunkSource::Delta {
                    frame, base, chunk, ..
                } => {
                    frames.push(frame);
                    from_bases[usize::from(base)].push(chunk);
                }
            }
        }
        frames.sort_unstable();
        frames.dedup();
        let (decoded, based) = rayon::join(
            || -> Result<HashMap<u32, Vec<u8>>> {
                frames
                    .par_iter()
                    .map(|&f| Ok((f, self.decode_frame(f)?)))
                    .collect()
            },
            || -> Result<Vec<HashMap<u32, Vec<u8>>>> {
                self.bases
                    .par_iter()
                    .zip(&self.index().bases)
                    .zip(&mut from_bases)
                    .map(|((base, reference), chunks)| {
                        chunks.sort_unstable();
                        chunks.dedup();
                        let bytes = base.decode_chunks(chunks, None, 0).map_err(|source| {
                            Error::InBase {
                                name: reference.name.clone(),
                                source: Box::new(source),
                            }
                        })?;
                        Ok(chunks.iter().copied().zip(bytes).collect())
                    })
                    .collect()
            },
        );
        let (decoded, based) = (decoded?, based?);
        let mut starts = Vec::with_capacity(numbers.len());
        let mut at = start;
        for record in &records {
            starts.push(at);
            at += u64::from(record.raw_len);
        }
        numbers
            .par_iter()
            .zip(records)
            .zip(starts)
            .map(|((&number, record), start)| {
                let slice = |frame: u32, at: u32| {
                    let at = at as usize;
                    &decoded[&frame][at..at + record.raw_len as usize]
                };
                let bytes = match record.source {
                    ChunkSource::Frame { frame, start } => slice(frame, start).to_vec(),
                    ChunkSource::Base { base, chunk } => based[usize::from(base)][&chunk].clone(),
                    ChunkSource::Delta {
                        frame,
                        start,
                        base,
                        chunk,
                        planes,
                    } => {
                        let reference = &based[usize::from(base)][&chunk];
                        let mut delta = Vec::with_capacity(record.raw_len as usize);
                        mmh_codecs::join_planes(
                            slice(frame, start),
                            usize::from(planes),
                            &mut delta,
                        );
                        if reference.len() != delta.len() {
                            return Err(mmh_format::Error::InvalidIndex {
                                reason: format!(
                                    "delta chunk {number} has {} bytes, its base chunk {chunk} {}",
                                    delta.len(),
                                    reference.len()
                                ),
                            }
                            .into());
                        }
                        for (d, r) in delta.iter_mut().zip(reference) {
                            *d ^= r;
                        }
                        delta
                    }
                };
                if sha256(&bytes) != record.digest {
                    return Err(Error::ChunkDigest {
                        chunk: number,
                        location: Location {
                            entry: entry.map(str::to_owned),
                            range: start..start + u64::from(record.raw_len),
                            archive_offset: self.frame_offset(record.source),
                        },
                    });
                }
                Ok(bytes)
            })
            .collect()
    }

    /// Where the frame holding a chunk starts (0 for a chunk held by a base).
    fn frame_offset(&self, source: ChunkSource) -> u64 {
        match source {
            ChunkSource::Frame { frame, .. } | ChunkSource::Delta { frame, .. } => self
                .index()
                .frames
                .get(frame as usize)
                .map_or(0, |f| f.offset),
            ChunkSource::Base { .. } => 0,
        }
    }

    /// Reads and decodes one frame of the head archive.
    pub fn decode_frame(&self, number: u32) -> Result<Vec<u8>> {
        let mut stored = Vec::new();
        let offset = self
            .index()
            .frames
            .get(number as usize)
            .map_or(0, |f| f.offset);
        let bytes = self
            .archive
            .read_frame(number, &mut stored)
            .map_err(|source| Error::Frame {
                frame: number,
                archive_offset: offset,
                source,
            })?;
        let frame = &self.index().frames[number as usize];
        let mut out = Vec::new();
        decode_frame_bytes(
            frame.codec,
            frame.raw_len,
            bytes,
            self.accelerator(),
            &mut out,
        )
        .map_err(|source| Error::Decode {
            frame: number,
            archive_offset: offset,
            source,
        })?;
        Ok(out)
    }
}

/// Decodes one frame's stored bytes into `out`, tensor frames with `accelerator`.
pub fn decode_frame_bytes(
    codec: u8,
    raw_len: u32,
    stored: &[u8],
    accelerator: &dyn Accelerator,
    out: &mut Vec<u8>,
) -> Result<(), mmh_codecs::Error> {
    mmh_codecs::decode(
        CodecId::try_from(codec)?,
        stored,
        raw_len as usize,
        accelerator,
        out,
    )
}

/// A run of consecutive chunks of one entry's content.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRun<'a> {
    /// The entry the chunks belong to (for error messages), if any.
    pub entry: Option<&'a str>,
    /// Byte offset in the entry at which the first chunk starts.
    pub start: u64,
    /// Chunk numbers, in content order.
    pub chunks: &'a [u32],
}

/// How much decoded data one batch may hold. Two batches are alive at a time (one being
/// decoded, one being consumed), so this bounds a reader's memory whatever the archive.
const BATCH_RAW_BYTES: u64 = 64 << 20;

/// How many chunks of a run the next batch takes: up to [`BATCH_RAW_BYTES`] of content
/// and of frames to decode, and up to two frames per thread, so that frames shared by
/// neighbouring chunks are decoded once and every thread has one to work on.
fn batch_len<R: ReadAt>(chain: &Chain<R>, chunks: &[u32]) -> usize {
    let index = chain.index();
    let max_frames = rayon::current_num_threads() * 2;
    let (mut frames, mut frame_bytes, mut bytes) = (Vec::new(), 0u64, 0u64);
    for (taken, &number) in chunks.iter().enumerate() {
        let Some(record) = index.chunks.get(number as usize) else {
            return taken.max(1);
        };
        let frame = match record.source {
            ChunkSource::Frame { frame, .. } | ChunkSource::Delta { frame, .. } => Some(frame),
            ChunkSource::Base { .. } => None,
        };
        if let Some(frame) = frame
            && !frames.contains(&frame)
        {
            if taken > 0 && frames.len() == max_frames {
                return taken;
            }
            frames.push(frame);
            frame_bytes += index
                .frames
                .get(frame as usize)
                .map_or(0, |f| u64::from(f.raw_len));
        }
        bytes += u64::from(record.raw_len);
        if taken > 0 && (bytes > BATCH_RAW_BYTES || frame_bytes > BATCH_RAW_BYTES) {
            return taken;
        }
    }
    chunks.len()
}

/// Decodes a run of chunks in parallel batches, checks each against its SHA-256 in the
/// index, and hands the bytes to `sink` in content order. The sink consumes one batch
/// while the next is decoded. The first bad chunk in content order is the error.
pub fn decode_run<R: ReadAt>(
    chain: &Chain<R>,
    run: ChunkRun<'_>,
    mut sink: impl FnMut(&[u8]) -> io::Result<()> + Send,
) -> Result<()> {
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut rest = run.chunks;
    let mut batch_start = run.start;
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(batch_len(chain, rest));
        let (decoded, sunk) = rayon::join(
            || chain.decode_chunks(batch, run.entry, batch_start),
            || feed(&mut sink, std::mem::take(&mut pending)),
        );
        sunk?;
        pending = decoded?;
        batch_start += pending.iter().map(|b| b.len() as u64).sum::<u64>();
        rest = tail;
    }
    feed(&mut sink, pending)
}

fn feed(sink: &mut impl FnMut(&[u8]) -> io::Result<()>, batch: Vec<Vec<u8>>) -> Result<()> {
    for bytes in &batch {
        sink(bytes).map_err(|source| Error::Sink {
            context: "consuming decoded data",
            source,
        })?;
    }
    Ok(())
}

/// True when a file is one chunk whose SHA-256 is the file's: decoding that chunk (which
/// checks its digest) has then checked the file, and hashing it again would only repeat
/// the work (most files of a tree of small files are such).
pub fn checked_by_its_chunk(index: &mmh_format::Index, chunks: &[u32], digest: &Digest) -> bool {
    match chunks {
        [only] => index
            .chunks
            .get(*only as usize)
            .is_some_and(|c| c.digest == *digest),
        _ => false,
    }
}

/// One file's content to decode: its name (for error messages) and its chunks.
#[derive(Debug, Clone, Copy)]
pub struct FileRun<'a> {
    /// The entry's name.
    pub name: &'a str,
    /// Its chunks, in content order.
    pub chunks: &'a [u32],
}

/// Decodes the contents of several files in one pass over their chunks, so that a frame
/// that many small files share is decoded once, not once per file. `sink` receives
/// `(file index, bytes)` in order, each call one chunk's bytes. A bad chunk's error names
/// the file and the range within it.
pub fn decode_files<R: ReadAt>(
    chain: &Chain<R>,
    files: &[FileRun<'_>],
    mut sink: impl FnMut(usize, &[u8]) -> io::Result<()> + Send,
) -> Result<()> {
    let chunks: Vec<u32> = files
        .iter()
        .flat_map(|f| f.chunks.iter().copied())
        .collect();
    // The file each chunk of the run belongs to, and where each file starts in the run.
    let owners: Vec<usize> = files
        .iter()
        .enumerate()
        .flat_map(|(i, f)| std::iter::repeat_n(i, f.chunks.len()))
        .collect();
    let mut next = 0;
    let run = ChunkRun {
        entry: None,
        start: 0,
        chunks: &chunks,
    };
    let result = decode_run(chain, run, |bytes| {
        let file = owners[next];
        next += 1;
        sink(file, bytes)
    });
    result.map_err(|e| match e {
        Error::ChunkDigest { chunk, location } => {
            let (name, start) = locate(chain, files, location.range.start);
            Error::ChunkDigest {
                chunk,
                location: Location {
                    entry: name.map(str::to_owned),
                    range: location.range.start - start..location.range.end - start,
                    archive_offset: location.archive_offset,
                },
            }
        }
        e => e,
    })
}

/// The file holding byte `at` of the concatenated contents of `files`, and where it starts.
fn locate<'a, R: ReadAt>(
    chain: &Chain<R>,
    files: &[FileRun<'a>],
    at: u64,
) -> (Option<&'a str>, u64) {
    let mut start = 0;
    for file in files {
        let len: u64 = file
            .chunks
            .iter()
            .filter_map(|&c| chain.index().chunks.get(c as usize))
            .map(|c| u64::from(c.raw_len))
            .sum();
        if at < start + len {
            return (Some(file.name), start);
        }
        start += len;
    }
    (None, 0)
}

/// What a successful verification covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Entries in the archive.
    pub entries: u64,
    /// Chunks in the archive's index (including those held by bases).
    pub chunks: u64,
    /// Bytes of file content checked (shared chunks count once per entry).
    pub content_bytes: u64,
}

/// Re-reads a whole archive: the Merkle root over the index's chunk digests, then every
/// file's chunks (frame checksum, decoding, chunk SHA-256, through the bases for chunks
/// they hold) and the file's own SHA-256, then any chunk no entry uses. `progress`
/// receives the bytes of content checked.
pub fn verify_archive<R: ReadAt>(
    chain: &Chain<R>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report> {
    let index = chain.index();
    let digests: Vec<Digest> = index.chunks.iter().map(|c| c.digest).collect();
    if merkle_root(&digests) != index.merkle_root {
        return Err(Error::MerkleRoot);
    }
    let mut used = vec![false; index.chunks.len()];
    let files: Vec<(FileRun<'_>, u64, &Digest)> = index
        .entries
        .iter()
        .filter_map(|entry| match &entry.kind {
            EntryKind::File {
                size,
                digest,
                chunks,
            } => Some((
                FileRun {
                    name: &entry.name,
                    chunks,
                },
                *size,
                digest,
            )),
            _ => None,
        })
        .collect();
    let runs: Vec<FileRun<'_>> = files.iter().map(|(run, ..)| *run).collect();
    // Chunks arrive file by file, so one digest is open at a time.
    let mut digests_ok: Vec<bool> = vec![false; files.len()];
    let mut current: Option<(usize, Sha256)> = None;
    let finish = |current: &mut Option<(usize, Sha256)>, ok: &mut Vec<bool>| {
        if let Some((file, hasher)) = current.take() {
            ok[file] = <Digest>::from(hasher.finalize()) == *files[file].2;
        }
    };
    let checked: Vec<bool> = files
        .iter()
        .map(|(run, _, digest)| checked_by_its_chunk(index, run.chunks, digest))
        .collect();
    decode_files(chain, &runs, |file, bytes| {
        progress(bytes.len() as u64);
        if checked[file] {
            return Ok(());
        }
        if current.as_ref().is_none_or(|(f, _)| *f != file) {
            finish(&mut current, &mut digests_ok);
            current = Some((file, Sha256::new()));
        }
        current.as_mut().expect("set above").1.update(bytes);
        Ok(())
    })?;
    finish(&mut current, &mut digests_ok);
    let mut content_bytes = 0;
    for (i, (run, size, digest)) in files.iter().enumerate() {
        // A file without chunks was never opened above: its digest is that of nothing.
        let ok = digests_ok[i] || checked[i] || (run.chunks.is_empty() && **digest == sha256(&[]));
        if !ok {
            return Err(Error::EntryDigest {
                name: run.name.to_owned(),
                size: *size,
            });
        }
        for &c in run.chunks {
            used[c as usize] = true;
        }
        content_bytes += size;
    }
    let unused: Vec<u32> = (0..index.chunks.len() as u32)
        .filter(|&c| !used[c as usize])
        .collect();
    let run = ChunkRun {
        entry: None,
        start: 0,
        chunks: &unused,
    };
    decode_run(chain, run, |_| Ok(()))?;
    Ok(Report {
        entries: index.entries.len() as u64,
        chunks: index.chunks.len() as u64,
        content_bytes,
    })
}
