//! Running each method on an input, and timing the pipeline's stages alone.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use mmh_benches::{MixedData, format_size};
use mmh_codecs::{Accelerator, CodecChoice, CodecId, CpuAccelerator, EncodeParams};
use mmh_dir::{
    DEFAULT_FRAME_SIZE, EntryMeta, FoldOptions, Quiet, fold_stream, open_archive, single_file,
    unfold_entry,
};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{Config, MULTI_RUN_LIMIT, WARMUP_LIMIT, display_name, sys};

/// One input: generated or a file.
#[derive(Debug, Clone)]
pub enum Input {
    /// `len` bytes of [`MixedData`] from `seed`.
    Generated { seed: u64, len: u64 },
    /// A file, read from the page cache after the warm-up run.
    File { path: PathBuf, len: u64 },
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::Generated { len, .. } => format!("mixed-{}", short_size(*len)),
            Input::File { path, .. } => display_name(path),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            Input::Generated { len, .. } | Input::File { len, .. } => *len,
        }
    }

    fn open(&self) -> Result<Box<dyn Read + Send>> {
        Ok(match self {
            Input::Generated { seed, len } => Box::new(MixedData::new(*seed, *len)),
            Input::File { path, .. } => Box::new(
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
            ),
        })
    }
}

/// `64M`, `1G`, `1536K`: the tier as it is typed on the command line.
fn short_size(len: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if len >= 1 << shift && len.is_multiple_of(1 << shift) {
            return format!("{}{unit}", len >> shift);
        }
    }
    len.to_string()
}

/// The methods compared, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `mmh fold` with this codec choice.
    Mmh(CodecChoice),
    /// The `zstd` crate: one stream, `multithread(threads)`.
    Zstd,
    /// The `lz4_flex` frame format, one thread.
    Lz4Flex,
}

pub const METHODS: [Method; 5] = [
    Method::Mmh(CodecChoice::Auto),
    Method::Mmh(CodecChoice::Only(CodecId::Zstd)),
    Method::Mmh(CodecChoice::Only(CodecId::Lz4)),
    Method::Zstd,
    Method::Lz4Flex,
];

/// The codec choices whose encode stage is timed, in the order of [`Stages::encode_s`].
const STAGE_CHOICES: [CodecChoice; 3] = [
    CodecChoice::Auto,
    CodecChoice::Only(CodecId::Zstd),
    CodecChoice::Only(CodecId::Lz4),
];

impl Method {
    /// A stable key for JSON and plots.
    pub fn key(self) -> String {
        match self {
            Method::Mmh(choice) => format!("mmh-{choice}"),
            Method::Zstd => "zstd".into(),
            Method::Lz4Flex => "lz4_flex".into(),
        }
    }

    /// The row label, saying how many threads the method used.
    pub fn label(self, config: &Config) -> String {
        match self {
            Method::Mmh(choice) => format!("mmh --codec {choice}"),
            Method::Zstd => format!(
                "zstd crate -{} (1 stream, zstdmt {} thr)",
                config.level, config.threads
            ),
            Method::Lz4Flex => "lz4_flex frame (1 thread)".into(),
        }
    }
}

/// Everything measured on one input.
#[derive(Debug, Clone, Serialize)]
pub struct InputResult {
    pub name: String,
    pub bytes: u64,
    pub warmup: bool,
    pub runs: usize,
    /// Whether the archives were kept on disk (and so unfolds measured).
    pub unfold_measured: bool,
    pub methods: Vec<MethodResult>,
    pub stages: Stages,
}

