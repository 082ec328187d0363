//! Tensor decode speed through the public API, on one thread: 64 MiB of weight-like
//! values (`parity::weights`) in 4 MiB frames, each encoded with `encode_tensor` and
//! decoded with `decode` into a reused buffer, as `cargo xtask bench` does.
//!
//! `cargo run --release -p mmh-codecs --example decode_speed -- [bf16|f16] [RUNS]`
//! prints the best, median and worst of RUNS decodes of the whole 64 MiB.

use std::time::Instant;

use mmh_codecs::{CpuAccelerator, EncodeParams, FloatKind, decode, encode_tensor, parity};

fn main() -> Result<(), mmh_codecs::Error> {
    let mut args = std::env::args().skip(1);
    let kind = match args.next().as_deref() {
        Some("f16") => FloatKind::F16,
        _ => FloatKind::Bf16,
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(7);
    let raw = parity::weights(kind, 32 << 20, 1);
    let mut frames = Vec::new();
    for frame in raw.chunks(4 << 20) {
        let mut stored = Vec::new();
        let codec = encode_tensor(
            frame,
            kind,
            &EncodeParams::default(),
            &CpuAccelerator,
            &mut stored,
        )?;
        frames.push((frame, codec, stored));
    }
    let mut out = Vec::new();
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut time = 0.0;
        for (frame, codec, stored) in &frames {
            let start = Instant::now();
            decode(*codec, stored, frame.len(), &CpuAccelerator, &mut out)?;
            time += start.elapsed().as_secs_f64();
            assert!(out == *frame, "the decoded frame differs");
        }
        times.push(time);
    }
    times.sort_by(f64::total_cmp);
    let mb_s = |t: f64| raw.len() as f64 / t / 1e6;
    println!(
        "{kind:?} decode ({:?}): best {:.0} MB/s, median {:.0}, worst {:.0} ({runs} runs)",
        frames[0].1,
        mb_s(times[0]),
        mb_s(times[runs / 2]),
        mb_s(times[runs - 1])
    );
    Ok(())
}
