//! `cargo xtask bench`: ratio and speed of `mmh fold` against plain zstd and lz4 on the
//! same input, the stages that bound it, the container's overhead, and peak memory.
//!
//! ```text
//! cargo xtask bench [--tiers 1M,64M,1G] [--max-bytes 1G] [--threads N] [--level 3]
//!                   [--runs 3] [--out docs/bench] [--rss] [--tree [--tree-files N]]
//!                   [--chains] [--cdc] [--corpus DIR] [FILE...] [--models [DIR]]
//!                   [--accel cpu,opencl[,cuda]]
//! ```
//!
//! For every input (a generated tier of [`mmh_benches::MixedData`], or a FILE) it runs,
//! one after the other on the same bytes:
//!
//! - `mmh fold` with `--codec auto`, `zstd` and `lz4` (the library call the CLI makes,
//!   `mmh_dir::fold_stream`), and the verified unfold (`unfold_entry`: every chunk's and
//!   the whole content's SHA-256 is checked);
//! - the `zstd` crate's stream encoder at the same level, one stream with
//!   `multithread(threads)` so it uses the same cores, and its plain decoder;
//! - the `lz4_flex` frame encoder and decoder (single-threaded by design).
//!
//! Each is run once to warm up (inputs up to [`WARMUP_LIMIT`]), then `--runs` times
//! (one run above [`MULTI_RUN_LIMIT`]); the table shows the median, the JSON every run.
//! Then one pass times the pipeline's stages alone on the same input (reading, SHA-256
//! of chunks through `CpuAccelerator::digest_batch`, the entry's SHA-256, each codec,
//! writing), and the slowest names the bound of each mmh row.
//!
//! Nothing is held in memory whole: generated inputs stream from a seeded generator,
//! archives go to a temporary file under `target/bench/` (or, when the disk could not
//! hold one, to a counting sink, and the unfold is not measured).
//!
//! Output: a markdown table on stdout (for docs/BENCHMARKS.md), every figure in
//! `target/bench/results.json`, and a plot of ratio against fold speed in
//! `<out>/size-vs-speed.svg`. `--rss` adds the peak RSS of the release `mmh` binary
//! folding 256 MiB and 2 GiB from a pipe: it must not grow with the input.
//!
//! Opt-in sections, each a table of its own (and a key in the JSON):
//!
//! - `--tree` (`tree.rs`): 100,000 small text-like files folded and unfolded by the
//!   release `mmh` and by `tar | zstd`, as child processes, with peak RSS;
//! - `--chains` (`chains.rs`): a new version of a model file against the archive of the
//!   old one (`mmh fold --base`), against `zstd --patch-from` and an XOR delta, on the
//!   development corpus; and one weight file stored under two names;
//! - `--cdc` (`cdc.rs`): content-defined chunking throughput of the CPU backend;
//! - `--models [DIR]` (`models.rs`): the tensor codec against ZipNN 0.5.4 (installed from
//!   PyPI into `target/bench/zipnn-venv`, run by `zipnn_bench.py`), zstd -3 and -19 and
//!   two entropy bounds, per float dtype of every model file under DIR (default: the
//!   corpus), with its own plot `<out>/models-size-vs-speed.svg`;
//! - `--accel LIST` (`accel.rs`): the backends named (cpu, opencl, cuda) on the same
//!   inputs: MB/s of each `Accelerator` operation and of fold and unfold end to end,
//!   whether each output is the CPU's bytes, and the stage that bounds it.
//!
//! A correctness check that fails in a section (an unfold that does not give the source
//! back) is printed in its table, and the bench then exits with an error.
//!
//! A debug build would measure nothing useful (the workspace crates are not optimised in
//! the dev profile), so a debug `xtask` re-runs itself with `cargo run --release`.

mod accel;
mod cdc;
mod chains;
mod external;
mod measure;
mod models;
mod report;
mod rss;
mod sys;
mod text;
mod tree;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use mmh_benches::{format_size, parse_size};

use measure::Input;