/// One method on one input.
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub method: String,
    pub label: String,
    pub output_bytes: u64,
    /// Output bytes / input bytes, in percent.
    pub ratio_pct: f64,
    pub fold_s: Vec<f64>,
    pub unfold_s: Vec<f64>,
    /// Input MB (10^6 bytes) per second, from the fastest run.
    pub fold_mb_s: f64,
    pub unfold_mb_s: Option<f64>,
    /// The same from the median run.
    pub fold_median_mb_s: f64,
    pub unfold_median_mb_s: Option<f64>,
    /// Cores kept busy during fold: process CPU time / wall time, fastest run. Well under
    /// the thread count means the pipeline waits (or the machine is shared).
    pub fold_cores: f64,
    pub fold_cpu_s: Vec<f64>,
    /// For mmh rows: the slowest stage alone, and its speed in input MB/s.
    pub bound: Option<(String, f64)>,
    /// For mmh rows: input MB/s of an ideal pipeline on `threads` cores, from the stages'
    /// CPU time: max(sum of CPU seconds / threads, slowest stage alone).
    pub ideal_mb_s: Option<f64>,
    /// For mmh rows: chunks per codec actually used.
    pub chunks_by_codec: Vec<(String, u64)>,
}

/// The pipeline's stages timed alone, one streamed pass over the input, with the same
/// chunk size and batch length as `fold_stream`. Times in seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stages {
    /// Reading (or generating) the input into chunk buffers.
    pub read_s: f64,
    /// `CpuAccelerator::digest_batch` over each batch (parallel).
    pub hash_chunks_s: f64,
    /// The entry's whole-content SHA-256 (sequential by nature).
    pub hash_entry_s: f64,
    /// Encoding the batch with auto, zstd, lz4 (parallel), as `STAGE_CHOICES`.
    pub encode_s: [f64; 3],
    /// Stored bytes per choice (chunk payloads only, no container).
    pub stored_bytes: [u64; 3],
    /// Writing every choice's stored bytes to a file.
    pub write_s: f64,
    pub written_bytes: u64,
}

impl Stages {
    /// (stage name, input MB/s) for the mmh row with `choice`.
    pub fn for_choice(&self, choice: CodecChoice, input_bytes: u64) -> Vec<(String, f64)> {
        let i = STAGE_CHOICES.iter().position(|&c| c == choice).unwrap_or(0);
        let mb = input_bytes as f64 / 1e6;
        // The write stage in input terms: this choice's output at the measured write rate.
        let write_s = self.write_s * self.stored_bytes[i] as f64 / self.written_bytes.max(1) as f64;
        vec![
            ("read".into(), mb / self.read_s),
            ("SHA-256 chunks".into(), mb / self.hash_chunks_s),
            ("SHA-256 entry".into(), mb / self.hash_entry_s),
            (format!("encode {choice}"), mb / self.encode_s[i]),
            ("write".into(), mb / write_s),
        ]
    }

    /// Input MB/s of a perfect pipeline on `threads` cores: every stage's CPU time (the
    /// parallel ones, chunk hashing and encoding, counted on all threads) spread evenly,
    /// but never faster than the slowest stage alone.
    pub fn ideal_mb_s(&self, choice: CodecChoice, input_bytes: u64, threads: usize) -> f64 {
        let i = STAGE_CHOICES.iter().position(|&c| c == choice).unwrap_or(0);
        let write_s = self.write_s * self.stored_bytes[i] as f64 / self.written_bytes.max(1) as f64;
        let serial = [self.read_s, self.hash_entry_s, write_s];
        let parallel = [self.hash_chunks_s, self.encode_s[i]];
        let cpu = serial.iter().sum::<f64>() + parallel.iter().sum::<f64>() * threads as f64;
        let slowest = serial.into_iter().chain(parallel).fold(0.0, f64::max);
        input_bytes as f64 / 1e6 / (cpu / threads as f64).max(slowest)
    }

    /// Each stage's shorter time of two passes (same input, so the same sizes).
    fn best(&self, other: &Stages) -> Stages {
        Stages {
            read_s: self.read_s.min(other.read_s),
            hash_chunks_s: self.hash_chunks_s.min(other.hash_chunks_s),
            hash_entry_s: self.hash_entry_s.min(other.hash_entry_s),
            encode_s: std::array::from_fn(|i| self.encode_s[i].min(other.encode_s[i])),
            stored_bytes: self.stored_bytes,
            write_s: self.write_s.min(other.write_s),
            written_bytes: self.written_bytes,
        }
    }

