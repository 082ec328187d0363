//! `--models [DIR]`: the tensor codec (FORMAT.md §7.1–7.2) against ZipNN, zstd -3 and
//! zstd -19, and against the entropy bounds of two models, on every model file under DIR
//! (default: the development corpus).
//!
//! DIR is walked recursively (dot-directories such as `.cache` skipped); a file counts
//! when `mmh_dir::file_tensor_layout` gives it a layout. For each float dtype that
//! `mmh_dir::float_kind` maps, with at least [`MIN_BYTES`] of tensors, the tensors' bytes
//! are concatenated in file order and cut in
//! frames of `mmh_dir::DEFAULT_FRAME_SIZE`, as a fold cuts them. Then, all in memory, each
//! the best of `--runs`:
//!
//! - mmh: `encode_tensor` and `decode` of every frame, on one thread and on `--threads`
//!   (rayon over frames); the bytes must come back, and both must store the same bytes;
//! - zstd -3 (bulk API, one thread, the same frames) both ways; zstd -19 encoded once
//!   (it is slow), decoded best of runs;
//! - ZipNN 0.5.4 from PyPI, in a venv under `target/bench/zipnn-venv` made on first use
//!   (`zipnn_bench.py`, a child process, on the whole concatenation, one thread and all);
//!   when it cannot be installed its columns say why and the rest still runs;
//! - two bounds, computed rather than run: the codec's own model ([`codec_bound_bits`])
//!   and order-0 entropy of whole values per tensor ([`value_bound_bits`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use mmh_codecs::{BLOCK_VALUES, CodecId, CpuAccelerator, EncodeParams, FloatKind};
use rayon::prelude::*;
use serde::Serialize;

use super::Config;
use super::report::{cell_text, speed};

/// A (file, dtype) with fewer tensor bytes is left out: too small to time.
pub const MIN_BYTES: u64 = 1 << 20;
/// The ZipNN release compared against.
const ZIPNN_VERSION: &str = "0.5.4";
/// Longest `pip install zipnn` may take: it pulls torch, gigabytes of wheels.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);
/// What the issue asks of the codec on bf16, per core (MB/s).
const TARGET_ENCODE_MB_S: f64 = 1200.0;
const TARGET_DECODE_MB_S: f64 = 2000.0;

/// Everything `--models` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ModelsResult {
    pub dir: PathBuf,
    pub frame_bytes: u32,
    pub threads: usize,
    pub runs: usize,
    /// The ZipNN version measured, or why it could not be.
    pub zipnn: std::result::Result<String, String>,
    pub rows: Vec<Row>,
}

/// One dtype of one model file.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The path below DIR.
    pub file: String,
    pub dtype: String,
    pub tensors: usize,
    pub bytes: u64,
    pub mmh: Mmh,
    pub zstd3: Zstd,
    pub zstd19: Zstd,
    /// Codec's model: bits of symbols at their per-block order-0 entropy plus raw bits,
    /// tables and headers not counted; as % of the input.
    pub codec_bound_pct: f64,
    /// Order-0 entropy of whole values per tensor (the top 16 bits of wider values, the
    /// rest counted raw); as % of the input.
    pub value_bound_pct: f64,
    /// ZipNN's figures, `Err` with the reason when it did not run on this row.
    pub zipnn: std::result::Result<Zipnn, String>,
}

/// The wall and CPU seconds of each timed run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Runs {
    pub wall_s: Vec<f64>,
    /// CPU time of the whole process (all its threads) during the run: on a machine that
    /// other work keeps busy, one thread's MB per CPU-second shows the code's own speed
    /// where wall time shows its share of a core.
    pub cpu_s: Vec<f64>,
}

/// Best-of-runs speeds; every run's seconds are kept.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Speeds {
    pub encode: Runs,
    pub decode: Runs,
    /// 10^6 bytes of input per second, from the fastest run.
    pub encode_mb_s: f64,
    pub decode_mb_s: f64,
    /// 10^6 bytes of input per CPU-second, from the run that took the least CPU time.
    pub encode_mb_cpu_s: f64,
    pub decode_mb_cpu_s: f64,
}

impl Speeds {
    fn new(bytes: u64, encode: Runs, decode: Runs) -> Speeds {
        let mb_s =
            |runs: &[f64]| bytes as f64 / 1e6 / runs.iter().copied().fold(f64::INFINITY, f64::min);
        Speeds {
            encode_mb_s: mb_s(&encode.wall_s),
            decode_mb_s: mb_s(&decode.wall_s),
            encode_mb_cpu_s: mb_s(&encode.cpu_s),
            decode_mb_cpu_s: mb_s(&decode.cpu_s),
            encode,
            decode,
        }
    }
}

/// The tensor codec on one row.
#[derive(Debug, Clone, Serialize)]
pub struct Mmh {
    pub stored_bytes: u64,
    pub ratio_pct: f64,
    /// Frames per codec `encode_tensor` chose (`store` when the codec would grow one).
    pub frames_by_codec: BTreeMap<String, usize>,
    pub one_thread: Speeds,
    pub all_threads: Speeds,
    /// Correctness checks that failed: bytes that did not come back, and so on.
    pub failures: Vec<String>,
}

/// zstd at one level on one row.
#[derive(Debug, Clone, Serialize)]
pub struct Zstd {
    pub level: i32,
    pub stored_bytes: u64,
    pub ratio_pct: f64,
    pub speeds: Speeds,
    /// Set when a frame did not decode to its bytes.
    pub failure: Option<String>,
}

/// ZipNN on one row.
#[derive(Debug, Clone, Serialize)]
pub struct Zipnn {
    pub stored_bytes: u64,
    pub ratio_pct: f64,
    pub one_thread: Speeds,
    pub all_threads: Speeds,
}