/// Inputs up to this size get an untimed warm-up run per method.
pub const WARMUP_LIMIT: u64 = 256 << 20;
/// Inputs above this size are measured once per method, not `--runs` times.
pub const MULTI_RUN_LIMIT: u64 = 1 << 30;
/// The seed of every generated tier (so a smaller tier is a prefix of a larger one).
const SEED: u64 = 0x4D4D_482D_5253;
/// The largest input `--max-bytes` may allow.
const HARD_MAX: u64 = 1 << 40;
/// Files in the `--tree` tree unless `--tree-files` says otherwise.
const TREE_FILES: u64 = 100_000;
/// Seconds a child process (mmh, tar, zstd) may run unless `--timeout` says otherwise.
const TIMEOUT_S: u64 = 300;
/// Where `build.sh` puts the development corpus by default.
const CORPUS: &str = "/tmp/mmh-dev-corpus";

const USAGE: &str = "\
usage: cargo xtask bench [options] [FILE...]

  --tiers LIST     generated inputs, e.g. 1M,64M,1G (default 1M,64M,1G; `--tiers none` for
                   FILEs only)
  --max-bytes N    largest input accepted (default 1G, at most 1T); tiers above 1 GiB must
                   be allowed here
  --threads N      worker threads for every method (default: all cores)
  --level N        zstd level for mmh and the zstd crate (default 3)
  --runs N         timed runs per method; the best is reported, every run and the median go to the JSON (default 3)
  --out DIR        where the SVG plot goes (default docs/bench in the workspace)
  --rss            also measure the peak RSS of `mmh fold` on 256 MiB and 2 GiB
  --replot JSON    measure nothing: redraw <out>/size-vs-speed.svg from a saved results.json
                   (e.g. target/bench/results.json)
  --tree           fold and unfold 100,000 small text-like files (generated once into
                   target/bench/tree/src) with mmh and with tar | zstd
  --tree-files N   files in that tree (default 100000)
  --chains         dedup across versions of a model file: mmh fold --base, --self-contained,
                   zstd --patch-from, XOR + zstd; one file under two names (needs the corpus)
  --cdc            content-defined chunking speed of the CPU backend (GB/s, one thread)
  --accel LIST     backends side by side on the same inputs, e.g. cpu,opencl: MB/s per
                   operation and end to end, byte identity with the CPU, the bounding stage
  --timeout SECS   longest one child process (mmh, tar, zstd) of --rss, --tree or --chains
                   may run; it is then killed and its cell shows the error (default 300)
  --corpus DIR     the development corpus (default /tmp/mmh-dev-corpus; build it with
                   `bash /work/shared/corpus/build.sh`)
  --models [DIR]   the tensor codec against ZipNN (pip-installed into target/bench/zipnn-venv),
                   zstd -3/-19 and entropy bounds, per float dtype of every model file under
                   DIR (default: the corpus); plot in <out>/models-size-vs-speed.svg. A word
                   after --models that is not an option is DIR: put FILEs before it
  FILE...          real files to measure as well (e.g. from /tmp/mmh-dev-corpus)";

/// What one `cargo xtask bench` measures.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sizes of the generated inputs.
    pub tiers: Vec<u64>,
    /// Largest input accepted.
    pub max_bytes: u64,
    /// Worker threads for every method.
    pub threads: usize,
    /// zstd level.
    pub level: i32,
    /// Timed runs per method.
    pub runs: usize,
    /// Where the SVG goes.
    pub out: PathBuf,
    /// Whether to measure peak RSS.
    pub rss: bool,
    /// Real files to measure.
    pub files: Vec<PathBuf>,
    /// The command as typed, for the report.
    pub command: String,
    /// A saved results.json to redraw the plot from (nothing is measured).
    pub replot: Option<PathBuf>,
    /// Measure the small-files tree.
    pub tree: bool,
    /// Files in that tree.
    pub tree_files: u64,
    /// Measure dedup across versions.
    pub chains: bool,
    /// Measure chunking speed.
    pub cdc: bool,
    /// Backends to compare side by side.
    pub accel: Vec<mmh_dir::AccelChoice>,
    /// The development corpus.
    pub corpus: PathBuf,
    /// Measure the tensor codec on model files.
    pub models: bool,
    /// Where those are; the corpus when `None`.
    pub models_dir: Option<PathBuf>,
    /// Longest a child process may run.
    pub timeout: Duration,
}

