use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mmh_codecs::{Accelerator, CodecId, CpuAccelerator, EncodeParams};
use mmh_format::consts::MAX_CHUNK_RAW_LEN;
use mmh_format::{ArchiveWriter, Digest, Entry, EntryKind, Timestamp};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::{Error, Observer, Result};

/// Default chunk size: large enough that independent zstd frames lose next to nothing
/// against one stream (+2.3% at 4 MiB on source code, less on weights), small enough
/// that every core gets work on inputs of a few tens of MiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 4 << 20;

/// How a fold codes its input.
#[derive(Debug, Clone)]
pub struct FoldOptions {
    /// Codec choice and parameters.
    pub encode: EncodeParams,
    /// Raw bytes per chunk (1 byte to 64 MiB).
    pub chunk_size: u32,
    /// Worker threads (all cores when `None`).
    pub threads: Option<usize>,
    /// The backend that hashes chunks.
    pub accelerator: Arc<dyn Accelerator>,
}

impl Default for FoldOptions {
    fn default() -> Self {
        FoldOptions {
            encode: EncodeParams::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            threads: None,
            accelerator: Arc::new(CpuAccelerator),
        }
    }
}

impl FoldOptions {
    fn validate(&self) -> Result<()> {
        self.encode.validate()?;
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_RAW_LEN {
            return Err(Error::InvalidOption(format!(
                "chunk size {} is outside 1..={MAX_CHUNK_RAW_LEN}",
                self.chunk_size
            )));
        }
        if self.threads == Some(0) {
            return Err(Error::InvalidOption("threads must be at least 1".into()));
        }
        Ok(())
    }

    /// Chunks per batch: two per thread keeps every core busy while the reader fills the
    /// next batch; the byte cap keeps memory flat with very large chunks.
    fn batch_len(&self) -> usize {
        let threads = rayon::current_num_threads();
        let by_memory = (256 << 20) / self.chunk_size as usize;
        by_memory.clamp(threads, threads * 2)
    }
}

/// Name and metadata of the entry a stream is folded into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Entry name (a file's base name; `-` for standard input).
    pub name: String,
    /// Unix permission bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: Timestamp,
}

impl EntryMeta {
    /// Metadata of standard input: name `-`, mode 0644, the current time.
    pub fn stdin() -> Self {
        EntryMeta {
            name: "-".into(),
            mode: 0o644,
            mtime: timestamp(SystemTime::now()),
        }
    }

    /// Metadata of the file at `path`, named by its last component.
    pub fn of_file(path: &Path) -> Result<Self> {
        let meta = path
            .metadata()
            .map_err(Error::io("cannot read metadata of", Some(path)))?;
        #[cfg(unix)]
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        #[cfg(not(unix))]
        let mode = if meta.permissions().readonly() {
            0o444
        } else {
            0o644
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::InvalidOption(format!("{} has no file name", path.display())))?;
        Ok(EntryMeta {
            name,
            mode,
            mtime: meta.modified().map(timestamp).unwrap_or_default(),
        })
    }
}

pub(crate) fn timestamp(time: SystemTime) -> Timestamp {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(before) => {
            let d = before.duration();
            let (secs, nanos) = if d.subsec_nanos() == 0 {
                (-(d.as_secs() as i64), 0)
            } else {
                (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
            };
            Timestamp { secs, nanos }
        }
    }
}

pub(crate) fn system_time(t: Timestamp) -> Option<SystemTime> {
    let nanos = Duration::from_nanos(u64::from(t.nanos));
    if t.secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(t.secs as u64) + nanos)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(t.secs.unsigned_abs()))?
            .checked_add(nanos)
    }
}

/// What a fold did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FoldSummary {
    /// Bytes read from the input.
    pub input_bytes: u64,
    /// Bytes of archive written.
    pub archive_bytes: u64,
    /// Chunks written, per codec.
    pub chunks_by_codec: Vec<(CodecId, u64)>,
}

struct CodedChunk {
    codec: CodecId,
    raw_len: u32,
    stored: Vec<u8>,
    digest: Digest,
}

/// Folds one stream into an archive holding one file entry, writing front to back
/// (`output` may be a pipe). Chunks are coded in parallel and written in input order;
/// at most two batches of chunks are in memory, whatever the input's size.
pub fn fold_stream(
    input: impl Read + Send,
    meta: EntryMeta,
    output: impl Write + Send,
    options: &FoldOptions,
    observer: &dyn Observer,
) -> Result<FoldSummary> {
    options.validate()?;
    in_pool(options.threads, || {
        fold_in_pool(input, meta, output, options, observer)
    })
}

/// Runs `work` on a pool of `threads` workers, or on the global pool.
pub(crate) fn in_pool<T: Send>(
    threads: Option<usize>,
    work: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    match threads {
        None => work(),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::InvalidOption(format!("cannot start {n} threads: {e}")))?
            .install(work),
    }
}

