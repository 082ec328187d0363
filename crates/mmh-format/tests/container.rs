//! Roundtrips, damage, validation and compatibility tests of the container alone.
//!
//! Codec ids are opaque here: the frames these tests write use codec 0 (store), so a
//! frame's stored bytes are its decoded bytes and a chunk's bytes can be sliced out of
//! them directly.

use mmh_format::consts::{
    CODEC_STORE, CODEC_ZSTD, FORMAT_VERSION, FRAME_HEADER_LEN, HEADER_LEN, INDEX_ZSTD_LEVEL,
    MAX_FRAME_RAW_LEN, TRAILER_LEN,
};
use mmh_format::{
    Archive, ArchiveWriter, BaseRef, ChunkRecord, ChunkSource, Digest, Entry, EntryKind, Error,
    FrameHeader, FrameKind, FrameRecord, Header, Index, MAX_DELTA_PLANES, StreamReader, Timestamp,
    Trailer, checksum,
};
use proptest::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

const MTIME: Timestamp = Timestamp {
    secs: 1_700_000_000,
    nanos: 5,
};

fn file(name: &str, content_digest: Digest, size: u64, chunks: Vec<u32>) -> Entry {
    Entry {
        name: name.into(),
        mode: 0o640,
        mtime: MTIME,
        kind: EntryKind::File {
            size,
            digest: content_digest,
            chunks,
        },
    }
}

fn frame_chunk(piece: &[u8], frame: u32, start: u32) -> ChunkRecord {
    ChunkRecord {
        raw_len: piece.len() as u32,
        digest: sha256(piece),
        source: ChunkSource::Frame { frame, start },
    }
}

/// Builds an archive of one file, `data.bin`: each item of `frames` is one frame (codec
/// 0) holding its chunks side by side, and the file is every chunk in order.
fn build_packed(frames: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new()).unwrap();
    let mut chunks = Vec::new();
    for pieces in frames {
        let raw = pieces.concat();
        let frame = writer.push_frame(0, raw.len() as u32, &raw).unwrap();
        let mut start = 0;
        for piece in pieces {
            chunks.push(frame_chunk(piece, frame, start));
            start += piece.len() as u32;
        }
    }
    let content = frames.concat().concat();
    let all = (0..chunks.len() as u32).collect();
    let entry = file("data.bin", sha256(&content), content.len() as u64, all);
    let (bytes, len) = writer
        .finish(chunks, vec![entry], Vec::new(), [0xCD; 32])
        .unwrap();
    assert_eq!(len, bytes.len() as u64);
    bytes
}

/// Builds an archive of one file whose chunks are `chunks`, one frame each (v1's layout).
fn build(chunks: &[Vec<u8>]) -> Vec<u8> {
    let frames: Vec<Vec<Vec<u8>>> = chunks.iter().map(|c| vec![c.clone()]).collect();
    build_packed(&frames)
}

/// Builds an archive that uses every part of the v2 index: a frame holding three
/// chunks, a frame holding one, a chunk taken whole from a base, a delta against a base,
/// and every kind of entry.
fn build_rich() -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new()).unwrap();
    let packed = writer
        .push_frame(0, 24, b"small filesshare a frame")
        .unwrap();
    let alone = writer.push_frame(0, 8, b"tensor!!").unwrap();
    let chunks = vec![
        frame_chunk(b"small ", packed, 0),
        frame_chunk(b"files", packed, 6),
        frame_chunk(b"share a frame", packed, 11),
        frame_chunk(b"tensor!!", alone, 0),
        ChunkRecord {
            raw_len: 4,
            digest: [0x44; 32],
            source: ChunkSource::Base { base: 0, chunk: 9 },
        },
        ChunkRecord {
            raw_len: 8,
            digest: [0x55; 32],
            source: ChunkSource::Delta {
                frame: alone,
                start: 0,
                base: 1,
                chunk: 300,
                planes: 1,
            },
        },
    ];
    let entries = vec![
        Entry {
            name: "dir".into(),
            mode: 0o755,
            mtime: MTIME,
            kind: EntryKind::Directory,
        },
        file("dir/a", [1; 32], 6, vec![0]),
        file("dir/b", [2; 32], 18, vec![1, 2]),
        file("model.bin", [3; 32], 20, vec![3, 4, 5]),
        Entry {
            name: "dir/link".into(),
            mode: 0o777,
            mtime: MTIME,
            kind: EntryKind::Symlink { target: "a".into() },
        },
        Entry {
            name: "again.bin".into(),
            mode: 0o640,
            mtime: MTIME,
            kind: EntryKind::HardLink {
                target: "model.bin".into(),
            },
        },
    ];
    let bases = vec![
        BaseRef {
            index_digest: [0xB0; 32],
            name: "base-0.mmh".into(),
        },
        BaseRef {
            index_digest: [0xB1; 32],
            name: "base-1.mmh".into(),
        },
    ];
    let (bytes, _) = writer.finish(chunks, entries, bases, [0xEE; 32]).unwrap();
    bytes
}

/// Reads every frame of an archive by seeking; returns the frames' stored bytes and the
/// index.
fn read_seeking(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, Index), Error> {
    let archive = Archive::open(bytes)?;
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    for number in 0..archive.index().frames.len() as u32 {
        frames.push(archive.read_frame(number, &mut buf)?.to_vec());
    }
    Ok((frames, archive.index().clone()))
}

/// Reads an archive front to back as from a pipe.
fn read_streaming(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, Index), Error> {
    let mut reader = StreamReader::new(bytes)?;
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    while reader.next_frame(&mut buf)?.is_some() {
        frames.push(buf.clone());
    }
    Ok((
        frames,
        reader.into_index().expect("index after the last frame"),
    ))
}

/// The bytes of chunk `number` when it lies in a frame of the archive (`None` for a
/// base's chunk, which the container cannot resolve).
fn chunk_bytes<'a>(index: &Index, frames: &'a [Vec<u8>], number: u32) -> Option<&'a [u8]> {
    let chunk = &index.chunks[number as usize];
    match chunk.source {
        ChunkSource::Frame { frame, start } => {
            let start = start as usize;
            Some(&frames[frame as usize][start..start + chunk.raw_len as usize])
        }
        ChunkSource::Base { .. } | ChunkSource::Delta { .. } => None,
    }
}

/// Where the index frame starts.
fn index_offset(bytes: &[u8]) -> usize {
    let at = bytes.len() - TRAILER_LEN;
    let trailer = Trailer::parse(bytes[at..].try_into().unwrap(), at as u64).unwrap();
    trailer.index_offset as usize
}

/// Appends an index frame holding `index` and a correct trailer to `prefix` (a header
/// and data frames), so that any bytes reach `Index::from_bytes`.
fn reframe(prefix: &[u8], index: &[u8]) -> Vec<u8> {
    reframe_coded(prefix, CODEC_STORE, index.len() as u32, index)
}

/// Appends an index frame of codec `codec` declaring `raw_len`, holding the stored bytes
/// `stored`, and a trailer that is correct for them (their length and SHA-256), to
/// `prefix`. The frame header is built field by field, so that it may break the rules.
fn reframe_coded(prefix: &[u8], codec: u8, raw_len: u32, stored: &[u8]) -> Vec<u8> {
    let mut bytes = prefix.to_vec();
    let index_offset = bytes.len() as u64;
    let header = FrameHeader {
        kind: FrameKind::Index,
        codec,
        raw_len,
        stored_len: stored.len() as u32,
        checksum: checksum(stored),
    };
    bytes.extend(header.to_bytes());
    bytes.extend(stored);
    let trailer = Trailer {
        index_offset,
        index_len: stored.len() as u64,
        index_digest: sha256(stored),
    };
    bytes.extend(trailer.to_bytes());
    bytes
}

