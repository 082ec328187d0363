//! The byte-identity checks every [`Accelerator`] backend must pass against
//! [`CpuAccelerator`], written once: a backend's tests call
//! [`backend_parity_tests!`](crate::backend_parity_tests) and get the same suite as
//! every other backend, on fixed boundary cases and on proptest inputs.
//!
//! Each check returns `Err` with a description of the first difference.

use crate::{Accelerator, BLOCK_VALUES, CdcParams, CpuAccelerator, FloatKind};

/// Checks that `backend` hashes `chunks` as the CPU does.
pub fn digests(backend: &dyn Accelerator, chunks: &[&[u8]]) -> Result<(), String> {
    let want = CpuAccelerator
        .digest_batch(chunks)
        .map_err(|e| e.to_string())?;
    let got = backend.digest_batch(chunks).map_err(|e| e.to_string())?;
    if got.len() != want.len() {
        return Err(format!("{} digests for {} chunks", got.len(), want.len()));
    }
    match (0..want.len()).find(|&i| got[i] != want[i]) {
        Some(i) => Err(format!(
            "digest of chunk {i} ({} bytes) differs",
            chunks[i].len()
        )),
        None => Ok(()),
    }
}

/// Checks that `backend` cuts `data` where the CPU does.
pub fn boundaries(
    backend: &dyn Accelerator,
    data: &[u8],
    params: &CdcParams,
) -> Result<(), String> {
    let want = CpuAccelerator
        .find_chunk_boundaries(data, params)
        .map_err(|e| e.to_string())?;
    let got = backend
        .find_chunk_boundaries(data, params)
        .map_err(|e| e.to_string())?;
    match (0..want.len().max(got.len())).find(|&i| got.get(i) != want.get(i)) {
        Some(i) => Err(format!(
            "boundary {i} of {} bytes with {params:?}: {:?}, the CPU {:?}",
            data.len(),
            got.get(i),
            want.get(i)
        )),
        None => Ok(()),
    }
}

/// Checks that `backend` codes `raw` as values of `kind` to the CPU's bytes, and that
/// each decodes the other's payload back to `raw`.
pub fn tensor(backend: &dyn Accelerator, raw: &[u8], kind: FloatKind) -> Result<(), String> {
    let what = || format!("{} bytes of {kind:?}", raw.len());
    let (mut want, mut got) = (Vec::new(), Vec::new());
    let want_smaller = CpuAccelerator
        .encode_tensor(raw, kind, &mut want)
        .map_err(|e| e.to_string())?;
    let got_smaller = backend
        .encode_tensor(raw, kind, &mut got)
        .map_err(|e| format!("{}: encode: {e}", what()))?;
    if got_smaller != want_smaller {
        return Err(format!(
            "{}: the backend says smaller: {got_smaller}, the CPU {want_smaller}",
            what()
        ));
    }
    if !want_smaller {
        return Ok(());
    }
    if got != want {
        let at = got.iter().zip(&want).position(|(a, b)| a != b);
        return Err(format!(
            "{}: payload of {} bytes, the CPU's {}; first difference at {at:?}",
            what(),
            got.len(),
            want.len()
        ));
    }
    let mut back = Vec::new();
    backend
        .decode_tensor(&want, raw.len(), kind, &mut back)
        .map_err(|e| format!("{}: decode: {e}", what()))?;
    if back != raw {
        return Err(format!("{}: the backend decodes other bytes", what()));
    }
    Ok(())
}

/// Checks that `backend` decodes a possibly damaged payload as the CPU does: both fail,
/// or both give the same bytes.
pub fn damaged_tensor(
    backend: &dyn Accelerator,
    stored: &[u8],
    raw_len: usize,
    kind: FloatKind,
) -> Result<(), String> {
    let (mut want, mut got) = (Vec::new(), Vec::new());
    let want = CpuAccelerator
        .decode_tensor(stored, raw_len, kind, &mut want)
        .map(|()| want);
    let got = backend
        .decode_tensor(stored, raw_len, kind, &mut got)
        .map(|()| got);
    match (got, want) {
        (Ok(got), Ok(want)) if got == want => Ok(()),
        (Ok(_), Ok(_)) => Err(format!("{kind:?}: the backend decodes other bytes")),
        (Err(crate::Error::Corrupt { .. }), Err(_)) => Ok(()),
        (Err(e), Err(_)) => Err(format!("{kind:?}: damage reported as {e}, not as corrupt")),
        (Ok(_), Err(e)) => Err(format!(
            "{kind:?}: the backend accepts what the CPU refuses: {e}"
        )),
        (Err(e), Ok(_)) => Err(format!(
            "{kind:?}: the backend refuses what the CPU decodes: {e}"
        )),
    }
}

