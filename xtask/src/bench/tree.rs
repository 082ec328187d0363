//! `--tree`: many small files. A generated tree of text-like files (1-8 KiB each, 100 per
//! directory level pair) folded and unfolded by the release `mmh` and by `tar | zstd`,
//! each as child processes so that their time and peak RSS are their own.
//!
//! The tree is generated once into `target/bench/tree/src` and reused while its marker
//! (`src.json`: generator version, seed, file count) matches. Every run is warm-cache
//! (dropping the page cache needs root): one `tar -cf - | wc -c` reads the whole tree
//! first. Unfolds write into an empty directory that is removed after each run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use mmh_benches::{Rng, format_size};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::external::{self, Cost};
use super::report::speed;
use super::text::TextGen;
use super::{Config, SEED};

/// Bump when the generated content changes, so that old trees are regenerated.
const GENERATOR_VERSION: u32 = 1;
/// Top-level directories, each holding as many subdirectories: 100 leaf directories.
const FANOUT: u64 = 10;
/// Rounds at most, whatever `--runs` says: one round writes 100,000 files twice and
/// removes them, about a minute on the 2-core dev machine, and `--tree` should stay
/// within about 5 minutes.
const MAX_RUNS: usize = 2;
/// File sizes are uniform in this range (inclusive).
const MIN_FILE: u64 = 1 << 10;
const MAX_FILE: u64 = 8 << 10;

/// What `src.json` records about a generated tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeSpec {
    pub generator_version: u32,
    pub seed: u64,
    pub files: u64,
    pub dirs: u64,
    /// Sum of the file sizes.
    pub bytes: u64,
}

/// The `--tree` figures.
#[derive(Debug, Clone, Serialize)]
pub struct TreeResult {
    pub spec: TreeSpec,
    /// Seconds spent generating the tree; `None` when an earlier one was reused.
    pub generate_s: Option<f64>,
    /// Bytes of `tar -cf -` of the tree (headers and padding included).
    pub tar_bytes: u64,
    /// `tar --version` and `zstd --version`, shortened.
    pub tools: String,
    pub threads: usize,
    pub runs: usize,
    pub methods: Vec<MethodResult>,
    /// The check of `mmh unfold`'s output against the source.
    pub check: Option<Result<String, String>>,
}

/// One way of folding and unfolding the tree.
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub key: String,
    pub label: String,
    pub archive_bytes: Option<u64>,
    pub fold: Result<Timing, String>,
    /// `None`: not measured for this method.
    pub unfold: Option<Result<Timing, String>>,
}

/// One operation's runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timing {
    /// Every run, in order.
    pub runs: Vec<Cost>,
}

impl Timing {
    pub fn best_s(&self) -> f64 {
        self.runs
            .iter()
            .map(|c| c.seconds)
            .fold(f64::INFINITY, f64::min)
    }

    /// The largest process of any run.
    pub fn peak_rss(&self) -> u64 {
        self.runs.iter().map(Cost::max_rss).max().unwrap_or(0)
    }
}

/// The methods, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Mmh,
    /// `tar | zstd -T<threads>`.
    TarZstd {
        threads: usize,
    },
}

impl Method {
    fn key(self) -> String {
        match self {
            Method::Mmh => "mmh".into(),
            Method::TarZstd { threads } => format!("tar-zstd-t{threads}"),
        }
    }

    fn label(self, level: i32) -> String {
        match self {
            Method::Mmh => "mmh fold / unfold".into(),
            Method::TarZstd { threads } => format!("tar \\| zstd -T{threads} -{level}"),
        }
    }

    fn archive(self, dir: &Path) -> PathBuf {
        match self {
            Method::Mmh => dir.join("tree.mmh"),
            Method::TarZstd { threads } => dir.join(format!("tree-t{threads}.tar.zst")),
        }
    }