/// Assembles an archive by hand: a header of `version`, data frames given as (codec,
/// raw_len, stored bytes), then `index` in an index frame and a trailer.
fn assemble(version: u16, frames: &[(u8, u32, &[u8])], index: &[u8]) -> Vec<u8> {
    let mut bytes = Header { version }.to_bytes().to_vec();
    for &(codec, raw_len, stored) in frames {
        let header = FrameHeader::new(FrameKind::Data, codec, raw_len, stored).unwrap();
        bytes.extend(header.to_bytes());
        bytes.extend(stored);
    }
    reframe(&bytes, index)
}

/// Opens `bytes` with both readers and reads everything they offer; on success, checks
/// the promises validation makes. Must never panic, whatever the bytes.
fn open_everything(bytes: &[u8]) {
    if let Ok(archive) = Archive::open(bytes) {
        let index = archive.index();
        for chunk in &index.chunks {
            let (frame, start, base) = match chunk.source {
                ChunkSource::Frame { frame, start } => (Some(frame), start, None),
                ChunkSource::Base { base, .. } => (None, 0, Some(base)),
                ChunkSource::Delta {
                    frame, start, base, ..
                } => (Some(frame), start, Some(base)),
            };
            if let Some(frame) = frame {
                let frame = &index.frames[frame as usize];
                assert!(u64::from(start) + u64::from(chunk.raw_len) <= u64::from(frame.raw_len));
            }
            if let Some(base) = base {
                assert!(usize::from(base) < index.bases.len());
            }
        }
        for entry in &index.entries {
            if let EntryKind::File { size, chunks, .. } = &entry.kind {
                let total: u64 = chunks
                    .iter()
                    .map(|&c| u64::from(index.chunks[c as usize].raw_len))
                    .sum();
                assert_eq!(total, *size);
            }
        }
        let mut buf = Vec::new();
        for number in 0..index.frames.len() as u32 {
            if let Err(e) = archive.read_frame(number, &mut buf) {
                assert!(e.is_integrity(), "{e}");
            }
        }
    }
    let mut buf = Vec::new();
    if let Ok(mut reader) = StreamReader::new(bytes) {
        loop {
            match reader.next_frame(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert!(e.is_integrity(), "{e}");
                    break;
                }
            }
        }
    }
}

/// The file `data.bin` of an archive built by [`build_packed`], reassembled from its
/// chunks, each checked against its digest.
fn reassemble(index: &Index, frames: &[Vec<u8>]) -> Vec<u8> {
    let EntryKind::File { chunks, .. } = &index.entries[0].kind else {
        panic!("not a file: {:?}", index.entries[0]);
    };
    let mut content = Vec::new();
    for &number in chunks {
        let bytes = chunk_bytes(index, frames, number).unwrap();
        assert_eq!(sha256(bytes), index.chunks[number as usize].digest);
        content.extend(bytes);
    }
    content
}

proptest! {
    #[test]
    fn seeking_and_streaming_readers_return_what_was_written(
        frames in prop::collection::vec(
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..5),
            0..8,
        )
    ) {
        let bytes = build_packed(&frames);
        let (seek_frames, seek_index) = read_seeking(&bytes).unwrap();
        let (stream_frames, stream_index) = read_streaming(&bytes).unwrap();
        let written: Vec<Vec<u8>> = frames.iter().map(|pieces| pieces.concat()).collect();
        prop_assert_eq!(&seek_frames, &written);
        prop_assert_eq!(&stream_frames, &written);
        prop_assert_eq!(&seek_index, &stream_index);
        prop_assert_eq!(seek_index.frames.len(), frames.len());
        prop_assert_eq!(seek_index.chunks.len(), frames.iter().map(Vec::len).sum::<usize>());
        prop_assert_eq!(reassemble(&seek_index, &seek_frames), frames.concat().concat());
        prop_assert_eq!(seek_index.merkle_root, [0xCD; 32]);
        prop_assert_eq!(seek_index.entries[0].mtime, MTIME);
        prop_assert!(seek_index.bases.is_empty());
    }

    #[test]
    fn random_bytes_never_panic_a_reader(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(read_seeking(&bytes).is_err());
        prop_assert!(read_streaming(&bytes).is_err());
    }

    /// Random index bytes with a correct index frame and trailer, so that they reach
    /// `Index::from_bytes`, under either version's header.
    #[test]
    fn random_index_bytes_never_panic_a_reader(
        version in 1u16..=2,
        index in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let rich = build_rich();
        let mut prefix = rich[..index_offset(&rich)].to_vec();
        prefix[8] = version as u8;
        open_everything(&reframe(&prefix, &index));
    }

    /// A valid v2 index with bytes replaced, inserted or cut, re-framed with a correct
    /// trailer digest.
    #[test]
    fn mutated_indexes_never_panic_a_reader(
        replacements in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        insertion in proptest::option::of((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..12))),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let rich = build_rich();
        let at = index_offset(&rich);
        let mut index = rich[at + FRAME_HEADER_LEN..rich.len() - TRAILER_LEN].to_vec();
        for (position, byte) in replacements {
            *position.get_mut(&mut index) = byte;
        }
        if let Some((position, bytes)) = insertion {
            let position = position.index(index.len() + 1);
            index.splice(position..position, bytes);
        }
        if let Some(cut) = cut {
            index.truncate(cut.index(index.len() + 1));
        }
        open_everything(&reframe(&rich[..at], &index));
    }

    /// A valid index with one field set to an arbitrary value, re-serialized: reaches
    /// every check of `Index::validate` more often than byte mutations do.
    #[test]
    fn indexes_with_arbitrary_fields_never_panic_a_reader(
        field in 0usize..9,
        which in any::<prop::sample::Index>(),
        // Offsets stay below 2^63: the top of the u64 range is the subject of
        // `a_frame_offset_at_the_top_of_u64_is_rejected_without_overflow`.
        offset in prop_oneof![0u64..400, any::<u64>().prop_map(|x| x >> 1)],
        small in prop_oneof![0u32..64, any::<u32>()],
        base in any::<u16>(),
    ) {
        let rich = build_rich();
        let at = index_offset(&rich);
        let mut index = Archive::open(rich.as_slice()).unwrap().index().clone();
        let frame = which.get_mut(&mut index.frames);
        match field {
            0 => frame.offset = offset,
            1 => frame.raw_len = small,
            2 => frame.stored_len = small,
            _ => {}
        }
        let chunk = which.get_mut(&mut index.chunks);
        match (field, &mut chunk.source) {
            (3, _) => chunk.raw_len = small,
            (4, ChunkSource::Frame { frame, .. } | ChunkSource::Delta { frame, .. }) => *frame = small,
            (5, ChunkSource::Frame { start, .. } | ChunkSource::Delta { start, .. }) => *start = small,
            (6, ChunkSource::Base { base: b, .. } | ChunkSource::Delta { base: b, .. }) => *b = base,
            (7, source) => *source = ChunkSource::Base { base, chunk: small },
            (8, _) => index.bases.truncate(usize::from(base) % 3),
            _ => {}
        }
        open_everything(&reframe(&rich[..at], &index.to_bytes()));
    }
}

#[test]
fn every_single_bit_flip_is_detected_by_both_readers() {
    for bytes in [
        build(&[b"first chunk".to_vec(), Vec::new(), b"third".repeat(9)]),
        build_rich(),
    ] {
        for at in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut damaged = bytes.clone();
                damaged[at] ^= bit;
                let seek = read_seeking(&damaged);
                let stream = read_streaming(&damaged);
                assert!(
                    seek.is_err(),
                    "flip {bit:#x} at {at} passed the seeking reader"
                );
                assert!(
                    stream.is_err(),
                    "flip {bit:#x} at {at} passed the stream reader"
                );
                assert!(seek.unwrap_err().is_integrity());
                assert!(stream.unwrap_err().is_integrity());
            }
        }
    }
}

