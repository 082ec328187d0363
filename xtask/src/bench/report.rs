//! The report: machine description, markdown tables, JSON records and the SVG plot.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use mmh_benches::format_size;
use serde::Serialize;

use super::measure::InputResult;
use super::rss::RssResult;
use super::{Config, MULTI_RUN_LIMIT, WARMUP_LIMIT};

/// Where and how the figures were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub date: String,
    pub nproc: usize,
    pub cpu: String,
    pub rustc: String,
    pub rustflags: String,
    pub profile: String,
    pub command: String,
    /// /proc/loadavg when the bench started and when it ended: other work on the machine
    /// makes every figure lower.
    pub load_before: String,
    pub load_after: String,
}

impl Host {
    pub fn detect(config: &Config) -> Host {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let rustc = Command::new(rustc)
            .arg("-V")
            .current_dir(crate::workspace_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let rustflags = [
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
        ]
        .iter()
        .filter_map(|var| Some(format!("{var}={:?}", std::env::var(var).ok()?)))
        .collect::<Vec<_>>();
        Host {
            date: utc_now(),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            rustc,
            rustflags: if rustflags.is_empty() {
                "none".into()
            } else {
                rustflags.join(" ")
            },
            profile: "release (workspace profile: opt-level 3, debug = line-tables-only)".into(),
            command: config.command.clone(),
            load_before: load_average(),
            load_after: String::new(),
        }
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        format!("{} cores, {}, {}", self.nproc, self.cpu, self.rustc)
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The options the figures were taken with.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigRecord {
    pub threads: usize,
    pub zstd_level: i32,
    pub runs: usize,
    pub chunk_size: u32,
    pub warmup_limit_bytes: u64,
    pub multi_run_limit_bytes: u64,
}

impl From<&Config> for ConfigRecord {
    fn from(c: &Config) -> Self {
        ConfigRecord {
            threads: c.threads,
            zstd_level: c.level,
            runs: c.runs,
            chunk_size: mmh_dir::DEFAULT_CHUNK_SIZE,
            warmup_limit_bytes: WARMUP_LIMIT,
            multi_run_limit_bytes: MULTI_RUN_LIMIT,
        }
    }
}

/// Everything one run of the bench measured (written as results.json).
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub host: Host,
    pub config: ConfigRecord,
    pub inputs: Vec<InputResult>,
    pub rss: Vec<RssResult>,
}

/// `YYYY-MM-DD HH:MM UTC` without a date crate (Howard Hinnant's civil_from_days).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn speed(mb_s: f64) -> String {
    if !mb_s.is_finite() {
        "—".into()
    } else if mb_s >= 100.0 {
        format!("{mb_s:.0}")
    } else {
        format!("{mb_s:.1}")
    }
}

fn pct(delta: f64) -> String {
    format!("{delta:+.2} %")
}

/// The markdown report.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let h = &r.host;
    let c = &r.config;
    let _ = writeln!(s, "## mmh bench, {}\n", h.date);
    let _ = writeln!(
        s,
        "- machine: nproc {}, CPU {}; {}; build: {}; RUSTFLAGS: {}",
        h.nproc, h.cpu, h.rustc, h.profile, h.rustflags
    );
    let _ = writeln!(s, "- command: `{}`", h.command);
    let _ = writeln!(
        s,
        "- load average (1/5/15 min) at start: {}; at end: {}",
        h.load_before, h.load_after
    );
    let _ = writeln!(
        s,
        "- every method on {} threads (lz4_flex: 1); zstd level {}; mmh chunks {}; \
         MB = 10^6 bytes of input; best of {} timed runs (JSON: every run and the \
         median), methods taken round-robin, after one warm-up round (no warm-up above \
         {}, one run above {}); stages: best of min(runs, 2) passes; generated inputs come from a seeded \
         generator (its time is part of fold), files from the page cache; outputs go to \
         a file under target/bench (page cache, no fsync). mmh unfold checks every \
         chunk's and the entry's SHA-256; zstd and lz4 unfold only decode. \
         Fold cores busy = process CPU time / wall time. Ideal pipeline = the stages' \
         CPU time spread evenly over the threads (never faster than the slowest stage \
         alone); fold well below it means the pipeline waits.\n",
        c.threads,
        c.zstd_level,
        format_size(u64::from(c.chunk_size)),
        c.runs,
        format_size(c.warmup_limit_bytes),
        format_size(c.multi_run_limit_bytes),
    );