    /// Whether unfold is measured: tar | zstd only once, on the multithreaded archive
    /// (zstd decodes with one thread whatever the encoder used).
    fn unfolds(self, config: &Config) -> bool {
        match self {
            Method::Mmh => true,
            Method::TarZstd { threads } => threads == config.threads,
        }
    }

    /// The fold pipeline; fails for mmh when there is no binary to run.
    fn fold_commands(
        self,
        mmh: &Result<PathBuf>,
        src: &Path,
        archive: &Path,
        config: &Config,
    ) -> Result<Vec<Command>> {
        Ok(match self {
            Method::Mmh => {
                let mut fold = mmh_command(mmh)?;
                fold.arg("fold")
                    .arg(src)
                    .arg("-o")
                    .arg(archive)
                    .args(["-f", "-q", "--threads", &config.threads.to_string()])
                    .args(["--level", &config.level.to_string()]);
                vec![fold]
            }
            Method::TarZstd { threads } => {
                let mut zstd = Command::new("zstd");
                zstd.arg(format!("-T{threads}"))
                    .arg(format!("-{}", config.level))
                    .args(["-q", "-f", "-o"])
                    .arg(archive);
                vec![tar_create(src), zstd]
            }
        })
    }

    /// The unfold pipeline; fails for mmh when there is no binary to run.
    fn unfold_commands(
        self,
        mmh: &Result<PathBuf>,
        archive: &Path,
        dst: &Path,
        config: &Config,
    ) -> Result<Vec<Command>> {
        Ok(match self {
            Method::Mmh => {
                let mut unfold = mmh_command(mmh)?;
                unfold.arg("unfold").arg(archive).arg("-o").arg(dst).args([
                    "-q",
                    "--threads",
                    &config.threads.to_string(),
                ]);
                vec![unfold]
            }
            Method::TarZstd { .. } => {
                let mut zstd = Command::new("zstd");
                zstd.args(["-d", "-c", "-q"]).arg(archive);
                let mut tar = Command::new("tar");
                tar.arg("-xf").arg("-").arg("-C").arg(dst);
                vec![zstd, tar]
            }
        })
    }
}

fn mmh_command(mmh: &Result<PathBuf>) -> Result<Command> {
    match mmh {
        Ok(bin) => Ok(Command::new(bin)),
        Err(e) => bail!("no mmh binary: {e:#}"),
    }
}

/// `tar -cf - -C src .`
fn tar_create(src: &Path) -> Command {
    let mut tar = Command::new("tar");
    tar.args(["-cf", "-", "-C"]).arg(src).arg(".");
    tar
}