#[test]
fn every_truncation_is_a_truncation_or_malformed_error() {
    for bytes in [build(&[vec![1; 100], vec![2; 50]]), build_rich()] {
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            let seek = read_seeking(cut).expect_err("truncated archive accepted by seeking reader");
            let stream =
                read_streaming(cut).expect_err("truncated archive accepted by stream reader");
            assert!(
                seek.is_integrity() && stream.is_integrity(),
                "at {len}: {seek} / {stream}"
            );
            assert!(
                matches!(stream, Error::Truncated { .. }),
                "a pipe cut at {len} should read as truncated, got: {stream}"
            );
        }
    }
}

#[test]
fn bytes_after_the_trailer_are_rejected_by_the_stream_reader() {
    let mut bytes = build(&[b"x".to_vec()]);
    bytes.push(0);
    let err = read_streaming(&bytes).unwrap_err();
    assert!(
        err.to_string().contains("bytes follow the trailer"),
        "{err}"
    );
}

#[test]
fn a_new_archive_is_version_2_and_its_index_digest_is_in_the_trailer() {
    assert_eq!(FORMAT_VERSION, 2);
    let bytes = build_rich();
    assert_eq!(bytes[8..10], [2, 0]);
    let archive = Archive::open(bytes.as_slice()).unwrap();
    assert_eq!(archive.header(), Header { version: 2 });
    let at = index_offset(&bytes);
    let stored = &bytes[at + FRAME_HEADER_LEN..bytes.len() - TRAILER_LEN];
    // The trailer's digest covers the index frame's stored bytes, compressed or not.
    assert_eq!(archive.index_digest(), sha256(stored));
    let header = FrameHeader::parse(
        bytes[at..at + FRAME_HEADER_LEN].try_into().unwrap(),
        at as u64,
    )
    .unwrap();
    let index_bytes = match header.codec {
        0 => stored.to_vec(),
        1 => zstd::bulk::decompress(stored, header.raw_len as usize).unwrap(),
        codec => panic!("index codec {codec}"),
    };
    assert_eq!(archive.index().to_bytes(), index_bytes);
}

#[test]
fn a_large_index_is_compressed_and_a_lying_raw_length_is_refused() {
    let bytes = build_rich();
    let at = index_offset(&bytes);
    let header = FrameHeader::parse(
        bytes[at..at + FRAME_HEADER_LEN].try_into().unwrap(),
        at as u64,
    )
    .unwrap();
    assert_eq!(header.codec, 1, "the rich archive's index compresses");
    assert!(header.stored_len < header.raw_len);
    // Declare one byte more than the index decompresses to, with a valid checksum: the
    // readers must refuse it rather than trust the declared length.
    let mut lying = bytes.clone();
    let mut forged = header;
    forged.raw_len += 1;
    lying[at..at + FRAME_HEADER_LEN].copy_from_slice(&forged.to_bytes());
    for err in [
        read_seeking(&lying).unwrap_err(),
        read_streaming(&lying).unwrap_err(),
    ] {
        assert!(err.to_string().contains("decompresses to"), "{err}");
    }
}

#[test]
fn a_future_version_is_named_in_the_error() {
    let mut bytes = build(&[]);
    bytes[8] = 3;
    for err in [
        read_seeking(&bytes).unwrap_err(),
        read_streaming(&bytes).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    found: 3,
                    supported: 2
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "unsupported format version 3 (this build reads versions 1..=2)"
        );
    }
}

#[test]
fn only_versions_1_and_2_are_read() {
    let mut header = Header { version: 0 }.to_bytes();
    for version in 0..=u16::MAX {
        header[8..10].copy_from_slice(&version.to_le_bytes());
        match Header::parse(&header) {
            Ok(parsed) => assert!(
                parsed.version == version && (version == 1 || version == 2),
                "version {version} accepted"
            ),
            Err(Error::UnsupportedVersion { found, supported }) => {
                assert_eq!((found, supported), (version, 2));
                assert!(version == 0 || version > 2, "version {version} refused");
            }
            Err(e) => panic!("version {version}: {e}"),
        }
    }
}

#[test]
fn wrong_magic_is_shown_with_the_expected_bytes() {
    let mut bytes = build(&[]);
    bytes[..4].copy_from_slice(b"PK\x03\x04");
    let err = read_streaming(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("bad magic in file header at byte offset 0"),
        "{err}"
    );
}

#[test]
fn absurd_declared_sizes_are_refused_before_allocating() {
    let over = FrameHeader {
        kind: FrameKind::Data,
        codec: 0,
        raw_len: MAX_FRAME_RAW_LEN + 1,
        stored_len: 1,
        checksum: 0,
    };
    let mut bytes = build(&[]);
    assert_eq!(index_offset(&bytes), HEADER_LEN);
    // A stream that declares a 64 MiB + 1 frame where the index should be.
    bytes.splice(HEADER_LEN..HEADER_LEN, over.to_bytes());
    let err = read_streaming(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { declared, .. } if declared == u64::from(MAX_FRAME_RAW_LEN) + 1),
        "{err}"
    );

    // A trailer that claims an index of 2^40 bytes.
    let mut bytes = build(&[]);
    let trailer_at = bytes.len() - TRAILER_LEN;
    bytes[trailer_at + 8..trailer_at + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let err = read_seeking(&bytes).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
}

#[test]
fn reading_a_frame_that_is_not_listed_is_an_error() {
    let bytes = build(&[b"one".to_vec(), b"two".to_vec()]);
    let archive = Archive::open(bytes.as_slice()).unwrap();
    let mut buf = Vec::new();
    assert_eq!(archive.read_frame(1, &mut buf).unwrap(), b"two");
    let err = archive.read_frame(2, &mut buf).unwrap_err();
    assert!(err.to_string().contains("no frame 2"), "{err}");
}

#[test]
fn an_index_that_points_past_its_chunks_is_refused_by_the_writer() {
    let mut writer = ArchiveWriter::new(Vec::new()).unwrap();
    let frame = writer.push_frame(0, 3, b"abc").unwrap();
    let entry = file("x", [0; 32], 3, vec![0, 1]);
    let chunks = vec![frame_chunk(b"abc", frame, 0)];
    let err = writer
        .finish(chunks, vec![entry], Vec::new(), [0; 32])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("refers to chunk 1, but there are 1"),
        "{err}"
    );
}

#[test]
fn a_chunk_past_its_frame_is_refused_by_the_writer() {
    let mut writer = ArchiveWriter::new(Vec::new()).unwrap();
    let frame = writer.push_frame(0, 3, b"abc").unwrap();
    let chunks = vec![frame_chunk(b"abc", frame, 1)];
    let entry = file("x", [0; 32], 3, vec![0]);
    let err = writer
        .finish(chunks, vec![entry], Vec::new(), [0; 32])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid index: chunk 0 (bytes 1..4) runs past the end of frame 0 (3 bytes)"
    );
}