/// The fixed cases: lengths at every edge the backends special-case (SHA-256 padding,
/// chunk size limits, block and tail lengths) and the values floats can hold.
pub fn fixed_cases(backend: &dyn Accelerator) -> Result<(), String> {
    let noise = weights(FloatKind::F8E4M3, 1 << 20, 1);
    let chunks: Vec<&[u8]> = (0..=130)
        .chain([1000, 4095, 65536, 100_003])
        .map(|len| &noise[..len])
        .collect();
    digests(backend, &chunks)?;
    digests(backend, &[])?;

    let small = CdcParams {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
    };
    let zeros = vec![0u8; 300_000];
    let period: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
    for params in [small, CdcParams::default()] {
        let (min, avg, max) = (
            params.min_size as usize,
            params.avg_size as usize,
            params.max_size as usize,
        );
        for len in [
            0,
            1,
            min - 1,
            min,
            min + 1,
            avg,
            max - 1,
            max,
            max + 1,
            3 * max + 7,
        ] {
            boundaries(backend, &noise[..len], &params)?;
            boundaries(backend, &zeros[..len.min(zeros.len())], &params)?;
            boundaries(backend, &period[..len.min(period.len())], &params)?;
        }
    }

    for kind in FloatKind::ALL {
        let width = kind.width();
        for values in [
            0,
            1,
            2,
            7,
            4095,
            BLOCK_VALUES - 1,
            BLOCK_VALUES,
            BLOCK_VALUES + 1,
            2 * BLOCK_VALUES + 3,
        ] {
            let raw = weights(kind, values + 1, values as u64);
            for tail in 0..width {
                tensor(backend, &raw[..values * width + tail], kind)?;
            }
        }
        let specials = specials(kind, 5000);
        tensor(backend, &specials, kind)?;
        tensor(backend, &vec![0; 8000 * width], kind)?;
        let mut stored = Vec::new();
        let weights = weights(kind, 3 * BLOCK_VALUES / 2, 7);
        assert!(
            CpuAccelerator
                .encode_tensor(&weights, kind, &mut stored)
                .is_ok_and(|smaller| smaller)
        );
        for at in (0..stored.len()).step_by(stored.len() / 97 + 1) {
            let mut damaged = stored.clone();
            damaged[at] ^= 0x10;
            damaged_tensor(backend, &damaged, weights.len(), kind)?;
            damaged_tensor(backend, &stored[..at], weights.len(), kind)?;
        }
    }
    Ok(())
}

