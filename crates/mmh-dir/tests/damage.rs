//! Damaged and hostile archives: every flipped byte and every truncation must give an
//! integrity error (never a panic, never a committed output), and forged archives whose
//! container checks pass must still be caught by the SHA-256 and Merkle checks.

mod common;

use common::{SMALL_CDC, cdc_lens, chain, chunk_lens, mixed_content, noise};
use mmh_codecs::{CodecChoice, CodecId, CpuAccelerator, EncodeParams};
use mmh_dir::{
    Chain, EntryMeta, FoldOptions, Overwrite, Quiet, fold_stream, single_file, unfold_stream,
    unfold_to_path,
};
use mmh_format::consts::{FRAME_HEADER_LEN, TRAILER_LEN};
use mmh_format::{Archive, EntryKind, FrameHeader, FrameKind, Index, Timestamp, Trailer};
use sha2::{Digest as _, Sha256};

/// Frames of 1 KiB (the largest chunk): `mixed_content` then spans four frames with three
/// codecs, several chunks sharing each frame.
const FRAME_SIZE: u32 = 1024;

fn fold(data: &[u8]) -> Vec<u8> {
    let meta = EntryMeta {
        name: "model.bin".into(),
        mode: 0o644,
        mtime: Timestamp::default(),
    };
    let options = FoldOptions {
        encode: EncodeParams {
            choice: CodecChoice::Auto,
            ..EncodeParams::default()
        },
        cdc: SMALL_CDC,
        frame_size: FRAME_SIZE,
        ..FoldOptions::default()
    };
    let mut archive = Vec::new();
    fold_stream(data, meta, &mut archive, &options, &Quiet).unwrap();
    archive
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", fold(b"")),
        ("one chunk", fold(b"hello hello hello hello")),
        ("mixed codecs", fold(&mixed_content())),
    ]
}

/// Where the chunks of `mixed_content` end under [`SMALL_CDC`], pinned: the locations in
/// the error messages below follow from them, and a drift would break dedup against
/// archives already written.
const MIXED_CUTS: [u32; 10] = [1024, 1321, 1669, 2026, 2293, 2563, 2833, 3103, 3373, 3548];

#[test]
fn mixed_content_is_cut_and_framed_as_pinned() {
    let archive = fold(&mixed_content());
    let index = chain(&archive).index().clone();
    let mut end = 0;
    let ends: Vec<u32> = chunk_lens(&index, "model.bin")
        .iter()
        .map(|len| {
            end += len;
            end
        })
        .collect();
    assert_eq!(ends, MIXED_CUTS);
    assert_eq!(
        chunk_lens(&index, "model.bin"),
        cdc_lens(&mixed_content(), &SMALL_CDC)
    );
    // Chunks are packed greedily into frames of up to FRAME_SIZE, in content order.
    let frames: Vec<(u64, u32, u8)> = index
        .frames
        .iter()
        .map(|f| (f.offset, f.raw_len, f.codec))
        .collect();
    let (pattern, store, lz4) = (
        CodecId::Pattern as u8,
        CodecId::Store as u8,
        CodecId::Lz4 as u8,
    );
    assert_eq!(
        frames,
        [
            (16, 1024, pattern),
            (42, 1002, store),
            (1068, 807, lz4),
            (1174, 715, pattern)
        ]
    );
    let placed: Vec<(u32, u32)> = index
        .chunks
        .iter()
        .map(|c| match c.source {
            mmh_format::ChunkSource::Frame { frame, start } => (frame, start),
            other => panic!("a fold without base stores every chunk: {other:?}"),
        })
        .collect();
    assert_eq!(
        placed,
        [
            (0, 0),
            (1, 0),
            (1, 297),
            (1, 645),
            (2, 0),
            (2, 267),
            (2, 537),
            (3, 0),
            (3, 270),
            (3, 540)
        ]
    );
}

