//! `--chains`: what a new version of a model file costs when the old one is already
//! archived, on the development corpus (`/tmp/mmh-dev-corpus`, built by
//! `bash /work/shared/corpus/build.sh`):
//!
//! - a fine-tune: `piper-bf16.safetensors` → `piper-bf16-v2.safetensors` (a few tensors
//!   changed slightly; `piper-bf16-v2.changed.json` says which);
//! - training checkpoints `piper-ckpt-step1` → `step2` → `step3` (every tensor drifts),
//!   archived as a real chain: step3.mmh is based on step2.mmh, itself based on step1.mmh.
//!
//! Each new file is folded against the old one's archive (`mmh fold --base`), the same
//! with `--self-contained`, without a base, and compared with `zstd -19 --patch-from` and
//! with zstd -19 of the XOR of the two files. Then the based archives are unfolded and
//! compared with their sources byte for byte (a difference fails the bench), and a
//! directory holding one weight file under two names is folded against the file alone.
//!
//! A method that fails (an mmh without `--base` yet, a missing zstd) becomes an error
//! cell; the other rows are still measured.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use mmh_format::Trailer;
use mmh_format::consts::TRAILER_LEN;
use mmh_model::{Sniff, Tensor};
use serde::{Deserialize, Serialize};

use super::external;
use super::report::cell_text;
use super::tree::thousands;
use super::{Config, shell_quote};

/// The fine-tune pair: (old, new).
const PAIR: (&str, &str) = ("piper-bf16.safetensors", "piper-bf16-v2.safetensors");
/// What the corpus says changed between the pair.
const PAIR_CHANGES: &str = "piper-bf16-v2.changed.json";
/// The checkpoints, oldest first.
const CHAIN: [&str; 3] = [
    "piper-ckpt-step1.safetensors",
    "piper-ckpt-step2.safetensors",
    "piper-ckpt-step3.safetensors",
];
/// zstd's settings for the references. `--single-thread`: zstd's own hint for the
/// smallest patch (its default runs one worker beside the reader, which costs ratio);
/// `--patch-from` turns on long mode with a window large enough for the old file itself.
const ZSTD_ARGS: [&str; 2] = ["-19", "--single-thread"];

/// The `--chains` figures.
#[derive(Debug, Clone, Serialize)]
pub struct ChainsResult {
    pub corpus: PathBuf,
    pub zstd_version: String,
    /// `piper-bf16-v2.changed.json` as read.
    pub changes: Option<Changes>,
    pub links: Vec<Link>,
    pub changed_tensors: Result<ChangedTensors, String>,
    pub checks: Vec<Check>,
    pub duplicate: Result<Duplicate, String>,
}

/// What the corpus records about the fine-tune (the fields the report uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Changes {
    #[serde(default)]
    pub changed_tensors: Vec<String>,
    pub tensor_count: Option<u64>,
    pub bytes_in_changed_tensors: Option<u64>,
    pub bytes_total: Option<u64>,
    pub bf16_values_that_differ: Option<u64>,
    pub rule: Option<String>,
}

/// One new file measured against its predecessor.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub new: String,
    pub old: String,
    pub new_bytes: u64,
    /// The archive the `--base` rows were based on.
    pub base_archive: String,
    pub rows: Vec<Row>,
}

/// One method on one link.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub key: String,
    pub label: String,
    pub result: Result<Output, String>,
}

/// What a method produced.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub bytes: u64,
    /// Wall time of the fold (for XOR: computing it plus zstd).
    pub seconds: f64,
    /// Peak RSS of the largest process (0 for the XOR computed in the bench).
    pub peak_rss_bytes: u64,
    /// For mmh archives: the index frame and trailer at its end, in bytes.
    pub index_bytes: Option<u64>,
}

/// The tensors whose bytes differ between the pair, compressed alone: what a perfect
/// delta would have to store.
#[derive(Debug, Clone, Serialize)]
pub struct ChangedTensors {
    pub tensors: usize,
    pub differing: Vec<String>,
    /// Whether `differing` is exactly the corpus's list.
    pub matches_corpus_list: Option<bool>,
    pub raw_bytes: u64,
    pub zstd3_bytes: u64,
}

