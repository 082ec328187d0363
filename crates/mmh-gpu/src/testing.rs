//! The device tests every backend runs, written once: [`device_backend_tests!`] puts them
//! and the parity suite ([`mmh_codecs::parity`]) in a backend's test crate. They compare
//! with the CPU backend on boundary cases chosen for the host side of each operation
//! (SHA-256 padding and pieces carried across uploads, CDC windows and the chunk walk,
//! tensor batches and payload checks),
//! with batch limits small enough to split every batch, on every device and on the
//! first device opened twice, so the paths that spread work over devices run on a
//! one-device machine.
//!
//! [`device_backend_tests!`]: crate::device_backend_tests

use mmh_codecs::{Accelerator, BLOCK_VALUES, CdcParams, CpuAccelerator, FloatKind, parity};

use crate::{Device, Error, GpuAccelerator};

/// The backend on every device here, and on the first device opened twice.
pub struct Backends<D: Device> {
    /// Every device.
    pub all: GpuAccelerator<D>,
    /// The first device, twice.
    pub twice: GpuAccelerator<D>,
}

/// A backend's constructor, given the numbers of the devices to open (all when `None`).
pub type Open<D> = fn(Option<&[usize]>) -> Result<GpuAccelerator<D>, Error>;

/// Opens the backends with `open` (a backend's constructor, given the device numbers),
/// or `None` with the reason printed when this machine has none of its devices; with the
/// environment variable `require` set to 1 that is a failure, and any other error always
/// is.
pub fn open<D: Device>(open: Open<D>, require: &str) -> Option<Backends<D>> {
    match open(None) {
        Ok(all) => Some(Backends {
            all,
            twice: open(Some(&[0, 0])).expect("the first device, opened twice"),
        }),
        Err(error) if error.is_absent() && std::env::var(require).as_deref() != Ok("1") => {
            eprintln!("skipped: {error} ({require}=1 makes this fail)");
            None
        }
        Err(error) => panic!("opening the {} backend: {error}", D::BACKEND),
    }
}

impl<D: Device> Backends<D> {
    fn each(&self, batch_limit: usize) -> [GpuAccelerator<D>; 2] {
        [
            self.all.with_batch_limit(batch_limit),
            self.twice.with_batch_limit(batch_limit),
        ]
    }

    /// The digests of `chunks` with batches of at most `batch_limit` bytes are the CPU's.
    pub fn check_digests(&self, chunks: &[&[u8]], batch_limit: usize) {
        for backend in self.each(batch_limit) {
            parity::digests(&backend, chunks).unwrap();
        }
    }

    /// The boundaries of `data` with windows of at most `batch_limit` bytes are the CPU's.
    pub fn check_boundaries(&self, data: &[u8], params: &CdcParams, batch_limit: usize) {
        for backend in self.each(batch_limit) {
            parity::boundaries(&backend, data, params).unwrap();
        }
    }

    /// SHA-256: every length around the padding boundaries, empty batches and chunks,
    /// big chunks, batches split over uploads, and chunks larger than an upload, which go
    /// in pieces that carry the state.
    pub fn sha256_cases(&self) {
        let data = bytes(3 << 20, 2);
        let chunks: Vec<&[u8]> = (0..=200).map(|len| &data[..len]).collect();
        self.check_digests(&chunks, crate::DEFAULT_BATCH_LIMIT);
        self.check_digests(&[], crate::DEFAULT_BATCH_LIMIT);
        self.check_digests(&[&[]], crate::DEFAULT_BATCH_LIMIT);
        self.check_digests(&[&[], &[], b"abc", &[]], 64);
        self.check_digests(
            &[&data, &data[1..], &data[..1 << 20]],
            crate::DEFAULT_BATCH_LIMIT,
        );
        let chunks: Vec<&[u8]> = (0..300).map(|i| &data[i * 7..i * 7 + i * 11]).collect();
        self.check_digests(&chunks, 4096);
        self.check_digests(&chunks, 64);
        for len in [127, 128, 129, 191, 192, 1000, 9_999] {
            self.check_digests(&[&data[..5], &data[..len], &data[..3]], 128);
        }
        self.check_digests(&[&data[..10_000]], 64);
    }

