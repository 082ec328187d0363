//! Rough throughput of the OpenCL backend against the CPU reference:
//! `cargo run --release -p mmh-opencl --example throughput`.
//!
//! SHA-256 of 64 KiB chunks and chunk boundaries (default parameters) over 64 MiB of
//! pseudo-random bytes, best of three runs each, after one untimed run that builds caches.

use std::time::Instant;

use mmh_codecs::{Accelerator, CdcParams, CpuAccelerator};
use mmh_opencl::OpenClAccelerator;

const SIZE: usize = 64 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let chunks: Vec<&[u8]> = data.chunks(64 << 10).collect();
    let params = CdcParams::default();
    let opencl = OpenClAccelerator::new(None)?;
    for info in opencl.device_infos() {
        println!("device: {} ({})", info.name, info.platform);
    }
    let accelerators: [&dyn Accelerator; 2] = [&CpuAccelerator, &opencl];
    for acc in accelerators {
        let digests = best(|| acc.digest_batch(&chunks).map(|_| ()))?;
        let boundaries = best(|| acc.find_chunk_boundaries(&data, &params).map(|_| ()))?;
        println!(
            "{:>6}: digest_batch {:7.0} MB/s, find_chunk_boundaries {:7.0} MB/s",
            acc.name(),
            SIZE as f64 / digests / 1e6,
            SIZE as f64 / boundaries / 1e6,
        );
    }
    Ok(())
}

/// The shortest of three timed runs, in seconds.
fn best(mut run: impl FnMut() -> Result<(), mmh_codecs::Error>) -> Result<f64, mmh_codecs::Error> {
    run()?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        run()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}