/// An unfold compared with its source.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub archive: String,
    pub what: String,
    pub outcome: CheckOutcome,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Passed(String),
    /// The archive could not be made (its fold failed): nothing to check.
    Skipped(String),
    /// The unfold failed or gave other bytes: the bench fails.
    Failed(String),
}

/// One weight file stored under two names, against the file alone.
#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    pub file: String,
    pub single_bytes: u64,
    pub dir_bytes: u64,
    /// As `mmh fold --json` reports it, where it does.
    pub deduplicated_bytes: Option<u64>,
}

/// What the rows run: the `mmh` binary and the settings.
struct Env<'a> {
    mmh: Result<PathBuf>,
    config: &'a Config,
    work: PathBuf,
}

/// Measures everything above; `None` (with a note on how to build it) when the corpus
/// is missing.
pub fn measure(config: &Config, target: &Path, scratch: &Path) -> Result<Option<ChainsResult>> {
    let corpus = &config.corpus;
    let missing: Vec<&str> = [PAIR.0, PAIR.1]
        .into_iter()
        .chain(CHAIN)
        .filter(|name| !corpus.join(name).is_file())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "bench: --chains skipped: {} lacks {}. Build the development corpus with \
             `bash /work/shared/corpus/build.sh {}` (about 20 s, ~525 MB), or point \
             --corpus at it.",
            corpus.display(),
            missing.join(", "),
            shell_quote(&corpus.to_string_lossy())
        );
        return Ok(None);
    }
    let work = scratch.join("chains");
    std::fs::create_dir_all(&work)?;
    let env = Env {
        mmh: external::mmh_binary(target),
        config,
        work,
    };
    let changes = match std::fs::read_to_string(corpus.join(PAIR_CHANGES)) {
        Ok(text) => Some(
            serde_json::from_str::<Changes>(&text)
                .with_context(|| format!("cannot parse {PAIR_CHANGES}"))?,
        ),
        Err(_) => None,
    };

    let mut links = Vec::new();
    let mut checks = Vec::new();

    // The fine-tune: the old file folded plainly is the base.
    eprintln!("bench: chains: {} -> {}", PAIR.0, PAIR.1);
    let (old, new) = (corpus.join(PAIR.0), corpus.join(PAIR.1));
    let pair_base = env.fold_plain(&old);
    let pair = env.link(&new, &old, &pair_base)?;
    checks.push(env.check_unfold(&pair, &new, false));
    links.push(pair);

    // The checkpoints: each link's based archive is the next one's base.
    let mut base = env.fold_plain(&corpus.join(CHAIN[0]));
    for step in CHAIN.windows(2) {
        eprintln!("bench: chains: {} -> {}", step[0], step[1]);
        let (old, new) = (corpus.join(step[0]), corpus.join(step[1]));
        let link = env.link(&new, &old, &base)?;
        base = link.rows[0]
            .result
            .as_ref()
            .map(|_| env.archive(&new, Way::Base))
            .map_err(|e| anyhow::anyhow!("the previous link's --base fold failed: {e}"));
        links.push(link);
    }
    let last = links.last().expect("the chain has links");
    let newest = corpus.join(CHAIN[2]);
    checks.push(env.check_unfold(last, &newest, false));
    checks.push(env.check_unfold(last, &newest, true));

    eprintln!("bench: chains: changed tensors of {}", PAIR.1);
    let changed_tensors =
        changed_tensors(&old, &new, changes.as_ref()).map_err(|e| format!("{e:#}"));
    eprintln!("bench: chains: one file under two names");
    let duplicate = env
        .duplicate(&old, &pair_base)
        .map_err(|e| format!("{e:#}"));
    Ok(Some(ChainsResult {
        corpus: corpus.clone(),
        zstd_version: external::version("zstd"),
        changes,
        links,
        changed_tensors,
        checks,
        duplicate,
    }))
}

/// The ways a new file is stored, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Base,
    SelfContained,
    Plain,
    PatchFrom,
    Xor,
}

const WAYS: [Way; 5] = [
    Way::Base,
    Way::SelfContained,
    Way::Plain,
    Way::PatchFrom,
    Way::Xor,
];