/// Runs every reader over `bytes` and checks each fails with an integrity error and
/// leaves no output file.
fn assert_rejected(bytes: &[u8], what: &str) {
    assert_rejected_by_seeking_readers(bytes, what);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let err =
        mmh_dir::unfold_stream_to_path(bytes, &dest, Overwrite::Refuse, &CpuAccelerator, &Quiet)
            .expect_err(&format!("{what}: accepted by the stream reader"));
    assert!(
        err.is_integrity(),
        "{what}: stream: not an integrity error: {err}"
    );
    assert!(
        !dest.exists(),
        "{what}: stream unfold left an output behind"
    );
}

/// Verify, and unfold by seeking, fail with an integrity error and leave no output.
fn assert_rejected_by_seeking_readers(bytes: &[u8], what: &str) {
    let seek = Archive::open(bytes)
        .map_err(mmh_dir::Error::from)
        .and_then(|archive| Ok(Chain::standalone(archive)?))
        .and_then(|archive| {
            mmh_verify::verify_archive(&archive, &|_| {})?;
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("out");
            let result = unfold_to_path(
                &archive,
                single_file(archive.index())?,
                &dest,
                Overwrite::Refuse,
                &Quiet,
            );
            assert!(!dest.exists(), "{what}: unfold left an output behind");
            result
        });
    let err = seek.expect_err(&format!("{what}: accepted by verify/unfold"));
    assert!(err.is_integrity(), "{what}: not an integrity error: {err}");
}

#[test]
fn a_flipped_byte_anywhere_is_caught_by_every_reader() {
    for (name, archive) in samples() {
        for at in 0..archive.len() {
            let mut damaged = archive.clone();
            damaged[at] ^= 0x20;
            assert_rejected(&damaged, &format!("{name}: byte {at} flipped"));
        }
    }
}

#[test]
fn a_flipped_byte_in_a_data_frame_names_that_frame() {
    let archive = fold(&mixed_content());
    let frames = chain(&archive).index().frames.clone();
    assert_eq!(frames.len(), 4);
    for (number, frame) in frames.iter().enumerate() {
        for at in frame.offset..frame.end() {
            let mut damaged = archive.clone();
            damaged[at as usize] ^= 0x20;
            // The index is intact, so the archive opens; the frame's own checks (magic,
            // header against the index, checksum) fail when it is read.
            let err = mmh_verify::verify_archive(&chain(&damaged), &|_| {}).unwrap_err();
            match &err {
                mmh_verify::Error::Frame {
                    frame: f,
                    archive_offset,
                    source,
                } => {
                    assert_eq!(
                        (*f, *archive_offset),
                        (number as u32, frame.offset),
                        "byte {at}: {err}"
                    );
                    assert!(source.is_integrity(), "byte {at}: {err}");
                }
                other => panic!("byte {at} of frame {number}: not a frame error: {other}"),
            }
        }
    }
}

#[test]
fn truncation_at_any_length_is_caught_by_every_reader() {
    for (name, archive) in samples() {
        for len in 0..archive.len() {
            assert_rejected(&archive[..len], &format!("{name}: cut at {len}"));
        }
    }
}

/// Rewrites the index of an archive with `edit` and seals it again (new frame checksum,
/// new trailer digest), as a forger who knows the format would.
fn forge_index(archive: &[u8], edit: impl FnOnce(&mut Index)) -> Vec<u8> {
    let parsed = Archive::open(archive).unwrap();
    let mut index = parsed.index().clone();
    edit(&mut index);
    let trailer_at = archive.len() - TRAILER_LEN;
    let old = Trailer::parse(archive[trailer_at..].try_into().unwrap(), trailer_at as u64).unwrap();
    let bytes = index.to_bytes();
    let mut out = archive[..old.index_offset as usize].to_vec();
    let header = FrameHeader::new(FrameKind::Index, 0, bytes.len() as u32, &bytes).unwrap();
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&bytes);
    let trailer = Trailer {
        index_offset: old.index_offset,
        index_len: bytes.len() as u64,
        index_digest: Sha256::digest(&bytes).into(),
    };
    out.extend_from_slice(&trailer.to_bytes());
    out
}