/// Entry point: `args` are the words after `cargo xtask bench`.
pub fn run(args: Vec<String>) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let config = parse_args(&args)?;
    if let Some(json) = &config.replot {
        let svg = config.out.join("size-vs-speed.svg");
        report::replot(json, &svg)?;
        eprintln!("bench: wrote {}", svg.display());
        return Ok(());
    }
    if cfg!(debug_assertions) {
        return rerun_in_release(&args);
    }
    let target = target_dir();
    let bench_dir = target.join("bench");
    std::fs::create_dir_all(&bench_dir)
        .with_context(|| format!("cannot create {}", bench_dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("scratch-")
        .tempdir_in(&bench_dir)
        .context("cannot create a scratch directory under target/bench")?;

    let mut inputs: Vec<Input> = config
        .tiers
        .iter()
        .map(|&len| Input::Generated { seed: SEED, len })
        .collect();
    for path in &config.files {
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        ensure!(
            len <= config.max_bytes,
            "{} is {} (above --max-bytes {}); pass a larger --max-bytes to measure it",
            path.display(),
            format_size(len),
            format_size(config.max_bytes)
        );
        inputs.push(Input::File {
            path: path.clone(),
            len,
        });
    }
    ensure!(
        !inputs.is_empty()
            || config.rss
            || config.tree
            || config.chains
            || config.cdc
            || config.models
            || !config.accel.is_empty(),
        "nothing to measure: no tiers, no files and no section (--rss, --tree, --chains, --cdc, --models, --accel)"
    );

    let host = report::Host::detect(&config);
    eprintln!("bench: {}", host.summary());
    let mut results = Vec::new();
    for input in &inputs {
        results.push(measure::measure_input(input, &config, scratch.path())?);
    }
    let rss = if config.rss {
        rss::measure(&config, SEED, &target, scratch.path())?
    } else {
        Vec::new()
    };
    let tree = timed("--tree", config.tree, || {
        tree::measure(&config, &target, scratch.path())
    })?;
    let chains = timed("--chains", config.chains, || {
        chains::measure(&config, &target, scratch.path())
    })?
    .flatten();
    let cdc = timed("--cdc", config.cdc, || cdc::measure(&config))?.unwrap_or_default();
    let models = timed("--models", config.models, || {
        models::measure(&config, &target, scratch.path())
    })?;
    let accel = timed("--accel", !config.accel.is_empty(), || {
        accel::measure(&config)
    })?
    .unwrap_or_default();

    let mut host = host;
    host.load_after = report::load_average();
    let all = report::Results {
        host,
        config: report::ConfigRecord::from(&config),
        inputs: results,
        rss,
        tree,
        chains,
        cdc,
        models,
        accel,
    };
    print!("{}", report::markdown(&all));
    let json_path = bench_dir.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&all)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    eprintln!("bench: wrote {}", json_path.display());
    if !all.inputs.is_empty() {
        std::fs::create_dir_all(&config.out)
            .with_context(|| format!("cannot create {}", config.out.display()))?;
        let svg = config.out.join("size-vs-speed.svg");
        report::plot(&all.inputs, &svg)?;
        eprintln!("bench: wrote {}", svg.display());
    }
    if let Some(models) = &all.models {
        std::fs::create_dir_all(&config.out)
            .with_context(|| format!("cannot create {}", config.out.display()))?;
        let svg = config.out.join("models-size-vs-speed.svg");
        models.plot(&svg)?;
        eprintln!("bench: wrote {}", svg.display());
    }
    if !all.accel.is_empty() {
        std::fs::create_dir_all(&config.out)
            .with_context(|| format!("cannot create {}", config.out.display()))?;
        let svg = config.out.join("backends-speed.svg");
        accel::plot(&all.accel, &svg)?;
        eprintln!("bench: wrote {}", svg.display());
    }
    let failures = all.failures();
    ensure!(
        failures.is_empty(),
        "correctness checks failed:\n  {}",
        failures.join("\n  ")
    );
    Ok(())
}