impl Way {
    fn key(self) -> &'static str {
        match self {
            Way::Base => "mmh-base",
            Way::SelfContained => "mmh-base-self-contained",
            Way::Plain => "mmh",
            Way::PatchFrom => "zstd-patch-from",
            Way::Xor => "xor-zstd",
        }
    }

    /// The output's file name suffix, after the new file's stem.
    fn suffix(self) -> &'static str {
        match self {
            Way::Base => ".mmh",
            Way::SelfContained => ".sc.mmh",
            Way::Plain => ".plain.mmh",
            Way::PatchFrom => ".patch.zst",
            Way::Xor => ".xor.zst",
        }
    }
}

/// A file name without its last extension.
fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

impl Env<'_> {
    /// Where `way` writes the archive of `new`.
    fn archive(&self, new: &Path, way: Way) -> PathBuf {
        self.work.join(format!("{}{}", stem(new), way.suffix()))
    }

    /// `mmh fold INPUT -o OUTPUT -f -q` with the bench's threads and level.
    fn mmh_fold(&self, input: &Path, output: &Path) -> Result<Command> {
        let bin = self
            .mmh
            .as_ref()
            .map_err(|e| anyhow::anyhow!("no mmh binary: {e:#}"))?;
        let mut fold = Command::new(bin);
        fold.arg("fold")
            .arg(input)
            .arg("-o")
            .arg(output)
            .args(["-f", "-q", "--threads", &self.config.threads.to_string()])
            .args(["--level", &self.config.level.to_string()]);
        Ok(fold)
    }

    /// Folds `file` without a base into `STEM.mmh`, to serve as a base.
    fn fold_plain(&self, file: &Path) -> Result<PathBuf> {
        let archive = self.archive(file, Way::Base);
        external::run(self.mmh_fold(file, &archive)?, self.config.timeout)?;
        Ok(archive)
    }

    /// Every way of storing `new` after `old` (whose archive is `base`).
    fn link(&self, new: &Path, old: &Path, base: &Result<PathBuf>) -> Result<Link> {
        let base_name = match base {
            Ok(b) => super::display_name(b),
            Err(_) => format!("{}.mmh", stem(old)),
        };
        let rows = WAYS
            .iter()
            .map(|&way| {
                eprintln!("bench: chains: {} {}", super::display_name(new), way.key());
                Row {
                    key: way.key().into(),
                    label: self.label(way, old, &base_name),
                    result: self
                        .store(way, new, old, base)
                        .map_err(|e| format!("{e:#}")),
                }
            })
            .collect();
        Ok(Link {
            new: super::display_name(new),
            old: super::display_name(old),
            new_bytes: std::fs::metadata(new)?.len(),
            base_archive: base_name,
            rows,
        })
    }

    fn label(&self, way: Way, old: &Path, base: &str) -> String {
        let level = self.config.level;
        match way {
            Way::Base => format!("mmh --base {base}"),
            Way::SelfContained => format!("mmh --base {base} --self-contained"),
            Way::Plain => format!("mmh (no base, level {level})"),
            Way::PatchFrom => format!("zstd -19 --patch-from={}", super::display_name(old)),
            Way::Xor => format!("XOR with {} + zstd -19", super::display_name(old)),
        }
    }

    /// Stores `new` the way `way` says; returns the output's size and cost.
    fn store(&self, way: Way, new: &Path, old: &Path, base: &Result<PathBuf>) -> Result<Output> {
        let out = self.archive(new, way);
        let _ = std::fs::remove_file(&out);
        let base = || {
            base.as_ref()
                .map_err(|e| anyhow::anyhow!("no base archive: {e:#}"))
        };
        let (seconds, peak_rss_bytes) = match way {
            Way::Base | Way::SelfContained | Way::Plain => {
                let mut fold = self.mmh_fold(new, &out)?;
                if way != Way::Plain {
                    fold.arg("--base").arg(base()?);
                }
                if way == Way::SelfContained {
                    fold.arg("--self-contained");
                }
                let cost = external::run(fold, self.config.timeout)?.cost;
                (cost.seconds, cost.max_rss())
            }
            Way::PatchFrom => {
                let mut zstd = Command::new("zstd");
                zstd.args(ZSTD_ARGS)
                    .args(["-q", "-f"])
                    .arg(format!("--patch-from={}", old.display()))
                    .arg(new)
                    .arg("-o")
                    .arg(&out);
                let cost = external::run(zstd, self.config.timeout)?.cost;
                (cost.seconds, cost.max_rss())
            }
            Way::Xor => {
                let start = Instant::now();
                let xor = self.work.join(format!("{}.xor", stem(new)));
                std::fs::write(&xor, xor_delta(&std::fs::read(old)?, &std::fs::read(new)?))?;
                let xor_s = start.elapsed().as_secs_f64();
                let mut zstd = Command::new("zstd");
                zstd.args(ZSTD_ARGS)
                    .args(["-q", "-f"])
                    .arg(&xor)
                    .arg("-o")
                    .arg(&out);
                let done = external::run(zstd, self.config.timeout);
                let _ = std::fs::remove_file(&xor);
                let cost = done?.cost;
                (xor_s + cost.seconds, cost.max_rss())
            }
        };
        let bytes = std::fs::metadata(&out)?.len();
        let index_bytes = matches!(way, Way::Base | Way::SelfContained | Way::Plain)
            .then(|| index_bytes(&out).ok())
            .flatten();
        Ok(Output {
            bytes,
            seconds,
            peak_rss_bytes,
            index_bytes,
        })
    }

    /// Unfolds `link`'s `--base` archive (or `--self-contained` one, copied alone into a
    /// directory of its own, so that no base can be found beside it) and compares the
    /// result with `source`.
    fn check_unfold(&self, link: &Link, source: &Path, self_contained: bool) -> Check {
        let way = if self_contained {
            Way::SelfContained
        } else {
            Way::Base
        };
        let mut archive = self.archive(source, way);
        let what = if self_contained {
            "unfolded alone (no base beside it)".to_owned()
        } else {
            "unfolded with its bases found beside it".to_owned()
        };
        let name = super::display_name(&archive);
        let row = link.rows.iter().find(|r| r.key == way.key());
        if let Some(Err(e)) = row.map(|r| &r.result) {
            return Check {
                archive: name,
                what,
                outcome: CheckOutcome::Skipped(format!("its fold failed: {}", cell_text(e))),
            };
        }
        let result = (|| -> Result<String> {
            if self_contained {
                let alone = self.work.join("alone");
                let _ = std::fs::remove_dir_all(&alone);
                std::fs::create_dir(&alone)?;
                let moved = alone.join(&name);
                std::fs::copy(&archive, &moved)?;
                archive = moved;
            }
            let out = self.work.join(format!("{}.unfolded", stem(source)));
            let bin = self
                .mmh
                .as_ref()
                .map_err(|e| anyhow::anyhow!("no mmh binary: {e:#}"))?;
            let mut unfold = Command::new(bin);
            unfold
                .arg("unfold")
                .arg(&archive)
                .arg("-o")
                .arg(&out)
                .args(["-f", "-q"]);
            let done = external::run(unfold, self.config.timeout);
            let same = done.and_then(|_| {
                let (a, b) = (std::fs::read(source)?, std::fs::read(&out)?);
                Ok(a == b).map(|same| (same, a.len(), b.len()))
            });
            let _ = std::fs::remove_file(&out);
            let (same, want, got) = same?;
            ensure!(
                same,
                "the unfolded bytes differ from {} (Is: {got} bytes, Should be: {want} bytes, same length: {})",
                super::display_name(source),
                want == got
            );
            Ok(format!(
                "{} bytes equal to {}",
                thousands(want as u64),
                super::display_name(source)
            ))
        })();
        Check {
            archive: name,
            what,
            outcome: match result {
                Ok(line) => CheckOutcome::Passed(line),
                Err(e) => CheckOutcome::Failed(format!("{e:#}")),
            },
        }
    }

    /// `file` twice in a directory (`a.safetensors`, `b/copy.safetensors`, real copies,
    /// not hard links, which mmh would store as links) folded, against `single`, the
    /// archive of `file` alone.
    fn duplicate(&self, file: &Path, single: &Result<PathBuf>) -> Result<Duplicate> {
        let single = single.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let dir = self.work.join("twice");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b"))?;
        std::fs::copy(file, dir.join("a.safetensors"))?;
        std::fs::copy(file, dir.join("b").join("copy.safetensors"))?;
        let archive = self.work.join("twice.mmh");
        let mut fold = self.mmh_fold(&dir, &archive)?;
        fold.arg("--json");
        let done = external::run(fold, self.config.timeout);
        let _ = std::fs::remove_dir_all(&dir);
        let done = done?;
        let deduplicated_bytes = serde_json::from_slice::<serde_json::Value>(&done.stdout)
            .ok()
            .and_then(|v| v.get("deduplicated_bytes")?.as_u64());
        Ok(Duplicate {
            file: super::display_name(file),
            single_bytes: std::fs::metadata(single)?.len(),
            dir_bytes: std::fs::metadata(&archive)?.len(),
            deduplicated_bytes,
        })
    }
}

