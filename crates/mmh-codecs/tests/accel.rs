//! `Accelerator` conformance, written once as `fn(&dyn Accelerator)` cases and run for
//! every backend this crate has (the CPU reference; GPU crates compare against it).

use mmh_codecs::{Accelerator, CdcParams, CpuAccelerator, Digest, Error};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

/// Small parameters so that 1 MiB gives short vectors to pin.
const SMALL: CdcParams = CdcParams {
    min_size: 2048,
    avg_size: 8192,
    max_size: 32768,
};

const MIB: usize = 1 << 20;

/// xorshift64 (13, 7, 17), each state written little-endian: a stand-in for model
/// weights that any language can reproduce to check a port against the pinned vectors.
fn xorshift64_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn seeded_random_mib() -> Vec<u8> {
    xorshift64_bytes(0x9E37_79B9_7F4A_7C15, MIB)
}

fn mod_251_pattern_mib() -> Vec<u8> {
    (0..MIB).map(|i| (i * 7 % 251) as u8).collect()
}

/// Every 32 KiB (`max_size`): neither constant nor short-period data ever matches a mask.
fn every_max_size() -> Vec<usize> {
    (1..=32).map(|i| i * 32768).collect()
}

const SEEDED_RANDOM_BOUNDARIES: [usize; 99] = [
    11835, 22033, 34592, 43573, 55073, 63710, 73145, 82541, 85809, 94253, 107456, 119088, 127422,
    138761, 141777, 157572, 166916, 175684, 183124, 213106, 225136, 237400, 246037, 256631, 264712,
    270162, 275574, 308342, 324353, 335222, 349306, 356598, 364837, 368868, 379853, 385512, 393237,
    397920, 417343, 424366, 434350, 448818, 460529, 470272, 477388, 484666, 494961, 504105, 513133,
    520395, 532031, 547861, 562831, 567915, 576554, 588758, 591129, 601069, 615632, 621105, 634144,
    646885, 657435, 664485, 676418, 687566, 700838, 711313, 720654, 732917, 744842, 753578, 762842,
    775266, 782862, 792566, 801072, 826029, 845658, 859873, 874286, 883630, 886015, 895089, 904767,
    915619, 927500, 950869, 957578, 969864, 978700, 994696, 997609, 1007118, 1012312, 1024823,
    1033020, 1042190, 1048576,
];

fn assert_pinned(acc: &dyn Accelerator, what: &str, data: &[u8], expected: &[usize]) {
    let got = acc.find_chunk_boundaries(data, &SMALL).unwrap();
    assert!(
        got == expected,
        "{} backend: chunk boundaries of {what} drifted from the pinned vector; archives \
         written before and after this change would no longer deduplicate against each \
         other.\n  pinned: {expected:?}\n  got:    {got:?}",
        acc.name()
    );
}

fn pinned_boundaries(acc: &dyn Accelerator) {
    assert_pinned(
        acc,
        "1 MiB of seeded xorshift64",
        &seeded_random_mib(),
        &SEEDED_RANDOM_BOUNDARIES,
    );
    assert_pinned(acc, "1 MiB of 0xA5", &vec![0xA5; MIB], &every_max_size());
    assert_pinned(
        acc,
        "1 MiB of i*7 mod 251",
        &mod_251_pattern_mib(),
        &every_max_size(),
    );
}

fn check_well_formed(acc: &dyn Accelerator, data: &[u8], params: &CdcParams) {
    let ends = acc.find_chunk_boundaries(data, params).unwrap();
    if data.is_empty() {
        assert!(ends.is_empty());
        return;
    }
    assert_eq!(ends.last(), Some(&data.len()));
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        assert!(end > start, "boundaries not strictly ascending: {ends:?}");
        let len = end - start;
        assert!(
            len <= params.max_size as usize,
            "chunk {i} longer than max: {len}"
        );
        if i + 1 < ends.len() {
            assert!(
                len >= params.min_size as usize,
                "chunk {i} shorter than min: {len}"
            );
        }
        start = end;
    }
    assert_eq!(
        acc.find_chunk_boundaries(data, params).unwrap(),
        ends,
        "not deterministic"
    );
}

fn boundaries_are_well_formed(acc: &dyn Accelerator) {
    let random = seeded_random_mib();
    let lengths = [
        0, 1, 2047, 2048, 2049, 8192, 32767, 32768, 32769, 100_000, MIB,
    ];
    for params in [SMALL, CdcParams::default()] {
        for &len in &lengths {
            check_well_formed(acc, &random[..len], &params);
            check_well_formed(acc, &vec![0; len], &params);
        }
    }
}

fn invalid_params_are_rejected(acc: &dyn Accelerator) {
    let bad = [
        (32, 8192, 32768),     // min below fastcdc's 64
        (2048, 128, 32768),    // avg below 256
        (2048, 8192, 1 << 25), // max above 16 MiB
        (8192, 8192, 32768),   // min == avg
        (2048, 32768, 32768),  // avg == max
        (2049, 8192, 32768),   // odd
        (2048, 8193, 32768),   // odd
        (2048, 8192, 32767),   // odd
    ];
    for (min_size, avg_size, max_size) in bad {
        let params = CdcParams {
            min_size,
            avg_size,
            max_size,
        };
        let err = acc.find_chunk_boundaries(b"data", &params).unwrap_err();
        assert!(
            matches!(err, Error::InvalidCdcParams { min, avg, max, .. }
                if (min, avg, max) == (min_size, avg_size, max_size)),
            "{params:?}: {err}"
        );
    }
    let err = CdcParams {
        min_size: 2048,
        avg_size: 1024,
        max_size: 32768,
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid CDC parameters min=2048 avg=1024 max=32768: sizes must satisfy min < avg < max"
    );
    CdcParams::default().validate().unwrap();
    SMALL.validate().unwrap();
}

fn hex(digest: &Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn known_digests(acc: &dyn Accelerator) {
    let digests = acc.digest_batch(&[b"", b"abc"]).unwrap();
    assert_eq!(
        hex(&digests[0]),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(&digests[1]),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert!(acc.digest_batch(&[]).unwrap().is_empty());
}

fn digests_match_sha2(acc: &dyn Accelerator, chunks: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let expected: Vec<Digest> = chunks.iter().map(|c| Sha256::digest(c).into()).collect();
    assert_eq!(acc.digest_batch(&refs).unwrap(), expected);
}

/// Instantiates every case for one backend.
macro_rules! accelerator_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            fn acc() -> impl Accelerator {
                $make
            }

            #[test]
            fn pinned_boundaries() {
                super::pinned_boundaries(&acc());
            }

            #[test]
            fn boundaries_are_well_formed() {
                super::boundaries_are_well_formed(&acc());
            }

            #[test]
            fn invalid_params_are_rejected() {
                super::invalid_params_are_rejected(&acc());
            }

            #[test]
            fn known_digests() {
                super::known_digests(&acc());
            }

            proptest! {
                #[test]
                fn digests_match_sha2(
                    chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 0..40)
                ) {
                    super::digests_match_sha2(&acc(), &chunks);
                }

                #[test]
                fn random_data_boundaries_are_well_formed(
                    data in prop::collection::vec(any::<u8>(), 0..100_000)
                ) {
                    super::check_well_formed(&acc(), &data, &SMALL);
                }
            }
        }
    };
}

accelerator_tests!(cpu, CpuAccelerator);

#[test]
fn cpu_backend_is_named() {
    assert_eq!(CpuAccelerator.name(), "cpu");
}