impl ModelsResult {
    /// Correctness checks of our own code that failed (ZipNN's errors are its cells').
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .flat_map(|r| {
                let zstd = [&r.zstd3, &r.zstd19]
                    .into_iter()
                    .filter_map(|z| z.failure.clone());
                r.mmh
                    .failures
                    .iter()
                    .cloned()
                    .chain(zstd)
                    .map(move |f| format!("--models {} {}: {f}", r.file, r.dtype))
            })
            .collect()
    }
}

/// Measures every (model file, float dtype) under `dir`.
pub fn measure(config: &Config, target: &Path, scratch: &Path) -> Result<ModelsResult> {
    let dir = config.models_dir();
    ensure!(
        dir.is_dir(),
        "{} is not a directory; build the development corpus with \
         `bash /work/shared/corpus/build.sh` or pass --models DIR",
        dir.display()
    );
    let mut models = Vec::new();
    for path in candidate_files(dir)? {
        match mmh_dir::file_tensor_layout(&path) {
            Ok(Some(layout)) => models.push((path, layout)),
            Ok(None) => {}
            Err(e) => eprintln!("bench: models: skipping {}: {e}", path.display()),
        }
    }
    let zipnn = zipnn_python(target);
    if let Err(why) = &zipnn {
        eprintln!("bench: models: ZipNN unavailable: {why}");
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .context("cannot start the thread pool")?;
    let mut rows = Vec::new();
    for (path, layout) in &models {
        let file = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        for group in dtype_groups(layout) {
            if group.bytes() < MIN_BYTES {
                continue;
            }
            eprintln!(
                "bench: models: {file} {} ({} tensors, {:.1} MB)",
                group.dtype,
                group.pieces.len(),
                group.bytes() as f64 / 1e6
            );
            let data = read_pieces(path, &group.pieces)?;
            rows.push(measure_row(
                config,
                &pool,
                scratch,
                zipnn.as_ref().map_err(Clone::clone),
                file.clone(),
                &group,
                &data,
            )?);
        }
    }
    Ok(ModelsResult {
        dir: dir.to_path_buf(),
        frame_bytes: mmh_dir::DEFAULT_FRAME_SIZE,
        threads: config.threads,
        runs: config.runs,
        zipnn: zipnn.map(|z| z.version),
        rows,
    })
}

/// Files under `dir`, recursively, sorted, leaving out dot-directories (`.cache` holds
/// downloads, not the corpus) and anything that is not a regular file.
fn candidate_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in
            std::fs::read_dir(&at).with_context(|| format!("cannot list {}", at.display()))?
        {
            let entry = entry.with_context(|| format!("cannot list {}", at.display()))?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !entry.file_name().to_string_lossy().starts_with('.') {
                    pending.push(entry.path());
                }
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The tensors of one float dtype of a file.
#[derive(Debug, PartialEq)]
struct Group {
    dtype: String,
    kind: FloatKind,
    /// Byte ranges in file order.
    pieces: Vec<std::ops::Range<u64>>,
}

impl Group {
    fn bytes(&self) -> u64 {
        self.pieces.iter().map(|r| r.end - r.start).sum()
    }
}

/// The layout's float tensors grouped by dtype, in the order the dtypes first appear.
/// `Layout`'s invariant keeps the ranges sorted and disjoint, so no byte is taken twice.
fn dtype_groups(layout: &mmh_model::Layout) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for t in &layout.tensors {
        let Some(kind) = mmh_dir::float_kind(&t.dtype) else {
            continue;
        };
        let range = t.range.clone();
        if range.is_empty() {
            continue;
        }
        let dtype = t.dtype.to_string();
        match groups.iter_mut().find(|g| g.dtype == dtype) {
            Some(g) => g.pieces.push(range),
            None => groups.push(Group {
                dtype,
                kind,
                pieces: vec![range],
            }),
        }
    }
    groups
}

fn read_pieces(path: &Path, pieces: &[std::ops::Range<u64>]) -> Result<Vec<u8>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let total: u64 = pieces.iter().map(|r| r.end - r.start).sum();
    let mut data = vec![0u8; total as usize];
    let mut at = 0;
    for r in pieces {
        let len = (r.end - r.start) as usize;
        file.seek(SeekFrom::Start(r.start))?;
        file.read_exact(&mut data[at..at + len])
            .with_context(|| format!("cannot read bytes {r:?} of {}", path.display()))?;
        at += len;
    }
    Ok(data)
}

/// Measures one (file, dtype): `data` is `group`'s tensors, concatenated.
fn measure_row(
    config: &Config,
    pool: &rayon::ThreadPool,
    scratch: &Path,
    zipnn: std::result::Result<&ZipnnPython, String>,
    file: String,
    group: &Group,
    data: &[u8],
) -> Result<Row> {
    let lens: Vec<usize> = group
        .pieces
        .iter()
        .map(|r| (r.end - r.start) as usize)
        .collect();
    let frames: Vec<&[u8]> = data.chunks(mmh_dir::DEFAULT_FRAME_SIZE as usize).collect();
    let bytes = data.len() as u64;
    let pct = |bits: f64| 100.0 * bits / 8.0 / bytes as f64;
    let mmh = measure_mmh(&frames, group.kind, config.runs, pool)?;
    let zstd3 = measure_zstd(&frames, 3, config.runs, config.runs)?;
    let zstd19 = measure_zstd(&frames, 19, 1, config.runs)?;
    let zipnn = match (zipnn, zipnn_dtype(group.kind)) {
        (Err(why), _) => Err(why),
        (Ok(_), None) => Err(format!("ZipNN takes no {}", group.dtype)),
        (Ok(python), Some(dtype)) => {
            run_zipnn(python, config, scratch, data, dtype).map_err(|e| format!("{e:#}"))
        }
    };
    Ok(Row {
        file,
        dtype: group.dtype.clone(),
        tensors: group.pieces.len(),
        bytes,
        mmh,
        zstd3,
        zstd19,
        codec_bound_pct: pct(frames.iter().map(|f| codec_bound_bits(f, group.kind)).sum()),
        value_bound_pct: pct(value_bound_bits(data, &lens, group.kind.width())),
        zipnn,
    })
}