impl Config {
    /// The directory `--models` walks.
    pub fn models_dir(&self) -> &Path {
        self.models_dir.as_deref().unwrap_or(&self.corpus)
    }
}

/// Runs an opt-in section when `wanted`, logging how long it took.
fn timed<T>(name: &str, wanted: bool, section: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    if !wanted {
        return Ok(None);
    }
    let start = std::time::Instant::now();
    let result = section().with_context(|| format!("{name} failed"))?;
    eprintln!("bench: {name} took {:.0} s", start.elapsed().as_secs_f64());
    Ok(Some(result))
}

fn parse_args(args: &[String]) -> Result<Config> {
    let mut config = Config {
        tiers: vec![1 << 20, 64 << 20, 1 << 30],
        max_bytes: 1 << 30,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        level: 3,
        runs: 3,
        out: crate::workspace_root().join("docs/bench"),
        rss: false,
        files: Vec::new(),
        command: std::iter::once("cargo xtask bench".to_owned())
            .chain(args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" "),
        replot: None,
        tree: false,
        tree_files: TREE_FILES,
        chains: false,
        cdc: false,
        accel: Vec::new(),
        corpus: PathBuf::from(CORPUS),
        models: false,
        models_dir: None,
        timeout: Duration::from_secs(TIMEOUT_S),
    };
    let mut words = args.iter().peekable();
    while let Some(word) = words.next() {
        let mut value = |name: &str| {
            words
                .next()
                .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match word.as_str() {
            "--tiers" => {
                let list = value("--tiers")?;
                config.tiers = if list == "none" {
                    Vec::new()
                } else {
                    list.split(',')
                        .map(|s| parse_size(s).map_err(anyhow::Error::msg))
                        .collect::<Result<_>>()?
                };
            }
            "--max-bytes" => {
                config.max_bytes = parse_size(value("--max-bytes")?).map_err(anyhow::Error::msg)?
            }
            "--threads" => {
                config.threads = value("--threads")?
                    .parse()
                    .context("--threads takes a number")?
            }
            "--level" => {
                config.level = value("--level")?
                    .parse()
                    .context("--level takes a number")?
            }
            "--runs" => config.runs = value("--runs")?.parse().context("--runs takes a number")?,
            "--out" => config.out = PathBuf::from(value("--out")?),
            "--rss" => config.rss = true,
            "--replot" => config.replot = Some(PathBuf::from(value("--replot")?)),
            "--tree" => config.tree = true,
            "--tree-files" => {
                config.tree_files = value("--tree-files")?
                    .parse()
                    .context("--tree-files takes a number")?
            }
            "--chains" => config.chains = true,
            "--cdc" => config.cdc = true,
            "--accel" => {
                config.accel = value("--accel")?
                    .split(',')
                    .map(str::parse)
                    .collect::<std::result::Result<_, _>>()?
            }
            "--corpus" => config.corpus = PathBuf::from(value("--corpus")?),
            "--models" => {
                config.models = true;
                if let Some(dir) = words.next_if(|w| !w.starts_with('-')) {
                    config.models_dir = Some(PathBuf::from(dir));
                }
            }
            "--timeout" => {
                let secs: u64 = value("--timeout")?
                    .parse()
                    .context("--timeout takes a number of seconds")?;
                ensure!(secs >= 1, "--timeout must be at least 1 second");
                config.timeout = Duration::from_secs(secs);
            }
            flag if flag.starts_with('-') => bail!("unknown option {flag}\n\n{USAGE}"),
            file => config.files.push(PathBuf::from(file)),
        }
    }
    ensure!(config.threads >= 1, "--threads must be at least 1");
    ensure!(config.runs >= 1, "--runs must be at least 1");
    ensure!(
        (1..=10_000_000).contains(&config.tree_files),
        "--tree-files must be in 1..=10000000"
    );
    ensure!(
        (1..=22).contains(&config.level),
        "--level must be in 1..=22"
    );
    ensure!(
        config.max_bytes <= HARD_MAX,
        "--max-bytes is at most 1T (is: {})",
        format_size(config.max_bytes)
    );
    if let Some(&big) = config.tiers.iter().find(|&&t| t > config.max_bytes) {
        bail!(
            "tier {} is above --max-bytes {}; ask for it with --max-bytes {}",
            format_size(big),
            format_size(config.max_bytes),
            format_size(big)
        );
    }
    ensure!(
        config.tiers.iter().all(|&t| t > 0),
        "tiers must be at least 1 byte"
    );
    Ok(config)
}

/// Runs this task again from a release build of xtask, with the same arguments.
fn rerun_in_release(args: &[String]) -> Result<()> {
    eprintln!("bench: xtask is a debug build; re-running with `cargo run --release -p xtask`");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let status = Command::new(cargo)
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "bench",
        ])
        .args(args)
        .status()
        .context("cannot run cargo")?;
    ensure!(status.success(), "the release bench failed ({status})");
    Ok(())
}