#[test]
fn base_and_delta_chunks_roundtrip_through_both_readers() {
    let bytes = build_rich();
    let (seek_frames, seek_index) = read_seeking(&bytes).unwrap();
    let (stream_frames, stream_index) = read_streaming(&bytes).unwrap();
    assert_eq!(seek_index, stream_index);
    assert_eq!(seek_frames, stream_frames);
    assert_eq!(
        seek_frames,
        [b"small filesshare a frame".to_vec(), b"tensor!!".to_vec()]
    );
    let chunks: Vec<Option<&[u8]>> = (0..seek_index.chunks.len() as u32)
        .map(|n| chunk_bytes(&seek_index, &seek_frames, n))
        .collect();
    let expected: [Option<&[u8]>; 6] = [
        Some(b"small "),
        Some(b"files"),
        Some(b"share a frame"),
        Some(b"tensor!!"),
        None,
        None,
    ];
    assert_eq!(chunks, expected);
    assert_eq!(
        seek_index.chunks[5].source,
        ChunkSource::Delta {
            frame: 1,
            start: 0,
            base: 1,
            chunk: 300,
            planes: 1,
        }
    );
    assert_eq!(seek_index.bases.len(), 2);
    assert_eq!(seek_index.bases[1].name, "base-1.mmh");
    assert_eq!(seek_index.bases[1].index_digest, [0xB1; 32]);
}

/// The worked example of FORMAT.md §4.2: a v2 index, byte by byte.
#[test]
fn the_v2_index_encodes_as_documented() {
    let index = Index {
        frames: vec![FrameRecord {
            offset: 16,
            raw_len: 1024,
            stored_len: 2,
            codec: 3,
        }],
        chunks: vec![
            ChunkRecord {
                raw_len: 5,
                digest: [0x11; 32],
                source: ChunkSource::Frame {
                    frame: 0,
                    start: 300,
                },
            },
            ChunkRecord {
                raw_len: 1024,
                digest: [0x22; 32],
                source: ChunkSource::Base { base: 1, chunk: 2 },
            },
            ChunkRecord {
                raw_len: 0,
                digest: [0x33; 32],
                source: ChunkSource::Delta {
                    frame: 0,
                    start: 0,
                    base: 0,
                    chunk: 128,
                    planes: 2,
                },
            },
        ],
        entries: vec![
            // One chunk whose digest is the file's: the digest is left out.
            Entry {
                name: "a".into(),
                mode: 0o644,
                mtime: Timestamp { secs: 1, nanos: 0 },
                kind: EntryKind::File {
                    size: 5,
                    digest: [0x11; 32],
                    chunks: vec![0],
                },
            },
            // Two chunks: the digest is written.
            Entry {
                name: "b".into(),
                mode: 0o755,
                mtime: Timestamp {
                    secs: -2,
                    nanos: 500,
                },
                kind: EntryKind::File {
                    size: 1029,
                    digest: [0x77; 32],
                    chunks: vec![0, 1],
                },
            },
        ],
        bases: vec![
            BaseRef {
                index_digest: [0x44; 32],
                name: "b.mmh".into(),
            },
            BaseRef {
                index_digest: [0x55; 32],
                name: String::new(),
            },
        ],
        merkle_root: [0x66; 32],
    };
    let mut expected = vec![];
    // frames: 1 record; offset 16, raw_len 1024, stored_len 2, codec 3.
    expected.extend([0x01, 0x10, 0x80, 0x08, 0x02, 0x03]);
    // chunks: 3 records.
    expected.push(0x03);
    // raw_len 5, digest, Frame (0) { frame 0, start 300 }.
    expected.push(0x05);
    expected.extend([0x11; 32]);
    expected.extend([0x00, 0x00, 0xac, 0x02]);
    // raw_len 1024, digest, Base (1) { base 1, chunk 2 }.
    expected.extend([0x80, 0x08]);
    expected.extend([0x22; 32]);
    expected.extend([0x01, 0x01, 0x02]);
    // raw_len 0, digest, Delta (2) { frame 0, start 0, base 0, chunk 128, planes 2 }.
    expected.push(0x00);
    expected.extend([0x33; 32]);
    expected.extend([0x02, 0x00, 0x00, 0x00, 0x80, 0x01, 0x02]);
    // entries: 2 records.
    expected.push(0x02);
    // name "a", mode 0o644 (420), mtime { secs 1 (zigzag 2), nanos 0 }.
    expected.extend([0x01, b'a', 0xa4, 0x03, 0x02, 0x00]);
    // File (0) { size 5, digest None (0), chunks: 1 number, 0 }.
    expected.extend([0x00, 0x05, 0x00, 0x01, 0x00]);
    // name "b", mode 0o755 (493), mtime { secs -2 (zigzag 3), nanos 500 }.
    expected.extend([0x01, b'b', 0xed, 0x03, 0x03, 0xf4, 0x03]);
    // File (0) { size 1029, digest Some (1) and 32 bytes, chunks: 2 numbers, 0, 1 }.
    expected.extend([0x00, 0x85, 0x08, 0x01]);
    expected.extend([0x77; 32]);
    expected.extend([0x02, 0x00, 0x01]);
    // bases: 2 records; index_digest, name "b.mmh"; index_digest, name "".
    expected.push(0x02);
    expected.extend([0x44; 32]);
    expected.push(0x05);
    expected.extend(b"b.mmh");
    expected.extend([0x55; 32]);
    expected.push(0x00);
    // merkle_root.
    expected.extend([0x66; 32]);
    assert_eq!(expected.len(), 283);
    assert_eq!(index.to_bytes(), expected);
    assert_eq!(Index::from_bytes(&expected, 2, 42).unwrap(), index);
}

/// The index frame of an archive: its header, its stored bytes and the trailer.
fn index_frame(bytes: &[u8]) -> (FrameHeader, &[u8], Trailer) {
    let at = index_offset(bytes);
    let trailer_at = bytes.len() - TRAILER_LEN;
    let header = FrameHeader::parse(
        bytes[at..at + FRAME_HEADER_LEN].try_into().unwrap(),
        at as u64,
    )
    .unwrap();
    let trailer =
        Trailer::parse(bytes[trailer_at..].try_into().unwrap(), trailer_at as u64).unwrap();
    (header, &bytes[at + FRAME_HEADER_LEN..trailer_at], trailer)
}

/// FORMAT.md §4.1, §5, §8: a compressed index frame's trailer gives the length and the
/// SHA-256 of its stored (compressed) bytes, not of the serialized index.
#[test]
fn a_compressed_index_is_identified_by_its_stored_bytes() {
    let bytes = build_rich();
    let archive = Archive::open(bytes.as_slice()).unwrap();
    let (header, stored, trailer) = index_frame(&bytes);
    let raw = archive.index().to_bytes();
    assert_eq!(header.codec, CODEC_ZSTD);
    assert_eq!(header.raw_len as usize, raw.len());
    assert_eq!(header.stored_len as usize, stored.len());
    assert!(stored.len() < raw.len());
    assert_eq!(zstd::bulk::decompress(stored, raw.len()).unwrap(), raw);
    assert_eq!(
        stored,
        zstd::bulk::compress(&raw, INDEX_ZSTD_LEVEL).unwrap()
    );
    assert_eq!(trailer.index_len, stored.len() as u64);
    assert_eq!(trailer.index_digest, sha256(stored));
    assert_eq!(archive.index_digest(), sha256(stored));
    assert_ne!(archive.index_digest(), sha256(&raw));

    // A trailer holding the SHA-256 of the serialized (decompressed) index is refused,
    // before anything is decompressed.
    let mut wrong = bytes.clone();
    let trailer_at = wrong.len() - TRAILER_LEN;
    let forged = Trailer {
        index_digest: sha256(&raw),
        ..trailer
    };
    wrong[trailer_at..].copy_from_slice(&forged.to_bytes());
    for err in [
        read_seeking(&wrong).unwrap_err(),
        read_streaming(&wrong).unwrap_err(),
    ] {
        assert!(matches!(err, Error::IndexDigest { .. }), "{err}");
    }

    // An index that zstd would not shrink is stored: then the stored bytes are the
    // serialized index, as in v1. (No chunks, no entries, a Merkle root that does not
    // compress: 36 bytes.)
    let writer = ArchiveWriter::new(Vec::new()).unwrap();
    let (bytes, _) = writer
        .finish(vec![], vec![], vec![], sha256(b"no chunks"))
        .unwrap();
    let archive = Archive::open(bytes.as_slice()).unwrap();
    let (header, stored, trailer) = index_frame(&bytes);
    assert_eq!(header.codec, CODEC_STORE);
    assert_eq!((header.raw_len, header.stored_len), (36, 36));
    assert_eq!(stored, archive.index().to_bytes());
    assert_eq!(trailer.index_len, 36);
    assert_eq!(trailer.index_digest, sha256(stored));
}