/// Times `f` `runs` times.
fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Runs> {
    let mut timed = Runs::default();
    for _ in 0..runs {
        let (start, cpu) = (Instant::now(), super::sys::cpu_seconds());
        f()?;
        timed.wall_s.push(start.elapsed().as_secs_f64());
        timed.cpu_s.push(super::sys::cpu_seconds() - cpu);
    }
    Ok(timed)
}

fn measure_mmh(
    frames: &[&[u8]],
    kind: FloatKind,
    runs: usize,
    pool: &rayon::ThreadPool,
) -> Result<Mmh> {
    let params = EncodeParams::default();
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let encode = |frame: &[u8], slot: &mut (CodecId, Vec<u8>)| -> Result<()> {
        slot.0 = mmh_codecs::encode_tensor(frame, kind, &params, &CpuAccelerator, &mut slot.1)?;
        Ok(())
    };
    let decode = |frame: &[u8], slot: &(CodecId, Vec<u8>), out: &mut Vec<u8>| -> Result<()> {
        mmh_codecs::decode(slot.0, &slot.1, frame.len(), &CpuAccelerator, out)?;
        Ok(())
    };
    let mut failures = Vec::new();

    let mut stored: Vec<(CodecId, Vec<u8>)> = frames
        .iter()
        .map(|_| (CodecId::Store, Vec::new()))
        .collect();
    let mut back: Vec<Vec<u8>> = frames.iter().map(|f| Vec::with_capacity(f.len())).collect();
    let enc1 = time_runs(runs, || {
        frames
            .iter()
            .zip(&mut stored)
            .try_for_each(|(f, s)| encode(f, s))
    })?;
    let dec1 = time_runs(runs, || {
        frames
            .iter()
            .zip(&stored)
            .zip(&mut back)
            .try_for_each(|((f, s), b)| decode(f, s, b))
    })?;
    if frames.iter().zip(&back).any(|(f, b)| f != b) {
        failures.push("one thread: decode did not give the bytes back".to_owned());
    }

    let mut again: Vec<(CodecId, Vec<u8>)> = frames
        .iter()
        .map(|_| (CodecId::Store, Vec::new()))
        .collect();
    let encn = time_runs(runs, || {
        pool.install(|| {
            frames
                .par_iter()
                .zip(&mut again)
                .try_for_each(|(f, s)| encode(f, s))
        })
    })?;
    if again != stored {
        failures.push("all threads stored other bytes than one thread".to_owned());
    }
    back.iter_mut().for_each(Vec::clear);
    let decn = time_runs(runs, || {
        pool.install(|| {
            frames
                .par_iter()
                .zip(&stored)
                .zip(&mut back)
                .try_for_each(|((f, s), b)| decode(f, s, b))
        })
    })?;
    if frames.iter().zip(&back).any(|(f, b)| f != b) {
        failures.push("all threads: decode did not give the bytes back".to_owned());
    }

    // The bound is computed with this file's k; the payload's first byte is the k the
    // codec wrote (FORMAT.md §7.1), so a stale table here shows up as a failure.
    let k = fields(kind).2;
    if let Some((_, payload)) = stored.iter().find(|(c, _)| *c == kind.codec())
        && payload.first() != Some(&(k as u8))
    {
        failures.push(format!(
            "the codec wrote k = {:?}, the bound assumes {k}: update fields()",
            payload.first()
        ));
    }
    let mut frames_by_codec = BTreeMap::new();
    for (codec, _) in &stored {
        *frames_by_codec.entry(codec.to_string()).or_insert(0) += 1;
    }
    let stored_bytes: u64 = stored.iter().map(|(_, s)| s.len() as u64).sum();
    Ok(Mmh {
        stored_bytes,
        ratio_pct: 100.0 * stored_bytes as f64 / bytes as f64,
        frames_by_codec,
        one_thread: Speeds::new(bytes, enc1, dec1),
        all_threads: Speeds::new(bytes, encn, decn),
        failures,
    })
}

/// zstd at `level` on one thread, frame by frame: `encode_runs` timed encodes (the
/// stored size is the same every time), `decode_runs` timed decodes.
fn measure_zstd(
    frames: &[&[u8]],
    level: i32,
    encode_runs: usize,
    decode_runs: usize,
) -> Result<Zstd> {
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    let mut decompressor = zstd::bulk::Decompressor::new()?;
    let mut stored: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| Vec::with_capacity(zstd::zstd_safe::compress_bound(f.len())))
        .collect();
    let mut back: Vec<Vec<u8>> = frames.iter().map(|f| Vec::with_capacity(f.len())).collect();
    let enc = time_runs(encode_runs, || {
        for (f, s) in frames.iter().zip(&mut stored) {
            compressor.compress_to_buffer(f, s)?;
        }
        Ok(())
    })?;
    let dec = time_runs(decode_runs, || {
        for (s, b) in stored.iter().zip(&mut back) {
            decompressor.decompress_to_buffer(s, b)?;
        }
        Ok(())
    })?;
    let failure = frames
        .iter()
        .zip(&back)
        .any(|(f, b)| f != b)
        .then(|| format!("zstd -{level}: decode did not give the bytes back"));
    let stored_bytes: u64 = stored.iter().map(|s| s.len() as u64).sum();
    Ok(Zstd {
        level,
        stored_bytes,
        ratio_pct: 100.0 * stored_bytes as f64 / bytes as f64,
        speeds: Speeds::new(bytes, enc, dec),
        failure,
    })
}

