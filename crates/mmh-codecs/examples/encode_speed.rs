//! Tensor encode speed through the public API, on one thread: 64 MiB of weight-like
//! values (`parity::weights`) in 4 MiB frames, each encoded with `encode_tensor` into a
//! reused buffer, as `cargo xtask bench` does.
//!
//! `cargo run --release -p mmh-codecs --example encode_speed -- [bf16|f16] [RUNS] [MiB]`
//! prints the best, median and worst of RUNS encodes of the whole input, and a checksum
//! of the payloads (equal checksums: equal bytes, whichever kernel wrote them).

use std::time::Instant;

use mmh_codecs::{CpuAccelerator, EncodeParams, FloatKind, encode_tensor, parity};

fn main() -> Result<(), mmh_codecs::Error> {
    let mut args = std::env::args().skip(1);
    let kind = match args.next().as_deref() {
        Some("f16") => FloatKind::F16,
        _ => FloatKind::Bf16,
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(7).max(1);
    let mib: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(64);
    let raw = parity::weights(kind, (mib << 20) / kind.width(), 1);
    let mut out = Vec::new();
    let mut times = Vec::new();
    let mut checksum = 0u64;
    let mut stored = 0usize;
    for run in 0..runs {
        let mut time = 0.0;
        for frame in raw.chunks(4 << 20) {
            let start = Instant::now();
            encode_tensor(
                frame,
                kind,
                &EncodeParams::default(),
                &CpuAccelerator,
                &mut out,
            )?;
            time += start.elapsed().as_secs_f64();
            if run == 0 {
                stored += out.len();
                checksum = out.iter().fold(checksum, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
            }
        }
        times.push(time);
    }
    times.sort_by(f64::total_cmp);
    let mb_s = |t: f64| raw.len() as f64 / t / 1e6;
    println!(
        "{kind:?} encode: best {:.0} MB/s, median {:.0}, worst {:.0} ({runs} runs); {stored} bytes, checksum {checksum:016x}",
        mb_s(times[0]),
        mb_s(times[runs / 2]),
        mb_s(times[runs - 1])
    );
    Ok(())
}