/// FORMAT.md §3, §4.1: the index frame is stored (codec 0) in v1, and stored or zstd
/// (codec 1) in v2; any other codec is refused, naming it, as is a stored frame whose
/// lengths differ or a zstd frame that does not decode to its declared length.
#[test]
fn the_index_frame_may_use_only_the_codecs_of_its_version() {
    let refused = |bytes: &[u8], reason: &str| {
        for err in [
            read_seeking(bytes).unwrap_err(),
            read_streaming(bytes).unwrap_err(),
        ] {
            assert!(matches!(err, Error::Malformed { .. }), "{err}");
            assert!(err.to_string().contains(reason), "{err}");
        }
    };

    // v2: codec 1 is read, whatever its level; codecs 2 and up are refused.
    let index = hand_built();
    let raw = index.to_bytes();
    let prefix = &hand_built_archive(&index)[..HAND_BUILT_INDEX_AT as usize];
    let compressed = zstd::bulk::compress(&raw, 1).unwrap();
    let zstd_v2 = reframe_coded(prefix, CODEC_ZSTD, raw.len() as u32, &compressed);
    assert_eq!(read_seeking(&zstd_v2).unwrap().1, index);
    assert_eq!(read_streaming(&zstd_v2).unwrap().1, index);
    for codec in [2, 3, 255] {
        let bytes = reframe_coded(prefix, codec, raw.len() as u32, &compressed);
        refused(
            &bytes,
            &format!(
                "malformed index frame at byte offset {HAND_BUILT_INDEX_AT}: codec {codec} is not one an index may use in version 2"
            ),
        );
    }

    // v1: only codec 0. The same v1 index, zstd-compressed, is refused.
    let v1 = V1Index {
        chunks: vec![V1ChunkRecord {
            offset: 16,
            raw_len: 5,
            stored_len: 5,
            codec: 0,
            digest: sha256(b"hello"),
        }],
        entries: vec![file("hello", sha256(b"hello"), 5, vec![0])],
        merkle_root: [0x77; 32],
    };
    let v1_bytes = postcard::to_stdvec(&v1).unwrap();
    let stored_v1 = assemble(1, &[(0, 5, b"hello")], &v1_bytes);
    read_seeking(&stored_v1).unwrap();
    read_streaming(&stored_v1).unwrap();
    let v1_prefix = &stored_v1[..index_offset(&stored_v1)];
    let compressed = zstd::bulk::compress(&v1_bytes, INDEX_ZSTD_LEVEL).unwrap();
    let zstd_v1 = reframe_coded(v1_prefix, CODEC_ZSTD, v1_bytes.len() as u32, &compressed);
    refused(&zstd_v1, "codec 1 is not one an index may use in version 1");

    // A stored index frame must declare its stored length as its raw length.
    let bytes = reframe_coded(prefix, CODEC_STORE, raw.len() as u32 + 1, &raw);
    refused(
        &bytes,
        "a stored index frame must have equal stored and raw lengths",
    );

    // A zstd index must decode, to exactly its declared length (more or fewer bytes).
    let garbage = vec![0x5A; 40];
    refused(
        &reframe_coded(prefix, CODEC_ZSTD, 100, &garbage),
        "its zstd data does not decode",
    );
    let compressed = zstd::bulk::compress(&raw, INDEX_ZSTD_LEVEL).unwrap();
    let n = raw.len() as u32;
    refused(
        &reframe_coded(prefix, CODEC_ZSTD, n - 1, &compressed),
        &format!("decompresses to {n} bytes, its header declares {}", n - 1),
    );
    refused(
        &reframe_coded(prefix, CODEC_ZSTD, n + 1, &compressed),
        &format!("decompresses to {n} bytes, its header declares {}", n + 1),
    );
}

/// The bases and Merkle root of [`hand_built`] as serialized: what follows the last entry.
fn hand_built_tail() -> Vec<u8> {
    let mut tail = vec![0x01];
    tail.extend([0xBA; 32]);
    tail.push(0x08);
    tail.extend(b"base.mmh");
    tail.extend([0xCD; 32]);
    tail
}

/// [`hand_built`] with `entry` appended, and its serialization, which ends with the
/// entry's kind then [`hand_built_tail`].
fn with_entry(entry: Entry) -> (Index, Vec<u8>) {
    let mut index = hand_built();
    index.entries.push(entry);
    let bytes = index.to_bytes();
    assert!(bytes.ends_with(&hand_built_tail()));
    (index, bytes)
}

/// The serialized kind of the entry that [`with_entry`] appended, as it lies just
/// before [`hand_built_tail`]: `len` bytes.
fn appended_kind(bytes: &[u8], len: usize) -> &[u8] {
    let end = bytes.len() - hand_built_tail().len();
    &bytes[end - len..end]
}

/// FORMAT.md §4.2: a v2 `File` entry leaves out its digest (`None`, one byte 0) exactly
/// when it is one chunk whose digest is the file's; otherwise it writes `Some` (1, then
/// 32 bytes). Either way the index decodes to the same entry.
#[test]
fn a_file_leaves_out_its_digest_only_when_it_is_its_one_chunks() {
    let [_, f1] = hand_built_frames();
    let one = sha256(&f1);
    let nine = [9; 32];
    let empty = sha256(b"");
    let cases: [(Entry, Vec<u8>); 4] = [
        // Chunk 2 holds exactly the file: File (0), size 10, None, 1 chunk: 2.
        (
            file("one", one, 10, vec![2]),
            vec![0x00, 0x0a, 0x00, 0x01, 0x02],
        ),
        // One chunk, but another digest (an index no fold writes): kept.
        (
            file("other", nine, 10, vec![2]),
            [&[0x00, 0x0a, 0x01][..], &nine, &[0x01, 0x02]].concat(),
        ),
        // The same chunk twice.
        (
            file("twice", nine, 20, vec![2, 2]),
            [&[0x00, 0x14, 0x01][..], &nine, &[0x02, 0x02, 0x02]].concat(),
        ),
        // No chunk at all.
        (
            file("empty", empty, 0, vec![]),
            [&[0x00, 0x00, 0x01][..], &empty, &[0x00]].concat(),
        ),
    ];
    for (entry, kind) in cases {
        let name = entry.name.clone();
        let (index, bytes) = with_entry(entry);
        assert_eq!(appended_kind(&bytes, kind.len()), kind, "{name}");
        assert_eq!(
            Index::from_bytes(&bytes, 2, HAND_BUILT_INDEX_AT).unwrap(),
            index,
            "{name}"
        );
        let archive = hand_built_archive(&index);
        assert_eq!(read_seeking(&archive).unwrap().1, index, "{name}");
        assert_eq!(read_streaming(&archive).unwrap().1, index, "{name}");
    }
}