/// The exponent bits, mantissa bits and `k` of a kind, as the codec writes them.
fn fields(kind: FloatKind) -> (u32, u32, u32) {
    (
        kind.exponent_bits(),
        kind.mantissa_bits(),
        kind.symbol_mantissa_bits(),
    )
}

/// Order-0 entropy of a histogram, in bits for all its samples.
fn entropy_bits(counts: &[u32]) -> f64 {
    let n: f64 = counts.iter().map(|&c| f64::from(c)).sum();
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| f64::from(c) * (n / f64::from(c)).log2())
        .sum()
}

/// A little-endian value of up to 8 bytes.
fn read_le(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// The size, in bits, that the tensor codec's model gives one frame if its rANS coder
/// were perfect and its tables free: per block of [`BLOCK_VALUES`] values, the symbols
/// (exponent and top k mantissa bits) at the block's order-0 entropy, plus the raw bits
/// (sign and the mantissa bits below the symbol, less those zero throughout the block),
/// plus the frame's tail bytes that make no whole value.
fn codec_bound_bits(frame: &[u8], kind: FloatKind) -> f64 {
    let width = kind.width();
    let (exponent, mantissa, k) = fields(kind);
    let low_bits = mantissa - k;
    let symbol_mask = (1u64 << (exponent + k)) - 1;
    let low_mask = (1u64 << low_bits) - 1;
    let whole = frame.len() - frame.len() % width;
    let mut counts = vec![0u32; 1 << (exponent + k)];
    let mut bits = 8.0 * (frame.len() - whole) as f64;
    for block in frame[..whole].chunks(width * BLOCK_VALUES) {
        counts.fill(0);
        let mut ones = 0;
        for v in block.chunks_exact(width).map(read_le) {
            ones |= v & low_mask;
            counts[((v >> low_bits) & symbol_mask) as usize] += 1;
        }
        let raw_bits = 1 + low_bits - ones.trailing_zeros().min(low_bits);
        bits += entropy_bits(&counts) + f64::from(raw_bits) * (block.len() / width) as f64;
    }
    bits
}

/// The size, in bits, of order-0 entropy coding of whole values, one model per tensor
/// (`lens` are the tensors' byte lengths in `data`): values of up to 16 bits whole; of
/// wider values the top 16 bits, the rest counted raw; bytes that make no whole value raw.
fn value_bound_bits(data: &[u8], lens: &[usize], width: usize) -> f64 {
    let top = (8 * width).min(16) as u32;
    let shift = 8 * width as u32 - top;
    let mut counts = vec![0u32; 1 << top];
    let mut bits = 0.0;
    let mut at = 0;
    for &len in lens {
        let tensor = &data[at..at + len];
        at += len;
        counts.fill(0);
        for v in tensor.chunks_exact(width).map(read_le) {
            counts[(v >> shift) as usize] += 1;
        }
        let values = len / width;
        bits += entropy_bits(&counts)
            + f64::from(shift) * values as f64
            + 8.0 * (len - values * width) as f64;
    }
    bits
}

/// The name ZipNN 0.5.4 gives a kind (`bytearray_dtype`), for the kinds it codes.
fn zipnn_dtype(kind: FloatKind) -> Option<&'static str> {
    match kind {
        FloatKind::Bf16 => Some("bfloat16"),
        FloatKind::F16 => Some("float16"),
        FloatKind::F32 => Some("float32"),
        _ => None,
    }
}

/// A Python with ZipNN installed.
#[derive(Debug)]
struct ZipnnPython {
    python: PathBuf,
    version: String,
}

/// The venv's Python, made and given ZipNN [`ZIPNN_VERSION`] when it lacks it; `Err`
/// with the reason when that fails (no python3, no network).
fn zipnn_python(target: &Path) -> std::result::Result<ZipnnPython, String> {
    let venv = target.join("bench/zipnn-venv");
    let python = venv.join("bin/python");
    let installed = || {
        Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('zipnn'))",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if installed().as_deref() == Some(ZIPNN_VERSION) {
        return Ok(ZipnnPython {
            python,
            version: ZIPNN_VERSION.to_owned(),
        });
    }
    let step = |command: Command| {
        super::external::run(command, INSTALL_TIMEOUT).map_err(|e| format!("{e:#}"))
    };
    if !python.exists() {
        eprintln!("bench: models: python3 -m venv {}", venv.display());
        let mut make = Command::new("python3");
        make.args(["-m", "venv"]).arg(&venv);
        step(make)?;
    }
    eprintln!("bench: models: pip install zipnn=={ZIPNN_VERSION} (pulls torch; minutes)");
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet"])
        .arg(format!("zipnn=={ZIPNN_VERSION}"));
    step(pip)?;
    match installed() {
        Some(v) if v == ZIPNN_VERSION => Ok(ZipnnPython { python, version: v }),
        other => Err(format!(
            "pip installed zipnn {other:?}, not {ZIPNN_VERSION}"
        )),
    }
}

