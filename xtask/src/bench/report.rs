//! The report: machine description, markdown tables, JSON records and the SVG plot.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use mmh_benches::format_size;
use serde::{Deserialize, Serialize};

use super::cdc::CdcResult;
use super::chains::ChainsResult;
use super::measure::InputResult;
use super::models::ModelsResult;
use super::rss::RssResult;
use super::tree::TreeResult;
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
            chunk_size: mmh_dir::DEFAULT_FRAME_SIZE,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chains: Option<ChainsResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cdc: Vec<CdcResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<ModelsResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accel: Vec<super::accel::AccelResult>,
}

impl Results {
    /// Correctness checks that failed (an unfold that did not give back the source): the
    /// bench reports them and then fails.
    pub fn failures(&self) -> Vec<String> {
        let tree = self.tree.as_ref().and_then(TreeResult::failure);
        let chains = self.chains.iter().flat_map(ChainsResult::failures);
        let models = self.models.iter().flat_map(ModelsResult::failures);
        let accel = super::accel::failures(&self.accel);
        tree.into_iter()
            .chain(chains)
            .chain(models)
            .chain(accel)
            .collect()
    }
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

pub(super) fn speed(mb_s: f64) -> String {
    if !mb_s.is_finite() {
        "—".into()
    } else if mb_s >= 100.0 {
        format!("{mb_s:.0}")
    } else {
        format!("{mb_s:.1}")
    }
}

/// An error message fit for a markdown table cell: one line, no column separators, at
/// most 200 characters (results.json has it whole).
pub(super) fn cell_text(error: &str) -> String {
    let line = error.split_whitespace().collect::<Vec<_>>().join(" ");
    let short = match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    };
    short.replace('|', "\\|")
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
    if !r.inputs.is_empty() {
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
    } else {
        s.push('\n');
    }

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
            "### Peak RSS of `target/release/mmh fold - -o FILE -q` fed generated data on stdin (peak VmHWM, polled from /proc every 2 ms)\n\n",
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
    if let Some(tree) = &r.tree {
        s.push_str(&tree.markdown());
    }
    if let Some(chains) = &r.chains {
        s.push_str(&chains.markdown());
    }
    if !r.cdc.is_empty() {
        s.push_str(&super::cdc::markdown(&r.cdc));
    }
    if let Some(models) = &r.models {
        s.push_str(&models.markdown());
    }
    if !r.accel.is_empty() {
        s.push_str(&super::accel::markdown(&r.accel));
    }
    s
}

/// What the plot needs of one input: also read back from a saved results.json by
/// [`replot`] (the other fields there are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct PlotInput {
    pub name: String,
    pub bytes: u64,
    pub methods: Vec<PlotPoint>,
}

/// One method on one input, as plotted.
#[derive(Debug, Clone, Deserialize)]
pub struct PlotPoint {
    pub method: String,
    pub label: String,
    pub ratio_pct: f64,
    /// `None` where the JSON holds `null` (a speed that was not finite).
    pub fold_mb_s: Option<f64>,
    #[serde(default)]
    pub unfold_mb_s: Option<f64>,
}

impl From<&InputResult> for PlotInput {
    fn from(input: &InputResult) -> Self {
        PlotInput {
            name: input.name.clone(),
            bytes: input.bytes,
            methods: input
                .methods
                .iter()
                .map(|m| PlotPoint {
                    method: m.method.clone(),
                    label: m.label.clone(),
                    ratio_pct: m.ratio_pct,
                    fold_mb_s: Some(m.fold_mb_s),
                    unfold_mb_s: m.unfold_mb_s,
                })
                .collect(),
        }
    }
}

/// Draws the plot of [`plot`] again from a results.json that an earlier run saved.
pub fn replot(json: &Path, svg: &Path) -> Result<()> {
    #[derive(Deserialize)]
    struct Saved {
        inputs: Vec<PlotInput>,
    }
    let text =
        std::fs::read_to_string(json).with_context(|| format!("cannot read {}", json.display()))?;
    let saved: Saved = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a bench results.json", json.display()))?;
    ensure!(
        !saved.inputs.is_empty(),
        "{} holds no inputs to plot (only RSS figures?)",
        json.display()
    );
    draw(&saved.inputs, svg)
}

