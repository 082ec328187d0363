//! `mmh`: fold, unfold, verify, list, cat and diff MMH-RS archives, and fingerprint the
//! models in them (`mmh hash`). A thin shell over `mmh-dir`: argument parsing, progress
//! display, JSON output and exit codes.
//!
//! Exit codes: 0 success (also when a reader closes our standard output early),
//! 1 error, 2 usage error, 3 integrity failure (damaged or hostile archive),
//! 130 interrupted.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mmh_codecs::{Accelerator, CodecChoice, EncodeParams};
use mmh_dir::{
    AccelChoice, Backend, BaseMode, CdcParams, FoldBase, FoldOptions, Observer, Overwrite,
    PendingFile,
};
use serde_json::json;

mod size;

/// Exit code for a damaged or hostile archive.
const EXIT_INTEGRITY: u8 = 3;
/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "mmh",
    version,
    about = "Fold (compress) and unfold files into verifiable, seekable MMH-RS archives"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fold a file, a directory or standard input (`-`) into an archive.
    Fold(FoldArgs),
    /// Unfold an archive (`-` for standard input) into a file, a directory, or standard output (`-`).
    Unfold(UnfoldArgs),
    /// Decode and check everything in an archive (`-` for standard input).
    Verify(VerifyArgs),
    /// List the entries of an archive with sizes, ratio and codecs.
    List(ListArgs),
    /// Write an entry (or a byte range of it) to standard output.
    Cat(CatArgs),
    /// Compare two archives, or an archive and a directory: entries added, removed and
    /// changed, and the bytes of chunks NEW holds that OLD lacks.
    Diff(DiffArgs),
    /// Print a model's fingerprint: SHA-256 over the name, dtype, shape and data of each
    /// tensor, the same for a model file, a directory of shards, or an archive of either
    /// (docs/FINGERPRINT.md).
    Hash(HashArgs),
    /// Show this build's codecs and accelerator backends, with their devices.
    Info(InfoArgs),
}