/// Runs `zipnn_bench.py` on `data` (written to a file under `scratch`) with one thread
/// and with `--threads`.
fn run_zipnn(
    zipnn: &ZipnnPython,
    config: &Config,
    scratch: &Path,
    data: &[u8],
    dtype: &str,
) -> Result<Zipnn> {
    #[derive(serde::Deserialize)]
    struct Printed {
        bytes: u64,
        threads: Vec<PrintedRun>,
    }
    #[derive(serde::Deserialize)]
    struct PrintedRun {
        threads: usize,
        compressed_bytes: u64,
        compress_s: Vec<f64>,
        decompress_s: Vec<f64>,
        compress_cpu_s: Vec<f64>,
        decompress_cpu_s: Vec<f64>,
    }
    let raw = scratch.join("zipnn-input.bin");
    std::fs::write(&raw, data).with_context(|| format!("cannot write {}", raw.display()))?;
    let script = crate::workspace_root().join("xtask/src/bench/zipnn_bench.py");
    let mut command = Command::new(&zipnn.python);
    command
        .arg(&script)
        .arg(&raw)
        .arg(dtype)
        .arg("--threads")
        .arg(format!("1,{}", config.threads))
        .arg("--runs")
        .arg(config.runs.to_string());
    let done = super::external::run(command, config.timeout);
    std::fs::remove_file(&raw).ok();
    let printed: Printed = serde_json::from_slice(&done?.stdout)
        .context("zipnn_bench.py printed no JSON it should")?;
    ensure!(
        printed.bytes == data.len() as u64,
        "zipnn_bench.py read {} bytes, not {}",
        printed.bytes,
        data.len()
    );
    let speeds = |threads: usize| -> Result<(u64, Speeds)> {
        let Some(run) = printed.threads.iter().find(|r| r.threads == threads) else {
            bail!("zipnn_bench.py printed nothing for {threads} threads");
        };
        Ok((
            run.compressed_bytes,
            Speeds::new(
                printed.bytes,
                Runs {
                    wall_s: run.compress_s.clone(),
                    cpu_s: run.compress_cpu_s.clone(),
                },
                Runs {
                    wall_s: run.decompress_s.clone(),
                    cpu_s: run.decompress_cpu_s.clone(),
                },
            ),
        ))
    };
    let (stored_bytes, one_thread) = speeds(1)?;
    let (_, all_threads) = speeds(config.threads)?;
    Ok(Zipnn {
        stored_bytes,
        ratio_pct: 100.0 * stored_bytes as f64 / printed.bytes as f64,
        one_thread,
        all_threads,
    })
}