fn fold_in_pool(
    mut input: impl Read + Send,
    meta: EntryMeta,
    output: impl Write + Send,
    options: &FoldOptions,
    observer: &dyn Observer,
) -> Result<FoldSummary> {
    let mut writer = ArchiveWriter::new(output)?;
    let batch_len = options.batch_len();
    let chunk_size = options.chunk_size as usize;
    let mut hasher = Sha256::new();
    let mut chunk_refs = Vec::new();
    let mut digests = Vec::new();
    let mut summary = FoldSummary::default();
    let mut batch = read_batch(&mut input, chunk_size, batch_len)?;
    while !batch.is_empty() {
        if observer.cancelled() {
            return Err(Error::Cancelled);
        }
        let (coded, next) = rayon::join(
            || code_batch(&batch, options, &mut hasher),
            || read_batch(&mut input, chunk_size, batch_len),
        );
        for chunk in coded? {
            chunk_refs.push(writer.push_chunk(
                chunk.codec as u8,
                chunk.raw_len,
                &chunk.stored,
                chunk.digest,
            )?);
            digests.push(chunk.digest);
            summary.input_bytes += u64::from(chunk.raw_len);
            count_codec(&mut summary.chunks_by_codec, chunk.codec);
            observer.progress(u64::from(chunk.raw_len));
        }
        batch = next?;
    }
    // A cancel that arrives while the last batch is read must still win over committing.
    if observer.cancelled() {
        return Err(Error::Cancelled);
    }
    let entry = Entry {
        name: meta.name,
        mode: meta.mode,
        mtime: meta.mtime,
        kind: EntryKind::File {
            size: summary.input_bytes,
            digest: hasher.finalize().into(),
            chunks: chunk_refs,
        },
    };
    let (_, archive_bytes) = writer.finish(vec![entry], mmh_verify::merkle_root(&digests))?;
    summary.archive_bytes = archive_bytes;
    Ok(summary)
}

fn count_codec(counts: &mut Vec<(CodecId, u64)>, codec: CodecId) {
    match counts.iter_mut().find(|(c, _)| *c == codec) {
        Some((_, n)) => *n += 1,
        None => counts.push((codec, 1)),
    }
}

/// Hashes the batch into the entry digest (sequential by nature) while the chunks are
/// digested by the accelerator and coded in parallel.
fn code_batch(
    batch: &[Vec<u8>],
    options: &FoldOptions,
    hasher: &mut Sha256,
) -> Result<Vec<CodedChunk>> {
    let ((), coded) = rayon::join(
        || batch.iter().for_each(|chunk| hasher.update(chunk)),
        || -> Result<Vec<CodedChunk>> {
            let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            let digests = options.accelerator.digest_batch(&slices)?;
            batch
                .par_iter()
                .zip(digests)
                .map(|(raw, digest)| {
                    let mut stored = Vec::new();
                    let codec = mmh_codecs::encode(raw, &options.encode, &mut stored)?;
                    Ok(CodedChunk {
                        codec,
                        raw_len: raw.len() as u32,
                        stored,
                        digest,
                    })
                })
                .collect()
        },
    );
    coded
}

/// Reads up to `batch_len` chunks of `chunk_size` bytes; only the last chunk of the
/// input may be shorter. Empty at the end of the input.
fn read_batch(input: &mut impl Read, chunk_size: usize, batch_len: usize) -> Result<Vec<Vec<u8>>> {
    let mut batch = Vec::with_capacity(batch_len);
    while batch.len() < batch_len {
        let mut chunk = Vec::with_capacity(chunk_size);
        let read = input
            .by_ref()
            .take(chunk_size as u64)
            .read_to_end(&mut chunk)
            .map_err(read_error)?;
        if read == 0 {
            break;
        }
        let full = read == chunk_size;
        batch.push(chunk);
        if !full {
            break;
        }
    }
    Ok(batch)
}

fn read_error(e: io::Error) -> Error {
    Error::io("cannot read the input", None)(e)
}

/// Folds the regular file at `path` (named by its base name, with its permissions and
/// mtime) into `output`.
pub fn fold_file(
    path: &Path,
    output: impl Write + Send,
    options: &FoldOptions,
    observer: &dyn Observer,
) -> Result<FoldSummary> {
    let meta = EntryMeta::of_file(path)?;
    if path.is_dir() {
        return Err(Error::InvalidOption(format!(
            "{} is a directory; this build folds files and streams (directory folding is planned)",
            path.display()
        )));
    }
    let file = std::fs::File::open(path).map_err(Error::io("cannot open", Some(path)))?;
    fold_stream(file, meta, output, options, observer)
}
