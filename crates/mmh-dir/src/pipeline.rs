//! The fold pipeline shared by streams and trees: read and cut, hash and code in
//! parallel, write in order.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

use mmh_codecs::{CodecId, FloatKind};
use mmh_format::{ArchiveWriter, ChunkRecord, ChunkSource, Digest, Entry, EntryKind};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::base::{BaseLookup, BaseMode};
use crate::chunking::{Chunker, TensorPiece};
use crate::{Error, FoldOptions, Observer, Result};

/// What a fold did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FoldSummary {
    /// Bytes read from the input.
    pub input_bytes: u64,
    /// Bytes of archive written.
    pub archive_bytes: u64,
    /// Chunks the content was cut into (repeats included).
    pub chunks: u64,
    /// Frames written, per codec.
    pub frames_by_codec: Vec<(CodecId, u64)>,
    /// Bytes of content that repeated a chunk already stored in this archive, and were
    /// referenced instead of stored again.
    pub deduplicated_bytes: u64,
    /// Bytes of content found in the base archive: referenced, or with a self-contained
    /// fold copied without being coded again.
    pub base_bytes: u64,
    /// Bytes of content coded as a delta against the same tensor in the base.
    pub delta_bytes: u64,
    /// What was left out of a directory fold, and why (sockets, devices, skipped
    /// unreadable files).
    pub warnings: Vec<String>,
}

/// The content of one file entry, to be read when the reader reaches it: the entry's
/// number, where the file lies on disk (`None` for a stream; a file on disk can be read
/// anywhere, which some model formats need, see [`Chunker::cut`]), and how to open it.
pub(crate) type Content<'a> = (
    usize,
    Option<PathBuf>,
    Box<dyn FnOnce() -> Result<Box<dyn Read + Send + 'a>> + Send + 'a>,
);

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
    /// Reference the stored copy (dedup): for archives of many entries, or built on a
    /// base, which are read by seeking anyway.
    Reference,
}

/// What becomes of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Coded in this slot's frame.
    Store,
    /// XORed with this chunk of the base, split into this many byte planes, then coded
    /// in this slot's frame.
    Delta { chunk: u32, planes: u8 },
    /// The base holds it: this chunk number.
    Base(u32),
    /// An earlier chunk of this fold is the same; the writer will have stored it.
    Repeat,
}

/// One chunk of a slot.
#[derive(Debug, Clone)]
struct Piece {
    entry: usize,
    len: u32,
    tensor: Option<TensorPiece>,
    /// The piece is its file's whole content: the file's SHA-256 is the chunk's.
    whole_file: bool,
    digest: Digest,
    plan: Plan,
}

/// The chunks that will share one frame, and the buffers to code it, reused from frame
/// to frame so that a long fold does not pay for fresh (page-faulting) allocations.
#[derive(Default)]
struct Slot {
    /// The chunks' bytes, back to back.
    raw: Vec<u8>,
    pieces: Vec<Piece>,
    /// What the frame holds: the bytes of the chunks coded here (XORed for deltas).
    frame: Vec<u8>,
    stored: Vec<u8>,
    codec: Option<CodecId>,
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

/// What the workers share.
struct Work<'a> {
    options: &'a FoldOptions,
    repeats: Repeats,
    base: Option<BaseLookup<'a>>,
    /// The earliest (slot, piece) position at which each chunk was met, so that a
    /// worker codes a chunk only where the writer will store it and skips the repeats.
    first_seen: Mutex<HashMap<Digest, (usize, usize)>>,
}