/// `new` XOR `old` over their common length, then the rest of `new` as it is: zero
/// wherever a byte did not change.
fn xor_delta(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut delta = new.to_vec();
    for (d, o) in delta.iter_mut().zip(old) {
        *d ^= o;
    }
    delta
}

/// Bytes of an archive's index frame and trailer: from the index's offset, which the
/// trailer records, to the end.
fn index_bytes(archive: &Path) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(archive)?;
    let len = file.metadata()?.len();
    let at = len
        .checked_sub(TRAILER_LEN as u64)
        .context("shorter than a trailer")?;
    let mut buf = [0u8; TRAILER_LEN];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut buf)?;
    let trailer = Trailer::parse(&buf, at)?;
    Ok(len - trailer.index_offset)
}

/// The tensors of a model file held whole in memory, as `mmh_model::sniff` finds them.
fn tensors(file: &[u8]) -> Result<Vec<Tensor>> {
    match mmh_model::sniff(file, file.len() as u64)? {
        Sniff::Model(layout) => Ok(layout.tensors),
        Sniff::NotAModel => bail!("not a model file that mmh-model recognises"),
        Sniff::NeedHead(n) => bail!(
            "mmh-model asked for {n} leading bytes of a {}-byte file it was given whole",
            file.len()
        ),
    }
}