/// Draws ratio (y) against fold and unfold speed (x, log scale), one panel per input,
/// into one SVG file: per method a filled marker at its fold speed and a hollow one at
/// its unfold speed, joined by a line; one legend above all panels.
pub fn plot(inputs: &[InputResult], path: &Path) -> Result<()> {
    let inputs: Vec<PlotInput> = inputs.iter().map(PlotInput::from).collect();
    draw(&inputs, path)
}

/// A usable speed: finite and above zero (the axis is logarithmic).
fn usable(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v > 0.0)
}

/// Tick values for a log axis over `lo..hi`: 1-2-5 per decade, finer when the range
/// is narrow, only powers of ten when it is very wide.
pub(super) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let steps: [&[f64]; 4] = [
        &[1.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0],
        &[1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0],
    ];
    let ticks = |mantissas: &[f64]| {
        let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (e0..=e1)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(v))
            .collect::<Vec<_>>()
    };
    let wide = ticks(steps[1]);
    if wide.len() > 10 {
        return ticks(steps[0]);
    }
    steps[1..]
        .iter()
        .map(|m| ticks(m))
        .find(|t| t.len() >= 4)
        .unwrap_or_else(|| ticks(steps[3]))
}

/// A tick value without a useless ".0": 150, 2000, 1.5.
pub(super) fn tick_label(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 100.0).round() / 100.0)
    }
}

/// The y range (output / input, %) of a panel and its integer ticks: from a little
/// below the smallest ratio to a little above 100 % (or the largest ratio).
pub(super) fn ratio_axis(ratios: impl Iterator<Item = f64>) -> (f64, f64, Vec<f64>) {
    let (min, max) = ratios.fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let (min, max) = if min <= max { (min, max) } else { (0.0, 100.0) };
    let top = max.max(100.0);
    let pad = (0.08 * (top - min)).max(1.5);
    let (lo, hi) = ((min - pad).max(0.0), top + pad);
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 25.0]
        .into_iter()
        .find(|s| (hi - lo) / s <= 9.0)
        .unwrap_or(50.0);
    let ticks = (0..)
        .map(|i| (lo / step).ceil() * step + step * f64::from(i))
        .take_while(|t| *t <= hi)
        .collect();
    (lo, hi, ticks)
}

/// Font sizes of the plots' ticks and axis titles, as plotters takes them (the SVG gets
/// them divided by 1.24).
pub(super) const TICK: u32 = 16;
pub(super) const TEXT: u32 = 17;

/// The log-scale speed axis of a ratio-against-speed chart: the speeds' range with room
/// on both sides, or 10 to 10,000 MB/s when none was measured.
pub(super) fn speed_axis(speeds: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = speeds.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo <= hi {
        (lo / 1.3, hi * 1.3)
    } else {
        (10.0, 10_000.0)
    }
}

/// A plot's chart: speed on a log axis of key points, ratio on a [`Ticked`] axis.
pub(super) type RatioSpeedChart<'a, 'b> = plotters::chart::ChartContext<
    'a,
    plotters::backend::SVGBackend<'b>,
    plotters::coord::cartesian::Cartesian2d<
        plotters::coord::combinators::WithKeyPoints<plotters::coord::combinators::LogCoord<f64>>,
        Ticked,
    >,
>;

