//! Every path that writes data, checked by roundtrips: fold, then unfold by seeking, by
//! streaming, by range, with every codec choice, awkward sizes and any chunking; and the
//! properties of content-defined chunking that dedup relies on, seen through the index.

mod common;

use common::{SMALL_CDC, cdc_lens, chain, chunk_digests, chunk_lens, noise};
use mmh_codecs::{CdcParams, CodecChoice, CodecId, CpuAccelerator, EncodeParams};
use mmh_dir::{
    EntryMeta, FoldOptions, Overwrite, Quiet, WalkOptions, fold_stream, fold_tree, read_range,
    single_file, unfold_entry, unfold_stream, unfold_to_path,
};
use mmh_format::{ChunkSource, Index, Timestamp};
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

fn options(choice: CodecChoice, cdc: CdcParams, frame_size: u32) -> FoldOptions {
    FoldOptions {
        encode: EncodeParams {
            choice,
            ..EncodeParams::default()
        },
        cdc,
        frame_size,
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

/// Any chunking fastcdc accepts, from the smallest up (sizes even, min < avg < max),
/// and a frame size from the largest chunk to a few times it.
fn chunkings() -> impl Strategy<Value = (CdcParams, u32)> {
    (32u32..256, 128u32..1024, 512u32..4096, 0u32..4).prop_map(|(min, avg, max, frames)| {
        let min = 2 * min;
        let avg = (2 * avg).max(min + 2);
        let max = (2 * max).max(avg + 2);
        let cdc = CdcParams {
            min_size: min,
            avg_size: avg,
            max_size: max,
        };
        (cdc, max + frames * max / 2)
    })
}

/// Random bytes, few-symbol bytes, or a repeated short period.
fn contents(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max_len),
        prop::collection::vec(0u8..3, 0..max_len),
        (prop::collection::vec(any::<u8>(), 1..20), 0..max_len).prop_map(|(period, len)| period
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()),
    ]
}