#[derive(Args)]
struct FoldArgs {
    /// File or directory to fold, or `-` for standard input.
    input: PathBuf,
    /// Archive to write, or `-` for standard output [default: INPUT.mmh; `-` for stdin].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Codec: auto picks per chunk among pattern, zstd, lz4 and store.
    #[arg(long, default_value = "auto")]
    codec: CodecChoice,
    /// zstd level (1-22).
    #[arg(long, default_value_t = 3)]
    level: i32,
    /// zstd long-distance matching (finds repeats far apart within a chunk).
    #[arg(long)]
    long: bool,
    /// Average content-defined chunk size, the unit of dedup (min is a quarter, max four
    /// times); archives dedup against each other only with the same value.
    #[arg(long, default_value = "64K", value_parser = size::parse)]
    chunk_size: u64,
    /// Bytes per frame, the unit of compression (at least 4 × chunk size, at most 64M).
    #[arg(long, default_value = "4M", value_parser = size::parse)]
    frame_size: u64,
    /// Store only what this earlier archive lacks and reference the rest (changed tensors
    /// are coded as deltas against it); unfolding then needs it, next to the new archive
    /// or given with --base.
    #[arg(long, value_name = "OLD.mmh")]
    base: Option<PathBuf>,
    /// With --base: copy the chunks found in the base instead of referencing them, so
    /// the archive stands alone (they are copied as stored, not coded again).
    #[arg(long, requires = "base")]
    self_contained: bool,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Directories: store what symbolic links point to instead of the links.
    #[arg(long)]
    follow_symlinks: bool,
    /// Directories: leave out unreadable files with a warning instead of failing.
    #[arg(long)]
    skip_unreadable: bool,
    /// Directories: record every mtime as 0, so the same tree gives the same archive bytes.
    #[arg(long)]
    deterministic: bool,
    #[command(flatten)]
    accel: AccelArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct UnfoldArgs {
    /// Archive to unfold, or `-` for standard input.
    archive: PathBuf,
    /// Where to write: a file for an archive of one file, else a directory; `-` for
    /// standard output [default: ARCHIVE without .mmh].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Entries to extract (with everything under them); all when none are given.
    paths: Vec<String>,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    bases: Bases,
    #[command(flatten)]
    accel: AccelArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct VerifyArgs {
    /// Archive to check, or `-` for standard input.
    archive: PathBuf,
    #[command(flatten)]
    bases: Bases,
    #[command(flatten)]
    accel: AccelArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct InfoArgs {
    /// Only the accelerator backends and their devices.
    #[arg(long)]
    accel: bool,
}

#[derive(Args)]
struct AccelArgs {
    /// Backend for hashing, chunking and the tensor codec: auto (a GPU when one is
    /// present), cpu, opencl or cuda. Archives are the same bytes whichever does the work.
    #[arg(long, default_value = "auto")]
    accel: AccelChoice,
    /// Devices to use, by their numbers in `mmh info --accel` [default: all].
    #[arg(long, value_delimiter = ',', value_name = "N,N...")]
    devices: Option<Vec<usize>>,
}

impl AccelArgs {
    /// Opens the backend; a device backend that cannot start is a warning, and the CPU
    /// does the work.
    fn open(&self) -> Result<Arc<Backend>> {
        let backend = Backend::open(self.accel, self.devices.as_deref())?;
        if let Some(reason) = backend.cpu_reason() {
            eprintln!("mmh: warning: {reason}");
        }
        Ok(Arc::new(backend))
    }
}

/// Says how many calls the device failed and the CPU did instead, if any.
fn report_fallbacks(backend: &Backend) {
    if let (calls @ 1.., Some(first)) = backend.fallbacks() {
        eprintln!(
            "mmh: warning: the CPU redid {calls} calls that the device failed; the first: {first}"
        );
    }
}

#[derive(Args)]
struct ListArgs {
    /// Archive to list.
    archive: PathBuf,
    /// List the tensors of its model files instead of its entries: file, name, dtype,
    /// shape, size, and the archive bytes each takes.
    #[arg(long)]
    tensors: bool,
    #[command(flatten)]
    bases: Bases,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct HashArgs {
    /// A model file, a directory of model files (hidden ones left out), or an archive of
    /// either.
    model: PathBuf,
    /// Print JSON: the fingerprint and how many tensors each model file holds.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    bases: Bases,
}

#[derive(Args)]
struct DiffArgs {
    /// The earlier archive.
    old: PathBuf,
    /// The later archive, or a file or directory to compare as it would fold against OLD
    /// (with the default --chunk-size).
    new: PathBuf,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
}

/// Where base archives are, for an archive folded with --base.
#[derive(Args)]
struct Bases {
    /// A base archive this archive references (repeat for a chain), when it is not next
    /// to the archive under the name it had when folded.
    #[arg(long = "base", value_name = "OLD.mmh")]
    archives: Vec<PathBuf>,
}

#[derive(Args)]
struct CatArgs {
    /// Archive to read.
    archive: PathBuf,
    /// Entry to write.
    entry: String,
    /// Byte range START..END of the entry (END is clamped to its size).
    #[arg(long, value_parser = size::parse_range)]
    range: Option<std::ops::Range<u64>>,
    /// Write only the data of this tensor of the model file ENTRY (decoding only the
    /// chunks that hold it); `mmh list --tensors` lists them.
    #[arg(long, value_name = "NAME", conflicts_with = "range")]
    tensor: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Overwrite an existing output.
    #[arg(short, long, requires = "output")]
    force: bool,
    #[command(flatten)]
    bases: Bases,
}

#[derive(Args)]
struct Common {
    /// Overwrite an existing output.
    #[arg(short, long)]
    force: bool,
    /// Print a machine-readable summary (JSON) on standard output.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    // First Ctrl-C: stop cleanly (temporary outputs are removed); second: exit at once.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_INTERRUPTED.into());
        }
    });
    match run(cli, &cancel) {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// Maps an error to its exit code after printing it.
fn report(err: &anyhow::Error) -> ExitCode {
    let broken_pipe = err
        .chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe);
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let dir = err.chain().find_map(|e| e.downcast_ref::<mmh_dir::Error>());
    if dir.is_some_and(mmh_dir::Error::is_cancelled) {
        eprintln!("mmh: interrupted; no partial output was left under the final name");
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    eprintln!("mmh: error: {err:#}");
    if dir.is_some_and(mmh_dir::Error::is_integrity) {
        ExitCode::from(EXIT_INTEGRITY)
    } else {
        ExitCode::FAILURE
    }
}

fn run(cli: Cli, cancel: &Arc<AtomicBool>) -> Result<ExitCode> {
    match cli.command {
        Command::Fold(args) => fold(args, cancel),
        Command::Unfold(args) => unfold(args, cancel),
        Command::Verify(args) => verify(args, cancel),
        Command::List(args) => list(args),
        Command::Cat(args) => cat(args),
        Command::Diff(args) => diff(args),
        Command::Hash(args) => hash(args, cancel),
        Command::Info(args) => info(args),
    }
    .map(|()| ExitCode::SUCCESS)
}

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Progress bar on a terminal, nothing when piped or asked to be quiet.
struct Progress {
    bar: ProgressBar,
    cancel: Arc<AtomicBool>,
}

impl Progress {
    fn new(total: Option<u64>, quiet: bool, cancel: &Arc<AtomicBool>) -> Self {
        let visible = !quiet && io::stderr().is_terminal();
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("valid template"),
        );
        Progress {
            bar,
            cancel: Arc::clone(cancel),
        }
    }
}

impl Observer for Progress {
    fn progress(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl Common {
    /// Progress is drawn unless asked to be quiet or writing JSON.
    fn hides_progress(&self) -> bool {
        self.quiet || self.json
    }
}

fn overwrite(force: bool) -> Overwrite {
    if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    }
}

/// Opens the output: standard output (refused when it is a terminal, since archives are
/// binary) or a pending file that becomes visible only on commit.
enum Output {
    Stdout,
    File(PendingFile),
}

impl Output {
    fn open(path: &Path, overwrite: Overwrite, binary: bool) -> Result<Output> {
        if is_stdio(path) {
            if binary && io::stdout().is_terminal() {
                bail!("refusing to write binary data to a terminal; use -o FILE or a pipe");
            }
            Ok(Output::Stdout)
        } else {
            Ok(Output::File(PendingFile::create(path, overwrite)?))
        }
    }

    fn commit(self) -> Result<()> {
        match self {
            Output::Stdout => io::stdout().flush().context("cannot flush standard output"),
            Output::File(pending) => Ok(pending.commit()?),
        }
    }
}

fn fold(args: FoldArgs, cancel: &Arc<AtomicBool>) -> Result<()> {
    let from_stdin = is_stdio(&args.input);
    let output_path = match (&args.output, from_stdin) {
        (Some(path), _) => path.clone(),
        (None, true) => PathBuf::from("-"),
        (None, false) => {
            let mut name = args.input.file_name().unwrap_or_default().to_os_string();
            name.push(".mmh");
            args.input.with_file_name(name)
        }
    };
    let backend = args.accel.open()?;
    let options = FoldOptions {
        encode: EncodeParams {
            choice: args.codec,
            zstd_level: args.level,
            zstd_long: args.long,
        },
        frame_size: u32::try_from(args.frame_size).unwrap_or(u32::MAX),
        cdc: cdc_params(args.chunk_size)?,
        threads: args.threads,
        base: args
            .base
            .as_deref()
            .map(|path| {
                let mode = if args.self_contained {
                    BaseMode::Copy
                } else {
                    BaseMode::Reference
                };
                FoldBase::open(path, mode, &[])
            })
            .transpose()?,
        accelerator: backend.clone(),
    };
    let total = args
        .input
        .metadata()
        .ok()
        .filter(|m| !from_stdin && m.is_file())
        .map(|m| m.len());
    let walk = mmh_dir::WalkOptions {
        follow_symlinks: args.follow_symlinks,
        skip_unreadable: args.skip_unreadable,
        deterministic: args.deterministic,
    };
    let mut output = Output::open(&output_path, overwrite(args.common.force), true)?;
    let progress = Progress::new(total, args.common.hides_progress(), cancel);
    let started = Instant::now();
    let summary = {
        let sink: Box<dyn Write + Send> = match &mut output {
            Output::Stdout => Box::new(io::stdout()),
            Output::File(pending) => Box::new(pending.file()),
        };
        let sink = io::BufWriter::with_capacity(1 << 20, sink);
        if from_stdin {
            mmh_dir::fold_stream(
                io::stdin(),
                mmh_dir::EntryMeta::stdin(),
                sink,
                &options,
                &progress,
            )?
        } else {
            mmh_dir::fold_path(&args.input, &walk, sink, &options, &progress)?
        }
    };
    output.commit()?;
    drop(progress);
    for warning in &summary.warnings {
        eprintln!("mmh: warning: {warning}");
    }
    report_fallbacks(&backend);
    let seconds = started.elapsed().as_secs_f64();
    let ratio = summary.archive_bytes as f64 / summary.input_bytes.max(1) as f64;
    let mb_per_s = summary.input_bytes as f64 / 1e6 / seconds.max(1e-9);
    if args.common.json {
        let codecs: serde_json::Map<String, serde_json::Value> = summary
            .frames_by_codec
            .iter()
            .map(|(c, n)| (c.to_string(), json!(n)))
            .collect();
        println!(
            "{}",
            json!({
                "input": args.input, "output": output_path,
                "input_bytes": summary.input_bytes, "archive_bytes": summary.archive_bytes,
                "ratio": ratio, "seconds": seconds, "mb_per_s": mb_per_s, "chunks": summary.chunks,
                "frames_by_codec": codecs, "deduplicated_bytes": summary.deduplicated_bytes,
                "base_bytes": summary.base_bytes, "delta_bytes": summary.delta_bytes,
                "warnings": summary.warnings, "accelerator": backend.name(),
            })
        );
    } else if !args.common.quiet && !is_stdio(&output_path) {
        eprintln!(
            "{} -> {}: {} -> {} bytes ({:.2}%), {:.1} MB/s",
            args.input.display(),
            output_path.display(),
            summary.input_bytes,
            summary.archive_bytes,
            ratio * 100.0,
            mb_per_s
        );
    }
    Ok(())
}

fn unfold(args: UnfoldArgs, cancel: &Arc<AtomicBool>) -> Result<()> {
    let output_path = match &args.output {
        Some(path) => path.clone(),
        None if is_stdio(&args.archive) => PathBuf::from("-"),
        None => match args.archive.extension() {
            Some(ext) if ext == "mmh" => args.archive.with_extension(""),
            _ => bail!(
                "cannot derive an output name from {} (no .mmh extension); use -o",
                args.archive.display()
            ),
        },
    };
    let progress_common = &args.common;
    let backend = args.accel.open()?;
    let started = Instant::now();
    // A pipe into standard output streams (one file); a pipe into a path is first
    // copied to a temporary file beside it, so that trees, subsets and archives folded
    // against a base unfold from it as from any archive file.
    let spool = match (is_stdio(&args.archive), is_stdio(&output_path)) {
        (true, false) => Some(mmh_dir::spool_archive(
            io::stdin().lock(),
            output_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?),
        _ => None,
    };
    let archive_path = spool.as_ref().map_or(args.archive.as_path(), |s| s.path());
    let written = if is_stdio(archive_path) {
        if !args.paths.is_empty() {
            bail!("naming entries needs an archive file, or an output path (-o PATH)");
        }
        let progress = Progress::new(None, progress_common.hides_progress(), cancel);
        mmh_dir::unfold_stream(io::stdin(), io::stdout(), backend.as_ref(), &progress)?.bytes
    } else {
        let archive = mmh_dir::open_chain(archive_path, &args.bases.archives)?
            .with_accelerator(backend.clone());
        let total = mmh_dir::list_entries(archive.index())
            .iter()
            .map(|l| l.size)
            .sum();
        let progress = Progress::new(Some(total), progress_common.hides_progress(), cancel);
        if is_stdio(&output_path) {
            let entry = match args.paths.as_slice() {
                [] => mmh_dir::single_file(archive.index())?,
                [name] => mmh_dir::find_entry(archive.index(), name)?,
                _ => bail!("standard output takes one entry; name one, or use -o DIR"),
            };
            mmh_dir::unfold_entry(&archive, entry, io::stdout(), &progress)?
        } else {
            mmh_dir::unfold_path(
                &archive,
                &output_path,
                &args.paths,
                overwrite(args.common.force),
                &progress,
            )?
            .bytes
        }
    };
    report_fallbacks(&backend);
    let seconds = started.elapsed().as_secs_f64();
    if args.common.json {
        println!(
            "{}",
            json!({"archive": args.archive, "output": output_path, "bytes": written, "seconds": seconds, "accelerator": backend.name()})
        );
    }
    Ok(())
}

fn verify(args: VerifyArgs, cancel: &Arc<AtomicBool>) -> Result<()> {
    // A pipe is copied to a temporary file first: only a seeking reader checks every
    // chunk, and trees and based archives cannot be read front to back.
    let spool = is_stdio(&args.archive)
        .then(|| mmh_dir::spool_archive(io::stdin().lock(), &std::env::temp_dir()))
        .transpose()?;
    let archive_path = spool.as_ref().map_or(args.archive.as_path(), |s| s.path());
    let backend = args.accel.open()?;
    let result = mmh_dir::open_chain(archive_path, &args.bases.archives).and_then(|archive| {
        let archive = archive.with_accelerator(backend.clone());
        let total = archive
            .index()
            .entries
            .iter()
            .map(|e| match &e.kind {
                mmh_format::EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum();
        let progress = Progress::new(Some(total), args.common.hides_progress(), cancel);
        let report = mmh_verify::verify_archive(&archive, &|n| progress.progress(n))?;
        Ok(json!({
            "entries": report.entries, "chunks": report.chunks, "content_bytes": report.content_bytes,
        }))
    });
    match result {
        Ok(mut summary) => {
            if args.common.json {
                summary["ok"] = json!(true);
                summary["archive"] = json!(args.archive);
                println!("{summary}");
            } else if !args.common.quiet {
                eprintln!(
                    "{}: OK ({} bytes of content checked)",
                    args.archive.display(),
                    summary["content_bytes"]
                );
            }
            Ok(())
        }
        Err(err) => {
            if args.common.json {
                println!(
                    "{}",
                    json!({"ok": false, "archive": args.archive, "integrity_failure": err.is_integrity(), "error": err.to_string()})
                );
            }
            Err(err.into())
        }
    }
}

fn list(args: ListArgs) -> Result<()> {
    if args.tensors {
        return list_tensors(&args);
    }
    let archive = mmh_dir::open_file(&args.archive)?;
    let listing = mmh_dir::list_entries(archive.index());
    let mut out = io::stdout().lock();
    if args.common.json {
        let entries: Vec<_> = listing
            .iter()
            .map(|l| {
                json!({
                    "name": l.entry.name, "kind": kind_name(&l.entry.kind), "size": l.size, "stored": l.stored, "ratio": l.ratio(),
                    "mode": format!("{:o}", l.entry.mode), "mtime": l.entry.mtime.secs,
                    "codecs": l.codecs.iter().map(|(c, b)| json!({"codec": c, "bytes": b})).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({"archive": args.archive, "entries": entries})
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>14} {:>14} {:>7}  {:<24} name",
        "size", "stored", "ratio", "codecs"
    )?;
    for l in &listing {
        let codecs: Vec<String> = l.codecs.iter().map(|(c, _)| c.clone()).collect();
        writeln!(
            out,
            "{:>14} {:>14} {:>6.2}%  {:<24} {}",
            l.size,
            l.stored,
            l.ratio() * 100.0,
            codecs.join(","),
            display_name(l.entry)
        )?;
    }
    Ok(())
}

/// `mmh list --tensors`: reading each file's layout needs its content, so the archive
/// is opened with its bases.
fn list_tensors(args: &ListArgs) -> Result<()> {
    let archive = mmh_dir::open_chain(&args.archive, &args.bases.archives)?;
    let rows = mmh_dir::list_tensors(&archive)?;
    let ratio = |row: &mmh_dir::TensorListing| row.stored as f64 / row.size().max(1) as f64;
    let mut out = io::stdout().lock();
    if args.common.json {
        let tensors: Vec<_> = rows
            .iter()
            .map(|row| {
                json!({
                    "file": row.file, "name": row.tensor.name, "dtype": row.tensor.dtype.to_string(),
                    "shape": row.tensor.shape, "size": row.size(), "stored": row.stored, "ratio": ratio(row),
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({"archive": args.archive, "tensors": tensors})
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>14} {:>14} {:>7}  {:<8} {:<20} file  name",
        "size", "stored", "ratio", "dtype", "shape"
    )?;
    for row in &rows {
        let dims: Vec<String> = row.tensor.shape.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "{:>14} {:>14} {:>6.2}%  {:<8} {:<20} {}  {}",
            row.size(),
            row.stored,
            ratio(row) * 100.0,
            row.tensor.dtype.to_string(),
            format!("[{}]", dims.join(",")),
            row.file,
            row.tensor.name
        )?;
    }
    Ok(())
}

/// Content-defined chunking around an average: a quarter of it at least, four times at
/// most (FastCDC's usual spread).
fn cdc_params(avg: u64) -> Result<CdcParams> {
    let avg = u32::try_from(avg).context("--chunk-size is too large")?;
    let params = CdcParams {
        min_size: (avg / 4) & !1,
        avg_size: avg & !1,
        max_size: avg.saturating_mul(4) & !1,
    };
    params
        .validate()
        .with_context(|| format!("--chunk-size {avg}"))?;
    Ok(params)
}

fn diff(args: DiffArgs) -> Result<()> {
    let old = mmh_dir::open_file(&args.old)?;
    let new = if args.new.is_dir() || args.new.extension().is_none_or(|e| e != "mmh") {
        mmh_dir::index_against(
            &args.new,
            &args.old,
            &mmh_dir::WalkOptions::default(),
            &FoldOptions::default(),
        )?
    } else {
        mmh_dir::open_file(&args.new)?.index().clone()
    };
    let diff = mmh_dir::diff(old.index(), &new);
    let mut out = io::stdout().lock();
    if args.json {
        let names = |entries: &[&mmh_format::Entry]| -> Vec<String> {
            entries.iter().map(|e| e.name.clone()).collect()
        };
        writeln!(
            out,
            "{}",
            json!({
                "added": names(&diff.added), "removed": names(&diff.removed),
                "changed": names(&diff.changed), "unchanged": diff.unchanged,
                "new_chunks": diff.new_chunks, "new_chunk_bytes": diff.new_chunk_bytes,
            })
        )?;
        return Ok(());
    }
    for (mark, entries) in [
        ("+", &diff.added),
        ("-", &diff.removed),
        ("M", &diff.changed),
    ] {
        for entry in entries {
            writeln!(out, "{mark} {}", display_name(entry))?;
        }
    }
    writeln!(
        out,
        "{} added, {} removed, {} changed, {} unchanged; {} chunks ({} bytes) in {} that {} lacks",
        diff.added.len(),
        diff.removed.len(),
        diff.changed.len(),
        diff.unchanged,
        diff.new_chunks,
        diff.new_chunk_bytes,
        args.new.display(),
        args.old.display()
    )?;
    Ok(())
}

fn kind_name(kind: &mmh_format::EntryKind) -> &'static str {
    match kind {
        mmh_format::EntryKind::File { .. } => "file",
        mmh_format::EntryKind::Directory => "directory",
        mmh_format::EntryKind::Symlink { .. } => "symlink",
        mmh_format::EntryKind::HardLink { .. } => "hardlink",
    }
}

/// An entry's name as `ls -F` would hint at its kind: `dir/`, `link -> target`.
fn display_name(entry: &mmh_format::Entry) -> String {
    match &entry.kind {
        mmh_format::EntryKind::Directory => format!("{}/", entry.name),
        mmh_format::EntryKind::Symlink { target } => format!("{} -> {target}", entry.name),
        mmh_format::EntryKind::HardLink { target } => format!("{} => {target}", entry.name),
        mmh_format::EntryKind::File { .. } => entry.name.clone(),
    }
}

fn cat(args: CatArgs) -> Result<()> {
    if is_stdio(&args.archive) {
        bail!("cat needs a seekable archive file; to read from a pipe use `mmh unfold - -o -`");
    }
    let archive = mmh_dir::open_chain(&args.archive, &args.bases.archives)?;
    let range = match &args.tensor {
        Some(name) => Some(
            mmh_dir::find_tensor(&archive, &args.entry, name)
                .map_err(|e| match e {
                    mmh_dir::Error::NoSuchTensor { .. } | mmh_dir::Error::NotAModel { .. } => {
                        anyhow::anyhow!(
                            "{e} (`mmh list --tensors {}` lists the tensors of its model files)",
                            args.archive.display()
                        )
                    }
                    e => e.into(),
                })?
                .range,
        ),
        None => args.range,
    };
    let path = args.output.clone().unwrap_or_else(|| PathBuf::from("-"));
    // Like `unfold -o -`, standard output takes bytes even on a terminal: cat is asked
    // for one entry by name.
    let mut output = Output::open(&path, overwrite(args.force), false)?;
    {
        let sink: Box<dyn Write + Send> = match &mut output {
            Output::Stdout => Box::new(io::stdout()),
            Output::File(pending) => Box::new(pending.file()),
        };
        let mut sink = io::BufWriter::with_capacity(1 << 20, sink);
        match range {
            Some(range) => {
                mmh_dir::read_range(&archive, &args.entry, range, &mut sink)?;
            }
            None => {
                let entry = mmh_dir::find_entry(archive.index(), &args.entry)?;
                mmh_dir::unfold_entry(&archive, entry, &mut sink, &mmh_dir::Quiet)?;
            }
        }
        sink.flush().context("cannot write the output")?;
    }
    output.commit()
}

fn hash(args: HashArgs, cancel: &Arc<AtomicBool>) -> Result<()> {
    let progress = Progress::new(None, args.quiet || args.json, cancel);
    let fingerprint = mmh_dir::model_fingerprint(&args.model, &args.bases.archives, &progress)?;
    drop(progress);
    let mut out = io::stdout().lock();
    if args.json {
        let files: Vec<_> = fingerprint
            .files
            .iter()
            .map(|(file, tensors)| json!({"file": file, "tensors": tensors}))
            .collect();
        writeln!(
            out,
            "{}",
            json!({
                "model": args.model, "fingerprint": fingerprint.hex(),
                "tensors": fingerprint.tensors(), "files": files,
            })
        )?;
    } else {
        // As sha256sum prints a digest.
        writeln!(out, "{}  {}", fingerprint.hex(), args.model.display())?;
    }
    Ok(())
}

fn info(args: InfoArgs) -> Result<()> {
    if !args.accel {
        println!("mmh {}", env!("CARGO_PKG_VERSION"));
        let codecs: Vec<String> = mmh_codecs::CodecId::ALL
            .iter()
            .map(|codec| codec.to_string())
            .collect();
        println!("codecs: {}", codecs.join(", "));
    }
    println!("accelerators:");
    for (backend, devices) in mmh_dir::describe_backends() {
        match devices {
            Ok(devices) if devices.is_empty() => println!("  {backend}: no device"),
            Ok(devices) => {
                println!("  {backend}:");
                for device in devices {
                    println!("    {device}");
                }
            }
            Err(why) => println!("  {backend}: unavailable: {why}"),
        }
    }
    Ok(())
}