/// The tensors of `new` whose bytes differ from the same-named tensor of `old` (or that
/// `old` lacks), and their bytes concatenated and compressed with zstd -3.
fn changed_tensors(old: &Path, new: &Path, changes: Option<&Changes>) -> Result<ChangedTensors> {
    let (old_bytes, new_bytes) = (std::fs::read(old)?, std::fs::read(new)?);
    let old_tensors = tensors(&old_bytes).with_context(|| format!("{}", old.display()))?;
    let new_tensors = tensors(&new_bytes).with_context(|| format!("{}", new.display()))?;
    // sniff checked every range against the file's length.
    let bytes_of = |file: &'_ [u8], t: &Tensor| -> Vec<u8> {
        file[t.range.start as usize..t.range.end as usize].to_vec()
    };
    let mut differing = Vec::new();
    let mut concatenated = Vec::new();
    for t in &new_tensors {
        let before = old_tensors.iter().find(|o| o.name == t.name);
        let now = bytes_of(&new_bytes, t);
        if before.is_none_or(|o| bytes_of(&old_bytes, o) != now) {
            differing.push(t.name.clone());
            concatenated.extend_from_slice(&now);
        }
    }
    if differing.is_empty() {
        bail!(
            "no tensor of {} differs from {}",
            new.display(),
            old.display()
        );
    }
    let zstd3_bytes = zstd::bulk::compress(&concatenated, 3)?.len() as u64;
    let matches_corpus_list = changes.map(|c| {
        let mut listed = c.changed_tensors.clone();
        listed.sort();
        let mut found = differing.clone();
        found.sort();
        listed == found
    });
    Ok(ChangedTensors {
        tensors: new_tensors.len(),
        differing,
        matches_corpus_list,
        raw_bytes: concatenated.len() as u64,
        zstd3_bytes,
    })
}