impl ModelsResult {
    /// The markdown section.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "### Tensor codec against ZipNN, zstd and entropy bounds, per model file and dtype\n\n",
        );
        let zipnn = match &self.zipnn {
            Ok(v) => format!(
                "ZipNN {v} (PyPI, in target/bench/zipnn-venv; default method, `input_format=\"byte\"`, on the whole concatenation, in memory, the input copied outside the timing since ZipNN reorders it in place)"
            ),
            Err(why) => format!("ZipNN unavailable ({})", cell_text(why)),
        };
        let _ = writeln!(
            s,
            "Every model file under `{}` with a tensor layout; per float dtype with at least \
             {} MiB, the tensors' bytes concatenated in file order and cut in {} MiB frames \
             (as fold cuts them), all in memory. Ratio = output / input (%). MB/s = 10^6 \
             bytes of input per second, best of {} runs; 1T = one thread, {}T = rayon over \
             frames. mmh: `encode_tensor` / `decode`, bytes checked. zstd: bulk API, one \
             thread, same frames; -19 encoded once. {zipnn}. Codec bound: the codec's \
             symbols (exponent + top k mantissa bits) at each 16 Ki-value block's order-0 \
             entropy, plus its raw bits (sign, lower mantissa bits less those zero in the \
             whole block), tables not counted. Value bound: order-0 entropy of whole values \
             per tensor (16-bit values whole; f32: the top 16 bits' entropy + 16 raw bits).\n",
            self.dir.display(),
            MIN_BYTES >> 20,
            self.frame_bytes >> 20,
            self.runs,
            self.threads,
        );
        let t = self.threads;
        let _ = writeln!(
            s,
            "| file | dtype | MB | mmh % | ZipNN % | zstd -3 % | zstd -19 % | codec bound % | value bound % \
             | mmh enc 1T | mmh dec 1T | mmh enc {t}T | mmh dec {t}T \
             | ZipNN enc 1T | ZipNN dec 1T | ZipNN enc {t}T | ZipNN dec {t}T \
             | zstd -3 enc | zstd -3 dec |"
        );
        s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let (zipnn_ratio, zipnn_speeds) = match &r.zipnn {
                Ok(z) => (
                    format!("{:.2}", z.ratio_pct),
                    [
                        z.one_thread.encode_mb_s,
                        z.one_thread.decode_mb_s,
                        z.all_threads.encode_mb_s,
                        z.all_threads.decode_mb_s,
                    ]
                    .map(speed)
                    .join(" | "),
                ),
                // When ZipNN could not be installed the paragraph above says why once.
                Err(_) if self.zipnn.is_err() => {
                    ("unavailable".to_owned(), "— | — | — | —".to_owned())
                }
                Err(why) => (cell_text(why), "— | — | — | —".to_owned()),
            };
            let m = &r.mmh;
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.2}{} | {zipnn_ratio} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {zipnn_speeds} | {} | {} |",
                r.file,
                r.dtype,
                r.bytes as f64 / 1e6,
                m.ratio_pct,
                if m.failures.is_empty() {
                    ""
                } else {
                    " (FAILED)"
                },
                r.zstd3.ratio_pct,
                r.zstd19.ratio_pct,
                r.codec_bound_pct,
                r.value_bound_pct,
                speed(m.one_thread.encode_mb_s),
                speed(m.one_thread.decode_mb_s),
                speed(m.all_threads.encode_mb_s),
                speed(m.all_threads.decode_mb_s),
                speed(r.zstd3.speeds.encode_mb_s),
                speed(r.zstd3.speeds.decode_mb_s),
            );
        }
        s.push('\n');
        s.push_str(&self.summary());
        s.push('\n');
        s
    }

    /// How the ratios compare, and the per-core targets on bf16, as list items.
    fn summary(&self) -> String {
        let mut s = String::new();
        let weighted = |rows: &[&Row], pct: &dyn Fn(&Row) -> f64| {
            let bytes: f64 = rows.iter().map(|r| r.bytes as f64).sum();
            rows.iter().map(|r| pct(r) * r.bytes as f64).sum::<f64>() / bytes
        };
        let all: Vec<&Row> = self.rows.iter().collect();
        if all.is_empty() {
            s.push_str("- no model file with float tensors found\n");
            return s;
        }
        let _ = writeln!(
            s,
            "- over all {} rows, weighted by bytes: mmh {:.2} %, zstd -3 {:.2} %, zstd -19 {:.2} %, codec bound {:.2} %, value bound {:.2} %; mmh is {:.2} points above its codec bound (tables, headers, coder)",
            all.len(),
            weighted(&all, &|r| r.mmh.ratio_pct),
            weighted(&all, &|r| r.zstd3.ratio_pct),
            weighted(&all, &|r| r.zstd19.ratio_pct),
            weighted(&all, &|r| r.codec_bound_pct),
            weighted(&all, &|r| r.value_bound_pct),
            weighted(&all, &|r| r.mmh.ratio_pct - r.codec_bound_pct),
        );
        let with_zipnn: Vec<&Row> = self.rows.iter().filter(|r| r.zipnn.is_ok()).collect();
        let zipnn_pct = |r: &Row| r.zipnn.as_ref().map_or(f64::NAN, |z| z.ratio_pct);
        if !with_zipnn.is_empty() {
            let deltas: Vec<f64> = with_zipnn
                .iter()
                .map(|r| r.mmh.ratio_pct - zipnn_pct(r))
                .collect();
            let smaller = deltas.iter().filter(|d| **d < 0.0).count();
            let _ = writeln!(
                s,
                "- mmh against ZipNN on the {} rows ZipNN ran: mmh {:.2} %, ZipNN {:.2} % (weighted by bytes), mmh − ZipNN {:+.2} points; per row from {:+.2} to {:+.2} points; mmh smaller on {smaller} of {}",
                with_zipnn.len(),
                weighted(&with_zipnn, &|r| r.mmh.ratio_pct),
                weighted(&with_zipnn, &zipnn_pct),
                weighted(&with_zipnn, &|r| r.mmh.ratio_pct - zipnn_pct(r)),
                deltas.iter().copied().fold(f64::INFINITY, f64::min),
                deltas.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                with_zipnn.len(),
            );
        }
        let bf16: Vec<&Row> = self.rows.iter().filter(|r| r.dtype == "BF16").collect();
        if !bf16.is_empty() {
            // (lowest, highest, rows at or above `target`) of a figure over the bf16 rows.
            let spread = |v: &dyn Fn(&Row) -> Option<f64>, target: f64| {
                let values: Vec<f64> = bf16.iter().filter_map(|r| v(r)).collect();
                let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let met = values.iter().filter(|&&x| x >= target).count();
                (lo, hi, met)
            };
            let mb = |v: &dyn Fn(&Row) -> Option<f64>, target: f64| {
                let (lo, hi, met) = spread(v, target);
                if lo == hi {
                    format!("{} MB/s ({met} met)", speed(lo))
                } else {
                    format!("{}–{} MB/s ({met} met)", speed(lo), speed(hi))
                }
            };
            let times = |v: &dyn Fn(&Row) -> Option<f64>| {
                let (lo, hi, _) = spread(v, 0.0);
                format!("{lo:.2}–{hi:.2}×")
            };
            let (enc, dec) = (TARGET_ENCODE_MB_S, TARGET_DECODE_MB_S);
            fn one(r: &Row) -> &Speeds {
                &r.mmh.one_thread
            }
            fn zipnn(r: &Row) -> Option<&Speeds> {
                r.zipnn.as_ref().ok().map(|z| &z.one_thread)
            }
            let _ = writeln!(
                s,
                "- bf16 targets per core (fold ≥ {} MB/s, unfold ≥ {} MB/s), mmh on one thread, {} rows: \
                 wall time fold {}, unfold {}; per CPU-second (the share of a core the \
                 machine's other work left aside) fold {}, unfold {}. ZipNN on one thread per \
                 CPU-second: compress {}, decompress {}. mmh on {} threads against one \
                 (wall time): fold {}, unfold {}",
                speed(enc),
                speed(dec),
                bf16.len(),
                mb(&|r| Some(one(r).encode_mb_s), enc),
                mb(&|r| Some(one(r).decode_mb_s), dec),
                mb(&|r| Some(one(r).encode_mb_cpu_s), enc),
                mb(&|r| Some(one(r).decode_mb_cpu_s), dec),
                mb(&|r| zipnn(r).map(|z| z.encode_mb_cpu_s), enc),
                mb(&|r| zipnn(r).map(|z| z.decode_mb_cpu_s), dec),
                self.threads,
                times(&|r| Some(r.mmh.all_threads.encode_mb_s / one(r).encode_mb_s)),
                times(&|r| Some(r.mmh.all_threads.decode_mb_s / one(r).decode_mb_s)),
            );
        }
        s
    }
}

