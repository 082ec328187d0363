use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mmh_codecs::{Accelerator, CodecId, CpuAccelerator, EncodeParams};
use mmh_format::consts::MAX_CHUNK_RAW_LEN;
use mmh_format::{ArchiveWriter, Digest, Entry, EntryKind, Timestamp};
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
    pub(crate) fn validate(&self) -> Result<()> {
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
    /// Chunks stored, per codec.
    pub chunks_by_codec: Vec<(CodecId, u64)>,
    /// Bytes of content that repeated a chunk already stored, and were referenced
    /// instead of stored again.
    pub deduplicated_bytes: u64,
    /// What was left out of a directory fold, and why (sockets, devices, skipped
    /// unreadable files).
    pub warnings: Vec<String>,
}

/// One chunk's buffers, reused from chunk to chunk so that a long fold does not pay for
/// fresh (page-faulting) allocations on every chunk.
#[derive(Default)]
struct Slot {
    /// The entry whose content this chunk is part of.
    entry: usize,
    raw: Vec<u8>,
    stored: Vec<u8>,
    codec: Option<CodecId>,
    digest: Digest,
}

/// Folds one stream into an archive holding one file entry, writing front to back
/// (`output` may be a pipe).
///
/// A reader thread cuts the input into chunks, one worker per pool thread hashes and
/// codes whichever chunk is next, and a writer thread puts them back in input order and
/// appends them. A fixed set of chunk buffers circulates between the stages (two per
/// worker, plus two), so memory stays flat whatever the input's size, and no worker
/// waits for a batch-mate: the only ordering point is the writer.
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

/// What the writer stage has written, to be sealed with the index once every stage
/// has finished cleanly.
struct Written<W: Write> {
    writer: ArchiveWriter<W>,
    /// The entries, whose file contents the writer fills in as their chunks arrive.
    entries: Vec<Entry>,
    /// Sequence number of the next chunk to write.
    next: usize,
    /// The file being written and the SHA-256 of its content so far: chunks arrive in
    /// input order, so one file is open at a time.
    open: Option<(usize, Sha256)>,
    /// Chunks already in the archive, by digest, when repeats are referenced rather than
    /// stored again.
    stored: Option<HashMap<Digest, u32>>,
    /// Digests of the stored chunks in archive order, for the Merkle root.
    digests: Vec<Digest>,
    summary: FoldSummary,
}

impl<W: Write> Written<W> {
    fn file_of(&mut self, entry: usize) -> (&mut u64, &mut Digest, &mut Vec<u32>) {
        match &mut self.entries[entry].kind {
            EntryKind::File {
                size,
                digest,
                chunks,
            } => (size, digest, chunks),
            _ => unreachable!("sources are only read for file entries"),
        }
    }

    /// Seals the open file's digest.
    fn close_file(&mut self) {
        if let Some((entry, hasher)) = self.open.take() {
            *self.file_of(entry).1 = hasher.finalize().into();
        }
    }

    /// Appends one coded chunk (or a reference to an identical one) to its file.
    fn push(&mut self, slot: &Slot, observer: &dyn Observer) -> Result<()> {
        if self
            .open
            .as_ref()
            .is_none_or(|(entry, _)| *entry != slot.entry)
        {
            self.close_file();
            self.open = Some((slot.entry, Sha256::new()));
        }
        let (_, hasher) = self.open.as_mut().expect("opened above");
        hasher.update(&slot.raw);
        let raw_len = slot.raw.len() as u32;
        let known = self.stored.as_ref().and_then(|s| s.get(&slot.digest));
        let number = match known {
            Some(&number) => {
                self.summary.deduplicated_bytes += u64::from(raw_len);
                number
            }
            None => {
                let codec = slot.codec.expect("workers code every chunk they pass on");
                let number =
                    self.writer
                        .push_chunk(codec as u8, raw_len, &slot.stored, slot.digest)?;
                if let Some(stored) = &mut self.stored {
                    stored.insert(slot.digest, number);
                }
                self.digests.push(slot.digest);
                match self
                    .summary
                    .chunks_by_codec
                    .iter_mut()
                    .find(|(c, _)| *c == codec)
                {
                    Some((_, n)) => *n += 1,
                    None => self.summary.chunks_by_codec.push((codec, 1)),
                }
                number
            }
        };
        let (size, _, chunks) = self.file_of(slot.entry);
        *size += u64::from(raw_len);
        chunks.push(number);
        self.summary.input_bytes += u64::from(raw_len);
        self.next += 1;
        observer.progress(u64::from(raw_len));
        Ok(())
    }
}