/// A v2 index whose serialized bytes are `bytes` (hand-patched) is refused by
/// `Index::from_bytes` and by both readers with the same `InvalidIndex`; returns its
/// message.
fn refused_index_bytes(bytes: &[u8]) -> String {
    let err = Index::from_bytes(bytes, 2, HAND_BUILT_INDEX_AT).unwrap_err();
    assert!(matches!(err, Error::InvalidIndex { .. }), "{err}");
    let [f0, f1] = hand_built_frames();
    let archive = assemble(2, &[(0, 100, f0.as_slice()), (0, 10, f1.as_slice())], bytes);
    assert_eq!(index_offset(&archive) as u64, HAND_BUILT_INDEX_AT);
    let seek = read_seeking(&archive).unwrap_err();
    let stream = read_streaming(&archive).unwrap_err();
    assert_eq!(seek.to_string(), err.to_string());
    assert_eq!(stream.to_string(), err.to_string());
    err.to_string()
}

/// FORMAT.md §4.2, §4.4: a `File` without a digest must be exactly one chunk that
/// exists; the serialized index is patched by hand, since no `Index` serializes so.
#[test]
fn a_file_with_no_digest_that_is_not_one_chunk_is_refused() {
    // Two chunks: `01` and the 32-byte digest become `00`.
    let (_, mut bytes) = with_entry(file("twice", [9; 32], 20, vec![2, 2]));
    let kind = [&[0x00, 0x14, 0x01][..], &[9; 32], &[0x02, 0x02, 0x02]].concat();
    let at = bytes.len() - hand_built_tail().len() - kind.len();
    assert_eq!(bytes[at..at + kind.len()], kind);
    bytes.splice(at + 2..at + 35, [0x00]);
    assert_eq!(
        refused_index_bytes(&bytes),
        "invalid index: entry \"twice\" has no digest but is not one chunk"
    );

    // No chunk at all.
    let (_, mut bytes) = with_entry(file("empty", sha256(b""), 0, vec![]));
    let at = bytes.len() - hand_built_tail().len() - 36;
    assert_eq!(bytes[at..at + 3], [0x00, 0x00, 0x01]);
    bytes.splice(at + 2..at + 35, [0x00]);
    assert_eq!(
        refused_index_bytes(&bytes),
        "invalid index: entry \"empty\" has no digest but is not one chunk"
    );

    // One chunk, but chunk 5 of 5: its digest cannot be taken.
    let [_, f1] = hand_built_frames();
    let (_, mut bytes) = with_entry(file("one", sha256(&f1), 10, vec![2]));
    let at = bytes.len() - hand_built_tail().len() - 1;
    assert_eq!(appended_kind(&bytes, 5), [0x00, 0x0a, 0x00, 0x01, 0x02]);
    bytes[at] = 0x05;
    assert_eq!(
        refused_index_bytes(&bytes),
        "invalid index: entry \"one\" has no digest but is not one chunk"
    );
    // With its digest, the same entry fails only the later check of §4.4.
    let (_, mut bytes) = with_entry(file("one", [9; 32], 10, vec![2]));
    let at = bytes.len() - hand_built_tail().len() - 1;
    bytes[at] = 0x05;
    assert_eq!(
        refused_index_bytes(&bytes),
        "invalid index: entry \"one\" refers to chunk 5, but there are 5"
    );
}

// ---------------------------------------------------------------------------------------
// The v2 rules of `Index::validate`, each on a hand-built index. The index describes a
// real archive (`hand_built`), so each rejection is checked on `Index::validate`, on the
// seeking reader and on the stream reader.

/// Frame 0: 100 bytes, frame 1: 10 bytes, both stored (codec 0).
fn hand_built_frames() -> [Vec<u8>; 2] {
    [(0..100).collect(), b"0123456789".to_vec()]
}

/// Where the index frame of the hand-built archive starts: after the header and two
/// frames of 100 and 10 stored bytes.
const HAND_BUILT_INDEX_AT: u64 = 16 + 24 + 100 + 24 + 10;

/// A valid index for the frames of [`hand_built_frames`]: three chunks share frame 0 and
/// 1 (a delta among them), one comes whole from a base.
fn hand_built() -> Index {
    let [f0, f1] = hand_built_frames();
    Index {
        frames: vec![
            FrameRecord {
                offset: 16,
                raw_len: 100,
                stored_len: 100,
                codec: 0,
            },
            FrameRecord {
                offset: 140,
                raw_len: 10,
                stored_len: 10,
                codec: 0,
            },
        ],
        chunks: vec![
            frame_chunk(&f0[..40], 0, 0),
            // Ends exactly at the end of its frame.
            frame_chunk(&f0[40..], 0, 40),
            frame_chunk(&f1, 1, 0),
            ChunkRecord {
                raw_len: 5,
                digest: [0x44; 32],
                source: ChunkSource::Base { base: 0, chunk: 7 },
            },
            ChunkRecord {
                raw_len: 10,
                digest: [0x55; 32],
                source: ChunkSource::Delta {
                    frame: 1,
                    start: 0,
                    base: 0,
                    chunk: 8,
                    planes: 1,
                },
            },
        ],
        entries: vec![
            file("model.bin", [9; 32], 125, vec![0, 1, 2, 3, 4]),
            Entry {
                name: "dir".into(),
                mode: 0o755,
                mtime: MTIME,
                kind: EntryKind::Directory,
            },
            Entry {
                name: "dir/again.bin".into(),
                mode: 0o640,
                mtime: MTIME,
                kind: EntryKind::HardLink {
                    target: "model.bin".into(),
                },
            },
        ],
        bases: vec![BaseRef {
            index_digest: [0xBA; 32],
            name: "base.mmh".into(),
        }],
        merkle_root: [0xCD; 32],
    }
}

/// The hand-built archive with `index` as its index.
fn hand_built_archive(index: &Index) -> Vec<u8> {
    let [f0, f1] = hand_built_frames();
    let bytes = assemble(
        2,
        &[(0, 100, f0.as_slice()), (0, 10, f1.as_slice())],
        &index.to_bytes(),
    );
    assert_eq!(index_offset(&bytes) as u64, HAND_BUILT_INDEX_AT);
    bytes
}

/// Checks that `index` is rejected by validation and by both readers, with the same
/// `InvalidIndex` error; returns its message.
fn rejected(index: &Index) -> String {
    let err = index.validate(HAND_BUILT_INDEX_AT).unwrap_err();
    assert!(matches!(err, Error::InvalidIndex { .. }), "{err}");
    let bytes = hand_built_archive(index);
    let seek = read_seeking(&bytes).unwrap_err();
    let stream = read_streaming(&bytes).unwrap_err();
    assert_eq!(seek.to_string(), err.to_string());
    assert_eq!(stream.to_string(), err.to_string());
    err.to_string()
}

#[test]
fn several_chunks_in_one_frame_are_accepted() {
    let index = hand_built();
    index.validate(HAND_BUILT_INDEX_AT).unwrap();
    let bytes = hand_built_archive(&index);
    let (frames, read) = read_seeking(&bytes).unwrap();
    assert_eq!(read, index);
    assert_eq!(read_streaming(&bytes).unwrap(), (frames.clone(), index));
    assert_eq!(frames, hand_built_frames());
    let [f0, f1] = hand_built_frames();
    assert_eq!(chunk_bytes(&read, &frames, 0).unwrap(), &f0[..40]);
    assert_eq!(chunk_bytes(&read, &frames, 1).unwrap(), &f0[40..]);
    assert_eq!(chunk_bytes(&read, &frames, 2).unwrap(), f1);

    // Chunks need not cover their frame, may overlap, and may be empty, even at the
    // very end of their frame.
    let mut sparse = hand_built();
    sparse.chunks[0].source = ChunkSource::Frame {
        frame: 0,
        start: 30,
    };
    sparse.chunks.push(ChunkRecord {
        raw_len: 0,
        digest: sha256(b""),
        source: ChunkSource::Frame {
            frame: 1,
            start: 10,
        },
    });
    sparse.entries.push(file("empty", sha256(b""), 0, vec![5]));
    sparse.validate(HAND_BUILT_INDEX_AT).unwrap();
    read_seeking(&hand_built_archive(&sparse)).unwrap();
}