/// Folds `entries` (file entries start as [`empty_file`]) whose file contents come from
/// `sources`, in order, into `output`.
///
/// A reader thread cuts each source into chunks ([`Chunker`]) and packs consecutive
/// chunks into slots of up to a frame each; one worker per pool thread takes whichever
/// slot is next, hashes its chunks, finds those already stored (in this fold or in the
/// base), and codes the rest as one frame; a writer thread puts slots back in input
/// order, writes the frames and fills in the file entries. A fixed set of slots
/// circulates between the stages (two per worker, plus two), so memory stays flat
/// whatever the input's size (the dedup tables grow with the number of distinct chunks).
pub(crate) fn fold_entries<'a, W: Write + Send>(
    entries: Vec<Entry>,
    sources: Vec<Content<'a>>,
    repeats: Repeats,
    output: W,
    options: &FoldOptions,
    observer: &dyn Observer,
) -> Result<FoldSummary> {
    let repeats = if options.base.is_some() {
        Repeats::Reference
    } else {
        repeats
    };
    let base = options
        .base
        .as_ref()
        .map(|base| BaseLookup::new(base, &chunker(options)))
        .transpose()?;
    let work = Work {
        options,
        repeats,
        base,
        first_seen: Mutex::new(HashMap::new()),
    };
    let workers = rayon::current_num_threads();
    let slots = 2 * workers + 2;
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
    let mut written = Written::new(output, entries, &work)?;
    // Each stage stops when its input channel closes or another stage has failed, and
    // closes its own output on the way out, so every stage ends whatever fails first.
    let (slots_read, written) = std::thread::scope(|scope| {
        let failure = &failure;
        let reader = scope.spawn(move || -> Result<usize> {
            let frame_size = options.frame_size as usize;
            let chunker = chunker(options);
            let mut sent = 0;
            let Ok(mut slot) = free_rx.recv() else {
                return Ok(0);
            };
            slot.clear();
            for (entry, path, open) in sources {
                let mut input = open()?;
                let mut pieces = 0;
                chunker.cut(&mut input, path.as_deref(), &mut |bytes, tensor| {
                    pieces += 1;
                    // Float tensor data of one format gets frames of its own, which
                    // the tensor codec can code as planes.
                    let float = tensor.as_ref().and_then(|t| t.float);
                    let other_kind = slot
                        .pieces
                        .last()
                        .is_some_and(|p| p.tensor.as_ref().and_then(|t| t.float) != float);
                    if slot.raw.len() + bytes.len() > frame_size || other_kind {
                        let Ok(next) = free_rx.recv() else {
                            return Ok(false);
                        };
                        let full = std::mem::replace(&mut slot, next);
                        slot.clear();
                        if failure.failed() || work_tx.send((sent, full)).is_err() {
                            return Ok(false);
                        }
                        sent += 1;
                    }
                    slot.raw.extend_from_slice(bytes);
                    slot.pieces.push(Piece {
                        entry,
                        len: bytes.len() as u32,
                        tensor,
                        whole_file: false,
                        digest: [0; 32],
                        plan: Plan::Store,
                    });
                    Ok(true)
                })?;
                // A file's pieces go into the open slot as they come, so a file of one
                // piece ends the open slot.
                if pieces == 1
                    && let Some(last) = slot.pieces.last_mut()
                {
                    last.whole_file = true;
                }
                if failure.failed() {
                    return Ok(sent);
                }
            }
            if !slot.pieces.is_empty() && work_tx.send((sent, slot)).is_ok() {
                sent += 1;
            }
            Ok(sent)
        });
        let work = &work;
        let writer = scope.spawn(move || -> Result<Written<'_, W>> {
            let mut waiting = BTreeMap::new();
            for (number, slot) in done_rx.iter() {
                waiting.insert(number, slot);
                while let Some(slot) = waiting.remove(&written.next) {
                    written.push(&slot, work, observer)?;
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
                        // the slot is coded, so workers only queue for the next job.
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
                        if let Err(e) = work.code(number, &mut slot) {
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
    let slots_read = slots_read?;
    let written = written?;
    // Every slot read must have been written: a stage that stopped early without an
    // error of its own (a closed channel) must not let a short archive be sealed.
    if written.next != slots_read || observer.cancelled() {
        return Err(Error::Cancelled);
    }
    written.finish(options)
}

fn chunker(options: &FoldOptions) -> Chunker<'_> {
    Chunker {
        accelerator: options.accelerator.as_ref(),
        cdc: options.cdc,
    }
}

impl Slot {
    fn clear(&mut self) {
        self.raw.clear();
        self.pieces.clear();
        self.frame.clear();
        self.codec = None;
    }
}

/// The float format of a frame that holds only pieces of float tensors of one format,
/// stored as they are (not deltas): such a frame is coded as planes of that format.
fn float_frame(pieces: &[Piece]) -> Option<FloatKind> {
    let mut stored = pieces
        .iter()
        .filter(|p| !matches!(p.plan, Plan::Base(_) | Plan::Repeat));
    let first = stored.next()?;
    let kind = first.tensor.as_ref()?.float?;
    // Deltas are XORs split into byte planes, not floats: they go to the general codecs.
    std::iter::once(first)
        .chain(stored)
        .all(|p| p.plan == Plan::Store && p.tensor.as_ref().and_then(|t| t.float) == Some(kind))
        .then_some(kind)
}

/// The bytes of each piece, cut from the slot's bytes.
fn split<'r>(raw: &'r [u8], pieces: &[Piece]) -> Vec<&'r [u8]> {
    let mut at = 0;
    pieces
        .iter()
        .map(|piece| {
            let bytes = &raw[at..at + piece.len as usize];
            at += piece.len as usize;
            bytes
        })
        .collect()
}

impl Work<'_> {
    /// Hashes slot `number`'s chunks, decides what becomes of each, and codes the
    /// frame of those stored here.
    fn code(&self, number: usize, slot: &mut Slot) -> Result<()> {
        let accelerator = &self.options.accelerator;
        let Slot {
            raw,
            pieces,
            frame,
            stored,
            codec,
        } = slot;
        let bytes = split(raw, pieces);
        let digests = accelerator.digest_batch(&bytes)?;
        if digests.len() != bytes.len() {
            return Err(Error::Backend {
                backend: accelerator.name(),
                reason: format!(
                    "returned {} digests for {} chunks",
                    digests.len(),
                    bytes.len()
                ),
            });
        }
        let mut deltas = Vec::new();
        for (i, (piece, digest)) in pieces.iter_mut().zip(digests).enumerate() {
            piece.digest = digest;
            piece.plan = self.plan(number, i, piece);
            if let Plan::Delta { chunk, planes } = piece.plan {
                let float = piece.tensor.as_ref().and_then(|t| t.float);
                deltas.push(Delta {
                    piece: i,
                    chunk,
                    planes,
                    float,
                });
            }
        }
        let xors = self.deltas(&bytes, &deltas)?;
        let mut xors = xors.into_iter();
        for (piece, bytes) in pieces.iter_mut().zip(bytes) {
            match piece.plan {
                Plan::Store => frame.extend_from_slice(bytes),
                Plan::Delta { .. } => match xors.next().expect("one per delta") {
                    Some(xor) => frame.extend_from_slice(&xor),
                    None => {
                        piece.plan = Plan::Store;
                        frame.extend_from_slice(bytes);
                    }
                },
                Plan::Base(_) | Plan::Repeat => {}
            }
        }
        if !frame.is_empty() {
            *codec = Some(match float_frame(pieces) {
                Some(kind) => mmh_codecs::encode_tensor(
                    frame,
                    kind,
                    &self.options.encode,
                    self.options.accelerator.as_ref(),
                    stored,
                )?,
                None => mmh_codecs::encode(frame, &self.options.encode, stored)?,
            });
        }
        Ok(())
    }

    /// What becomes of piece `index` of slot `slot`.
    fn plan(&self, slot: usize, index: usize, piece: &Piece) -> Plan {
        if self.repeats == Repeats::StoreAgain {
            return Plan::Store;
        }
        if let Some(chunk) = self.base.as_ref().and_then(|b| b.chunk(&piece.digest)) {
            return Plan::Base(chunk);
        }
        let mut first_seen = self.first_seen.lock().expect("not poisoned");
        let first = first_seen.entry(piece.digest).or_insert((slot, index));
        if *first < (slot, index) {
            return Plan::Repeat;
        }
        *first = (slot, index);
        drop(first_seen);
        match (&self.base, &piece.tensor) {
            (Some(base), Some(tensor)) => {
                base.piece(tensor).map_or(Plan::Store, |chunk| Plan::Delta {
                    chunk,
                    planes: tensor.width,
                })
            }
            _ => Plan::Store,
        }
    }

    /// For each planned delta, the XOR with its base chunk split into byte planes, when
    /// that codes smaller than the piece coded on its own (by the tensor codec, for
    /// floats), else `None`.
    fn deltas(&self, bytes: &[&[u8]], deltas: &[Delta]) -> Result<Vec<Option<Vec<u8>>>> {
        let Some(base) = &self.base else {
            return Ok(Vec::new());
        };
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        let chunks: Vec<u32> = deltas.iter().map(|d| d.chunk).collect();
        let references = base.chain().decode_chunks(&chunks, None, 0)?;
        let encode = &self.options.encode;
        let mut scratch = Vec::new();
        let mut coded_len = |bytes: &[u8], float: Option<FloatKind>| -> Result<usize> {
            match float {
                Some(kind) => mmh_codecs::encode_tensor(
                    bytes,
                    kind,
                    encode,
                    self.options.accelerator.as_ref(),
                    &mut scratch,
                )?,
                None => mmh_codecs::encode(bytes, encode, &mut scratch)?,
            };
            Ok(scratch.len())
        };
        deltas
            .iter()
            .zip(references)
            .map(|(delta, reference)| {
                let plain = bytes[delta.piece];
                if reference.len() != plain.len() {
                    return Ok(None);
                }
                let xor: Vec<u8> = plain.iter().zip(&reference).map(|(a, b)| a ^ b).collect();
                let mut split = Vec::with_capacity(xor.len());
                mmh_codecs::split_planes(&xor, usize::from(delta.planes), &mut split);
                Ok((coded_len(&split, None)? < coded_len(plain, delta.float)?).then_some(split))
            })
            .collect()
    }
}

/// A piece planned as a delta against a base chunk.
struct Delta {
    /// Its index in the slot.
    piece: usize,
    /// The base chunk it is XORed with.
    chunk: u32,
    /// Byte planes of the XOR.
    planes: u8,
    /// Its float format, which codes it when stored on its own.
    float: Option<FloatKind>,
}

/// What the writer stage has written, to be sealed with the index once every stage
/// has finished cleanly.
struct Written<'a, W: Write> {
    writer: ArchiveWriter<W>,
    /// The entries, whose file contents the writer fills in as their chunks arrive.
    entries: Vec<Entry>,
    chunks: Vec<ChunkRecord>,
    /// Sequence number of the next slot to write.
    next: usize,
    /// The file being written and the SHA-256 of its content so far (none for a file of
    /// one chunk, whose digest is the chunk's): chunks arrive in input order, so one file
    /// is open at a time.
    open: Option<(usize, Option<Sha256>)>,
    /// Chunks already in the archive, by digest, when repeats are referenced.
    known: Option<HashMap<Digest, u32>>,
    /// Chunks found in the base, for a self-contained fold: (chunk number here, chunk
    /// number in the base), placed once every chunk is known ([`Written::copy_from_base`]).
    to_copy: Vec<(u32, u32)>,
    base: Option<&'a BaseLookup<'a>>,
    summary: FoldSummary,
}

impl<'a, W: Write> Written<'a, W> {
    fn new(output: W, entries: Vec<Entry>, work: &'a Work<'a>) -> Result<Self> {
        Ok(Written {
            writer: ArchiveWriter::new(output)?,
            entries,
            chunks: Vec::new(),
            next: 0,
            open: None,
            known: (work.repeats == Repeats::Reference).then(HashMap::new),
            to_copy: Vec::new(),
            base: work.base.as_ref(),
            summary: FoldSummary::default(),
        })
    }

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
        if let Some((entry, Some(hasher))) = self.open.take() {
            *self.file_of(entry).1 = hasher.finalize().into();
        }
    }

    /// The chunk number of `digest`: the stored one when it is known, else a new record.
    fn chunk(&mut self, digest: Digest, raw_len: u32, source: ChunkSource) -> Result<u32> {
        if let Some(&number) = self.known.as_ref().and_then(|k| k.get(&digest)) {
            return Ok(number);
        }
        let number = u32::try_from(self.chunks.len())
            .map_err(|_| Error::InvalidOption("more than 2^32 chunks in one archive".into()))?;
        self.chunks.push(ChunkRecord {
            raw_len,
            digest,
            source,
        });
        if let Some(known) = &mut self.known {
            known.insert(digest, number);
        }
        Ok(number)
    }

    /// Writes one slot: its frame, then each chunk's record and place in its file.
    fn push(&mut self, slot: &Slot, work: &Work<'_>, observer: &dyn Observer) -> Result<()> {
        let frame = match slot.codec {
            Some(codec) => {
                let number =
                    self.writer
                        .push_frame(codec as u8, slot.frame.len() as u32, &slot.stored)?;
                self.count_frame(codec);
                number
            }
            None => u32::MAX,
        };
        let mut frame_at = 0u32;
        for (piece, bytes) in slot.pieces.iter().zip(split(&slot.raw, &slot.pieces)) {
            if self
                .open
                .as_ref()
                .is_none_or(|(entry, _)| *entry != piece.entry)
            {
                self.close_file();
                if piece.whole_file {
                    *self.file_of(piece.entry).1 = piece.digest;
                }
                self.open = Some((piece.entry, (!piece.whole_file).then(Sha256::new)));
            }
            if let Some((_, Some(hasher))) = &mut self.open {
                hasher.update(bytes);
            }
            let (digest, len) = (piece.digest, piece.len);
            let number = match piece.plan {
                Plan::Store | Plan::Delta { .. } => {
                    let start = frame_at;
                    frame_at += len;
                    let source = match piece.plan {
                        Plan::Delta { chunk, planes } => {
                            self.summary.delta_bytes += u64::from(len);
                            ChunkSource::Delta {
                                frame,
                                start,
                                base: 0,
                                chunk,
                                planes,
                            }
                        }
                        _ => ChunkSource::Frame { frame, start },
                    };
                    self.chunk(digest, len, source)?
                }
                Plan::Base(chunk) => {
                    self.summary.base_bytes += u64::from(len);
                    let known = self.known.as_ref().is_some_and(|k| k.contains_key(&digest));
                    let number = self.chunk(digest, len, ChunkSource::Base { base: 0, chunk })?;
                    if !known && work.base.as_ref().map(|b| b.mode()) == Some(BaseMode::Copy) {
                        self.to_copy.push((number, chunk));
                    }
                    number
                }
                Plan::Repeat => {
                    self.summary.deduplicated_bytes += u64::from(len);
                    *self
                        .known
                        .as_ref()
                        .and_then(|k| k.get(&digest))
                        .expect("the first copy of a repeat is written before it")
                }
            };
            let (size, _, chunks) = self.file_of(piece.entry);
            *size += u64::from(len);
            chunks.push(number);
            self.summary.input_bytes += u64::from(len);
            self.summary.chunks += 1;
            observer.progress(u64::from(len));
        }
        self.next += 1;
        Ok(())
    }

    fn count_frame(&mut self, codec: CodecId) {
        match self
            .summary
            .frames_by_codec
            .iter_mut()
            .find(|(c, _)| *c == codec)
        {
            Some((_, n)) => *n += 1,
            None => self.summary.frames_by_codec.push((codec, 1)),
        }
    }

    /// Gives the chunks a self-contained fold found in the base a place here. A base
    /// frame all of whose chunks are used is copied as stored (nothing is coded again);
    /// the chunks of the others are decoded and coded afresh, so that the old bytes of
    /// what changed are not carried along (copying frames that were half used made a
    /// self-contained fine-tune 6% larger than a fold without a base).
    fn copy_from_base(&mut self, options: &FoldOptions) -> Result<()> {
        let Some(base) = self.base else {
            return Ok(());
        };
        let mut by_frame: BTreeMap<u32, Vec<(u32, u32, u32)>> = BTreeMap::new();
        for &(number, chunk) in &self.to_copy {
            let (frame, start) = base.frame_of(chunk)?;
            by_frame
                .entry(frame)
                .or_default()
                .push((number, chunk, start));
        }
        let archive = base.chain().archive();
        let mut recode = Vec::new();
        for (base_frame, members) in by_frame {
            let record = &archive.index().frames[base_frame as usize];
            let used: u64 = members
                .iter()
                .map(|&(number, ..)| u64::from(self.chunks[number as usize].raw_len))
                .sum();
            if used < u64::from(record.raw_len) {
                recode.extend(
                    members
                        .into_iter()
                        .map(|(number, chunk, _)| (number, chunk)),
                );
                continue;
            }
            let mut buf = Vec::new();
            let stored = archive.read_frame(base_frame, &mut buf)?;
            let frame = self
                .writer
                .push_frame(record.codec, record.raw_len, stored)?;
            for (number, _, start) in members {
                self.chunks[number as usize].source = ChunkSource::Frame { frame, start };
            }
        }
        // Frames of up to `frame_size` of the chunks to code again, coded in parallel.
        let mut groups: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut group_len = 0u64;
        for (number, chunk) in recode {
            let len = u64::from(self.chunks[number as usize].raw_len);
            if groups.is_empty() || group_len + len > u64::from(options.frame_size) {
                groups.push(Vec::new());
                group_len = 0;
            }
            groups
                .last_mut()
                .expect("pushed above")
                .push((number, chunk));
            group_len += len;
        }
        let coded = groups
            .par_iter()
            .map(|group| -> Result<(Vec<u8>, Vec<u8>, CodecId)> {
                let chunks: Vec<u32> = group.iter().map(|&(_, c)| c).collect();
                let raw = base.chain().decode_chunks(&chunks, None, 0)?.concat();
                let mut stored = Vec::new();
                let codec = mmh_codecs::encode(&raw, &options.encode, &mut stored)?;
                Ok((raw, stored, codec))
            })
            .collect::<Result<Vec<_>>>()?;
        for (group, (raw, stored, codec)) in groups.iter().zip(coded) {
            let frame = self
                .writer
                .push_frame(codec as u8, raw.len() as u32, &stored)?;
            self.count_frame(codec);
            let mut start = 0;
            for &(number, _) in group {
                self.chunks[number as usize].source = ChunkSource::Frame { frame, start };
                start += self.chunks[number as usize].raw_len;
            }
        }
        Ok(())
    }

    fn finish(mut self, options: &FoldOptions) -> Result<FoldSummary> {
        self.copy_from_base(options)?;
        let Written {
            writer,
            entries,
            chunks,
            base,
            mut summary,
            ..
        } = self;
        let digests: Vec<Digest> = chunks.iter().map(|c| c.digest).collect();
        let references_base = chunks
            .iter()
            .any(|c| !matches!(c.source, ChunkSource::Frame { .. }));
        let bases = match base {
            Some(base) if references_base => vec![base.reference()],
            _ => Vec::new(),
        };
        let (_, archive_bytes) =
            writer.finish(chunks, entries, bases, mmh_verify::merkle_root(&digests))?;
        summary.archive_bytes = archive_bytes;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(plan: Plan, float: Option<FloatKind>) -> Piece {
        Piece {
            entry: 0,
            len: 8,
            tensor: Some(TensorPiece {
                name: "w".into(),
                offset: 0,
                len: 8,
                width: 2,
                float,
            }),
            whole_file: false,
            digest: Default::default(),
            plan,
        }
    }

    #[test]
    fn only_frames_of_stored_floats_of_one_format_go_to_the_tensor_codec() {
        let bf16 = Some(FloatKind::Bf16);
        let store = || piece(Plan::Store, bf16);
        let delta = || {
            piece(
                Plan::Delta {
                    chunk: 0,
                    planes: 2,
                },
                bf16,
            )
        };
        assert_eq!(float_frame(&[store(), store()]), bf16);
        assert_eq!(float_frame(&[piece(Plan::Repeat, None), store()]), bf16);
        // A delta alone, or first, is XORed planes: not floats.
        assert_eq!(float_frame(&[delta()]), None);
        assert_eq!(float_frame(&[delta(), store()]), None);
        assert_eq!(float_frame(&[store(), delta()]), None);
        assert_eq!(
            float_frame(&[store(), piece(Plan::Store, Some(FloatKind::F32))]),
            None
        );
        assert_eq!(float_frame(&[store(), piece(Plan::Store, None)]), None);
    }
}