/// Generates (or reuses) the tree and measures every method on it.
pub fn measure(config: &Config, target: &Path, scratch: &Path) -> Result<TreeResult> {
    let root = target.join("bench").join("tree");
    let (spec, generate_s) = ensure_tree(&root, config.tree_files)?;
    let src = root.join("src");
    let work = scratch.join("tree");
    std::fs::create_dir_all(&work)?;
    let dst = work.join("dst");
    let mmh = external::mmh_binary(target);

    // Warm the page cache with one read of every file. Not `tar -cf /dev/null`: GNU tar
    // notices /dev/null and skips reading the files.
    eprintln!("bench: tree: warm-up read (tar -cf - | wc -c)");
    let mut wc = Command::new("wc");
    wc.arg("-c");
    let warm = external::pipeline(vec![tar_create(&src), wc], None, config.timeout)?;
    let tar_bytes: u64 = String::from_utf8_lossy(&warm.stdout)
        .trim()
        .parse()
        .context("wc -c printed no number")?;

    let methods = [
        Method::Mmh,
        Method::TarZstd {
            threads: config.threads,
        },
        Method::TarZstd { threads: 1 },
    ];
    let mut results: Vec<MethodResult> = methods
        .iter()
        .map(|m| MethodResult {
            key: m.key(),
            label: m.label(config.level),
            archive_bytes: None,
            fold: Ok(Timing::default()),
            unfold: m.unfolds(config).then(|| Ok(Timing::default())),
        })
        .collect();
    let mut check = None;
    let runs = config.runs.min(MAX_RUNS);
    // Round-robin, so that a burst of other work slows one run of several methods rather
    // than every run of one.
    for run in 0..runs {
        for (&method, result) in methods.iter().zip(&mut results) {
            eprintln!("bench: tree: {} run {}", method.key(), run + 1);
            let archive = method.archive(&work);
            let Ok(fold) = &mut result.fold else { continue };
            let folded = method
                .fold_commands(&mmh, &src, &archive, config)
                .and_then(|commands| external::pipeline(commands, None, config.timeout));
            match folded {
                Ok(done) => fold.runs.push(done.cost),
                Err(e) => {
                    result.fold = Err(format!("{e:#}"));
                    continue;
                }
            }
            result.archive_bytes = Some(std::fs::metadata(&archive)?.len());
            let Some(Ok(unfold)) = &mut result.unfold else {
                continue;
            };
            remove_dir(&dst)?;
            std::fs::create_dir(&dst)?;
            let unfolded = method
                .unfold_commands(&mmh, &archive, &dst, config)
                .and_then(|commands| external::pipeline(commands, None, config.timeout));
            match unfolded {
                Ok(done) => {
                    unfold.runs.push(done.cost);
                    if method == Method::Mmh && check.is_none() {
                        eprintln!("bench: tree: comparing mmh unfold's output with the source");
                        check = Some(compare_trees(&src, &dst).map_err(|e| format!("{e:#}")));
                    }
                }
                Err(e) => result.unfold = Some(Err(format!("{e:#}"))),
            }
            remove_dir(&dst)?;
        }
    }
    for method in methods {
        let _ = std::fs::remove_file(method.archive(&work));
    }
    Ok(TreeResult {
        spec,
        generate_s,
        tar_bytes,
        tools: format!(
            "{}, {}",
            external::version("tar"),
            external::version("zstd")
        ),
        threads: config.threads,
        runs,
        methods: results,
        check,
    })
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The tree under `root/src` for `files` files: reused when `root/src.json` says it was
/// generated with the same version, seed and count, else generated afresh (through
/// `src.tmp`, renamed when complete, so an interrupted run leaves no tree that looks
/// whole). Returns its spec and the generation time, `None` when reused.
fn ensure_tree(root: &Path, files: u64) -> Result<(TreeSpec, Option<f64>)> {
    let src = root.join("src");
    let marker = root.join("src.json");
    let wanted = |spec: &TreeSpec| {
        spec.generator_version == GENERATOR_VERSION && spec.seed == SEED && spec.files == files
    };
    if let Ok(text) = std::fs::read_to_string(&marker)
        && let Ok(spec) = serde_json::from_str::<TreeSpec>(&text)
        && wanted(&spec)
        && src.is_dir()
    {
        eprintln!(
            "bench: tree: reusing {} ({} files, {})",
            src.display(),
            spec.files,
            format_size(spec.bytes)
        );
        return Ok((spec, None));
    }
    let _ = std::fs::remove_file(&marker);
    remove_dir(&src)?;
    let tmp = root.join("src.tmp");
    remove_dir(&tmp)?;
    eprintln!(
        "bench: tree: generating {files} files under {}",
        src.display()
    );
    let start = Instant::now();
    let spec = generate(&tmp, files)?;
    let seconds = start.elapsed().as_secs_f64();
    std::fs::rename(&tmp, &src)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), src.display()))?;
    std::fs::write(&marker, serde_json::to_string_pretty(&spec)? + "\n")
        .with_context(|| format!("cannot write {}", marker.display()))?;
    eprintln!(
        "bench: tree: {} files, {} in {seconds:.1} s",
        spec.files,
        format_size(spec.bytes)
    );
    Ok((spec, Some(seconds)))
}