fn verify_error(bytes: &[u8]) -> String {
    let err = mmh_verify::verify_archive(&chain(bytes), &|_| {}).unwrap_err();
    assert!(err.is_integrity());
    err.to_string()
}

#[test]
fn a_forged_chunk_digest_names_the_entry_and_byte_range() {
    let archive = fold(&mixed_content());
    let forged = forge_index(&archive, |index| {
        index.chunks[2].digest[0] ^= 1;
        let digests: Vec<_> = index.chunks.iter().map(|c| c.digest).collect();
        index.merkle_root = mmh_verify::merkle_root(&digests);
    });
    // Chunk 2 covers MIXED_CUTS[1]..MIXED_CUTS[2] and shares frame 1 (at offset 42) with
    // chunks 1 and 3.
    assert_eq!(
        verify_error(&forged),
        "chunk 2 (entry \"model.bin\", bytes 1321..1669, frame at archive offset 42) is corrupt: its SHA-256 does not match the index"
    );
    assert_rejected_by_seeking_readers(&forged, "forged chunk digest");
    // From a pipe, chunk boundaries (and so chunk digests) are known only once the index
    // arrives after the content: the stream reader checks the whole content's SHA-256,
    // the layout and the Merkle root over the index, not each chunk. The content here is
    // intact, so it must come out exactly; what matters is that no wrong byte does.
    let mut out = Vec::new();
    match unfold_stream(forged.as_slice(), &mut out, &CpuAccelerator, &Quiet) {
        Ok(summary) => {
            assert_eq!(summary.bytes, 3548);
            assert_eq!(out, mixed_content());
        }
        Err(err) => assert!(err.is_integrity(), "{err}"),
    }
}

#[test]
fn a_forged_entry_digest_or_merkle_root_is_caught() {
    let archive = fold(&mixed_content());
    let forged = forge_index(&archive, |index| {
        if let EntryKind::File { digest, .. } = &mut index.entries[0].kind {
            digest[31] ^= 1;
        }
    });
    assert_eq!(
        verify_error(&forged),
        "entry \"model.bin\" is corrupt: the SHA-256 of its 3548 bytes does not match the index"
    );
    assert_rejected(&forged, "forged entry digest");

    let forged = forge_index(&archive, |index| index.merkle_root[0] ^= 1);
    assert_eq!(
        verify_error(&forged),
        "Merkle root mismatch: the index's chunk digests do not produce its root"
    );
    assert_rejected(&forged, "forged Merkle root");
}

#[test]
fn a_frame_with_forged_bytes_and_checksum_fails_the_digest_of_the_chunk_hit() {
    let archive = fold(&mixed_content());
    // Frame 1 is stored raw and holds chunks 1, 2 and 3 (bytes 1024..2026 of the
    // content): change a byte inside chunk 2 and re-seal the frame checksum.
    let record = chain(&archive).index().frames[1].clone();
    assert_eq!(record.codec, CodecId::Store as u8);
    let mut forged = archive.clone();
    let body = record.offset as usize + FRAME_HEADER_LEN;
    forged[body + 400] ^= 0xFF;
    let stored = forged[body..body + record.stored_len as usize].to_vec();
    let header = FrameHeader::new(FrameKind::Data, record.codec, record.raw_len, &stored).unwrap();
    forged[record.offset as usize..body].copy_from_slice(&header.to_bytes());
    assert_eq!(
        verify_error(&forged),
        "chunk 2 (entry \"model.bin\", bytes 1321..1669, frame at archive offset 42) is corrupt: its SHA-256 does not match the index"
    );
    assert_rejected(&forged, "forged frame");
}