/// A chart of output / input (%, `ratios` as [`ratio_axis`] gives them) against MB/s
/// (log scale, `speeds` as [`speed_axis`] gives them), with its caption and mesh drawn:
/// how both bench plots start.
pub(super) fn ratio_speed_chart<'a, 'b>(
    area: &'a plotters::drawing::DrawingArea<
        plotters::backend::SVGBackend<'b>,
        plotters::coord::Shift,
    >,
    caption: (&str, u32),
    x_desc: &str,
    speeds: (f64, f64),
    ratios: (f64, f64, Vec<f64>),
) -> Result<RatioSpeedChart<'a, 'b>> {
    use plotters::prelude::*;
    let (lo, hi) = speeds;
    let (y_lo, y_hi, y_ticks) = ratios;
    let mut chart = ChartBuilder::on(area)
        .caption(caption.0, ("sans-serif", caption.1))
        .margin(14)
        .margin_right(24)
        .x_label_area_size(46)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            Ticked {
                lo: y_lo,
                hi: y_hi,
                ticks: y_ticks,
            },
        )?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("output / input")
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| format!("{v:.0} %"))
        .label_style(("sans-serif", TICK))
        .axis_desc_style(("sans-serif", TEXT))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    Ok(chart)
}

/// A linear axis with the given ticks (plotters' own f64 axis picks its ticks itself,
/// and its `with_key_points` form cannot take a label formatter).
pub(super) struct Ticked {
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
}

impl plotters::coord::ranged1d::Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = (value - self.lo) / (self.hi - self.lo);
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// The outline of a method's marker, as offsets in pixels around its point.
pub(super) fn marker_shape(index: usize, r: i32) -> Vec<(i32, i32)> {
    let polygon = |n: usize, phase: f64, r: f64| -> Vec<(i32, i32)> {
        (0..n)
            .map(|k| {
                let a = phase + std::f64::consts::TAU * k as f64 / n as f64;
                ((r * a.cos()).round() as i32, (r * a.sin()).round() as i32)
            })
            .collect()
    };
    let r = f64::from(r);
    let deg = std::f64::consts::PI / 180.0;
    match index % 5 {
        0 => polygon(20, 0.0, r),               // circle
        1 => polygon(4, 45.0 * deg, r * 1.15),  // square
        2 => polygon(3, -90.0 * deg, r * 1.35), // triangle, point up
        3 => polygon(4, 0.0, r * 1.3),          // diamond
        _ => polygon(3, 90.0 * deg, r * 1.35),  // triangle, point down
    }
}

/// The plots' colours, one per method or backend.
pub(super) const PALETTE: [plotters::style::RGBColor; 5] = [
    plotters::style::RGBColor(0xd6, 0x27, 0x28),
    plotters::style::RGBColor(0x1f, 0x77, 0xb4),
    plotters::style::RGBColor(0x2c, 0xa0, 0x2c),
    plotters::style::RGBColor(0x94, 0x67, 0xbd),
    plotters::style::RGBColor(0x7f, 0x7f, 0x7f),
];