/// Where file `i` of `files` goes: `DD/DD/file-NNNNNN.txt`, the files spread evenly over
/// `FANOUT²` leaf directories in order.
fn file_path(i: u64, files: u64) -> PathBuf {
    let leaves = FANOUT * FANOUT;
    let per_leaf = files.div_ceil(leaves).max(1);
    let leaf = i / per_leaf;
    PathBuf::from(format!("{:02}", leaf / FANOUT))
        .join(format!("{:02}", leaf % FANOUT))
        .join(format!("file-{i:06}.txt"))
}

/// The size and content of file `i`: its own generator, so that files can be written in
/// any order (in parallel) and still be the same bytes.
fn file_content(text: &TextGen, i: u64, out: &mut Vec<u8>) {
    let mut rng = Rng::new(SEED ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let len = MIN_FILE + rng.below(MAX_FILE - MIN_FILE + 1);
    out.clear();
    text.fill(&mut rng, len as usize, out);
}

fn generate(dir: &Path, files: u64) -> Result<TreeSpec> {
    let text = TextGen::new(SEED);
    let leaves: std::collections::BTreeSet<PathBuf> = (0..files)
        .map(|i| file_path(i, files).parent().expect("nested").to_path_buf())
        .collect();
    for leaf in &leaves {
        std::fs::create_dir_all(dir.join(leaf))?;
    }
    let bytes = (0..files)
        .into_par_iter()
        .map_init(Vec::new, |buf, i| -> Result<u64> {
            file_content(&text, i, buf);
            let path = dir.join(file_path(i, files));
            std::fs::write(&path, &buf)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(buf.len() as u64)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    let top: std::collections::BTreeSet<_> = leaves.iter().filter_map(|l| l.parent()).collect();
    Ok(TreeSpec {
        generator_version: GENERATOR_VERSION,
        seed: SEED,
        files,
        dirs: (leaves.len() + top.len()) as u64,
        bytes,
    })
}

/// Every regular file under `root`, as paths relative to it, sorted.
fn list_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let dir = root.join(&rel);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = rel.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                files.push(path);
            } else {
                bail!(
                    "{} is neither a file nor a directory",
                    root.join(path).display()
                );
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Checks that `copy` holds the same files as `src` with the same bytes; returns a line
/// for the report.
fn compare_trees(src: &Path, copy: &Path) -> Result<String> {
    let start = Instant::now();
    let expected = list_files(src)?;
    let found = list_files(copy)?;
    if expected != found {
        let missing = expected.iter().find(|p| found.binary_search(p).is_err());
        let extra = found.iter().find(|p| expected.binary_search(p).is_err());
        bail!(
            "unfolded tree differs in its names: {} files, expected {} (first missing: {:?}, first extra: {:?})",
            found.len(),
            expected.len(),
            missing,
            extra
        );
    }
    let bytes = expected
        .par_iter()
        .map(|rel| -> Result<u64> {
            let a = std::fs::read(src.join(rel))?;
            let b = std::fs::read(copy.join(rel))?;
            ensure!(
                a == b,
                "{} differs from the source",
                copy.join(rel).display()
            );
            Ok(a.len() as u64)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    Ok(format!(
        "{} files, {} bytes, all equal to the source (compared in {:.1} s)",
        thousands(expected.len() as u64),
        thousands(bytes),
        start.elapsed().as_secs_f64()
    ))
}

impl TreeResult {
    /// The markdown section.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let spec = &self.spec;
        let mb = spec.bytes as f64 / 1e6;
        let _ = writeln!(
            s,
            "### {} small files: fold and unfold a tree\n",
            thousands(spec.files)
        );
        let generated = match self.generate_s {
            Some(t) => format!("generated in {t:.1} s"),
            None => "reused from an earlier run".into(),
        };
        let _ = writeln!(
            s,
            "{} text-like files ({}–{} bytes, uniform; pseudo-words with Zipf frequencies and \
             JSON-ish lines) in {} directories, {:.1} MB of content (tar stream {:.1} MB), seed \
             {SEED:#x}, {generated}. Release `mmh` and {} as child processes (no shell), \
             fastest of {} round-robin run(s) (at most {MAX_RUNS}), warm page cache (one full \
             read first; dropping it needs root). `-T{}`: the bench's thread count, also \
             given to mmh (`--threads`). MB/s = 10^6 bytes of file content per second. \
             Peak RSS: VmHWM of the largest process of the pipeline, polled every 2 ms. \
             Unfold writes into an empty directory, removed after each run.\n",
            thousands(spec.files),
            MIN_FILE,
            MAX_FILE,
            spec.dirs,
            mb,
            self.tar_bytes as f64 / 1e6,
            self.tools,
            self.runs,
            self.threads,
        );
        s.push_str(
            "| method | archive | ratio | fold s | fold MB/s | fold peak RSS | unfold s | unfold MB/s | unfold peak RSS |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for m in &self.methods {
            let archive = m
                .archive_bytes
                .map_or("—".into(), |b| format!("{:.2} MB", b as f64 / 1e6));
            let ratio = m.archive_bytes.map_or("—".into(), |b| {
                format!("{:.2}×", spec.bytes as f64 / b.max(1) as f64)
            });
            let fold = timing_cells(&m.fold, mb);
            let unfold = match &m.unfold {
                Some(t) => timing_cells(t, mb),
                None => "— | — | —".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {archive} | {ratio} | {fold} | {unfold} |",
                m.label
            );
        }
        s.push('\n');
        match &self.check {
            Some(Ok(line)) => {
                let _ = writeln!(s, "mmh unfold checked: {line}.\n");
            }
            Some(Err(e)) => {
                let _ = writeln!(s, "**mmh unfold CHECK FAILED**: {e}\n");
            }
            None => s.push_str("mmh unfold was not checked: it did not complete.\n\n"),
        }
        s
    }

    /// The failed check, if any: the bench fails after printing the report.
    pub fn failure(&self) -> Option<String> {
        match &self.check {
            Some(Err(e)) => Some(format!("tree: mmh unfold: {e}")),
            _ => None,
        }
    }
}

/// `seconds | MB/s | peak RSS`, or the error across the three cells.
fn timing_cells(t: &Result<Timing, String>, mb: f64) -> String {
    match t {
        Ok(t) if !t.runs.is_empty() => {
            let best = t.best_s();
            format!(
                "{best:.2} | {} | {}",
                speed(mb / best),
                format_size(t.peak_rss())
            )
        }
        Ok(_) => "— | — | —".into(),
        Err(e) => format!("error: {} | | ", super::report::cell_text(e)),
    }
}

/// `100000` as `100,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_spread_over_two_levels() {
        assert_eq!(file_path(0, 100_000), Path::new("00/00/file-000000.txt"));
        assert_eq!(file_path(999, 100_000), Path::new("00/00/file-000999.txt"));
        assert_eq!(file_path(1000, 100_000), Path::new("00/01/file-001000.txt"));
        assert_eq!(
            file_path(99_999, 100_000),
            Path::new("09/09/file-099999.txt")
        );
        assert_eq!(file_path(5, 10), Path::new("00/05/file-000005.txt"));
    }

    #[test]
    fn file_sizes_are_in_range_and_content_is_stable() {
        let text = TextGen::new(SEED);
        let mut a = Vec::new();
        let mut b = Vec::new();
        for i in 0..200 {
            file_content(&text, i, &mut a);
            assert!((MIN_FILE..=MAX_FILE).contains(&(a.len() as u64)));
            file_content(&text, i, &mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn generated_trees_compare_equal_and_differences_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let spec = generate(&a, 30).unwrap();
        assert_eq!((spec.files, spec.dirs), (30, 33));
        generate(&b, 30).unwrap();
        assert!(compare_trees(&a, &b).unwrap().starts_with("30 files"));
        std::fs::write(b.join(file_path(7, 30)), b"changed").unwrap();
        assert!(compare_trees(&a, &b).is_err());
        std::fs::remove_file(b.join(file_path(7, 30))).unwrap();
        assert!(compare_trees(&a, &b).is_err());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