/// A fast, seeded stream of pseudo-random `u64` (xorshift64) for test data: the same
/// seed gives the same stream everywhere.
pub fn random(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// `values` values of `kind` as trained weights hold them: a few exponents, any sign
/// and mantissa, and every tenth value any bits at all (NaN payloads, infinities,
/// subnormals, -0.0). Deterministic in `seed`.
pub fn weights(kind: FloatKind, values: usize, seed: u64) -> Vec<u8> {
    let (exponent, mantissa) = (kind.exponent_bits(), kind.mantissa_bits());
    let mut next = random(seed);
    let bias = (1u64 << (exponent - 1)) - 1;
    let mut raw = Vec::with_capacity(values * kind.width());
    for _ in 0..values {
        let r = next();
        let v = if r.is_multiple_of(10) {
            next()
        } else {
            let e = bias - 1 - (r >> 8) % 4 - (r >> 12) % 3;
            (r >> 63 << (exponent + mantissa)) | (e << mantissa) | (next() >> (64 - mantissa))
        };
        raw.extend_from_slice(&v.to_le_bytes()[..kind.width()]);
    }
    raw
}

/// `values` values of `kind` cycling through the special ones: zeros of both signs,
/// infinities, NaNs with payloads, the smallest and largest subnormals and normals.
fn specials(kind: FloatKind, values: usize) -> Vec<u8> {
    let bits = 8 * kind.width() as u32;
    let mantissa = kind.mantissa_bits();
    let sign = 1u64 << (bits - 1);
    let exponent_ones = (sign - 1) & !((1u64 << mantissa) - 1);
    let mantissa_ones = (1u64 << mantissa) - 1;
    let cases = [
        0,
        sign,
        exponent_ones,
        sign | exponent_ones,
        exponent_ones | 1,
        exponent_ones | mantissa_ones,
        1,
        mantissa_ones,
        1 << mantissa,
        exponent_ones - 1,
    ];
    (0..values)
        .flat_map(|i| {
            cases[i % cases.len()]
                .to_le_bytes()
                .into_iter()
                .take(kind.width())
        })
        .collect()
}

/// Writes the parity suite as tests in the calling module, for the backend that
/// `$backend` (an expression of type `Option<&'static dyn Accelerator>`, evaluated by
/// every test, so it should open the backend once) gives: `None`
/// skips with a message, unless the environment variable `$require` is set to 1, which
/// makes a missing backend a failure (set on machines that have the device). The caller
/// needs `proptest` among its dev-dependencies.
#[macro_export]
macro_rules! backend_parity_tests {
    ($backend:expr, $require:literal) => {
        fn parity_backend() -> Option<&'static dyn $crate::Accelerator> {
            let backend: Option<&'static dyn $crate::Accelerator> = $backend;
            if backend.is_none() {
                assert!(
                    std::env::var($require).as_deref() != Ok("1"),
                    "{} is 1 but the backend did not open",
                    $require
                );
                eprintln!("skipped: the backend did not open (set {}=1 to fail instead)", $require);
            }
            backend
        }

        #[test]
        fn parity_fixed_cases() {
            if let Some(backend) = parity_backend() {
                $crate::parity::fixed_cases(backend).unwrap();
            }
        }

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

            #[test]
            fn parity_digests(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000), 0..40)) {
                if let Some(backend) = parity_backend() {
                    let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                    proptest::prop_assert_eq!($crate::parity::digests(backend, &chunks), Ok(()));
                }
            }

            #[test]
            fn parity_boundaries(seed in proptest::prelude::any::<u64>(), len in 0usize..200_000, min_log in 6u32..12, avg_shift in 1u32..4, max_shift in 1u32..4, low_entropy in proptest::prelude::any::<bool>()) {
                if let Some(backend) = parity_backend() {
                    let min = 1u32 << min_log;
                    // Within fastcdc's limits: avg at least 256, max at least 1024.
                    let avg = (min << avg_shift).max(256);
                    let params = $crate::CdcParams { min_size: min, avg_size: avg, max_size: (avg << max_shift).max(1024) };
                    let mut data = $crate::parity::weights($crate::FloatKind::F8E4M3, len, seed);
                    if low_entropy {
                        data.iter_mut().for_each(|b| *b &= 0x03);
                    }
                    proptest::prop_assert_eq!($crate::parity::boundaries(backend, &data, &params), Ok(()));
                }
            }

            #[test]
            fn parity_tensors(seed in proptest::prelude::any::<u64>(), values in 0usize..70_000, tail in 0usize..8, kind in 0usize..6, noise in proptest::prelude::any::<bool>()) {
                if let Some(backend) = parity_backend() {
                    let kind = $crate::FloatKind::ALL[kind];
                    let mut raw = $crate::parity::weights(kind, values + 1, seed);
                    if noise {
                        raw = $crate::parity::weights($crate::FloatKind::F8E4M3, raw.len(), seed);
                    }
                    raw.truncate(values * kind.width() + tail % kind.width());
                    proptest::prop_assert_eq!($crate::parity::tensor(backend, &raw, kind), Ok(()));
                }
            }

            #[test]
            fn parity_damaged_tensors(seed in proptest::prelude::any::<u64>(), kind in 0usize..6, at in proptest::prelude::any::<proptest::sample::Index>(), bit in 0u8..8, cut in proptest::prelude::any::<bool>()) {
                if let Some(backend) = parity_backend() {
                    let kind = $crate::FloatKind::ALL[kind];
                    let raw = $crate::parity::weights(kind, 40_000, seed);
                    let mut stored = Vec::new();
                    proptest::prop_assert!($crate::Accelerator::encode_tensor(&$crate::CpuAccelerator, &raw, kind, &mut stored).unwrap());
                    let at = at.index(stored.len());
                    if cut {
                        stored.truncate(at);
                    } else {
                        stored[at] ^= 1 << bit;
                    }
                    proptest::prop_assert_eq!($crate::parity::damaged_tensor(backend, &stored, raw.len(), kind), Ok(()));
                }
            }
        }
    };
}
