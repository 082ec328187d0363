//! Roundtrips and damage tests of the container alone (codec ids are opaque here).

use mmh_format::consts::{FRAME_HEADER_LEN, HEADER_LEN, MAX_CHUNK_RAW_LEN, TRAILER_LEN};
use mmh_format::{
    Archive, ArchiveWriter, Entry, EntryKind, Error, FrameHeader, FrameKind, Index, StreamReader,
    Timestamp,
};
use proptest::prelude::*;

/// Builds an archive of one file whose chunks are `chunks`, stored with codec 0.
fn build(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new()).unwrap();
    let mut refs = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        refs.push(
            writer
                .push_chunk(0, chunk.len() as u32, chunk, [i as u8; 32])
                .unwrap(),
        );
    }
    let size = chunks.iter().map(|c| c.len() as u64).sum();
    let entry = Entry {
        name: "data.bin".into(),
        mode: 0o640,
        mtime: Timestamp {
            secs: 1_700_000_000,
            nanos: 5,
        },
        kind: EntryKind::File {
            size,
            digest: [0xAB; 32],
            chunks: refs,
        },
    };
    let (bytes, len) = writer.finish(vec![entry], [0xCD; 32]).unwrap();
    assert_eq!(len, bytes.len() as u64);
    bytes
}

/// Reads every chunk of an archive by seeking; returns the chunks and the index.
fn read_seeking(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, Index), Error> {
    let archive = Archive::open(bytes)?;
    let mut buf = Vec::new();
    let mut chunks = Vec::new();
    for number in 0..archive.index().chunks.len() as u32 {
        chunks.push(archive.read_stored(number, &mut buf)?.to_vec());
    }
    Ok((chunks, archive.index().clone()))
}

/// Reads an archive front to back as from a pipe.
fn read_streaming(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, Index), Error> {
    let mut reader = StreamReader::new(bytes)?;
    let mut buf = Vec::new();
    let mut chunks = Vec::new();
    while reader.next_chunk(&mut buf)?.is_some() {
        chunks.push(buf.clone());
    }
    Ok((
        chunks,
        reader.into_index().expect("index after the last chunk"),
    ))
}

proptest! {
    #[test]
    fn seeking_and_streaming_readers_return_what_was_written(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12)
    ) {
        let bytes = build(&chunks);
        let (seek_chunks, seek_index) = read_seeking(&bytes).unwrap();
        let (stream_chunks, stream_index) = read_streaming(&bytes).unwrap();
        prop_assert_eq!(&seek_chunks, &chunks);
        prop_assert_eq!(&stream_chunks, &chunks);
        prop_assert_eq!(&seek_index, &stream_index);
        prop_assert_eq!(seek_index.merkle_root, [0xCD; 32]);
        prop_assert_eq!(seek_index.entries[0].mtime, Timestamp { secs: 1_700_000_000, nanos: 5 });
    }

    #[test]
    fn random_bytes_never_panic_a_reader(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(read_seeking(&bytes).is_err());
        prop_assert!(read_streaming(&bytes).is_err());
    }
}

#[test]
fn every_single_bit_flip_is_detected_by_both_readers() {
    let bytes = build(&[b"first chunk".to_vec(), Vec::new(), b"third".repeat(9)]);
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

#[test]
fn every_truncation_is_a_truncation_or_malformed_error() {
    let bytes = build(&[vec![1; 100], vec![2; 50]]);
    for len in 0..bytes.len() {
        let cut = &bytes[..len];
        let seek = read_seeking(cut).expect_err("truncated archive accepted by seeking reader");
        let stream = read_streaming(cut).expect_err("truncated archive accepted by stream reader");
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
fn a_future_version_is_named_in_the_error() {
    let mut bytes = build(&[]);
    bytes[8] = 2;
    let err = read_seeking(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "unsupported format version 2 (this build reads versions 1..=1)"
    );
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
        kind: FrameKind::Chunk,
        codec: 0,
        raw_len: MAX_CHUNK_RAW_LEN + 1,
        stored_len: 1,
        checksum: 0,
    };
    let mut bytes = build(&[]);
    let index_at = bytes.len() - TRAILER_LEN - FRAME_HEADER_LEN - {
        let archive = Archive::open(bytes.as_slice()).unwrap();
        archive.index().to_bytes().len()
    };
    assert_eq!(index_at, HEADER_LEN);
    // A stream that declares a 64 MiB + 1 chunk where the index should be.
    bytes.splice(HEADER_LEN..HEADER_LEN, over.to_bytes());
    let err = read_streaming(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { declared, .. } if declared == u64::from(MAX_CHUNK_RAW_LEN) + 1),
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
fn an_index_that_points_past_its_chunks_is_refused_by_the_writer() {
    let mut writer = ArchiveWriter::new(Vec::new()).unwrap();
    writer.push_chunk(0, 3, b"abc", [0; 32]).unwrap();
    let entry = Entry {
        name: "x".into(),
        mode: 0,
        mtime: Timestamp::default(),
        kind: EntryKind::File {
            size: 3,
            digest: [0; 32],
            chunks: vec![0, 1],
        },
    };
    let err = writer.finish(vec![entry], [0; 32]).unwrap_err();
    assert!(
        err.to_string()
            .contains("refers to chunk 1, but there are 1"),
        "{err}"
    );
}