#[test]
fn a_chunk_that_runs_past_the_end_of_its_frame_is_rejected() {
    let mut index = hand_built();
    index.chunks[1].source = ChunkSource::Frame {
        frame: 0,
        start: 41,
    };
    assert_eq!(
        rejected(&index),
        "invalid index: chunk 1 (bytes 41..101) runs past the end of frame 0 (100 bytes)"
    );

    let mut index = hand_built();
    index.chunks[4].source = ChunkSource::Delta {
        frame: 1,
        start: 1,
        base: 0,
        chunk: 8,
        planes: 1,
    };
    assert_eq!(
        rejected(&index),
        "invalid index: chunk 4 (bytes 1..11) runs past the end of frame 1 (10 bytes)"
    );

    // An empty chunk just past the end, and sums that would overflow a u32.
    let mut index = hand_built();
    index.chunks[2] = frame_chunk(b"", 1, 11);
    index.entries[0] = file("model.bin", [9; 32], 115, vec![0, 1, 2, 3, 4]);
    assert!(rejected(&index).contains("chunk 2 (bytes 11..11) runs past the end of frame 1"));
    let mut index = hand_built();
    index.chunks[0].source = ChunkSource::Frame {
        frame: 0,
        start: u32::MAX,
    };
    assert!(rejected(&index).contains("chunk 0 (bytes 4294967295..4294967335) runs past"));
}

#[test]
fn a_chunk_in_a_frame_that_does_not_exist_is_rejected() {
    let mut index = hand_built();
    index.chunks[2].source = ChunkSource::Frame { frame: 2, start: 0 };
    assert_eq!(
        rejected(&index),
        "invalid index: chunk 2 lies in frame 2, but there are 2"
    );

    let mut index = hand_built();
    index.chunks[4].source = ChunkSource::Delta {
        frame: u32::MAX,
        start: 0,
        base: 0,
        chunk: 8,
        planes: 1,
    };
    assert_eq!(
        rejected(&index),
        "invalid index: chunk 4 lies in frame 4294967295, but there are 2"
    );
}

#[test]
fn a_chunk_naming_a_base_that_is_not_listed_is_rejected() {
    let mut index = hand_built();
    index.chunks[3].source = ChunkSource::Base { base: 1, chunk: 7 };
    assert_eq!(
        rejected(&index),
        "invalid index: chunk 3 refers to base 1, but there are 1"
    );

    let mut index = hand_built();
    index.chunks[4].source = ChunkSource::Delta {
        frame: 1,
        start: 0,
        base: u16::MAX,
        chunk: 8,
        planes: 1,
    };
    assert_eq!(
        rejected(&index),
        "invalid index: chunk 4 refers to base 65535, but there are 1"
    );

    let mut index = hand_built();
    index.bases.clear();
    assert_eq!(
        rejected(&index),
        "invalid index: chunk 3 refers to base 0, but there are 0"
    );
}

#[test]
fn a_delta_in_no_planes_or_more_than_eight_is_rejected() {
    for planes in [0, MAX_DELTA_PLANES + 1, u8::MAX] {
        let mut index = hand_built();
        index.chunks[4].source = ChunkSource::Delta {
            frame: 1,
            start: 0,
            base: 0,
            chunk: 8,
            planes,
        };
        assert_eq!(
            rejected(&index),
            format!("invalid index: chunk 4 is a delta in {planes} byte planes (1 to 8)")
        );
    }
}

#[test]
fn a_file_whose_chunks_do_not_add_up_to_its_size_is_rejected() {
    let mut index = hand_built();
    index.entries[0] = file("model.bin", [9; 32], 124, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        rejected(&index),
        "invalid index: entry \"model.bin\" declares 124 bytes but its chunks hold 125"
    );

    // A base's chunk counts with its own length.
    let mut index = hand_built();
    index.chunks[3].raw_len = 6;
    assert_eq!(
        rejected(&index),
        "invalid index: entry \"model.bin\" declares 125 bytes but its chunks hold 126"
    );

    let mut index = hand_built();
    index.entries[0] = file("model.bin", [9; 32], 125, vec![0, 1, 2, 3, 5]);
    assert_eq!(
        rejected(&index),
        "invalid index: entry \"model.bin\" refers to chunk 5, but there are 5"
    );
}

#[test]
fn a_chunk_longer_than_any_frame_is_rejected_even_from_a_base() {
    let mut index = hand_built();
    index.chunks[3].raw_len = MAX_FRAME_RAW_LEN + 1;
    assert_eq!(
        rejected(&index),
        "invalid index: chunk 3 is longer (67108865) than any frame"
    );
}

#[test]
fn frames_out_of_place_or_with_impossible_lengths_are_rejected() {
    let mut index = hand_built();
    index.frames[0].offset = 15;
    assert_eq!(
        rejected(&index),
        "invalid index: frame 0 at offset 15 overlaps the previous frame (ends at 16)"
    );

    let mut index = hand_built();
    index.frames[1].offset = 139;
    assert_eq!(
        rejected(&index),
        "invalid index: frame 1 at offset 139 overlaps the previous frame (ends at 140)"
    );

    let mut index = hand_built();
    index.frames[1].stored_len = 11;
    assert_eq!(
        rejected(&index),
        "invalid index: frame 1 has impossible lengths (raw 10, stored 11)"
    );

    let mut index = hand_built();
    index.frames[1].raw_len = MAX_FRAME_RAW_LEN + 1;
    assert!(rejected(&index).contains("frame 1 has impossible lengths (raw 67108865"));

    let err = hand_built().validate(HAND_BUILT_INDEX_AT - 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid index: the last frame ends at 174, past the index at 173"
    );
}

/// A frame offset near `u64::MAX` must be an error, not an overflow in `FrameRecord::end`.
#[test]

fn a_frame_offset_at_the_top_of_u64_is_rejected_without_overflow() {
    let mut index = hand_built();
    index.frames[1].offset = u64::MAX - 20;
    let err = index.validate(HAND_BUILT_INDEX_AT).unwrap_err();
    assert!(matches!(err, Error::InvalidIndex { .. }), "{err}");
    open_everything(&hand_built_archive(&index));
}

#[test]
fn at_most_65536_bases_are_accepted() {
    let mut index = hand_built();
    index.bases = vec![index.bases[0].clone(); 65536];
    index.validate(HAND_BUILT_INDEX_AT).unwrap();
    index.bases.push(index.bases[0].clone());
    assert_eq!(
        rejected(&index),
        "invalid index: 65537 bases (at most 65536)"
    );
}

#[test]
fn names_with_nul_and_hard_links_to_no_earlier_file_are_rejected() {
    let mut index = hand_built();
    index.entries[1].name = "d\0r".into();
    assert_eq!(
        rejected(&index),
        "invalid index: entry name \"d\\0r\" contains a NUL byte"
    );

    let mut index = hand_built();
    index.entries.swap(0, 2);
    assert!(rejected(&index).contains(
        "hard link \"dir/again.bin\" points at \"model.bin\", which is not an earlier file"
    ));
}

// ---------------------------------------------------------------------------------------
// Version 1 archives remain readable.

/// The index of format v1, as v1 wrote it (every frame held exactly one chunk).
#[derive(Serialize)]
struct V1Index {
    chunks: Vec<V1ChunkRecord>,
    entries: Vec<Entry>,
    merkle_root: Digest,
}

#[derive(Serialize)]
struct V1ChunkRecord {
    offset: u64,
    raw_len: u32,
    stored_len: u32,
    codec: u8,
    digest: Digest,
}