#[test]
fn an_unknown_codec_id_is_named() {
    let archive = fold(&mixed_content());
    let record = chain(&archive).index().frames[0].clone();
    let mut forged = forge_index(&archive, |index| index.frames[0].codec = 200);
    // Byte 5 of the frame header is its codec (FORMAT.md §3).
    forged[record.offset as usize + 5] = 200;
    let message = verify_error(&forged);
    assert!(
        message.starts_with("frame 0 at archive offset 16 cannot be decoded"),
        "{message}"
    );
    assert!(message.contains("200"), "{message}");

    let mut out = Vec::new();
    let err = unfold_stream(forged.as_slice(), &mut out, &CpuAccelerator, &Quiet).unwrap_err();
    assert!(
        err.is_integrity() && err.to_string().contains("200"),
        "{err}"
    );
}

#[test]
fn a_chunk_pointing_past_its_frame_or_at_a_missing_base_is_refused_on_opening() {
    let archive = fold(&mixed_content());
    let past_end = forge_index(&archive, |index| {
        index.chunks[3].source = mmh_format::ChunkSource::Frame {
            frame: 1,
            start: 700,
        };
    });
    let err = Archive::open(past_end.as_slice()).unwrap_err();
    assert!(
        err.to_string()
            .contains("chunk 3 (bytes 700..1057) runs past the end of frame 1"),
        "{err}"
    );
    assert_rejected(&past_end, "chunk past its frame");

    let no_base = forge_index(&archive, |index| {
        index.chunks[3].source = mmh_format::ChunkSource::Base { base: 0, chunk: 0 };
    });
    let err = Archive::open(no_base.as_slice()).unwrap_err();
    assert!(
        err.to_string()
            .contains("refers to base 0, but there are 0"),
        "{err}"
    );
}

#[test]
fn damage_in_a_large_archive_is_located_in_the_chunk_it_hits() {
    // Many frames, so that damage lands in a later batch than the first.
    let data = noise(64 << 10, 3);
    let archive = fold(&data);
    let index = chain(&archive).index().clone();
    assert!(index.frames.len() > 40, "{} frames", index.frames.len());
    let target = index.frames.len() / 2;
    let record = index.frames[target].clone();
    assert_eq!(record.codec, CodecId::Store as u8, "noise is stored raw");
    let mut forged = archive.clone();
    let body = record.offset as usize + FRAME_HEADER_LEN;
    forged[body] ^= 1;
    let stored = forged[body..body + record.stored_len as usize].to_vec();
    let header = FrameHeader::new(FrameKind::Data, record.codec, record.raw_len, &stored).unwrap();
    forged[record.offset as usize..body].copy_from_slice(&header.to_bytes());
    // The first chunk of the frame is hit: where does it start in the content?
    let (number, chunk) = index
        .chunks
        .iter()
        .enumerate()
        .find(|(_, c)| {
            c.source
                == mmh_format::ChunkSource::Frame {
                    frame: target as u32,
                    start: 0,
                }
        })
        .unwrap();
    let start: u64 = index.chunks[..number]
        .iter()
        .map(|c| u64::from(c.raw_len))
        .sum();
    let err = mmh_verify::verify_archive(&chain(&forged), &|_| {}).unwrap_err();
    match err {
        mmh_verify::Error::ChunkDigest { chunk: c, location } => {
            assert_eq!(c, number as u32);
            assert_eq!(location.entry.as_deref(), Some("model.bin"));
            assert_eq!(location.range, start..start + u64::from(chunk.raw_len));
            assert_eq!(location.archive_offset, record.offset);
        }
        other => panic!("not a chunk digest error: {other}"),
    }
    // A range read that does not touch the damaged chunk still succeeds; one that does
    // fails without handing out the damaged bytes.
    let mut out = Vec::new();
    mmh_dir::read_range(&chain(&forged), "model.bin", 0..start, &mut out).unwrap();
    assert_eq!(out, data[..start as usize]);
    let mut out = Vec::new();
    let err =
        mmh_dir::read_range(&chain(&forged), "model.bin", start..start + 1, &mut out).unwrap_err();
    assert!(err.is_integrity(), "{err}");
    assert!(out.is_empty());
}