/// Checks the layout every fold of one stream without base has: chunks in content order,
/// cut as one content-defined pass over the whole input, packed greedily into frames of
/// up to `frame_size` bytes, each chunk stored (a stream stores repeats again).
fn assert_stream_layout(index: &Index, data: &[u8], cdc: &CdcParams, frame_size: u32) {
    let lens = chunk_lens(index, "data.bin");
    assert_eq!(
        lens,
        cdc_lens(data, cdc),
        "chunks are not the content-defined cut"
    );
    let chunks = common::file_chunks(index, "data.bin");
    assert!(chunks.iter().enumerate().all(|(i, &c)| c as usize == i));
    let (mut frame, mut at) = (0u32, 0u32);
    let mut frame_lens = Vec::new();
    for (chunk, &len) in index.chunks.iter().zip(&lens) {
        if at + len > frame_size {
            frame_lens.push(at);
            frame += 1;
            at = 0;
        }
        assert_eq!(chunk.source, ChunkSource::Frame { frame, start: at });
        at += len;
    }
    if at > 0 {
        frame_lens.push(at);
    }
    let actual: Vec<u32> = index.frames.iter().map(|f| f.raw_len).collect();
    assert_eq!(actual, frame_lens, "frames are not packed greedily");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fold_then_unfold_by_seek_and_by_stream_is_identity(
        data in contents(12_000),
        choice in choices(),
        (cdc, frame_size) in chunkings(),
    ) {
        let archive_bytes = fold(&data, &options(choice, cdc, frame_size));

        let archive = chain(&archive_bytes);
        assert_stream_layout(archive.index(), &data, &cdc, frame_size);
        let entry = single_file(archive.index()).unwrap();
        prop_assert_eq!(&entry.name, "data.bin");
        prop_assert_eq!(entry.mode, 0o640);
        let mut seek_out = Vec::new();
        unfold_entry(&archive, entry, &mut seek_out, &Quiet).unwrap();
        prop_assert_eq!(&seek_out, &data);
        let report = mmh_verify::verify_archive(&archive, &|_| {}).unwrap();
        prop_assert_eq!(report.content_bytes, data.len() as u64);

        let mut stream_out = Vec::new();
        let summary = unfold_stream(archive_bytes.as_slice(), &mut stream_out, &CpuAccelerator, &Quiet).unwrap();
        prop_assert_eq!(&stream_out, &data);
        prop_assert_eq!(summary.bytes, data.len() as u64);
    }

    #[test]
    fn any_range_reads_the_same_bytes_as_a_slice(
        data in prop::collection::vec(any::<u8>(), 1..6000),
        (cdc, frame_size) in chunkings(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let archive_bytes = fold(&data, &options(CodecChoice::Auto, cdc, frame_size));
        let archive = chain(&archive_bytes);
        let (x, y) = (a.index(data.len() + 1), b.index(data.len() + 1));
        let (start, end) = (x.min(y) as u64, x.max(y) as u64);
        let mut out = Vec::new();
        let n = read_range(&archive, "data.bin", start..end, &mut out).unwrap();
        prop_assert_eq!(n, end - start);
        prop_assert_eq!(&out[..], &data[start as usize..end as usize]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Cuts depend on the content alone: the same bytes give the same chunks whatever
    /// the entry is called and whatever precedes it in a tree (other files change how
    /// chunks are packed into frames, never where they are cut).
    #[test]
    fn chunks_are_a_function_of_content_alone(
        data in prop::collection::vec(any::<u8>(), 0..20_000),
        before in prop::collection::vec(any::<u8>(), 0..3000),
        frame_size in prop_oneof![Just(1024u32), Just(4096), Just(1 << 20)],
    ) {
        let options = options(CodecChoice::Auto, SMALL_CDC, frame_size);
        let (alone, _) = common::fold_bytes(&data, "data.bin", &options);
        let (renamed, _) = common::fold_bytes(&data, "other-name", &options);
        let expected = chunk_digests(chain(&alone).index(), "data.bin");
        prop_assert_eq!(&chunk_digests(chain(&renamed).index(), "other-name"), &expected);
        prop_assert_eq!(chunk_lens(chain(&alone).index(), "data.bin"), cdc_lens(&data, &SMALL_CDC));

        let dir = tempfile::tempdir().unwrap();
        common::write_files(dir.path(), &[("a-first.bin", &before), ("b/data.bin", &data)]);
        let mut tree = Vec::new();
        fold_tree(dir.path(), &WalkOptions::default(), &mut tree, &options, &Quiet).unwrap();
        prop_assert_eq!(&chunk_digests(chain(&tree).index(), "b/data.bin"), &expected);
    }

    /// Inserting bytes at the front moves the cuts only until the content-defined cut
    /// points line up again: nearly every later chunk of the original is found again,
    /// which is what lets a fold against an earlier version store only what changed.
    #[test]
    fn an_insertion_at_the_front_keeps_the_later_chunks(
        seed in any::<u64>(),
        inserted in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let original = noise(128 << 10, seed);
        let mut edited = inserted.clone();
        edited.extend_from_slice(&original);
        let options = options(CodecChoice::Only(CodecId::Store), SMALL_CDC, 1 << 20);
        let before = chunk_digests(chain(&fold(&original, &options)).index(), "data.bin");
        let after: std::collections::HashSet<_> =
            chunk_digests(chain(&fold(&edited, &options)).index(), "data.bin")
                .into_iter()
                .collect();
        // Leave out the first few chunks, which the insertion may legitimately change.
        let later = &before[4..];
        let kept = later.iter().filter(|d| after.contains(*d)).count();
        prop_assert!(
            kept * 100 > later.len() * 80,
            "only {kept} of {} later chunks reappear", later.len()
        );
    }
}

#[test]
fn boundary_sizes_roundtrip() {
    // Around the smallest and largest chunk and the frame size.
    let frame_size = 4096;
    for len in [
        0,
        1,
        63,
        64,
        65,
        1023,
        1024,
        1025,
        2047,
        2048,
        2049,
        4095,
        4096,
        4097,
        10 * 1024,
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        for data in [data, noise(len, 9)] {
            let archive_bytes = fold(&data, &options(CodecChoice::Auto, SMALL_CDC, frame_size));
            let archive = chain(&archive_bytes);
            assert_stream_layout(archive.index(), &data, &SMALL_CDC, frame_size);
            let lens = chunk_lens(archive.index(), "data.bin");
            // No chunk but the last is shorter than min, none longer than max.
            assert!(
                lens.iter().all(|&l| l <= SMALL_CDC.max_size),
                "len {len}: {lens:?}"
            );
            if let Some((_, head)) = lens.split_last() {
                assert!(
                    head.iter().all(|&l| l >= SMALL_CDC.min_size),
                    "len {len}: {lens:?}"
                );
            }
            assert_eq!(lens.is_empty(), len == 0, "len {len}");
            if (1..=SMALL_CDC.min_size as usize).contains(&len) {
                assert_eq!(lens, [len as u32], "a short input is one chunk");
            }
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
}

#[test]
fn out_of_range_reads_name_the_entry_and_size() {
    let archive_bytes = fold(b"0123456789", &options(CodecChoice::Auto, SMALL_CDC, 1024));
    let archive = chain(&archive_bytes);
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
fn ranges_across_chunk_and_frame_boundaries_decode_only_what_they_touch() {
    let data = noise(20_000, 5);
    let archive_bytes = fold(&data, &options(CodecChoice::Auto, SMALL_CDC, 2048));
    let archive = chain(&archive_bytes);
    let lens = chunk_lens(archive.index(), "data.bin");
    assert!(archive.index().frames.len() > 5);
    let mut end = 0u64;
    for len in lens {
        end += u64::from(len);
        for range in [end - 1..end + 1, end.saturating_sub(300)..end + 700] {
            let range = range.start..range.end.min(data.len() as u64);
            let mut out = Vec::new();
            read_range(&archive, "data.bin", range.clone(), &mut out).unwrap();
            assert_eq!(out, data[range.start as usize..range.end as usize]);
        }
    }
}

#[test]
fn unfold_to_path_restores_metadata_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"metadata test ".repeat(1000);
    let archive_bytes = fold(&data, &options(CodecChoice::Auto, SMALL_CDC, 4096));
    let archive = chain(&archive_bytes);
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
    let archive_bytes = fold(&data, &options(CodecChoice::Auto, SMALL_CDC, 1024));
    let archive = chain(&archive_bytes);
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
        &options(CodecChoice::Auto, SMALL_CDC, 1024),
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
    let cdc = CdcParams {
        min_size: 2048,
        avg_size: 8192,
        max_size: 32768,
    };
    let folds: Vec<Vec<u8>> = [1, 2, 4]
        .into_iter()
        .map(|threads| {
            fold(
                &data,
                &FoldOptions {
                    threads: Some(threads),
                    ..options(CodecChoice::Auto, cdc, 65536)
                },
            )
        })
        .collect();
    assert!(chain(&folds[0]).index().frames.len() > 4, "several frames");
    assert_eq!(folds[0], folds[1]);
    assert_eq!(folds[0], folds[2]);
}

#[test]
fn invalid_options_are_refused_with_their_range() {
    let refused = |options: &FoldOptions| {
        fold_stream(&b""[..], meta(), Vec::new(), options, &Quiet)
            .unwrap_err()
            .to_string()
    };
    let odd = CdcParams {
        min_size: 64,
        avg_size: 257,
        max_size: 1024,
    };
    let err = refused(&options(CodecChoice::Auto, odd, 4096));
    assert!(
        err.contains("min=64 avg=257 max=1024: sizes must be even"),
        "{err}"
    );
    let tiny = CdcParams {
        min_size: 0,
        ..SMALL_CDC
    };
    let err = refused(&options(CodecChoice::Auto, tiny, 4096));
    assert!(err.contains("min must be in 64..=1048576"), "{err}");
    let err = refused(&options(CodecChoice::Auto, SMALL_CDC, 1023));
    assert!(
        err.contains("frame size 1023 is outside 1024..=67108864"),
        "{err}"
    );
    let err = refused(&options(CodecChoice::Auto, SMALL_CDC, (64 << 20) + 1));
    assert!(err.contains("frame size 67108865 is outside"), "{err}");
    let err = refused(&FoldOptions {
        threads: Some(0),
        ..FoldOptions::default()
    });
    assert!(err.contains("threads must be at least 1"), "{err}");
    let bad_level = FoldOptions {
        encode: EncodeParams {
            zstd_level: 23,
            ..EncodeParams::default()
        },
        ..FoldOptions::default()
    };
    assert!(fold_stream(&b""[..], meta(), Vec::new(), &bad_level, &Quiet).is_err());
}

#[test]
fn float_tensors_are_coded_as_planes_and_roundtrip() {
    let model = common::safetensors(&common::model_tensors(8, 16 * 1024, 5));
    let (archive, summary) = common::fold_bytes(&model, "m.safetensors", &FoldOptions::default());
    assert!(
        summary
            .frames_by_codec
            .iter()
            .any(|(codec, _)| *codec == mmh_codecs::CodecId::F32),
        "{summary:?}"
    );
    let chain = mmh_dir::Chain::standalone(mmh_format::Archive::open(archive).unwrap()).unwrap();
    let mut out = Vec::new();
    mmh_dir::unfold_entry(
        &chain,
        mmh_dir::single_file(chain.index()).unwrap(),
        &mut out,
        &mmh_dir::Quiet,
    )
    .unwrap();
    assert_eq!(out, model);
}