#[test]
fn a_hand_built_v1_archive_opens_as_one_frame_per_chunk() {
    // Frame 0: 1 KiB of zeros as a pattern (codec 3, period 1, byte 0); frame 1: stored;
    // frame 2: empty. Offsets: 16, 16 + 24 + 2 = 42, 42 + 24 + 5 = 71; index at 95.
    let frames: [(u8, u32, &[u8]); 3] = [(3, 1024, &[1, 0]), (0, 5, b"hello"), (0, 0, b"")];
    let digests = [sha256(&[0; 1024]), sha256(b"hello"), sha256(b"")];
    let offsets = [16, 42, 71];
    let v1 = V1Index {
        chunks: (0..3)
            .map(|i| V1ChunkRecord {
                offset: offsets[i],
                raw_len: frames[i].1,
                stored_len: frames[i].2.len() as u32,
                codec: frames[i].0,
                digest: digests[i],
            })
            .collect(),
        entries: vec![
            file("zeros-hello", [1; 32], 1029, vec![0, 1]),
            file("hello-twice", [2; 32], 10, vec![1, 1]),
            file("empty", [3; 32], 0, vec![2]),
        ],
        merkle_root: [0x77; 32],
    };
    let v1_bytes = postcard::to_stdvec(&v1).unwrap();
    let bytes = assemble(1, &frames, &v1_bytes);
    assert_eq!(bytes[8..10], [1, 0]);
    assert_eq!(index_offset(&bytes), 95);

    let expected = Index {
        frames: (0..3)
            .map(|i| FrameRecord {
                offset: offsets[i],
                raw_len: frames[i].1,
                stored_len: frames[i].2.len() as u32,
                codec: frames[i].0,
            })
            .collect(),
        chunks: (0..3)
            .map(|i| ChunkRecord {
                raw_len: frames[i].1,
                digest: digests[i],
                source: ChunkSource::Frame {
                    frame: i as u32,
                    start: 0,
                },
            })
            .collect(),
        entries: v1.entries.clone(),
        bases: vec![],
        merkle_root: [0x77; 32],
    };
    assert_eq!(Index::from_bytes(&v1_bytes, 1, 95).unwrap(), expected);

    let archive = Archive::open(bytes.as_slice()).unwrap();
    assert_eq!(archive.header(), Header { version: 1 });
    assert_eq!(archive.index(), &expected);
    assert_eq!(archive.index_digest(), sha256(&v1_bytes));
    let stored: Vec<Vec<u8>> = frames.iter().map(|f| f.2.to_vec()).collect();
    assert_eq!(
        read_seeking(&bytes).unwrap(),
        (stored.clone(), expected.clone())
    );
    assert_eq!(read_streaming(&bytes).unwrap(), (stored, expected));

    // The header's version chooses how the index decodes: neither layout passes for the
    // other.
    let mut as_v2 = bytes.clone();
    as_v2[8] = 2;
    let err = read_seeking(&as_v2).unwrap_err();
    assert!(matches!(err, Error::InvalidIndex { .. }), "{err}");
    let err = read_streaming(&as_v2).unwrap_err();
    assert!(matches!(err, Error::InvalidIndex { .. }), "{err}");
    let mut v2_as_v1 = build_rich();
    v2_as_v1[8] = 1;
    let err = read_seeking(&v2_as_v1).unwrap_err();
    // Its index is compressed, which v1 does not allow; had it been stored, its layout
    // would not decode as v1.
    assert!(
        matches!(err, Error::InvalidIndex { .. } | Error::Malformed { .. }),
        "{err}"
    );
}

/// The v1 rules still apply to a v1 index, through its v2 form.
#[test]
fn a_v1_index_is_validated_after_conversion() {
    let record = |offset, raw_len| V1ChunkRecord {
        offset,
        raw_len,
        stored_len: raw_len,
        codec: 0,
        digest: [0; 32],
    };
    let v1 = V1Index {
        chunks: vec![record(16, 5), record(44, 5)],
        entries: vec![file("f", [0; 32], 10, vec![0, 1])],
        merkle_root: [0; 32],
    };
    let err = Index::from_bytes(&postcard::to_stdvec(&v1).unwrap(), 1, 1000).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid index: frame 1 at offset 44 overlaps the previous frame (ends at 45)"
    );
    let v1 = V1Index {
        chunks: vec![record(16, 5)],
        entries: vec![file("f", [0; 32], 10, vec![0, 0, 0])],
        merkle_root: [0; 32],
    };
    let err = Index::from_bytes(&postcard::to_stdvec(&v1).unwrap(), 1, 1000).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid index: entry \"f\" declares 10 bytes but its chunks hold 15"
    );
}

/// The Merkle root of FORMAT.md §8: leaves SHA-256(0x00 ‖ digest), nodes SHA-256(0x01 ‖
/// left ‖ right), a node without a right sibling promoted unchanged.
fn merkle_root(digests: &[Digest]) -> Digest {
    let mut level: Vec<Digest> = digests
        .iter()
        .map(|d| sha256(&[&[0x00][..], &d[..]].concat()))
        .collect();
    if level.is_empty() {
        return [0; 32];
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => sha256(&[&[0x01][..], &left[..], &right[..]].concat()),
                [alone] => *alone,
                _ => unreachable!(),
            })
            .collect();
    }
    level[0]
}

/// The v1 golden archive of mmh-dir (FORMAT.md §9), read by this crate alone.
#[test]
fn the_v1_golden_archive_opens_as_one_frame_per_chunk() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mmh-dir/tests/golden/v1/mixed.mmh"
    );
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(bytes.len(), 1553);
    let archive = Archive::open(bytes.as_slice()).unwrap();
    assert_eq!(archive.header(), Header { version: 1 });
    let index = archive.index();
    assert_eq!(index.frames.len(), 4);
    assert_eq!(index.chunks.len(), 4);
    assert!(index.bases.is_empty());
    assert_eq!(index.frames[0].offset, 16);
    assert_eq!(
        (index.frames[0].codec, index.frames[1].codec),
        (3, 0),
        "frame 0 is a pattern, frame 1 is stored"
    );
    for (i, (chunk, frame)) in index.chunks.iter().zip(&index.frames).enumerate() {
        assert_eq!(
            chunk.source,
            ChunkSource::Frame {
                frame: i as u32,
                start: 0
            }
        );
        assert_eq!(chunk.raw_len, frame.raw_len);
    }
    let EntryKind::File { size, chunks, .. } = &index.entries[0].kind else {
        panic!("{:?}", index.entries[0]);
    };
    assert_eq!(index.entries[0].name, "mixed.bin");
    assert_eq!((*size, chunks.as_slice()), (3548, &[0, 1, 2, 3][..]));

    // Frame 0 is 1 KiB of zeros as a pattern (period 1, byte 0), frame 1 is stored: both
    // decode here without a codec, to the bytes their chunk digests name.
    let mut buf = Vec::new();
    assert_eq!(archive.read_frame(0, &mut buf).unwrap(), [1, 0]);
    assert_eq!(sha256(&[0; 1024]), index.chunks[0].digest);
    let stored = archive.read_frame(1, &mut buf).unwrap();
    assert_eq!(stored.len(), 1024);
    assert_eq!(sha256(stored), index.chunks[1].digest);

    let digests: Vec<Digest> = index.chunks.iter().map(|c| c.digest).collect();
    assert_eq!(merkle_root(&digests), index.merkle_root);
    let trailer_at = bytes.len() - TRAILER_LEN;
    assert_eq!(
        archive.index_digest(),
        sha256(&bytes[index_offset(&bytes) + FRAME_HEADER_LEN..trailer_at])
    );

    let (frames, streamed) = read_streaming(&bytes).unwrap();
    assert_eq!(&streamed, index);
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[1], stored);
}
