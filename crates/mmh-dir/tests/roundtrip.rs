//! Every path that writes data, checked by roundtrips: fold, then unfold by seeking, by
//! streaming, by range, with every codec choice and awkward sizes.

use mmh_codecs::{CodecChoice, CodecId, EncodeParams};
use mmh_dir::{
    EntryMeta, FoldOptions, Overwrite, Quiet, fold_stream, read_range, single_file, unfold_entry,
    unfold_stream, unfold_to_path,
};
use mmh_format::{Archive, Timestamp};
use proptest::prelude::*;

fn meta() -> EntryMeta {
    EntryMeta {
        name: "data.bin".into(),
        mode: 0o640,
        mtime: Timestamp {
            secs: 1_600_000_000,
            nanos: 123_456_789,
        },
    }
}

fn options(choice: CodecChoice, chunk_size: u32) -> FoldOptions {
    FoldOptions {
        encode: EncodeParams {
            choice,
            ..EncodeParams::default()
        },
        chunk_size,
        threads: Some(2),
        ..FoldOptions::default()
    }
}

fn fold(data: &[u8], options: &FoldOptions) -> Vec<u8> {
    let mut archive = Vec::new();
    let summary = fold_stream(data, meta(), &mut archive, options, &Quiet).unwrap();
    assert_eq!(summary.input_bytes, data.len() as u64);
    assert_eq!(summary.archive_bytes, archive.len() as u64);
    archive
}

fn choices() -> impl Strategy<Value = CodecChoice> {
    prop_oneof![
        Just(CodecChoice::Auto),
        Just(CodecChoice::Only(CodecId::Store)),
        Just(CodecChoice::Only(CodecId::Zstd)),
        Just(CodecChoice::Only(CodecId::Lz4)),
        Just(CodecChoice::Only(CodecId::Pattern)),
    ]
}

/// Random bytes, few-symbol bytes, or a repeated short period.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..5000),
        prop::collection::vec(0u8..3, 0..5000),
        (prop::collection::vec(any::<u8>(), 1..20), 0usize..5000).prop_map(|(period, len)| period
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fold_then_unfold_by_seek_and_by_stream_is_identity(
        data in contents(),
        choice in choices(),
        chunk_size in prop_oneof![1u32..64, 64u32..2048, Just(4096)],
    ) {
        let archive_bytes = fold(&data, &options(choice, chunk_size));

        let archive = Archive::open(archive_bytes.as_slice()).unwrap();
        let entry = single_file(archive.index()).unwrap();
        prop_assert_eq!(&entry.name, "data.bin");
        prop_assert_eq!(entry.mode, 0o640);
        let mut seek_out = Vec::new();
        unfold_entry(&archive, entry, &mut seek_out, &Quiet).unwrap();
        prop_assert_eq!(&seek_out, &data);
        let report = mmh_verify::verify_archive(&archive, &|_| {}).unwrap();
        prop_assert_eq!(report.content_bytes, data.len() as u64);

        let mut stream_out = Vec::new();
        let summary = unfold_stream(archive_bytes.as_slice(), &mut stream_out, &Quiet).unwrap();
        prop_assert_eq!(&stream_out, &data);
        prop_assert_eq!(summary.bytes, data.len() as u64);
    }

    #[test]
    fn any_range_reads_the_same_bytes_as_a_slice(
        data in prop::collection::vec(any::<u8>(), 1..3000),
        chunk_size in 1u32..700,
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let archive_bytes = fold(&data, &options(CodecChoice::Auto, chunk_size));
        let archive = Archive::open(archive_bytes.as_slice()).unwrap();
        let (x, y) = (a.index(data.len() + 1), b.index(data.len() + 1));
        let (start, end) = (x.min(y) as u64, x.max(y) as u64);
        let mut out = Vec::new();
        let n = read_range(&archive, "data.bin", start..end, &mut out).unwrap();
        prop_assert_eq!(n, end - start);
        prop_assert_eq!(&out[..], &data[start as usize..end as usize]);
    }
}