impl ChainsResult {
    /// The markdown section.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("### Cross-version dedup: a fine-tune and a chain of checkpoints\n\n");
        let fine_tune = match &self.changes {
            Some(c) => format!(
                "`{}` is `{}` fine-tuned: {} of {} tensors changed ({} of {} tensor bytes; \
                 {} bf16 values differ); rule: {}",
                PAIR.1,
                PAIR.0,
                c.changed_tensors.len(),
                c.tensor_count.map_or("?".into(), thousands),
                c.bytes_in_changed_tensors.map_or("?".into(), thousands),
                c.bytes_total.map_or("?".into(), thousands),
                c.bf16_values_that_differ.map_or("?".into(), thousands),
                c.rule.as_deref().unwrap_or("not recorded"),
            ),
            None => format!(
                "`{}` is `{}` fine-tuned ({PAIR_CHANGES} missing)",
                PAIR.1, PAIR.0
            ),
        };
        let _ = writeln!(
            s,
            "Corpus `{}`. {fine_tune}. `piper-ckpt-step1` → `step2` → `step3` are training \
             checkpoints in which every tensor drifts; `step3.mmh` is based on `step2.mmh`, \
             itself based on `step1.mmh` (a real chain). Bases are the old file folded \
             plainly. One run each; mmh rows are the release binary as a child process; zstd \
             rows are the CLI ({}, `{}`, one thread). % = output bytes / new file bytes.\n",
            self.corpus.display(),
            self.zstd_version,
            ZSTD_ARGS.join(" "),
        );
        s.push_str("| new ← old | method | bytes | % of new | fold s |\n");
        s.push_str("|---|---|---:|---:|---:|\n");
        for link in &self.links {
            for (i, row) in link.rows.iter().enumerate() {
                let name = if i == 0 {
                    format!(
                        "{} ← {}",
                        stem(Path::new(&link.new)),
                        stem(Path::new(&link.old))
                    )
                } else {
                    String::new()
                };
                let cells = match &row.result {
                    Ok(o) => format!(
                        "{} | {:.2} % | {:.2}",
                        thousands(o.bytes),
                        100.0 * o.bytes as f64 / link.new_bytes.max(1) as f64,
                        o.seconds
                    ),
                    Err(e) => format!("error: {} | | ", cell_text(e)),
                };
                let _ = writeln!(s, "| {name} | {} | {cells} |", row.label);
            }
        }
        s.push('\n');
        s.push_str(&self.changed_line());
        for check in &self.checks {
            let _ = match &check.outcome {
                CheckOutcome::Passed(line) => {
                    writeln!(s, "- `{}` {}: {line}.", check.archive, check.what)
                }
                CheckOutcome::Skipped(why) => {
                    writeln!(
                        s,
                        "- `{}` {}: not checked, {why}.",
                        check.archive, check.what
                    )
                }
                CheckOutcome::Failed(e) => writeln!(
                    s,
                    "- **CHECK FAILED** `{}` {}: {}",
                    check.archive,
                    check.what,
                    cell_text(e)
                ),
            };
        }
        s.push('\n');
        s.push_str("#### The same weight file under two names\n\n");
        match &self.duplicate {
            Ok(d) => {
                let _ = writeln!(
                    s,
                    "| input | mmh archive bytes |\n|---|---:|\n| `{0}` alone | {1} |\n\
                     | directory: `a.safetensors` + `b/copy.safetensors` (two copies of `{0}`) | {2} |\n\n\
                     Directory / single: {3:.4}× (target ≈ 1.0){4}.\n",
                    d.file,
                    thousands(d.single_bytes),
                    thousands(d.dir_bytes),
                    d.dir_bytes as f64 / d.single_bytes.max(1) as f64,
                    d.deduplicated_bytes.map_or(String::new(), |b| format!(
                        "; mmh reports {} bytes deduplicated",
                        thousands(b)
                    )),
                );
            }
            Err(e) => {
                let _ = writeln!(s, "error: {}\n", cell_text(e));
            }
        }
        s
    }

    /// The changed-tensors line: what a perfect delta of the fine-tune costs, against
    /// the `--base` archive's size.
    fn changed_line(&self) -> String {
        let c = match &self.changed_tensors {
            Ok(c) => c,
            Err(e) => return format!("- Changed tensors: error: {}\n", cell_text(e)),
        };
        let listed = match c.matches_corpus_list {
            Some(true) => "the tensors the corpus lists",
            Some(false) => "NOT the set the corpus lists",
            None => "the corpus has no list",
        };
        let mut line = format!(
            "- Changed tensors of `{}`: {} of {} differ ({listed}), {} bytes; zstd -3 of their \
             concatenation: {} bytes (tensors found by `mmh_model::sniff`).",
            PAIR.1,
            c.differing.len(),
            c.tensors,
            thousands(c.raw_bytes),
            thousands(c.zstd3_bytes),
        );
        let based = self
            .links
            .first()
            .and_then(|l| l.rows.first())
            .map(|r| &r.result);
        if let Some(Ok(a)) = based {
            let index = a.index_bytes.unwrap_or(0);
            let target = 1.1 * c.zstd3_bytes as f64 + index as f64;
            let _ = write!(
                line,
                " `mmh --base`: {} bytes, of which index + trailer {}; target ≤ 1.1 × {} + {} = {}: {} ({:.2}× the changed tensors' zstd -3).",
                thousands(a.bytes),
                thousands(index),
                thousands(c.zstd3_bytes),
                thousands(index),
                thousands(target.round() as u64),
                if (a.bytes as f64) <= target {
                    "met"
                } else {
                    "missed"
                },
                a.bytes as f64 / c.zstd3_bytes.max(1) as f64,
            );
        }
        line.push('\n');
        line
    }

    /// Unfold checks that failed.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter_map(|c| match &c.outcome {
                CheckOutcome::Failed(e) => Some(format!("chains: {} {}: {e}", c.archive, c.what)),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file with tensors `(name, bytes)`, laid out in order.
    fn safetensors(tensors: &[(&str, &[u8])]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut at = 0;
        for (name, bytes) in tensors {
            header.insert(
                (*name).into(),
                serde_json::json!({"dtype": "U8", "shape": [bytes.len()], "data_offsets": [at, at + bytes.len()]}),
            );
            at += bytes.len();
        }
        let header = serde_json::to_vec(&header).unwrap();
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&header);
        for (_, bytes) in tensors {
            file.extend_from_slice(bytes);
        }
        file
    }

    #[test]
    fn tensors_come_with_absolute_ranges() {
        let file = safetensors(&[("a", b"xyz"), ("b", b"12345")]);
        let found = tensors(&file).unwrap();
        assert_eq!(found.len(), 2);
        let b = found.iter().find(|t| t.name == "b").unwrap();
        assert_eq!(
            &file[b.range.start as usize..b.range.end as usize],
            b"12345"
        );
        assert!(tensors(b"plain text, not a model").is_err());
    }

    #[test]
    fn changed_tensors_are_those_whose_bytes_differ() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old"), dir.path().join("new"));
        std::fs::write(
            &old,
            safetensors(&[("a", b"same"), ("b", b"before"), ("c", b"kept")]),
        )
        .unwrap();
        std::fs::write(
            &new,
            safetensors(&[("a", b"same"), ("b", b"after!"), ("c", b"kept")]),
        )
        .unwrap();
        let changes = Changes {
            changed_tensors: vec!["b".into()],
            tensor_count: Some(3),
            bytes_in_changed_tensors: None,
            bytes_total: None,
            bf16_values_that_differ: None,
            rule: None,
        };
        let c = changed_tensors(&old, &new, Some(&changes)).unwrap();
        assert_eq!(c.differing, vec!["b".to_owned()]);
        assert_eq!(c.raw_bytes, 6);
        assert_eq!(c.matches_corpus_list, Some(true));
        assert!(changed_tensors(&old, &old, None).is_err());
    }

    #[test]
    fn xor_delta_keeps_the_tail_of_a_longer_new_file() {
        assert_eq!(xor_delta(b"abc", b"abd"), vec![0, 0, b'c' ^ b'd']);
        assert_eq!(xor_delta(b"ab", b"abXY"), vec![0, 0, b'X', b'Y']);
        assert_eq!(xor_delta(b"abcd", b"ab"), vec![0, 0]);
    }
}