impl ModelsResult {
    /// The (decode MB/s on one thread, ratio %) points of each method, one per row.
    fn points(&self) -> Vec<(&'static str, Vec<(f64, f64)>)> {
        let rows = &self.rows;
        let mut series: Vec<(&'static str, Vec<(f64, f64)>)> = vec![
            (
                "mmh tensor codec",
                rows.iter()
                    .map(|r| (r.mmh.one_thread.decode_mb_s, r.mmh.ratio_pct))
                    .collect(),
            ),
            (
                "ZipNN",
                rows.iter()
                    .filter_map(|r| r.zipnn.as_ref().ok())
                    .map(|z| (z.one_thread.decode_mb_s, z.ratio_pct))
                    .collect(),
            ),
            (
                "zstd -3",
                rows.iter()
                    .map(|r| (r.zstd3.speeds.decode_mb_s, r.zstd3.ratio_pct))
                    .collect(),
            ),
            (
                "zstd -19",
                rows.iter()
                    .map(|r| (r.zstd19.speeds.decode_mb_s, r.zstd19.ratio_pct))
                    .collect(),
            ),
        ];
        for (_, points) in &mut series {
            points.retain(|(x, _)| x.is_finite() && *x > 0.0);
        }
        series
    }

    /// Draws ratio (y) against decode speed on one thread (x, log scale): one marker
    /// series per method, one point per (file, dtype) row.
    pub fn plot(&self, path: &Path) -> Result<()> {
        use plotters::prelude::*;

        use super::report::{marker_shape, ratio_axis, ratio_speed_chart, speed_axis};

        const COLORS: [RGBColor; 4] = [
            RGBColor(0xd6, 0x27, 0x28),
            RGBColor(0x1f, 0x77, 0xb4),
            RGBColor(0x2c, 0xa0, 0x2c),
            RGBColor(0x94, 0x67, 0xbd),
        ];
        const MARKER: i32 = 7;
        // A macro, not a closure: it is drawn at chart coordinates and, in the legend, at
        // pixel coordinates.
        macro_rules! marker {
            ($i:expr, $at:expr) => {
                EmptyElement::at($at)
                    + Polygon::new(marker_shape($i, MARKER), COLORS[$i % COLORS.len()].filled())
            };
        }

        let series = self.points();
        let all = || series.iter().flat_map(|(_, p)| p.iter().copied());
        let speeds = speed_axis(all().map(|(x, _)| x));
        let ratios = ratio_axis(all().map(|(_, y)| y));
        let root = SVGBackend::new(path, (900, 620)).into_drawing_area();
        root.fill(&WHITE)?;
        let caption = format!(
            "Model tensors: output size against decode speed, one thread ({} file × dtype rows; lower right is better)",
            self.rows.len()
        );
        let mut chart = ratio_speed_chart(
            &root,
            (&caption, 19),
            "decode MB/s of input, one thread (log scale)",
            speeds,
            ratios,
        )?;
        for (i, (name, points)) in series.iter().enumerate() {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(points.iter().map(|&p| marker!(i, p)))?
                .label(*name)
                .legend(move |p| marker!(i, p));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 16))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bf16 1.0 and 2.0: symbols differ (exponent), every mantissa bit is zero.
    const ONE: [u8; 2] = 0x3F80u16.to_le_bytes();
    const TWO: [u8; 2] = 0x4000u16.to_le_bytes();

    #[test]
    fn entropy_of_known_histograms() {
        assert_eq!(entropy_bits(&[]), 0.0);
        assert_eq!(entropy_bits(&[7, 0]), 0.0);
        assert!((entropy_bits(&[2, 2]) - 4.0).abs() < 1e-12);
        assert!((entropy_bits(&[1, 1, 1, 1]) - 8.0).abs() < 1e-12);
        // p = 3/4, 1/4: 3 log2(4/3) + 1 log2(4).
        let expected = 3.0 * (4.0f64 / 3.0).log2() + 2.0;
        assert!((entropy_bits(&[3, 1]) - expected).abs() < 1e-12);
    }

    #[test]
    fn codec_bound_counts_symbols_raw_bits_and_zero_bits() {
        // Two symbols, equally often: 1 bit each; the 6 mantissa bits below the symbol
        // are zero throughout, so only the sign is raw: 2 bits a value.
        let data = [ONE, TWO, ONE, TWO].concat();
        assert!((codec_bound_bits(&data, FloatKind::Bf16) - 8.0).abs() < 1e-9);
        // One low mantissa bit set in one value: every value keeps 1 + 6 raw bits; a
        // trailing odd byte is raw.
        let mut data = [ONE, TWO, ONE, TWO].concat();
        data[0] |= 1;
        data.push(0xAB);
        let symbols = 4.0;
        let expected = symbols + 4.0 * 7.0 + 8.0;
        assert!((codec_bound_bits(&data, FloatKind::Bf16) - expected).abs() < 1e-9);
    }

    #[test]
    fn codec_bound_resets_per_block() {
        // A block of ones then a block of twos: each block has one symbol (0 bits); a
        // model over both would pay 1 bit a value.
        let data = [ONE.repeat(BLOCK_VALUES), TWO.repeat(BLOCK_VALUES)].concat();
        let expected = 2.0 * BLOCK_VALUES as f64; // the sign bits
        assert!((codec_bound_bits(&data, FloatKind::Bf16) - expected).abs() < 1e-6);
    }

    #[test]
    fn value_bound_models_each_tensor_alone() {
        // Tensor 1: ONE, ONE; tensor 2: ONE, TWO. 0 bits + 2 bits.
        let data = [ONE, ONE, ONE, TWO].concat();
        assert!((value_bound_bits(&data, &[4, 4], 2) - 2.0).abs() < 1e-12);
        // As one tensor: 3/4, 1/4.
        let one = 3.0 * (4.0f64 / 3.0).log2() + 2.0;
        assert!((value_bound_bits(&data, &[8], 2) - one).abs() < 1e-12);
        // f32: the top 16 bits modelled, the low 16 raw.
        let f32s = [1.0f32.to_le_bytes(), 1.5f32.to_le_bytes()].concat();
        assert!((value_bound_bits(&f32s, &[8], 4) - (2.0 + 32.0)).abs() < 1e-12);
    }

