use std::io;

use mmh_codecs::CodecId;
use mmh_format::{Archive, Digest, EntryKind, ReadAt};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::{Error, Location, Result, merkle_root, sha256};

/// Decodes one chunk's stored bytes into `out` and returns the SHA-256 of the result.
pub fn decode_chunk(
    codec: u8,
    raw_len: u32,
    stored: &[u8],
    out: &mut Vec<u8>,
) -> Result<Digest, mmh_codecs::Error> {
    mmh_codecs::decode(CodecId::try_from(codec)?, stored, raw_len as usize, out)?;
    Ok(sha256(out))
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

/// Decodes a run of chunks in parallel batches, checks each against its SHA-256 in the
/// index, and hands the bytes to `sink` in content order. The sink consumes one batch
/// while the next is decoded. The first bad chunk in content order is the error.
pub fn decode_run<R: ReadAt>(
    archive: &Archive<R>,
    run: ChunkRun<'_>,
    mut sink: impl FnMut(&[u8]) -> io::Result<()> + Send,
) -> Result<()> {
    let records = &archive.index().chunks;
    let batch_len = rayon::current_num_threads() * 2;
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut rest = run.chunks;
    let mut batch_start = run.start;
    while !rest.is_empty() {
        let mut take = 0;
        let mut bytes = 0u64;
        while take < rest.len() && take < batch_len && (take == 0 || bytes < BATCH_RAW_BYTES) {
            bytes += records
                .get(rest[take] as usize)
                .map_or(0, |r| u64::from(r.raw_len));
            take += 1;
        }
        let (batch, tail) = rest.split_at(take);
        let (decoded, sunk) = rayon::join(
            || decode_batch(archive, run.entry, batch_start, batch),
            || feed(&mut sink, std::mem::take(&mut pending)),
        );
        sunk?;
        pending = decoded?;
        rest = tail;
        batch_start += bytes;
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

fn decode_batch<R: ReadAt>(
    archive: &Archive<R>,
    entry: Option<&str>,
    start: u64,
    batch: &[u32],
) -> Result<Vec<Vec<u8>>> {
    let records = &archive.index().chunks;
    let mut starts = Vec::with_capacity(batch.len());
    let mut at = start;
    for &number in batch {
        starts.push(at);
        at += records
            .get(number as usize)
            .map_or(0, |r| u64::from(r.raw_len));
    }
    let results: Vec<Result<Vec<u8>>> =
        batch
            .par_iter()
            .zip(starts)
            .map(|(&number, start)| {
                let mut stored = Vec::new();
                let mut out = Vec::new();
                let record = records.get(number as usize).ok_or_else(|| {
                    mmh_format::Error::InvalidIndex {
                        reason: format!("no chunk {number}"),
                    }
                })?;
                let location = || Location {
                    entry: entry.map(str::to_owned),
                    range: start..start + u64::from(record.raw_len),
                    archive_offset: record.offset,
                };
                let bytes =
                    archive
                        .read_stored(number, &mut stored)
                        .map_err(|source| Error::Frame {
                            chunk: number,
                            location: location(),
                            source,
                        })?;
                let digest = decode_chunk(record.codec, record.raw_len, bytes, &mut out).map_err(
                    |source| Error::Decode {
                        chunk: number,
                        location: location(),
                        source,
                    },
                )?;
                if digest != record.digest {
                    return Err(Error::ChunkDigest {
                        chunk: number,
                        location: location(),
                    });
                }
                Ok(out)
            })
            .collect();
    results.into_iter().collect()
}

/// What a successful verification covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Entries in the archive.
    pub entries: u64,
    /// Chunk frames in the archive.
    pub chunks: u64,
    /// Bytes of file content checked (shared chunks count once per entry).
    pub content_bytes: u64,
}

/// Re-reads a whole archive: the Merkle root over the index's chunk digests, then every
/// file's chunks (frame checksum, decoding, chunk SHA-256) and the file's own SHA-256,
/// then any chunk no entry uses. `progress` receives the bytes of content checked.
pub fn verify_archive<R: ReadAt>(
    archive: &Archive<R>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report> {
    let index = archive.index();
    let digests: Vec<Digest> = index.chunks.iter().map(|c| c.digest).collect();
    if merkle_root(&digests) != index.merkle_root {
        return Err(Error::MerkleRoot);
    }
    let mut used = vec![false; index.chunks.len()];
    let mut content_bytes = 0;
    for entry in &index.entries {
        let EntryKind::File {
            size,
            digest,
            chunks,
        } = &entry.kind
        else {
            continue;
        };
        let mut hasher = Sha256::new();
        let run = ChunkRun {
            entry: Some(&entry.name),
            start: 0,
            chunks,
        };
        decode_run(archive, run, |bytes| {
            hasher.update(bytes);
            progress(bytes.len() as u64);
            Ok(())
        })?;
        if <Digest>::from(hasher.finalize()) != *digest {
            return Err(Error::EntryDigest {
                name: entry.name.clone(),
                size: *size,
            });
        }
        for &c in chunks {
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
    decode_run(archive, run, |_| Ok(()))?;
    Ok(Report {
        entries: index.entries.len() as u64,
        chunks: index.chunks.len() as u64,
        content_bytes,
    })
}
