//! `--cdc`: throughput of content-defined chunking on the CPU reference backend
//! (`CpuAccelerator::find_chunk_boundaries`, fastcdc v2020) with the default parameters,
//! on seeded random bytes, on generated text (the tree bench's generator) and on a corpus
//! file when there is one.
//!
//! One thread: the call scans its input as one sequential stream (a boundary depends on
//! where the previous one fell), so the figure is per core. One untimed warm-up call, then
//! the best of [`RUNS`].

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result};
use mmh_benches::{Rng, format_size};
use mmh_codecs::{Accelerator, CdcParams, CpuAccelerator};
use serde::Serialize;

use super::text::TextGen;
use super::{Config, SEED};

/// Bytes of each generated input.
pub const GENERATED: usize = 256 << 20;
/// Timed calls per input.
const RUNS: usize = 3;
/// The corpus file chunked when present: the model file the dedup bench also uses.
const CORPUS_FILE: &str = "piper-bf16.safetensors";
/// What the CPU backend should reach on one core.
const TARGET_GB_S: f64 = 1.0;

/// Chunking one input.
#[derive(Debug, Clone, Serialize)]
pub struct CdcResult {
    pub input: String,
    pub bytes: u64,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    pub runs_s: Vec<f64>,
    /// 10^9 bytes per second, from the fastest run.
    pub gb_s: f64,
    pub chunks: usize,
}

/// Measures every input (skipping the corpus file when it is missing).
pub fn measure(config: &Config) -> Result<Vec<CdcResult>> {
    let mut results = Vec::new();
    eprintln!(
        "bench: cdc: generating {} of random bytes",
        format_size(GENERATED as u64)
    );
    let mut rng = Rng::new(SEED);
    let mut random = vec![0u8; GENERATED];
    for word in random.chunks_exact_mut(8) {
        word.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    results.push(chunk("random (seeded)", &random)?);
    drop(random);

    eprintln!(
        "bench: cdc: generating {} of text",
        format_size(GENERATED as u64)
    );
    let mut text = Vec::with_capacity(GENERATED);
    TextGen::new(SEED).fill(&mut Rng::new(SEED), GENERATED, &mut text);
    results.push(chunk("text (the tree's generator)", &text)?);
    drop(text);

    let file = config.corpus.join(CORPUS_FILE);
    match std::fs::read(&file) {
        Ok(bytes) => results.push(chunk(CORPUS_FILE, &bytes)?),
        Err(_) => eprintln!(
            "bench: cdc: {} is missing; build the corpus with `bash /work/shared/corpus/build.sh` to chunk it too",
            file.display()
        ),
    }
    Ok(results)
}

fn chunk(name: &str, data: &[u8]) -> Result<CdcResult> {
    let params = CdcParams::default();
    eprintln!("bench: cdc: {name}");
    let boundaries = CpuAccelerator
        .find_chunk_boundaries(data, &params)
        .context("find_chunk_boundaries failed")?;
    let mut runs_s = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let again = CpuAccelerator.find_chunk_boundaries(std::hint::black_box(data), &params)?;
        runs_s.push(start.elapsed().as_secs_f64());
        anyhow::ensure!(again == boundaries, "chunk boundaries changed between runs");
    }
    let best = runs_s.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(CdcResult {
        input: name.to_owned(),
        bytes: data.len() as u64,
        min_size: params.min_size,
        avg_size: params.avg_size,
        max_size: params.max_size,
        gb_s: data.len() as f64 / 1e9 / best,
        chunks: boundaries.len(),
        runs_s,
    })
}

/// The markdown section.
pub fn markdown(results: &[CdcResult]) -> String {
    let mut s = String::new();
    s.push_str("### Content-defined chunking, CPU backend, one thread\n\n");
    if let Some(r) = results.first() {
        let _ = writeln!(
            s,
            "`CpuAccelerator::find_chunk_boundaries` (fastcdc v2020) with `CdcParams::default()` \
             (min {} / avg {} / max {}), whole input in memory, one warm-up call then best of \
             {RUNS}. GB/s = 10^9 bytes per second; target ≥ {TARGET_GB_S} GB/s per core.\n",
            format_size(r.min_size.into()),
            format_size(r.avg_size.into()),
            format_size(r.max_size.into()),
        );
    }
    s.push_str("| input | bytes | GB/s | target | chunks | mean chunk |\n");
    s.push_str("|---|---:|---:|---|---:|---:|\n");
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {} | {} | {} |",
            r.input,
            format_size(r.bytes),
            r.gb_s,
            if r.gb_s >= TARGET_GB_S {
                "met"
            } else {
                "missed"
            },
            r.chunks,
            format_size(r.bytes / r.chunks.max(1) as u64),
        );
    }
    s.push('\n');
    s
}