    /// CDC: lengths at every edge of the parameters, in one window and in 4 KiB windows;
    /// odd tails just after a cut (fastcdc tests positions in pairs, so a chunk of odd
    /// length never cuts before its last byte); `avg` less than 63 bytes above `min`,
    /// where the relaxed mask takes over before the chunk's hash has seen 64 bytes; the
    /// default parameters across windows; low-entropy data.
    pub fn cdc_cases(&self) {
        const TILE: usize = 4096;
        let data = bytes(3 << 20, 7);
        for p in [params(64, 256, 1024), params(2048, 8192, 32768)] {
            let (min, avg, max) = (
                p.min_size as usize,
                p.avg_size as usize,
                p.max_size as usize,
            );
            for len in [
                0,
                1,
                min - 1,
                min,
                min + 1,
                min + 63,
                min + 64,
                avg - 1,
                avg,
                avg + 1,
                max - 1,
                max,
                max + 1,
                3 * max + 7,
                100_000,
            ] {
                self.check_boundaries(&data[..len], &p, crate::DEFAULT_BATCH_LIMIT);
                self.check_boundaries(&data[..len], &p, TILE);
            }
        }
        for p in [params(64, 256, 1024), params(512, 2048, 8192)] {
            let cuts = CpuAccelerator
                .find_chunk_boundaries(&data[..200_000], &p)
                .expect("cpu");
            let mut tested = [0, 0];
            for pair in cuts.windows(2) {
                let (start, cut) = (pair[0], pair[1]);
                let region = usize::from(cut - start >= p.avg_size as usize);
                if (cut - start) % 2 == 0 && cut < 200_000 && tested[region] < 8 {
                    tested[region] += 1;
                    self.check_boundaries(&data[..cut + 1], &p, TILE);
                }
            }
            assert_eq!(tested, [8, 8], "{p:?}: not enough cases in the data");
        }
        for p in [
            params(240, 256, 1024),
            params(254, 256, 1024),
            params(230, 256, 2048),
            params(4090, 4096, 8192),
        ] {
            self.check_boundaries(&data[..300_000], &p, TILE);
        }
        self.check_boundaries(&data, &CdcParams::default(), crate::DEFAULT_BATCH_LIMIT);
        self.check_boundaries(&data, &CdcParams::default(), 5 * TILE);
        let zeros = vec![0; 50_000];
        let pattern: Vec<u8> = (0..50_000u32).map(|i| (i % 7) as u8).collect();
        let long_pattern: Vec<u8> = (0..50_000u32).map(|i| (i % 1000 / 3) as u8).collect();
        for data in [&zeros, &pattern, &long_pattern] {
            for p in [params(64, 256, 1024), params(1024, 4096, 16384)] {
                self.check_boundaries(data, &p, TILE);
                self.check_boundaries(data, &p, crate::DEFAULT_BATCH_LIMIT);
            }
        }
    }

    /// The tensor codec where the host side has choices to get wrong: batches of a few
    /// blocks on a device with little memory; fp32 holding bf16 values (the zero bits);
    /// damaged payloads, which must be the errors the CPU reports, word for word; and
    /// payloads with blocks smaller than writers use, which readers must take.
    pub fn tensor_cases(&self) {
        for kind in [FloatKind::Bf16, FloatKind::F64, FloatKind::F8E4M3] {
            let raw = parity::weights(kind, 7 * BLOCK_VALUES + 1234, 17);
            for backend in self.each(2 << 20) {
                parity::tensor(&backend, &raw, kind).unwrap();
            }
        }
        let bf16 = parity::weights(FloatKind::Bf16, 40_000, 3);
        let fp32: Vec<u8> = bf16.chunks(2).flat_map(|v| [0, 0, v[0], v[1]]).collect();
        parity::tensor(&self.all, &fp32, FloatKind::F32).unwrap();

        let kind = FloatKind::Bf16;
        let raw = parity::weights(kind, 40_000, 1);
        let mut stored = Vec::new();
        assert!(
            CpuAccelerator
                .encode_tensor(&raw, kind, &mut stored)
                .unwrap()
        );
        // The last block's words, one longer: a word is left over.
        let mut longer = stored.clone();
        longer.extend([0, 0]);
        let directory = 2 + 4;
        let len = u32::from_le_bytes(longer[directory..][..4].try_into().unwrap());
        longer[directory..][..4].copy_from_slice(&(len + 2).to_le_bytes());
        let cuts = [0, 1, 5, stored.len() - 2, stored.len() - 1];
        let damaged = cuts.iter().map(|&cut| &stored[..cut]).chain([&longer[..]]);
        for payload in damaged {
            let mut out = Vec::new();
            let error = self
                .all
                .decode_tensor(payload, raw.len(), kind, &mut out)
                .unwrap_err();
            assert!(out.is_empty());
            let cpu = CpuAccelerator
                .decode_tensor(payload, raw.len(), kind, &mut out)
                .unwrap_err();
            assert_eq!(error.to_string(), cpu.to_string());
        }

        // Writers use blocks of 2^15 values; a reader takes 2^10 to 2^20. A block's bytes
        // depend only on its values, so coding each run of 2^g values alone gives the
        // blocks of a payload with blocks of 2^g values.
        for (kind, log) in [
            (FloatKind::Bf16, 10),
            (FloatKind::F32, 12),
            (FloatKind::F8E5M2, 11),
        ] {
            let width = kind.width();
            let mut raw = parity::weights(kind, 5 << log, u64::from(log));
            raw.extend(std::iter::repeat_n(7, width - 1));
            let whole = raw.len() - raw.len() % width;
            let mut stored = vec![kind.symbol_mantissa_bits() as u8];
            stored.extend_from_slice(&raw[whole..]);
            stored.push(log);
            let mut blocks = Vec::new();
            for values in raw[..whole].chunks(width << log) {
                let mut alone = Vec::new();
                assert!(
                    CpuAccelerator
                        .encode_tensor(values, kind, &mut alone)
                        .unwrap()
                );
                // After k, the block size and a directory of one block.
                let block = &alone[1 + 1 + 4..];
                stored.extend_from_slice(&(block.len() as u32).to_le_bytes());
                blocks.extend_from_slice(block);
            }
            stored.extend_from_slice(&blocks);
            let mut out = Vec::new();
            self.all
                .decode_tensor(&stored, raw.len(), kind, &mut out)
                .unwrap();
            assert!(out == raw, "{kind:?} in blocks of 2^{log}");
        }
    }

