//! `--accel cpu,opencl[,cuda]`: every backend on the same inputs, one table: MB/s of each
//! `Accelerator` operation and of folding and unfolding a model file end to end, whether
//! the output is the CPU's bytes, and the stage that bounds each row.
//!
//! Inputs (seeded, the same for every backend): 64 MiB of random bytes, hashed in 64 KiB
//! chunks and cut into content-defined chunks; 64 MiB of bf16 weight-like values
//! (`mmh_codecs::parity::weights`), coded and decoded in 4 MiB frames as the pipeline
//! hands them over; and a safetensors file of those weights, folded and unfolded through
//! `mmh_dir` with the backend, from and to memory. One untimed warm-up call, then the
//! best of [`RUNS`], one thread of calls (the CPU backend's digests use every core).
//!
//! Device backends count where their time goes (`GpuAccelerator::take_stage_times`):
//! copies to and from the device, and kernels from launch to finish, as wall time during
//! which at least one stream was in them; the rest of a call is the host's (payload layout, tables, the CDC walk). The bound column names the largest
//! of those, or "read" for an end-to-end row that reading its input from the page cache
//! would hold back; on the CPU backend everything is "host".

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use mmh_benches::Rng;
use mmh_codecs::{Accelerator, CdcParams, CpuAccelerator, FloatKind};
use mmh_dir::{AccelChoice, EntryMeta, FoldOptions, Quiet};
use mmh_gpu::{Device, GpuAccelerator, StageTimes};
use serde::Serialize;

use super::{Config, SEED};

/// Bytes of each input.
const BYTES: usize = 64 << 20;
/// Bytes per digest chunk, the default average chunk.
const CHUNK: usize = 64 << 10;
/// Bytes per tensor call: the default frame.
const FRAME: usize = 4 << 20;
/// Timed runs per measure.
const RUNS: usize = 3;

/// One backend's row group.
#[derive(Debug, Clone, Serialize)]
pub struct AccelResult {
    pub backend: String,
    /// The devices it ran on, or why it could not run.
    pub devices: String,
    pub available: bool,
    pub rows: Vec<AccelRow>,
}

/// One operation on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct AccelRow {
    pub operation: String,
    /// 10^6 input bytes per second, from the fastest run.
    pub mb_s: f64,
    pub runs_s: Vec<f64>,
    /// Whether the output was byte for byte the CPU backend's.
    pub same_as_cpu: bool,
    /// Shares of a run's time, in percent: copies, kernels, host.
    pub transfer_pct: f64,
    pub kernels_pct: f64,
    pub host_pct: f64,
    pub bound: String,
}

/// What every backend is given and what the CPU made of it.
struct Inputs {
    random: Vec<u8>,
    weights: Vec<u8>,
    model: Vec<u8>,
}

