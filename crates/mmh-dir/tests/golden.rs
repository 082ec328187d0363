//! Golden archives freeze each released format version: every build must decode them
//! to their recorded content, and their bytes must keep the layout docs/FORMAT.md gives.

mod common;

use common::mixed_content;
use std::path::PathBuf;

use mmh_codecs::{CodecChoice, EncodeParams};
use mmh_dir::{EntryMeta, FoldOptions, Quiet, fold_stream, single_file, unfold_entry};
use mmh_format::consts::{FRAME_HEADER_LEN, HEADER_LEN, TRAILER_LEN};
use mmh_format::{Archive, Timestamp, Trailer};

const REGENERATE: &str = "MMH_WRITE_GOLDEN=1 cargo test -p mmh-dir --test golden";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1")
}

fn write_golden() {
    let content = mixed_content();
    let meta = EntryMeta {
        name: "mixed.bin".into(),
        mode: 0o644,
        mtime: Timestamp {
            secs: 1_763_856_000,
            nanos: 0,
        },
    };
    let options = FoldOptions {
        encode: EncodeParams {
            choice: CodecChoice::Auto,
            ..EncodeParams::default()
        },
        chunk_size: 1024,
        ..FoldOptions::default()
    };
    let mut archive = Vec::new();
    fold_stream(content.as_slice(), meta, &mut archive, &options, &Quiet).unwrap();
    std::fs::create_dir_all(golden_dir()).unwrap();
    std::fs::write(golden_dir().join("mixed.mmh"), archive).unwrap();
    std::fs::write(golden_dir().join("mixed.bin"), content).unwrap();
}

fn read_golden(name: &str) -> Vec<u8> {
    let path = golden_dir().join(name);
    if std::env::var_os("MMH_WRITE_GOLDEN").is_some() && !path.exists() {
        write_golden();
    }
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; a new format version's golden files are made with `{REGENERATE}`",
            path.display()
        )
    })
}

#[test]
fn golden_v1_decodes_to_its_recorded_content() {
    let archive_bytes = read_golden("mixed.mmh");
    let expected = read_golden("mixed.bin");
    assert_eq!(
        expected,
        mixed_content(),
        "golden/v1/mixed.bin is not the documented content"
    );
    let archive = Archive::open(archive_bytes.as_slice()).unwrap();
    let report = mmh_verify::verify_archive(&archive, &|_| {}).unwrap();
    assert_eq!(
        (report.entries, report.chunks, report.content_bytes),
        (1, 4, 3548)
    );
    let entry = single_file(archive.index()).unwrap();
    assert_eq!(
        (entry.name.as_str(), entry.mode, entry.mtime.secs),
        ("mixed.bin", 0o644, 1_763_856_000)
    );
    let mut out = Vec::new();
    unfold_entry(&archive, entry, &mut out, &Quiet).unwrap();
    assert_eq!(out, expected);
    let codecs: Vec<u8> = archive.index().chunks.iter().map(|c| c.codec).collect();
    assert_eq!(
        codecs[..2],
        [3, 0],
        "chunk 0 is a pattern chunk, chunk 1 is stored"
    );
}

#[test]
fn golden_v1_bytes_follow_the_documented_layout() {
    let bytes = read_golden("mixed.mmh");
    // FORMAT.md §2: magic, version 1, flags 0, reserved 0.
    assert_eq!(
        bytes[..HEADER_LEN],
        *b"\x89MMH\r\n\x1a\n\x01\x00\x00\x00\x00\x00\x00\x00"
    );
    // FORMAT.md §3: the first frame follows the header; pattern chunk of 1 KiB zeros
    // stored as period 1 plus the byte 0.
    let first = &bytes[HEADER_LEN..HEADER_LEN + FRAME_HEADER_LEN + 2];
    assert_eq!(first[..8], *b"MMHF\x00\x03\x00\x00");
    assert_eq!(first[8..16], [0x00, 0x04, 0, 0, 2, 0, 0, 0]);
    assert_eq!(first[FRAME_HEADER_LEN..], [1, 0]);
    // FORMAT.md §5: the trailer closes the file and points at the index frame.
    let trailer_at = bytes.len() - TRAILER_LEN;
    assert_eq!(bytes[bytes.len() - 8..], *b"MMH.END\x01");
    let trailer =
        Trailer::parse(bytes[trailer_at..].try_into().unwrap(), trailer_at as u64).unwrap();
    let index_at = trailer.index_offset as usize;
    assert_eq!(bytes[index_at..index_at + 8], *b"MMHF\x01\x00\x00\x00");
    // FORMAT.md §4: the index is postcard and re-encodes to the same bytes.
    let archive = Archive::open(bytes.as_slice()).unwrap();
    assert_eq!(
        archive.index().to_bytes(),
        bytes[index_at + FRAME_HEADER_LEN..trailer_at],
        "the index serialization changed: that is a new format version, not an edit of v1"
    );
}