    if !r.inputs.is_empty() {
        s.push_str("### Ratio and speed\n\n");
        s.push_str(
            "| input | method | ratio % | fold MB/s | unfold MB/s | fold cores busy | slowest stage alone (MB/s) | ideal pipeline MB/s (fold at %) |\n",
        );
        s.push_str("|---|---|---:|---:|---:|---:|---|---:|\n");
        for input in &r.inputs {
            for (i, m) in input.methods.iter().enumerate() {
                let name = if i == 0 {
                    format!("{} ({})", input.name, format_size(input.bytes))
                } else {
                    String::new()
                };
                let bound = m.bound.as_ref().map_or(String::new(), |(stage, v)| {
                    format!("{stage} ({})", speed(*v))
                });
                let ideal = m.ideal_mb_s.map_or(String::new(), |v| {
                    format!("{} ({:.0} %)", speed(v), 100.0 * m.fold_mb_s / v)
                });
                let _ = writeln!(
                    s,
                    "| {name} | {} | {:.2} | {} | {} | {:.2} | {bound} | {ideal} |",
                    m.label,
                    m.ratio_pct,
                    speed(m.fold_mb_s),
                    m.unfold_mb_s.map_or("—".into(), speed),
                    m.fold_cores,
                );
            }
        }
        s.push('\n');
        for input in &r.inputs {
            if let Some(auto) = input.methods.iter().find(|m| m.method == "mmh-auto") {
                let chunks: Vec<String> = auto
                    .chunks_by_codec
                    .iter()
                    .map(|(codec, n)| format!("{codec} {n}"))
                    .collect();
                let _ = writeln!(
                    s,
                    "- {}: `--codec auto` stored its chunks as {}{}",
                    input.name,
                    chunks.join(", "),
                    if input.runs == 1 {
                        " (one timed run)"
                    } else {
                        ""
                    }
                );
            }
        }
        s.push('\n');

        s.push_str(
            "### Stages alone (one pass, same chunking and batches as fold; input MB/s, write in output MB/s)\n\n",
        );
        s.push_str(
            "| input | read | SHA-256 chunks (digest_batch) | SHA-256 entry (1 thread) | encode auto | encode zstd | encode lz4 | write |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for input in &r.inputs {
            let st = &input.stages;
            let mb = input.bytes as f64 / 1e6;
            let enc = st.encode_mb_s(input.bytes);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                input.name,
                speed(mb / st.read_s),
                speed(mb / st.hash_chunks_s),
                speed(mb / st.hash_entry_s),
                speed(enc[0]),
                speed(enc[1]),
                speed(enc[2]),
                speed(st.write_mb_s()),
            );
        }
        s.push('\n');

        let _ = writeln!(
            s,
            "### Container overhead: `mmh --codec zstd` against one zstd stream at level {}\n",
            c.zstd_level
        );
        s.push_str(
            "| input | mmh bytes | zstd crate bytes | size Δ | of which framing + index | fold time Δ | target (< 0.5 % size, < 5 % time) |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---|\n");
        for input in &r.inputs {
            let find = |key: &str| input.methods.iter().find(|m| m.method == key);
            let (Some(mmh), Some(zstd)) = (find("mmh-zstd"), find("zstd")) else {
                continue;
            };
            let size = 100.0 * (mmh.output_bytes as f64 / zstd.output_bytes as f64 - 1.0);
            let framing = mmh
                .output_bytes
                .saturating_sub(input.stages.stored_bytes[1]);
            let time = 100.0 * (zstd.fold_mb_s / mmh.fold_mb_s - 1.0);
            let verdict = match (size < 0.5, time < 5.0) {
                (true, true) => "met",
                (false, true) => "size missed",
                (true, false) => "time missed",
                (false, false) => "both missed",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} B ({:.3} %) | {} | {verdict} |",
                input.name,
                mmh.output_bytes,
                zstd.output_bytes,
                pct(size),
                framing,
                100.0 * framing as f64 / zstd.output_bytes.max(1) as f64,
                pct(time),
            );
        }
        s.push_str(
            "\nSize Δ includes what independent 4 MiB chunks lose against one stream; \
             framing + index is the container alone (archive minus the chunks' stored bytes).\n\n",
        );
    }

    if !r.rss.is_empty() {
        s.push_str(
            "### Peak RSS of `target/release/mmh fold - -o FILE -q` fed generated data on stdin (wait4 ru_maxrss)\n\n",
        );
        s.push_str(
            "| input | peak RSS | fold MB/s (incl. pipe) | ratio % |\n|---|---:|---:|---:|\n",
        );
        for x in &r.rss {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} |",
                format_size(x.input_bytes),
                format_size(x.peak_rss_bytes),
                speed(x.input_bytes as f64 / 1e6 / x.seconds),
                100.0 * x.archive_bytes as f64 / x.input_bytes as f64,
            );
        }
        s.push('\n');
    }
    s
}

/// Draws ratio (y) against fold speed (x, log scale), one panel per input, one labelled
/// point per method, into one SVG file.
pub fn plot(inputs: &[InputResult], path: &Path) -> Result<()> {
    use plotters::prelude::*;

    const COLORS: [RGBColor; 5] = [
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x7f, 0x7f, 0x7f),
    ];
    let cols = inputs.len().clamp(1, 2);
    let rows = inputs.len().div_ceil(cols).max(1);
    let (w, h) = (620 * cols as u32, 420 * rows as u32);
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((rows, cols));
    for (panel, input) in panels.iter().zip(inputs) {
        let xs = input.methods.iter().map(|m| m.fold_mb_s);
        let (lo, hi) = xs.fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let top = input
            .methods
            .iter()
            .map(|m| m.ratio_pct)
            .fold(0f64, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{} ({})", input.name, format_size(input.bytes)),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((lo / 1.6..hi * 1.6).log_scale(), 0f64..(top * 1.15 + 1.0))?;
        chart
            .configure_mesh()
            .x_desc("fold MB/s (log scale)")
            .y_desc("output / input, %")
            .label_style(("sans-serif", 12))
            .draw()?;
        for (i, m) in input.methods.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            // Each method's label has its own height, so points at the same place (mmh zstd
            // and zstd often are) keep legible labels; the legend says it again.
            let dy = -24 + 11 * i as i32;
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((m.fold_mb_s, m.ratio_pct))
                        + Circle::new((0, 0), 5, color.filled())
                        + Text::new(
                            m.method.clone(),
                            (9, dy),
                            ("sans-serif", 12).into_font().color(&color),
                        ),
                ))?
                .label(m.label.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