pub fn measure(config: &Config) -> Result<Vec<AccelResult>> {
    let mut rng = Rng::new(SEED);
    let mut random = vec![0u8; BYTES];
    for word in random.chunks_exact_mut(8) {
        word.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let weights = mmh_codecs::parity::weights(FloatKind::Bf16, BYTES / 2, SEED);
    let model = safetensors_of(&weights);
    let inputs = Inputs {
        random,
        weights,
        model,
    };
    let reference = outputs(&CpuAccelerator, &inputs)?;
    let read_mb_s = read_speed(&inputs.model)?;
    let mut results = Vec::new();
    for &choice in &config.accel {
        eprintln!("bench: accel: {choice}");
        let measured = match choice {
            AccelChoice::Cpu => Ok(Measured {
                devices: format!("CPU, {} threads", rayon::current_num_threads()),
                rows: rows(
                    Arc::new(CpuAccelerator),
                    &|| None,
                    &inputs,
                    &reference,
                    read_mb_s,
                )?,
            }),
            AccelChoice::OpenCl => {
                on_devices(mmh_opencl::open(None), &inputs, &reference, read_mb_s)?
            }
            AccelChoice::Cuda => on_devices(mmh_cuda::open(None), &inputs, &reference, read_mb_s)?,
            AccelChoice::Auto => anyhow::bail!("--accel takes backends by name: cpu, opencl, cuda"),
        };
        results.push(match measured {
            Ok(measured) => AccelResult {
                backend: choice.to_string(),
                devices: measured.devices,
                available: true,
                rows: measured.rows,
            },
            Err(why) => AccelResult {
                backend: choice.to_string(),
                devices: why,
                available: false,
                rows: Vec::new(),
            },
        });
    }
    Ok(results)
}

/// A backend's rows, and its devices.
struct Measured {
    devices: String,
    rows: Vec<AccelRow>,
}

/// Measures a device backend, or says why it did not open.
fn on_devices<D: Device>(
    opened: Result<GpuAccelerator<D>, mmh_gpu::Error>,
    inputs: &Inputs,
    reference: &Outputs,
    read_mb_s: f64,
) -> Result<Result<Measured, String>> {
    let accelerator = match opened {
        Ok(accelerator) => Arc::new(accelerator),
        Err(why) => return Ok(Err(why.to_string())),
    };
    let devices = accelerator
        .device_infos()
        .iter()
        .map(|d| {
            format!(
                "{} ({}, {}, {} MiB)",
                d.name,
                d.platform,
                d.version,
                d.memory >> 20
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let stages = {
        let accelerator = Arc::clone(&accelerator);
        move || Some(accelerator.take_stage_times())
    };
    Ok(Ok(Measured {
        devices,
        rows: rows(accelerator, &stages, inputs, reference, read_mb_s)?,
    }))
}

/// A safetensors file holding `weights` as one BF16 tensor.
fn safetensors_of(weights: &[u8]) -> Vec<u8> {
    let header = format!(
        r#"{{"w":{{"dtype":"BF16","shape":[{}],"data_offsets":[0,{}]}}}}"#,
        weights.len() / 2,
        weights.len()
    );
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(weights);
    file
}

/// Every operation's output, to compare with the CPU's.
#[derive(PartialEq)]
struct Outputs {
    digests: Vec<[u8; 32]>,
    boundaries: Vec<usize>,
    frames: Vec<Vec<u8>>,
}

fn outputs(backend: &dyn Accelerator, inputs: &Inputs) -> Result<Outputs> {
    let chunks: Vec<&[u8]> = inputs.random.chunks(CHUNK).collect();
    let frames = inputs
        .weights
        .chunks(FRAME)
        .map(|frame| {
            let mut out = Vec::new();
            backend.encode_tensor(frame, FloatKind::Bf16, &mut out)?;
            Ok(out)
        })
        .collect::<Result<_>>()?;
    Ok(Outputs {
        digests: backend.digest_batch(&chunks)?,
        boundaries: backend.find_chunk_boundaries(&inputs.random, &CdcParams::default())?,
        frames,
    })
}

/// MB/s of copying the model file out of the page cache into memory, the read stage of
/// the end-to-end rows.
fn read_speed(model: &[u8]) -> Result<f64> {
    let path = super::target_dir().join("bench/accel-model.safetensors");
    std::fs::write(&path, model).with_context(|| format!("cannot write {}", path.display()))?;
    let (best, _, _) = timed(&|| None, || {
        std::hint::black_box(std::fs::read(&path)?);
        Ok(())
    })?;
    std::fs::remove_file(&path).ok();
    Ok(model.len() as f64 / 1e6 / best)
}

/// The fastest of [`RUNS`] timed calls after one warm-up, in seconds, every run, and the
/// device's stage times over the timed runs (when `stages` gives them).
fn timed(
    stages: &dyn Fn() -> Option<StageTimes>,
    mut call: impl FnMut() -> Result<()>,
) -> Result<(f64, Vec<f64>, Option<StageTimes>)> {
    call()?;
    stages();
    let mut runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        call()?;
        runs.push(start.elapsed().as_secs_f64());
    }
    let best = runs.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((best, runs, stages()))
}

fn rows(
    backend: Arc<dyn Accelerator>,
    stages: &dyn Fn() -> Option<StageTimes>,
    inputs: &Inputs,
    reference: &Outputs,
    read_mb_s: f64,
) -> Result<Vec<AccelRow>> {
    let same = outputs(backend.as_ref(), inputs)? == *reference;
    let row = |operation: &str,
               bytes: usize,
               same_as_cpu: bool,
               end_to_end: bool,
               call: &mut dyn FnMut() -> Result<()>|
     -> Result<AccelRow> {
        let (best, runs_s, times) = timed(stages, call)?;
        let wall: f64 = runs_s.iter().sum();
        let (transfer, kernels, busy) = times.map_or((0.0, 0.0, 0.0), |t| {
            (
                t.transfer.as_secs_f64(),
                t.kernels.as_secs_f64(),
                t.busy.as_secs_f64(),
            )
        });
        let host = (wall - busy).max(0.0);
        let pct = |part: f64| 100.0 * part / wall.max(1e-12);
        let mb_s = bytes as f64 / 1e6 / best;
        let stage = [(transfer, "transfer"), (kernels, "kernels"), (host, "host")]
            .into_iter()
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map_or("host", |(_, name)| name);
        Ok(AccelRow {
            operation: operation.to_owned(),
            mb_s,
            runs_s,
            same_as_cpu,
            transfer_pct: pct(transfer),
            kernels_pct: pct(kernels),
            host_pct: pct(host),
            bound: if end_to_end && read_mb_s < mb_s {
                format!("read ({read_mb_s:.0} MB/s)")
            } else {
                stage.to_owned()
            },
        })
    };
    let chunks: Vec<&[u8]> = inputs.random.chunks(CHUNK).collect();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut back = Vec::new();
    let mut rows = vec![
        row("SHA-256, 64 KiB chunks", BYTES, same, false, &mut || {
            backend.digest_batch(&chunks)?;
            Ok(())
        })?,
        row("CDC boundaries", BYTES, same, false, &mut || {
            backend.find_chunk_boundaries(&inputs.random, &CdcParams::default())?;
            Ok(())
        })?,
        row(
            "tensor encode, bf16, 4 MiB frames",
            BYTES,
            same,
            false,
            &mut || {
                frames.clear();
                for frame in inputs.weights.chunks(FRAME) {
                    let mut out = Vec::new();
                    backend.encode_tensor(frame, FloatKind::Bf16, &mut out)?;
                    frames.push(out);
                }
                Ok(())
            },
        )?,
    ];
    let mut decoded_ok = true;
    rows.push(row(
        "tensor decode, bf16, 4 MiB frames",
        BYTES,
        true,
        false,
        &mut || {
            for (coded, frame) in frames.iter().zip(inputs.weights.chunks(FRAME)) {
                backend.decode_tensor(coded, frame.len(), FloatKind::Bf16, &mut back)?;
                decoded_ok &= back == frame;
            }
            Ok(())
        },
    )?);
    rows.last_mut().expect("a row").same_as_cpu = decoded_ok;

    let options = FoldOptions {
        accelerator: Arc::clone(&backend),
        ..FoldOptions::default()
    };
    let mut cpu_archive = Vec::new();
    mmh_dir::fold_stream(
        &inputs.model[..],
        meta(),
        &mut cpu_archive,
        &FoldOptions::default(),
        &Quiet,
    )?;
    let mut stored = Vec::new();
    let mut fold = row(
        "fold a bf16 safetensors file",
        inputs.model.len(),
        true,
        true,
        &mut || {
            stored.clear();
            mmh_dir::fold_stream(&inputs.model[..], meta(), &mut stored, &options, &Quiet)?;
            Ok(())
        },
    )?;
    fold.same_as_cpu = stored == cpu_archive;
    rows.push(fold);
    let chain = mmh_dir::Chain::standalone(mmh_format::Archive::open(stored.clone())?)?
        .with_accelerator(Arc::clone(&backend));
    let mut unfolded = Vec::new();
    let mut unfold = row(
        "unfold it (verified)",
        inputs.model.len(),
        true,
        true,
        &mut || {
            unfolded.clear();
            let entry = mmh_dir::single_file(chain.index())?;
            mmh_dir::unfold_entry(&chain, entry, &mut unfolded, &Quiet)?;
            Ok(())
        },
    )?;
    unfold.same_as_cpu = unfolded == inputs.model;
    rows.push(unfold);
    Ok(rows)
}

fn meta() -> EntryMeta {
    EntryMeta {
        name: "model.safetensors".into(),
        mode: 0o644,
        mtime: Default::default(),
    }
}

/// The markdown section.
pub fn markdown(results: &[AccelResult]) -> String {
    let mut s = String::new();
    s.push_str("### Backends side by side (`--accel`)\n\n");
    let _ = writeln!(
        s,
        "The same seeded inputs for every backend: 64 MiB of random bytes (SHA-256 in 64 KiB \
         chunks, CDC with the default parameters), 64 MiB of bf16 weight-like values (the \
         tensor codec in 4 MiB frames), and a safetensors file of them folded and unfolded \
         through `mmh_dir`. MB/s = 10^6 input bytes per second, best of {RUNS} after a warm-up. \
         \"same as CPU\": the output is the CPU backend's bytes (for decode and unfold: the input \
         back). transfer / kernels: shares of the timed runs' time during which at least one \
         of the device's streams was copying (allocations included) or running a kernel (launch \
         to finish); one stream's copies may overlap another's kernels, so the two may add up \
         to more than 100%. host: the time neither was. bound: the largest, or \"read\" when \
         reading the file from the page cache is slower than the row.\n"
    );
    s.push_str(
        "| backend | operation | MB/s | same as CPU | transfer | kernels | host | bound |\n",
    );
    s.push_str("|---|---|---:|---|---:|---:|---:|---|\n");
    for result in results {
        if !result.available {
            let _ = writeln!(
                s,
                "| {} | unavailable: {} | | | | | | |",
                result.backend, result.devices
            );
            continue;
        }
        for row in &result.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {:.0}% | {:.0}% | {:.0}% | {} |",
                result.backend,
                row.operation,
                row.mb_s,
                if row.same_as_cpu { "yes" } else { "**no**" },
                row.transfer_pct,
                row.kernels_pct,
                row.host_pct,
                row.bound
            );
        }
    }
    s.push('\n');
    for result in results.iter().filter(|r| r.available) {
        let _ = writeln!(s, "- {}: {}", result.backend, result.devices);
    }
    s.push('\n');
    s
}

/// Rows whose output was not the CPU's: the bench fails on them.
pub fn failures(results: &[AccelResult]) -> Vec<String> {
    results
        .iter()
        .flat_map(|r| {
            r.rows
                .iter()
                .filter(|row| !row.same_as_cpu)
                .map(move |row| {
                    format!(
                        "--accel {}: {} differs from the CPU",
                        r.backend, row.operation
                    )
                })
        })
        .collect()
}

/// Draws each operation's MB/s on every backend that ran, as bars side by side on a log
/// scale, to `path` (SVG).
pub fn plot(results: &[AccelResult], path: &std::path::Path) -> Result<()> {
    use plotters::prelude::*;

    use super::report::{PALETTE, TEXT, TICK, log_ticks, speed_axis, tick_label};

    let ran: Vec<&AccelResult> = results.iter().filter(|r| r.available).collect();
    let operations: Vec<&str> = ran
        .first()
        .map(|r| r.rows.iter().map(|row| row.operation.as_str()).collect())
        .unwrap_or_default();
    let (lo, hi) = speed_axis(ran.iter().flat_map(|r| r.rows.iter().map(|row| row.mb_s)));
    let slots = operations.len() * (ran.len() + 1);
    let root = SVGBackend::new(path, (900, 120 + 24 * slots as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Each backend on the same inputs", ("sans-serif", 21))
        .margin(14)
        .margin_right(24)
        .x_label_area_size(46)
        .y_label_area_size(290)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            0..slots as i32,
        )?;
    let per_operation = ran.len() as i32 + 1;
    chart
        .configure_mesh()
        .x_desc("MB/s (log scale)")
        .x_label_formatter(&|v| tick_label(*v))
        .y_labels(slots)
        .y_label_formatter(&|slot| {
            let (operation, place) = (slot / per_operation, slot % per_operation);
            match (operations.len() as i32 - 1).checked_sub(operation) {
                Some(index) if place == per_operation / 2 => operations[index as usize].to_owned(),
                _ => String::new(),
            }
        })
        .disable_y_mesh()
        .label_style(("sans-serif", TICK))
        .axis_desc_style(("sans-serif", TEXT))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    for (b, result) in ran.iter().enumerate() {
        let color = PALETTE[b % PALETTE.len()];
        let bars = result.rows.iter().enumerate().map(|(index, row)| {
            let slot = (operations.len() - 1 - index) as i32 * per_operation + b as i32 + 1;
            Rectangle::new([(lo, slot), (row.mb_s, slot + 1)], color.filled())
        });
        chart
            .draw_series(bars)?
            .label(result.backend.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", TEXT))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