    /// MB/s of the write stage in output bytes.
    pub fn write_mb_s(&self) -> f64 {
        self.written_bytes as f64 / 1e6 / self.write_s
    }

    pub fn encode_mb_s(&self, input_bytes: u64) -> [f64; 3] {
        self.encode_s.map(|s| input_bytes as f64 / 1e6 / s)
    }
}

/// Where a fold writes: a file that unfold will read, or a counting sink when the disk
/// could not hold the archive.
enum Dest<'a> {
    File(&'a Path),
    Sink,
}

/// A writer that counts what passes through it.
struct Counter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn counter(dest: &Dest<'_>) -> Result<Counter<Box<dyn Write + Send>>> {
    let inner: Box<dyn Write + Send> = match dest {
        Dest::File(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        Dest::Sink => Box::new(io::sink()),
    };
    Ok(Counter { inner, bytes: 0 })
}

/// `io::copy` with a 1 MiB buffer (the generator and the encoders like large writes).
pub(super) fn copy(mut from: impl Read, mut to: impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn fold_options(choice: CodecChoice, config: &Config) -> FoldOptions {
    FoldOptions {
        encode: EncodeParams {
            choice,
            zstd_level: config.level,
            zstd_long: false,
        },
        threads: Some(config.threads),
        ..FoldOptions::default()
    }
}

/// Folds (compresses) `input` with `method` into `dest`; returns the output size and,
/// for mmh, the chunks per codec.
fn fold(
    method: Method,
    input: &Input,
    dest: &Dest<'_>,
    config: &Config,
) -> Result<(u64, Vec<(String, u64)>)> {
    let reader = input.open()?;
    let mut out = counter(dest)?;
    let mut chunks = Vec::new();
    match method {
        Method::Mmh(choice) => {
            let meta = EntryMeta {
                name: input.name(),
                mode: 0o644,
                mtime: Default::default(),
            };
            let summary = fold_stream(
                reader,
                meta,
                &mut out,
                &fold_options(choice, config),
                &Quiet,
            )?;
            ensure!(
                summary.input_bytes == input.len(),
                "mmh folded {} of {} bytes",
                summary.input_bytes,
                input.len()
            );
            chunks = summary
                .frames_by_codec
                .iter()
                .map(|(codec, n)| (codec.to_string(), *n))
                .collect();
        }
        Method::Zstd => {
            let mut encoder = zstd::stream::Encoder::new(&mut out, config.level)?;
            encoder.multithread(config.threads as u32)?;
            copy(reader, &mut encoder)?;
            encoder.finish()?;
        }
        Method::Lz4Flex => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(&mut out);
            copy(reader, &mut encoder)?;
            encoder.finish()?;
        }
    }
    out.flush()?;
    Ok((out.bytes, chunks))
}

/// Unfolds (decompresses) the archive at `path` into a counting sink; returns the bytes
/// produced. mmh verifies every chunk's and the entry's SHA-256; zstd and lz4 decode only.
fn unfold(method: Method, path: &Path, pool: &rayon::ThreadPool) -> Result<u64> {
    let mut out = Counter {
        inner: io::sink(),
        bytes: 0,
    };
    match method {
        Method::Mmh(_) => {
            pool.install(|| -> Result<u64> {
                let archive = open_archive(path)?;
                Ok(unfold_entry(
                    &archive,
                    single_file(archive.index())?,
                    &mut out,
                    &Quiet,
                )?)
            })?;
        }
        Method::Zstd => {
            copy(zstd::stream::Decoder::new(File::open(path)?)?, &mut out)?;
        }
        Method::Lz4Flex => {
            let file = BufReader::with_capacity(1 << 20, File::open(path)?);
            copy(lz4_flex::frame::FrameDecoder::new(file), &mut out)?;
        }
    }
    Ok(out.bytes)
}

/// One method's timed runs on one input.
#[derive(Default)]
struct Samples {
    output: (u64, Vec<(String, u64)>),
    fold_s: Vec<f64>,
    fold_cpu_s: Vec<f64>,
    unfold_s: Vec<f64>,
}

/// The index of the fastest run: other work on a shared machine only ever slows a run,
/// so the fastest is the best estimate of what the method itself costs.
fn best_index(samples: &[f64]) -> usize {
    (0..samples.len())
        .min_by(|&a, &b| samples[a].total_cmp(&samples[b]))
        .unwrap_or(0)
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Measures every method and the stages on `input`.
pub fn measure_input(input: &Input, config: &Config, scratch: &Path) -> Result<InputResult> {
    let len = input.len();
    let name = input.name();
    let warmup = len <= WARMUP_LIMIT;
    let runs = if len <= MULTI_RUN_LIMIT {
        config.runs
    } else {
        1
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()?;
    // One archive exists at a time, plus the stage pass's file (capped at 1 GiB).
    let free = sys::free_bytes(scratch).unwrap_or(u64::MAX);
    let keep = free > len + len / 50 + (2 << 30);
    let archive = scratch.join("archive");
    let dest = if keep {
        Dest::File(&archive)
    } else {
        eprintln!(
            "bench: {name}: {} free under {}, too little to keep an archive of a {} input; \
             folding into a counting sink and not measuring unfold",
            format_size(free),
            scratch.display(),
            format_size(len)
        );
        Dest::Sink
    };

    // Runs go round-robin over the methods, so that a burst of other work on the machine
    // slows one run of several methods rather than every run of one.
    let mut samples: Vec<Samples> = METHODS.iter().map(|_| Samples::default()).collect();
    for run in 0..runs + usize::from(warmup) {
        let timed = run >= usize::from(warmup);
        eprintln!(
            "bench: {name} ({}): {} {}",
            format_size(len),
            if timed { "run" } else { "warm-up" },
            if timed {
                run + 1 - usize::from(warmup)
            } else {
                0
            }
        );
        for (method, sample) in METHODS.into_iter().zip(&mut samples) {
            let cpu = sys::cpu_seconds();
            let start = Instant::now();
            sample.output = fold(method, input, &dest, config)?;
            let fold_time = start.elapsed().as_secs_f64();
            let fold_cpu = sys::cpu_seconds() - cpu;
            let unfold_time = if keep {
                let start = Instant::now();
                let back = unfold(method, &archive, &pool)?;
                let t = start.elapsed().as_secs_f64();
                ensure!(
                    back == len,
                    "{}: unfolded {back} bytes of {len}",
                    method.key()
                );
                Some(t)
            } else {
                None
            };
            if timed {
                sample.fold_s.push(fold_time);
                sample.fold_cpu_s.push(fold_cpu);
                sample.unfold_s.extend(unfold_time);
            }
        }
    }
    let _ = std::fs::remove_file(&archive);
    let mb = len as f64 / 1e6;
    let mut methods: Vec<MethodResult> = METHODS
        .into_iter()
        .zip(samples)
        .map(|(method, s)| {
            let best = best_index(&s.fold_s);
            MethodResult {
                method: method.key(),
                label: method.label(config),
                output_bytes: s.output.0,
                ratio_pct: 100.0 * s.output.0 as f64 / len.max(1) as f64,
                fold_mb_s: mb / s.fold_s[best],
                fold_median_mb_s: mb / median(&s.fold_s),
                fold_cores: s.fold_cpu_s[best] / s.fold_s[best],
                unfold_mb_s: (!s.unfold_s.is_empty())
                    .then(|| mb / s.unfold_s[best_index(&s.unfold_s)]),
                unfold_median_mb_s: (!s.unfold_s.is_empty()).then(|| mb / median(&s.unfold_s)),
                fold_s: s.fold_s,
                fold_cpu_s: s.fold_cpu_s,
                unfold_s: s.unfold_s,
                bound: None,
                ideal_mb_s: None,
                chunks_by_codec: s.output.1,
            }
        })
        .collect();

    // The stages, best of up to two passes each (a pass over 1 GiB takes several seconds).
    let mut stages = Stages::default();
    for pass in 0..runs.min(2) {
        eprintln!("bench: {name}: timing the stages alone, pass {}", pass + 1);
        let next = pool.install(|| self::stages(input, config, scratch, keep))?;
        stages = if pass == 0 { next } else { stages.best(&next) };
    }
    for m in &mut methods {
        if let Some(choice) = METHODS.iter().find_map(|&x| match x {
            Method::Mmh(choice) if x.key() == m.method => Some(choice),
            _ => None,
        }) {
            m.bound = stages
                .for_choice(choice, len)
                .into_iter()
                .min_by(|a, b| a.1.total_cmp(&b.1));
            m.ideal_mb_s = Some(stages.ideal_mb_s(choice, len, config.threads));
        }
    }
    Ok(InputResult {
        name,
        bytes: len,
        warmup,
        runs,
        unfold_measured: keep,
        methods,
        stages,
    })
}

/// Reads up to `batch_len` chunks, exactly as `fold_stream` does (a fresh buffer per
/// chunk, so page faults are counted as they are there).
fn read_batch(
    input: &mut impl Read,
    chunk_size: usize,
    batch_len: usize,
) -> io::Result<Vec<Vec<u8>>> {
    let mut batch = Vec::with_capacity(batch_len);
    while batch.len() < batch_len {
        let mut chunk = Vec::with_capacity(chunk_size);
        let read = input
            .by_ref()
            .take(chunk_size as u64)
            .read_to_end(&mut chunk)?;
        if read == 0 {
            break;
        }
        batch.push(chunk);
        if read < chunk_size {
            break;
        }
    }
    Ok(batch)
}

/// One pass over the input timing each stage alone, on the current (sized) rayon pool.
fn stages(input: &Input, config: &Config, scratch: &Path, to_disk: bool) -> Result<Stages> {
    let chunk_size = DEFAULT_FRAME_SIZE as usize;
    // fold_stream's batch: two chunks per thread (256 MiB cap does not bite at 4 MiB).
    let batch_len = 2 * config.threads;
    let mut reader = input.open()?;
    let path = scratch.join("stages");
    let mut sink: Box<dyn WriteSeek> = if to_disk {
        Box::new(File::create(&path)?)
    } else {
        Box::new(io::Cursor::new(Vec::new()))
    };
    let mut s = Stages::default();
    let mut entry = Sha256::new();
    let mut in_file = 0u64;
    loop {
        let start = Instant::now();
        let batch = read_batch(&mut reader, chunk_size, batch_len)?;
        s.read_s += start.elapsed().as_secs_f64();
        if batch.is_empty() {
            break;
        }
        let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();

        let start = Instant::now();
        CpuAccelerator.digest_batch(&slices)?;
        s.hash_chunks_s += start.elapsed().as_secs_f64();

        let start = Instant::now();
        slices.iter().for_each(|chunk| entry.update(chunk));
        s.hash_entry_s += start.elapsed().as_secs_f64();

        for (i, choice) in STAGE_CHOICES.into_iter().enumerate() {
            let params = fold_options(choice, config).encode;
            let start = Instant::now();
            let coded = slices
                .par_iter()
                .map(|raw| {
                    let mut out = Vec::new();
                    mmh_codecs::encode(raw, &params, &mut out).map(|_| out)
                })
                .collect::<Result<Vec<_>, _>>()?;
            s.encode_s[i] += start.elapsed().as_secs_f64();
            let stored: u64 = coded.iter().map(|c| c.len() as u64).sum();
            s.stored_bytes[i] += stored;

            if !to_disk {
                continue;
            }
            if in_file > 1 << 30 {
                // Keep the scratch file small; not timed.
                sink.rewind()?;
                File::options().write(true).open(&path)?.set_len(0)?;
                in_file = 0;
            }
            let start = Instant::now();
            coded.iter().try_for_each(|c| sink.write_all(c))?;
            s.write_s += start.elapsed().as_secs_f64();
            s.written_bytes += stored;
            in_file += stored;
        }
    }
    std::hint::black_box(entry.finalize());
    drop(sink);
    let _ = std::fs::remove_file(&path);
    Ok(s)
}

trait WriteSeek: Write + Seek {}
impl<T: Write + Seek> WriteSeek for T {}