    #[test]
    fn fields_match_the_codec() {
        for kind in FloatKind::ALL {
            let (exponent, mantissa, k) = fields(kind);
            assert_eq!(1 + exponent + mantissa, 8 * kind.width() as u32, "{kind:?}");
            assert!(k <= mantissa, "{kind:?}");
            // The codec writes k as the payload's first byte (FORMAT.md §7.1).
            let values: Vec<u8> = (0..4096u32)
                .flat_map(|i| {
                    let v = (i % 7) as u64 * 0x0101_0101_0101_0101;
                    v.to_le_bytes()[..kind.width()].to_vec()
                })
                .collect();
            let mut out = Vec::new();
            let codec = mmh_codecs::encode_tensor(
                &values,
                kind,
                &EncodeParams::default(),
                &CpuAccelerator,
                &mut out,
            )
            .unwrap();
            if codec == kind.codec() {
                assert_eq!(out[0], k as u8, "{kind:?}");
            }
        }
    }

    /// A safetensors file with the given (name, dtype, bytes) tensors.
    fn safetensors(tensors: &[(&str, &str, usize)]) -> Vec<u8> {
        let mut at = 0;
        let entries: Vec<String> = tensors
            .iter()
            .map(|(name, dtype, len)| {
                let width = if *dtype == "F32" { 4 } else { 2 };
                let entry = format!(
                    r#""{name}":{{"dtype":"{dtype}","shape":[{}],"data_offsets":[{at},{}]}}"#,
                    len / width,
                    at + len
                );
                at += len;
                entry
            })
            .collect();
        let header = format!("{{{}}}", entries.join(","));
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        file.extend((0..at).map(|i| (i * 31 % 251) as u8));
        file
    }

    #[test]
    fn walk_skips_dot_directories_and_layouts_pick_model_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".cache/sub")).unwrap();
        std::fs::create_dir_all(root.join("nested")).unwrap();
        let model = safetensors(&[("a", "BF16", 8), ("b", "F32", 16), ("c", "BF16", 4)]);
        std::fs::write(root.join("m.safetensors"), &model).unwrap();
        std::fs::write(root.join("nested/n.safetensors"), &model).unwrap();
        std::fs::write(root.join(".cache/sub/hidden.safetensors"), &model).unwrap();
        std::fs::write(root.join("notes.txt"), b"not a model").unwrap();

        let files = candidate_files(root).unwrap();
        assert_eq!(
            files,
            vec![
                root.join("m.safetensors"),
                root.join("nested/n.safetensors"),
                root.join("notes.txt")
            ]
        );
        assert!(
            mmh_dir::file_tensor_layout(&root.join("notes.txt"))
                .unwrap()
                .is_none()
        );
        let layout = mmh_dir::file_tensor_layout(&root.join("m.safetensors"))
            .unwrap()
            .unwrap();
        let groups = dtype_groups(&layout);
        let start = layout.tensors[0].range.start;
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].dtype, "BF16");
        assert_eq!(groups[0].kind, FloatKind::Bf16);
        assert_eq!(
            groups[0].pieces,
            vec![start..start + 8, start + 24..start + 28]
        );
        assert_eq!(groups[1].dtype, "F32");
        assert_eq!(groups[1].bytes(), 16);
        let data = read_pieces(&root.join("m.safetensors"), &groups[0].pieces).unwrap();
        let s = start as usize;
        assert_eq!(data, [&model[s..s + 8], &model[s + 24..s + 28]].concat());
    }

    fn row(zipnn: std::result::Result<Zipnn, String>, failures: Vec<String>) -> Row {
        let zstd = |level| Zstd {
            level,
            stored_bytes: 80,
            ratio_pct: 80.0,
            speeds: Speeds::default(),
            failure: None,
        };
        Row {
            file: "m.safetensors".into(),
            dtype: "BF16".into(),
            tensors: 1,
            bytes: 100,
            mmh: Mmh {
                stored_bytes: 66,
                ratio_pct: 66.0,
                frames_by_codec: BTreeMap::new(),
                one_thread: Speeds::default(),
                all_threads: Speeds::default(),
                failures,
            },
            zstd3: zstd(3),
            zstd19: zstd(19),
            codec_bound_pct: 65.5,
            value_bound_pct: 65.9,
            zipnn,
        }
    }

    #[test]
    fn markdown_says_once_why_zipnn_is_missing_and_failures_are_reported() {
        let why = "pip install failed: no network";
        let result = ModelsResult {
            dir: PathBuf::from("/corpus"),
            frame_bytes: 4 << 20,
            threads: 2,
            runs: 3,
            zipnn: Err(why.into()),
            rows: vec![row(Err(why.into()), vec!["bytes differ".into()])],
        };
        let md = result.markdown();
        assert_eq!(md.matches(why).count(), 1, "{md}");
        assert!(
            md.contains("| 66.00 (FAILED) | unavailable | 80.00 |"),
            "{md}"
        );
        assert_eq!(
            result.failures(),
            vec!["--models m.safetensors BF16: bytes differ".to_owned()]
        );

        // A row ZipNN could not take, with ZipNN installed: the row's own reason.
        let result = ModelsResult {
            zipnn: Ok("0.5.4".into()),
            rows: vec![row(Err("ZipNN takes no F64".into()), Vec::new())],
            ..result
        };
        assert!(result.markdown().contains("| ZipNN takes no F64 |"));
        assert!(result.failures().is_empty());
    }
}
