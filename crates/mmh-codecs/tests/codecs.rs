//! Encode/decode roundtrips for every codec choice, and decoding of hostile input.

use mmh_codecs::{
    CodecChoice, CodecId, CpuAccelerator, EncodeParams, Error, FloatKind, decode, encode,
    encode_tensor,
};
use proptest::prelude::*;

fn choices() -> impl Strategy<Value = CodecChoice> {
    prop_oneof![
        Just(CodecChoice::Auto),
        Just(CodecChoice::Only(CodecId::Store)),
        Just(CodecChoice::Only(CodecId::Zstd)),
        Just(CodecChoice::Only(CodecId::Lz4)),
        Just(CodecChoice::Only(CodecId::Pattern)),
        Just(CodecChoice::Only(CodecId::Bf16)),
        Just(CodecChoice::Only(CodecId::F16)),
        Just(CodecChoice::Only(CodecId::F32)),
        Just(CodecChoice::Only(CodecId::F64)),
        Just(CodecChoice::Only(CodecId::F8E4M3)),
        Just(CodecChoice::Only(CodecId::F8E5M2)),
        Just(CodecChoice::Only(CodecId::Rans)),
    ]
}

fn params() -> impl Strategy<Value = EncodeParams> {
    (choices(), 1..=9i32, any::<bool>()).prop_map(|(choice, zstd_level, zstd_long)| EncodeParams {
        choice,
        zstd_level,
        zstd_long,
    })
}

/// Few symbols in runs: what LZ4 and zstd both shrink.
fn compressible() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0u8..4, 1usize..60), 0..800).prop_map(|runs| {
        runs.into_iter()
            .flat_map(|(symbol, len)| std::iter::repeat_n(symbol, len))
            .collect()
    })
}

/// A random period of 1..=300 bytes repeated to a length that includes the edges of the
/// pattern codec's search (251, 252 and 503 = 2 * 251 + 1).
fn periodic() -> impl Strategy<Value = Vec<u8>> {
    let lengths = prop_oneof![
        Just(0usize),
        Just(1),
        Just(251),
        Just(252),
        Just(502),
        Just(503),
        0..5000usize,
    ];
    (prop::collection::vec(any::<u8>(), 1..=300), lengths)
        .prop_map(|(period, len)| period.iter().copied().cycle().take(len).collect())
}

fn check_roundtrip(raw: &[u8], params: &EncodeParams) -> Result<CodecId, TestCaseError> {
    let mut stored = Vec::new();
    let codec = encode(raw, params, &mut stored).unwrap();
    prop_assert!(
        stored.len() <= raw.len(),
        "{codec} stored {} bytes for {}",
        stored.len(),
        raw.len()
    );
    if let CodecChoice::Only(only) = params.choice {
        prop_assert!(
            codec == only || codec == CodecId::Store,
            "asked {only}, got {codec}"
        );
    }
    let mut back = vec![0xEE; 7];
    decode(codec, &stored, raw.len(), &CpuAccelerator, &mut back).unwrap();
    prop_assert_eq!(back.as_slice(), raw, "{} roundtrip", codec);
    Ok(codec)
}