fn draw(inputs: &[PlotInput], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    const COLORS: [RGBColor; 5] = PALETTE;
    const MARKER: i32 = 7;
    const CAPTION: u32 = 21;
    // Rough text width in pixels for `size` (about 0.6 em per character once drawn).
    let text_width =
        |text: &str, size: u32| (text.chars().count() as f64 * f64::from(size) * 0.45) as i32;

    // Every method once, in order of first appearance: its colour and shape are the
    // same in every panel.
    let mut methods: Vec<(&str, &str)> = Vec::new();
    for m in inputs.iter().flat_map(|i| &i.methods) {
        if !methods.iter().any(|(key, _)| *key == m.method) {
            methods.push((&m.method, &m.label));
        }
    }
    let index_of = |key: &str| methods.iter().position(|(k, _)| *k == key).unwrap_or(0);
    // Method `index`'s marker at `at` (chart or pixel coordinates): filled for fold,
    // hollow (white inside, coloured edge) for unfold.
    macro_rules! marker {
        ($index:expr, $at:expr, $filled:expr) => {
            marker!($index, COLORS[$index % COLORS.len()], $at, $filled)
        };
        ($index:expr, $color:expr, $at:expr, $filled:expr) => {{
            let color = $color;
            let shape = marker_shape($index, MARKER);
            let mut outline = shape.clone();
            outline.push(shape[0]);
            let (fill, edge) = if $filled {
                (color.filled(), WHITE.stroke_width(1))
            } else {
                (WHITE.filled(), color.stroke_width(2))
            };
            EmptyElement::at($at) + Polygon::new(shape, fill) + PathElement::new(outline, edge)
        }};
    }

    let cols = inputs.len().clamp(1, 2);
    let rows = inputs.len().div_ceil(cols).max(1);
    let width = 620 * cols as u32;

    // The legend: the methods, wrapped to the figure's width, then what the two marker
    // styles mean.
    let line = 26;
    let mut entries = Vec::new();
    let (mut x, mut y) = (20, 48);
    for (i, (_, label)) in methods.iter().enumerate() {
        let w = 22 + text_width(label, TEXT) + 28;
        if x + w > width as i32 - 10 && x > 20 {
            (x, y) = (20, y + line);
        }
        entries.push((i, *label, (x, y)));
        x += w;
    }
    let key_y = y + line;
    let legend_h = (key_y + 22) as u32;

    let root = SVGBackend::new(path, (width, legend_h + 420 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(legend_h);
    let left =
        TextStyle::from(("sans-serif", TEXT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    top.draw_text(
        "Output size against speed, one panel per input (lower right is better)",
        &TextStyle::from(("sans-serif", CAPTION).into_font())
            .pos(Pos::new(HPos::Left, VPos::Center)),
        (20, 18),
    )?;
    for (i, label, (x, y)) in entries {
        top.draw(&marker!(i, (x + 8, y), true))?;
        top.draw_text(label, &left, (x + 22, y))?;
    }
    // The key to fold and unfold in black, a colour no method has.
    let mut x = 20;
    top.draw(&marker!(0, BLACK, (x + 8, key_y), true))?;
    let fold = "filled: fold (compress)";
    top.draw_text(fold, &left, (x + 22, key_y))?;
    x += 22 + text_width(fold, TEXT) + 28;
    top.draw(&marker!(0, BLACK, (x + 8, key_y), false))?;
    let unfold = "hollow: unfold (decompress; mmh also checks SHA-256)";
    top.draw_text(unfold, &left, (x + 22, key_y))?;
    x += 22 + text_width(unfold, TEXT) + 28;
    top.draw_text("MB/s: 10^6 bytes of input per second", &left, (x, key_y))?;

    for (panel, input) in body.split_evenly((rows, cols)).iter().zip(inputs) {
        let speeds: Vec<f64> = input
            .methods
            .iter()
            .flat_map(|m| [usable(m.fold_mb_s), usable(m.unfold_mb_s)])
            .flatten()
            .collect();
        let speeds = speed_axis(speeds.into_iter());
        let ratios = ratio_axis(input.methods.iter().map(|m| m.ratio_pct));
        let unfold_note = if input
            .methods
            .iter()
            .any(|m| usable(m.unfold_mb_s).is_some())
        {
            ""
        } else {
            ", unfold not measured"
        };
        let caption = format!("{} ({}){unfold_note}", input.name, format_size(input.bytes));
        let mut chart = ratio_speed_chart(
            panel,
            (&caption, CAPTION),
            "MB/s of input (log scale)",
            speeds,
            ratios,
        )?;
        // Lines first, so that no marker is drawn over by another method's line.
        for m in &input.methods {
            let color = COLORS[index_of(&m.method) % COLORS.len()];
            if let (Some(f), Some(u)) = (usable(m.fold_mb_s), usable(m.unfold_mb_s)) {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(f, m.ratio_pct), (u, m.ratio_pct)],
                    color.mix(0.45).stroke_width(2),
                )))?;
            }
        }
        for m in &input.methods {
            let i = index_of(&m.method);
            if let Some(u) = usable(m.unfold_mb_s) {
                chart
                    .plotting_area()
                    .draw(&marker!(i, (u, m.ratio_pct), false))?;
            }
        }
        for m in &input.methods {
            let i = index_of(&m.method);
            if let Some(f) = usable(m.fold_mb_s) {
                chart
                    .plotting_area()
                    .draw(&marker!(i, (f, m.ratio_pct), true))?;
            }
        }
    }
    root.present()?;
    Ok(())
}