/// The first error any stage met; the others see `failed` and stop early.
#[derive(Default)]
struct Failure {
    failed: AtomicBool,
    first: Mutex<Option<Error>>,
}

impl Failure {
    fn record(&self, error: Error) {
        self.failed.store(true, Ordering::Relaxed);
        self.first
            .lock()
            .expect("no stage panics holding it")
            .get_or_insert(error);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// The content of one file entry, to be read when the reader reaches it.
pub(crate) type Content<'a> = (
    usize,
    Box<dyn FnOnce() -> Result<Box<dyn Read + Send + 'a>> + Send + 'a>,
);

fn fold_in_pool<W: Write + Send>(
    input: impl Read + Send,
    meta: EntryMeta,
    output: W,
    options: &FoldOptions,
    observer: &dyn Observer,
) -> Result<FoldSummary> {
    let entry = Entry {
        name: meta.name,
        mode: meta.mode,
        mtime: meta.mtime,
        kind: empty_file(),
    };
    let source: Content<'_> = (0, Box::new(move || Ok(Box::new(input) as _)));
    fold_entries(
        vec![entry],
        vec![source],
        Repeats::StoreAgain,
        output,
        options,
        observer,
    )
}

/// A file entry before its content is known.
pub(crate) fn empty_file() -> EntryKind {
    EntryKind::File {
        size: 0,
        digest: Sha256::digest([]).into(),
        chunks: Vec::new(),
    }
}

/// What a fold does with a chunk it has already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeats {
    /// Store it again, so that an archive of one file keeps its chunks in content order
    /// and unfolds front to back from a pipe.
    StoreAgain,
    /// Reference the stored copy (dedup): for archives of many entries, which are read
    /// by seeking anyway.
    Reference,
}