    /// Callers on several threads at once, as the fold pipeline calls, each taking a free
    /// stream: every result is still the CPU's, whichever stream computed it.
    pub fn concurrent_cases(&self) {
        let callers = 2 * crate::STREAMS_PER_DEVICE + 1;
        std::thread::scope(|scope| {
            for caller in 0..callers {
                scope.spawn(move || {
                    let seed = caller as u64;
                    let raw = parity::weights(FloatKind::Bf16, 3 * BLOCK_VALUES + caller, seed);
                    parity::tensor(&self.all, &raw, FloatKind::Bf16).unwrap();
                    let chunks: Vec<&[u8]> = raw.chunks(4096 + caller).collect();
                    parity::digests(&self.all, &chunks).unwrap();
                    parity::boundaries(&self.all, &raw, &CdcParams::default()).unwrap();
                });
            }
        });
    }
}

/// Seeded uniformly random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// CDC parameters.
pub fn params(min: u32, avg: u32, max: u32) -> CdcParams {
    CdcParams {
        min_size: min,
        avg_size: avg,
        max_size: max,
    }
}

/// Puts the device tests and the parity suite in the calling test crate, for the backend
/// whose devices are `$device` and whose constructor is `$open` (given the device numbers
/// to open); `$require` names the environment variable that makes a missing device a
/// failure. The caller needs `proptest` among its dev-dependencies.
#[macro_export]
macro_rules! device_backend_tests {
    ($device:ty, $open:path, $require:literal) => {
        fn device_backends() -> Option<&'static $crate::testing::Backends<$device>> {
            static BACKENDS: std::sync::OnceLock<Option<$crate::testing::Backends<$device>>> =
                std::sync::OnceLock::new();
            BACKENDS
                .get_or_init(|| $crate::testing::open($open, $require))
                .as_ref()
        }

        #[test]
        fn sha256_cases() {
            if let Some(backends) = device_backends() {
                backends.sha256_cases();
            }
        }

        #[test]
        fn cdc_cases() {
            if let Some(backends) = device_backends() {
                backends.cdc_cases();
            }
        }

        #[test]
        fn tensor_cases() {
            if let Some(backends) = device_backends() {
                backends.tensor_cases();
            }
        }

        #[test]
        fn concurrent_cases() {
            if let Some(backends) = device_backends() {
                backends.concurrent_cases();
            }
        }

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

            #[test]
            fn digests_in_small_uploads(lens in proptest::collection::vec(0usize..3000, 0..40), seed in proptest::prelude::any::<u64>(), blocks in 1usize..80) {
                if let Some(backends) = device_backends() {
                    let data = $crate::testing::bytes(lens.iter().sum(), seed);
                    let mut rest = &data[..];
                    let chunks: Vec<&[u8]> = lens.iter().map(|&len| {
                        let (chunk, tail) = rest.split_at(len);
                        rest = tail;
                        chunk
                    }).collect();
                    backends.check_digests(&chunks, blocks * 64);
                }
            }

            #[test]
            fn boundaries_in_small_windows(min in 32u32..2048, more in 1u32..4096, most in 1u32..8192, len in 0usize..60_000, seed in proptest::prelude::any::<u64>(), tiles in 1usize..6, period in proptest::option::of(1usize..300)) {
                if let Some(backends) = device_backends() {
                    let avg = (2 * min + 2 * more).max(256);
                    let params = $crate::testing::params(2 * min, avg, (avg + 2 * most).max(1024));
                    let data = match period {
                        Some(period) => $crate::testing::bytes(period, seed).into_iter().cycle().take(len).collect(),
                        None => $crate::testing::bytes(len, seed),
                    };
                    backends.check_boundaries(&data, &params, tiles * 4096);
                }
            }
        }

        mmh_codecs::backend_parity_tests!(
            device_backends().map(|backends| &backends.all as &dyn mmh_codecs::Accelerator),
            $require
        );
    };
}