#[test]
fn chunk_boundary_sizes_roundtrip() {
    let chunk = 1024u32;
    for len in [0, 1, 1023, 1024, 1025, 2047, 2048, 2049, 10 * 1024] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let archive_bytes = fold(&data, &options(CodecChoice::Auto, chunk));
        let archive = Archive::open(archive_bytes.as_slice()).unwrap();
        let expected_chunks = (len as usize).div_ceil(chunk as usize);
        assert_eq!(archive.index().chunks.len(), expected_chunks, "len {len}");
        let mut out = Vec::new();
        unfold_entry(
            &archive,
            single_file(archive.index()).unwrap(),
            &mut out,
            &Quiet,
        )
        .unwrap();
        assert_eq!(out, data, "len {len}");
    }
}

#[test]
fn out_of_range_reads_name_the_entry_and_size() {
    let archive_bytes = fold(b"0123456789", &options(CodecChoice::Auto, 4));
    let archive = Archive::open(archive_bytes.as_slice()).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        read_range(&archive, "data.bin", 8..100, &mut out).unwrap(),
        2
    );
    assert_eq!(out, b"89");
    let err = read_range(&archive, "data.bin", 11..12, &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "range 11..12 is outside entry \"data.bin\" of 10 bytes"
    );
    let err = read_range(&archive, "nope", 0..1, &mut out).unwrap_err();
    assert_eq!(err.to_string(), "no entry named \"nope\" in the archive");
}

#[test]
fn unfold_to_path_restores_metadata_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"metadata test ".repeat(1000);
    let archive_bytes = fold(&data, &options(CodecChoice::Auto, 4096));
    let archive = Archive::open(archive_bytes.as_slice()).unwrap();
    let entry = single_file(archive.index()).unwrap();
    let dest = dir.path().join("out.bin");
    unfold_to_path(&archive, entry, &dest, Overwrite::Refuse, &Quiet).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let meta = dest.metadata().unwrap();
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o640
    );
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(mtime.as_secs(), 1_600_000_000);

    std::fs::write(&dest, b"keep me").unwrap();
    let err = unfold_to_path(&archive, entry, &dest, Overwrite::Refuse, &Quiet).unwrap_err();
    assert!(matches!(err, mmh_dir::Error::OutputExists { .. }), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"keep me");
    unfold_to_path(&archive, entry, &dest, Overwrite::Replace, &Quiet).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file may be left behind");
}

#[test]
fn a_cancelled_unfold_leaves_no_output() {
    struct CancelAtOnce;
    impl mmh_dir::Observer for CancelAtOnce {
        fn cancelled(&self) -> bool {
            true
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = vec![7u8; 100_000];
    let archive_bytes = fold(&data, &options(CodecChoice::Auto, 1000));
    let archive = Archive::open(archive_bytes.as_slice()).unwrap();
    let dest = dir.path().join("out.bin");
    let err = unfold_to_path(
        &archive,
        single_file(archive.index()).unwrap(),
        &dest,
        Overwrite::Refuse,
        &CancelAtOnce,
    )
    .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let err = fold_stream(
        &data[..],
        meta(),
        Vec::new(),
        &options(CodecChoice::Auto, 1000),
        &CancelAtOnce,
    )
    .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
}

#[test]
fn parallel_fold_is_deterministic_across_thread_counts() {
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 & 0x3F)
        .collect();
    let one = fold(
        &data,
        &FoldOptions {
            threads: Some(1),
            ..options(CodecChoice::Auto, 8192)
        },
    );
    let two = fold(
        &data,
        &FoldOptions {
            threads: Some(2),
            ..options(CodecChoice::Auto, 8192)
        },
    );
    let four = fold(
        &data,
        &FoldOptions {
            threads: Some(4),
            ..options(CodecChoice::Auto, 8192)
        },
    );
    assert_eq!(one, two);
    assert_eq!(one, four);
}

#[test]
fn invalid_options_are_refused_with_their_range() {
    let err = fold_stream(
        &b""[..],
        meta(),
        Vec::new(),
        &options(CodecChoice::Auto, 0),
        &Quiet,
    )
    .unwrap_err();
    assert!(err.to_string().contains("chunk size 0 is outside"), "{err}");
    let bad_level = FoldOptions {
        encode: EncodeParams {
            zstd_level: 23,
            ..EncodeParams::default()
        },
        ..FoldOptions::default()
    };
    assert!(fold_stream(&b""[..], meta(), Vec::new(), &bad_level, &Quiet).is_err());
}