/// Folds `entries` (file entries start as [`empty_file`]) whose file contents come from
/// `sources`, in order, into `output`.
///
/// A reader thread cuts each source into chunks, one worker per pool thread hashes and
/// codes whichever chunk is next, and a writer thread puts them back in input order,
/// stores each distinct chunk once and fills in the file entries. A fixed set of chunk
/// buffers circulates between the stages (two per worker, plus two), so memory stays
/// flat whatever the input's size.
pub(crate) fn fold_entries<'a, W: Write + Send>(
    entries: Vec<Entry>,
    sources: Vec<Content<'a>>,
    repeats: Repeats,
    output: W,
    options: &FoldOptions,
    observer: &dyn Observer,
) -> Result<FoldSummary> {
    let workers = rayon::current_num_threads();
    let slots = 2 * workers + 2;
    let chunk_size = options.chunk_size as usize;
    let (free_tx, free_rx) = sync_channel::<Slot>(slots);
    let (work_tx, work_rx) = sync_channel::<(usize, Slot)>(slots);
    let (done_tx, done_rx) = sync_channel::<(usize, Slot)>(slots);
    for _ in 0..slots {
        free_tx
            .send(Slot::default())
            .expect("the receiver is alive");
    }
    let work_rx = Mutex::new(work_rx);
    let failure = Failure::default();
    let mut written = Written {
        writer: ArchiveWriter::new(output)?,
        entries,
        next: 0,
        open: None,
        stored: (repeats == Repeats::Reference).then(HashMap::new),
        digests: Vec::new(),
        summary: FoldSummary::default(),
    };
    // Each stage stops when its input channel closes or another stage has failed, and
    // closes its own output on the way out, so every stage ends whatever fails first.
    let (chunks_read, written) = std::thread::scope(|scope| {
        let failure = &failure;
        let reader = scope.spawn(move || -> Result<usize> {
            let mut chunks = 0;
            // A buffer taken for a read that found the end of a file serves the next.
            let mut spare: Option<Slot> = None;
            for (entry, open) in sources {
                let mut input = open()?;
                loop {
                    let Some(mut slot) = spare.take().or_else(|| free_rx.recv().ok()) else {
                        return Ok(chunks);
                    };
                    if failure.failed() {
                        return Ok(chunks);
                    }
                    slot.entry = entry;
                    slot.raw.clear();
                    // Exactly one chunk of room: read_to_end would otherwise double it.
                    slot.raw.reserve_exact(chunk_size);
                    let read = input
                        .by_ref()
                        .take(chunk_size as u64)
                        .read_to_end(&mut slot.raw)
                        .map_err(Error::io("cannot read the input", None))?;
                    if read == 0 {
                        spare = Some(slot);
                        break;
                    }
                    if work_tx.send((chunks, slot)).is_err() {
                        return Ok(chunks);
                    }
                    chunks += 1;
                    if read < chunk_size {
                        break;
                    }
                }
            }
            Ok(chunks)
        });
        let writer = scope.spawn(move || -> Result<Written<W>> {
            let mut waiting = BTreeMap::new();
            for (number, slot) in done_rx.iter() {
                waiting.insert(number, slot);
                while let Some(slot) = waiting.remove(&written.next) {
                    written.push(&slot, observer)?;
                    let _ = free_tx.send(slot);
                }
            }
            written.close_file();
            Ok(written)
        });
        rayon::scope(|scope| {
            for _ in 0..workers {
                let done_tx = done_tx.clone();
                let (work_rx, failure) = (&work_rx, failure);
                scope.spawn(move |_| {
                    loop {
                        // The lock is released at the end of this statement, before
                        // the chunk is coded, so workers only queue for the next job.
                        let job = work_rx.lock().expect("not poisoned").recv();
                        let Ok((number, mut slot)) = job else {
                            break;
                        };
                        if failure.failed() {
                            break;
                        }
                        if observer.cancelled() {
                            failure.record(Error::Cancelled);
                            break;
                        }
                        if let Err(e) = code_chunk(&mut slot, options) {
                            failure.record(e);
                            break;
                        }
                        if done_tx.send((number, slot)).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        drop(done_tx);
        drop(work_rx);
        let read = reader.join().expect("the reader stage does not panic");
        let written = writer.join().expect("the writer stage does not panic");
        (read, written)
    });
    if let Some(error) = failure.first.into_inner().expect("not poisoned") {
        return Err(error);
    }
    let chunks_read = chunks_read?;
    let Written {
        writer,
        entries,
        next,
        digests,
        mut summary,
        ..
    } = written?;
    // Every chunk read must have been written: a stage that stopped early without an
    // error of its own (a closed channel) must not let a short archive be sealed.
    if next != chunks_read || observer.cancelled() {
        return Err(Error::Cancelled);
    }
    let (_, archive_bytes) = writer.finish(entries, mmh_verify::merkle_root(&digests))?;
    summary.archive_bytes = archive_bytes;
    Ok(summary)
}

/// Digests a chunk through the accelerator and codes it.
fn code_chunk(slot: &mut Slot, options: &FoldOptions) -> Result<()> {
    let digests = options.accelerator.digest_batch(&[&slot.raw])?;
    slot.digest = match digests[..] {
        [digest] => digest,
        _ => {
            return Err(Error::Backend {
                backend: options.accelerator.name(),
                reason: format!("returned {} digests for one chunk", digests.len()),
            });
        }
    };
    slot.codec = Some(mmh_codecs::encode(
        &slot.raw,
        &options.encode,
        &mut slot.stored,
    )?);
    Ok(())
}

/// Folds what is at `path`: a directory as a tree ([`crate::fold_tree`]), anything else as
/// one file named by its base name, with its permissions and mtime.
pub fn fold_path(
    path: &Path,
    walk: &crate::WalkOptions,
    output: impl Write + Send,
    options: &FoldOptions,
    observer: &dyn Observer,
) -> Result<FoldSummary> {
    if path.is_dir() {
        return crate::fold_tree(path, walk, output, options, observer);
    }
    let meta = EntryMeta::of_file(path)?;
    let file = std::fs::File::open(path).map_err(Error::io("cannot open", Some(path)))?;
    fold_stream(file, meta, output, options, observer)
}