/// The target directory: `CARGO_TARGET_DIR`, or `target/` in the workspace.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::workspace_root().join("target"),
    }
}

fn shell_quote(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@".contains(c));
    if plain && !word.is_empty() {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The name a path is shown under: its file name.
fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn tiers_above_max_bytes_must_be_asked_for() {
        assert!(parse_args(&args(&["--tiers", "2G"])).is_err());
        let config = parse_args(&args(&["--tiers", "2G", "--max-bytes", "2G"])).unwrap();
        assert_eq!(config.tiers, vec![2 << 30]);
        assert!(parse_args(&args(&["--max-bytes", "2T"])).is_err());
    }

    #[test]
    fn files_and_flags_parse() {
        let config = parse_args(&args(&[
            "--tiers", "none", "--rss", "--level", "5", "a.bin",
        ]))
        .unwrap();
        assert!(config.tiers.is_empty());
        assert!(config.rss);
        assert_eq!(config.level, 5);
        assert_eq!(config.files, vec![PathBuf::from("a.bin")]);
        assert_eq!(
            config.command,
            "cargo xtask bench --tiers none --rss --level 5 a.bin"
        );
        assert!(parse_args(&args(&["--bogus"])).is_err());
        assert_eq!(shell_quote("a b"), "'a b'");
    }

    #[test]
    fn sections_are_opt_in() {
        let config = parse_args(&args(&[])).unwrap();
        assert!(!config.tree && !config.chains && !config.cdc);
        assert_eq!(config.tree_files, TREE_FILES);
        assert_eq!(config.corpus, PathBuf::from(CORPUS));

        let config = parse_args(&args(&[
            "--tiers",
            "none",
            "--tree",
            "--tree-files",
            "500",
            "--chains",
            "--cdc",
            "--corpus",
            "/data/corpus",
        ]))
        .unwrap();
        assert!(config.tree && config.chains && config.cdc);
        assert_eq!(config.tree_files, 500);
        assert_eq!(config.corpus, PathBuf::from("/data/corpus"));
        assert!(config.files.is_empty());
    }

    #[test]
    fn models_takes_an_optional_dir() {
        let config = parse_args(&args(&["--tiers", "none", "--models"])).unwrap();
        assert!(config.models);
        assert_eq!(config.models_dir, None);
        assert_eq!(config.models_dir(), Path::new(CORPUS));

        let config = parse_args(&args(&["--models", "--corpus", "/c"])).unwrap();
        assert_eq!(config.models_dir(), Path::new("/c"));

        let config = parse_args(&args(&["a.bin", "--models", "/data/models", "--cdc"])).unwrap();
        assert!(config.models && config.cdc);
        assert_eq!(config.models_dir(), Path::new("/data/models"));
        assert_eq!(config.files, vec![PathBuf::from("a.bin")]);

        assert!(!parse_args(&args(&[])).unwrap().models);
    }

    #[test]
    fn section_options_are_checked() {
        assert!(parse_args(&args(&["--tree-files"])).is_err());
        assert!(parse_args(&args(&["--tree-files", "many"])).is_err());
        assert!(parse_args(&args(&["--tree-files", "0"])).is_err());
        assert!(parse_args(&args(&["--corpus"])).is_err());
        assert!(parse_args(&args(&["--timeout", "0"])).is_err());
        let config = parse_args(&args(&["--timeout", "60"])).unwrap();
        assert_eq!(config.timeout, Duration::from_secs(60));
    }
}
