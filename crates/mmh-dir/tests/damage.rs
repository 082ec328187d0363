//! Damaged and hostile archives: every flipped byte and every truncation must give an
//! integrity error (never a panic, never a committed output), and forged archives whose
//! container checks pass must still be caught by the SHA-256 and Merkle checks.

mod common;

use common::mixed_content;
use mmh_codecs::{CodecChoice, EncodeParams};
use mmh_dir::{
    EntryMeta, FoldOptions, Overwrite, Quiet, fold_stream, single_file, unfold_stream,
    unfold_to_path,
};
use mmh_format::consts::{FRAME_HEADER_LEN, TRAILER_LEN};
use mmh_format::{Archive, EntryKind, FrameHeader, FrameKind, Index, Timestamp, Trailer};
use sha2::{Digest as _, Sha256};

fn fold(data: &[u8], chunk_size: u32) -> Vec<u8> {
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
        chunk_size,
        ..FoldOptions::default()
    };
    let mut archive = Vec::new();
    fold_stream(data, meta, &mut archive, &options, &Quiet).unwrap();
    archive
}

fn samples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", fold(b"", 1024)),
        ("one chunk", fold(b"hello hello hello hello", 1024)),
        ("mixed codecs", fold(&mixed_content(), 1024)),
    ]
}

/// Runs every reader over `bytes` and checks each fails with an integrity error and
/// leaves no output file.
fn assert_rejected(bytes: &[u8], what: &str) {
    let seek = Archive::open(bytes)
        .map_err(mmh_dir::Error::from)
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

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let err = mmh_dir::unfold_stream_to_path(bytes, &dest, Overwrite::Refuse, &Quiet)
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
    let archive = Archive::open(bytes).unwrap();
    let err = mmh_verify::verify_archive(&archive, &|_| {}).unwrap_err();
    assert!(err.is_integrity());
    err.to_string()
}

#[test]
fn a_forged_chunk_digest_names_the_entry_and_byte_range() {
    let archive = fold(&mixed_content(), 1024);
    let forged = forge_index(&archive, |index| {
        index.chunks[2].digest[0] ^= 1;
        let digests: Vec<_> = index.chunks.iter().map(|c| c.digest).collect();
        index.merkle_root = mmh_verify::merkle_root(&digests);
    });
    assert_eq!(
        verify_error(&forged),
        format!(
            "chunk 2 (entry \"model.bin\", bytes 2048..3072, frame at archive offset {}) is corrupt: its SHA-256 does not match the index",
            Archive::open(archive.as_slice()).unwrap().index().chunks[2].offset
        )
    );
    assert_rejected(&forged, "forged chunk digest");
}

#[test]
fn a_forged_entry_digest_or_merkle_root_is_caught() {
    let archive = fold(&mixed_content(), 1024);
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
fn a_frame_with_forged_bytes_and_checksum_fails_its_digest() {
    let archive = fold(&mixed_content(), 1024);
    let parsed = Archive::open(archive.as_slice()).unwrap();
    // Chunk 1 is stored raw: change a byte and re-seal its frame checksum.
    let record = parsed.index().chunks[1].clone();
    assert_eq!(record.codec, mmh_codecs::CodecId::Store as u8);
    let mut forged = archive.clone();
    let body = record.offset as usize + FRAME_HEADER_LEN;
    forged[body + 10] ^= 0xFF;
    let stored = forged[body..body + record.stored_len as usize].to_vec();
    let header = FrameHeader::new(FrameKind::Chunk, record.codec, record.raw_len, &stored).unwrap();
    forged[record.offset as usize..body].copy_from_slice(&header.to_bytes());
    assert!(verify_error(&forged).starts_with("chunk 1 (entry \"model.bin\", bytes 1024..2048"));
    assert_rejected(&forged, "forged frame");
}

#[test]
fn an_unknown_codec_id_is_named() {
    let archive = fold(&mixed_content(), 1024);
    let parsed = Archive::open(archive.as_slice()).unwrap();
    let record = parsed.index().chunks[0].clone();
    let forged_archive = forge_index(&archive, |index| index.chunks[0].codec = 200);
    let mut forged = forged_archive;
    let at = record.offset as usize;
    forged[at + 5] = 200;
    let message = verify_error(&forged);
    assert!(message.contains("cannot be decoded"), "{message}");
    assert!(message.contains("200"), "{message}");

    let mut out = Vec::new();
    let err = unfold_stream(forged.as_slice(), &mut out, &Quiet).unwrap_err();
    assert!(
        err.is_integrity() && err.to_string().contains("200"),
        "{err}"
    );
}