proptest! {
    #[test]
    fn random_bytes_roundtrip(raw in prop::collection::vec(any::<u8>(), 0..20_000), params in params()) {
        check_roundtrip(&raw, &params)?;
    }

    #[test]
    fn compressible_bytes_roundtrip(raw in compressible(), params in params()) {
        let codec = check_roundtrip(&raw, &params)?;
        if params.choice == CodecChoice::Auto && raw.len() >= 1000 {
            prop_assert_ne!(codec, CodecId::Store);
        }
    }

    #[test]
    fn periodic_bytes_roundtrip(raw in periodic(), params in params()) {
        let codec = check_roundtrip(&raw, &params)?;
        // Auto must spot every period the pattern codec can store profitably.
        let small_period = (1..=251).find(|&p| p < raw.len() && raw[p..] == raw[..raw.len() - p]);
        if params.choice == CodecChoice::Auto
            && small_period.is_some_and(|p| 1 + p < raw.len())
        {
            prop_assert_eq!(codec, CodecId::Pattern);
        }
    }

    #[test]
    fn random_stored_bytes_never_panic(
        stored in prop::collection::vec(any::<u8>(), 0..2000),
        raw_len in 0..=(1usize << 20),
        codec in prop::sample::select(CodecId::ALL.to_vec()),
    ) {
        let mut out = Vec::new();
        if decode(codec, &stored, raw_len, &CpuAccelerator, &mut out).is_ok() {
            prop_assert_eq!(out.len(), raw_len);
        } else {
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn damaged_stored_bytes_never_panic(
        raw in compressible(),
        params in params(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..8),
        cut in any::<prop::sample::Index>(),
        len_delta in -3isize..=3,
    ) {
        let mut stored = Vec::new();
        let codec = encode(&raw, &params, &mut stored).unwrap();
        if !stored.is_empty() {
            for (at, xor) in flips {
                let i = at.index(stored.len());
                stored[i] ^= xor;
            }
            stored.truncate(cut.index(stored.len() + 1));
        }
        let raw_len = raw.len().saturating_add_signed(len_delta);
        let mut out = Vec::new();
        if decode(codec, &stored, raw_len, &CpuAccelerator, &mut out).is_ok() {
            prop_assert_eq!(out.len(), raw_len);
        }
    }
}

fn text(len: usize) -> Vec<u8> {
    b"tensor blk.0.attn_q.weight f16 [4096, 4096] offset 0x1000\n"
        .iter()
        .copied()
        .cycle()
        .enumerate()
        .map(|(i, b)| if i % 97 == 0 { b'#' } else { b })
        .take(len)
        .collect()
}

fn encode_only(codec: CodecId, raw: &[u8]) -> Vec<u8> {
    let params = EncodeParams {
        choice: CodecChoice::Only(codec),
        ..EncodeParams::default()
    };
    let mut stored = Vec::new();
    assert_eq!(encode(raw, &params, &mut stored).unwrap(), codec);
    stored
}

fn assert_corrupt(codec: CodecId, stored: &[u8], raw_len: usize) -> String {
    let mut out = Vec::new();
    match decode(codec, stored, raw_len, &CpuAccelerator, &mut out) {
        Err(err @ Error::Corrupt { codec: c, .. }) if c == codec => {
            assert!(out.is_empty(), "output left after an error");
            err.to_string()
        }
        other => panic!("{codec} with raw_len {raw_len}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn zstd_frame_of_another_size_is_rejected() {
    let raw = text(10_000);
    let stored = encode_only(CodecId::Zstd, &raw);
    let message = assert_corrupt(CodecId::Zstd, &stored, 5000);
    assert_eq!(
        message,
        "corrupt zstd chunk: frame declares 10000 bytes, chunk records 5000"
    );
    assert_corrupt(CodecId::Zstd, &stored, 20_000);
}

#[test]
fn zstd_frame_without_content_size_is_bounded_by_raw_len() {
    // Without the content size in the frame header, only decoding can tell.
    let raw = text(100_000);
    let mut compressor = zstd::bulk::Compressor::new(3).unwrap();
    compressor
        .set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
        .unwrap();
    let stored = compressor.compress(&raw).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&stored).unwrap(),
        None
    );
    assert_corrupt(CodecId::Zstd, &stored, 50_000);
    assert_corrupt(CodecId::Zstd, &stored, 100_001);
    let mut out = Vec::new();
    decode(CodecId::Zstd, &stored, raw.len(), &CpuAccelerator, &mut out).unwrap();
    assert_eq!(out, raw);
}

#[test]
fn zstd_garbage_and_truncation_are_rejected() {
    let raw = text(10_000);
    let stored = encode_only(CodecId::Zstd, &raw);
    assert_corrupt(CodecId::Zstd, &stored[..stored.len() - 1], raw.len());
    assert_corrupt(CodecId::Zstd, &stored[..3], raw.len());
    assert_corrupt(CodecId::Zstd, b"not a zstd frame at all", raw.len());
    assert_corrupt(CodecId::Zstd, &[], 0);
}

#[test]
fn zstd_long_mode_frames_decode() {
    let raw = text(3 << 20);
    let params = EncodeParams {
        choice: CodecChoice::Only(CodecId::Zstd),
        zstd_level: 3,
        zstd_long: true,
    };
    let mut stored = Vec::new();
    assert_eq!(encode(&raw, &params, &mut stored).unwrap(), CodecId::Zstd);
    let mut out = Vec::new();
    decode(CodecId::Zstd, &stored, raw.len(), &CpuAccelerator, &mut out).unwrap();
    assert!(out == raw);
}

#[test]
fn lz4_truncated_or_wrong_length_is_rejected() {
    let raw = text(10_000);
    let stored = encode_only(CodecId::Lz4, &raw);
    assert_corrupt(CodecId::Lz4, &stored[..stored.len() - 1], raw.len());
    assert_corrupt(CodecId::Lz4, &stored[..stored.len() / 2], raw.len());
    assert_corrupt(CodecId::Lz4, &stored, raw.len() - 1);
    assert_corrupt(CodecId::Lz4, &stored, raw.len() + 1);
}

#[test]
fn pattern_with_bad_period_is_rejected() {
    let message = assert_corrupt(CodecId::Pattern, &[0], 100);
    assert_eq!(
        message,
        "corrupt pattern chunk: period length is 0, should be in 1..=251"
    );
    let mut p252 = vec![252u8];
    p252.resize(253, 7);
    assert_corrupt(CodecId::Pattern, &p252, 1000);
    assert_corrupt(CodecId::Pattern, &[3, 1, 2], 100);
    assert_corrupt(CodecId::Pattern, &[], 100);
}

#[test]
fn store_of_wrong_length_is_rejected() {
    let message = assert_corrupt(CodecId::Store, b"abc", 4);
    assert_eq!(
        message,
        "corrupt store chunk: stored 3 bytes, chunk records 4"
    );
}

#[test]
fn incompressible_only_choices_fall_back_to_store() {
    let mut state = 0x853C_49E6_748F_EA9Bu64;
    let raw: Vec<u8> = (0..10_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    for codec in [CodecId::Zstd, CodecId::Lz4, CodecId::Pattern] {
        let params = EncodeParams {
            choice: CodecChoice::Only(codec),
            ..EncodeParams::default()
        };
        let mut stored = Vec::new();
        assert_eq!(
            encode(&raw, &params, &mut stored).unwrap(),
            CodecId::Store,
            "{codec}"
        );
        assert_eq!(stored, raw);
    }
    let mut stored = vec![1, 2, 3];
    assert_eq!(
        encode(&[], &EncodeParams::default(), &mut stored).unwrap(),
        CodecId::Store
    );
    assert!(stored.is_empty());
}

/// Float values as a trained model holds them: most near zero with a few exponents,
/// plus every special value (NaN payloads, infinities, subnormals, -0.0).
fn weights(kind: FloatKind, values: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::new();
    for i in 0..values {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Full-precision mantissas, as trained weights have; a narrow range of exponents.
        let gaussianish = ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32 * 0.1;
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            1e-40,
            f32::from_bits(0x7FC0_1234),
        ];
        let value = if i % 97 == 0 {
            special[i / 97 % special.len()]
        } else {
            gaussianish
        };
        // Crude conversions for the narrower kinds: the bit patterns matter, not the
        // rounding.
        let bits = value.to_bits();
        match kind {
            FloatKind::F64 => out.extend_from_slice(&f64::from(value).to_bits().to_le_bytes()),
            FloatKind::F32 => out.extend_from_slice(&bits.to_le_bytes()),
            FloatKind::Bf16 => out.extend_from_slice(&((bits >> 16) as u16).to_le_bytes()),
            FloatKind::F16 => out.extend_from_slice(&((bits >> 16) as u16 ^ 0x4000).to_le_bytes()),
            FloatKind::F8E4M3 | FloatKind::F8E5M2 => out.push((bits >> 24) as u8 ^ 0x40),
        }
    }
    out
}

proptest! {
    #[test]
    fn tensors_roundtrip_any_length(kind in 0usize..6, values in 0usize..3000, extra in 0usize..8, seed in any::<u64>()) {
        let kind = FloatKind::ALL[kind];
        let mut raw = weights(kind, values, seed);
        raw.extend(std::iter::repeat_n(0xA5, extra));
        let mut stored = Vec::new();
        let codec = encode_tensor(&raw, kind, &EncodeParams::default(), &CpuAccelerator, &mut stored).unwrap();
        prop_assert!(stored.len() <= raw.len());
        let mut back = Vec::new();
        decode(codec, &stored, raw.len(), &CpuAccelerator, &mut back).unwrap();
        prop_assert_eq!(back, raw);
    }
}

#[test]
fn the_tensor_codec_codes_weights_smaller_than_zstd() {
    for kind in FloatKind::ALL {
        let raw = weights(kind, 1 << 16, 7);
        let (mut coded, mut plain) = (Vec::new(), Vec::new());
        assert_eq!(
            encode_tensor(
                &raw,
                kind,
                &EncodeParams::default(),
                &CpuAccelerator,
                &mut coded
            )
            .unwrap(),
            kind.codec()
        );
        let zstd = EncodeParams {
            choice: CodecChoice::Only(CodecId::Zstd),
            ..EncodeParams::default()
        };
        encode(&raw, &zstd, &mut plain).unwrap();
        assert!(
            coded.len() < plain.len(),
            "{kind:?}: tensor codec {} vs zstd {}",
            coded.len(),
            plain.len()
        );
    }
}
