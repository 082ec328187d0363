//! Golden archives freeze each released format version: every build must decode them
//! to their recorded content, and their bytes must keep the layout docs/FORMAT.md gives.
//! golden/v1 was written by the v1 code; golden/v2 (a tree and its next version folded
//! against it) is written by `MMH_WRITE_GOLDEN=1` when missing, and then never again.

mod common;

use common::mixed_content;
use std::path::PathBuf;

use mmh_codecs::CdcParams;
use mmh_dir::{
    BaseMode, Chain, FoldBase, FoldOptions, Overwrite, Quiet, WalkOptions, fold_tree, open_archive,
    single_file, unfold_entry, unfold_tree,
};
use mmh_format::consts::{FRAME_HEADER_LEN, HEADER_LEN, TRAILER_LEN};
use mmh_format::{Archive, ChunkSource, FrameHeader, Trailer};

const REGENERATE: &str = "MMH_WRITE_GOLDEN=1 cargo test -p mmh-dir --test golden";

fn golden_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(version)
}

fn read_golden(version: &str, name: &str) -> Vec<u8> {
    let path = golden_dir(version).join(name);
    // Only the current version is ever written; older ones are kept as they were.
    if std::env::var_os("MMH_WRITE_GOLDEN").is_some() && !path.exists() && version == "v2" {
        write_golden_v2();
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
    let archive_bytes = read_golden("v1", "mixed.mmh");
    let expected = read_golden("v1", "mixed.bin");
    assert_eq!(
        expected,
        mixed_content(),
        "golden/v1/mixed.bin is not the documented content"
    );
    let archive = Chain::standalone(Archive::open(archive_bytes.as_slice()).unwrap()).unwrap();
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
    let codecs: Vec<u8> = archive.index().frames.iter().map(|f| f.codec).collect();
    assert_eq!(
        codecs[..2],
        [3, 0],
        "chunk 0 is a pattern chunk, chunk 1 is stored"
    );
}

#[test]
fn golden_v1_bytes_follow_the_documented_layout() {
    let bytes = read_golden("v1", "mixed.mmh");
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
    // FORMAT.md §4.5: the v1 index opens as one frame per chunk.
    let archive = Archive::open(bytes.as_slice()).unwrap();
    let index = archive.index();
    assert_eq!(index.frames.len(), index.chunks.len());
    for (i, chunk) in index.chunks.iter().enumerate() {
        assert_eq!(
            chunk.source,
            ChunkSource::Frame {
                frame: i as u32,
                start: 0
            }
        );
    }
}

/// The files of the v2 golden tree: small files that share frames, a repeat, an empty
/// file, and a tiny safetensors model; `next` is the tree's later version, with one
/// tensor changed, one file added and one removed.
fn v2_tree(next: bool) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = vec![
        ("a/notes.txt", b"weights and biases\n".repeat(40)),
        ("a/same.txt", b"weights and biases\n".repeat(40)),
        ("b/empty", Vec::new()),
        ("b/mixed.bin", common::mixed_content()),
        ("model.safetensors", tiny_model(next)),
    ];
    if next {
        files.push(("c/added.txt", b"added in the next version\n".to_vec()));
    } else {
        files.push(("c/removed.txt", b"gone in the next version\n".to_vec()));
    }
    files
}

/// A safetensors file with one F32 tensor of 1024 values (4 KiB: four tensor pieces of
/// 1 KiB at the golden's chunking); `next` nudges a few values, as a training step would.
fn tiny_model(next: bool) -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    for i in 0..1024u32 {
        let mut value = (i as f32 * 0.37).sin() * 0.05;
        if next && i % 97 == 0 {
            value += 1e-4;
        }
        file.extend_from_slice(&value.to_le_bytes());
    }
    file
}

fn v2_options(base: Option<FoldBase>) -> FoldOptions {
    FoldOptions {
        cdc: CdcParams {
            min_size: 64,
            avg_size: 256,
            max_size: 1024,
        },
        frame_size: 4096,
        base,
        ..FoldOptions::default()
    }
}

fn write_tree(root: &std::path::Path, files: &[(&str, Vec<u8>)]) {
    for (name, content) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink("notes.txt", root.join("a/link")).unwrap();
}

/// Writes golden/v2: `tree.mmh`, and `next.mmh` folded with `tree.mmh` as its base.
fn write_golden_v2() {
    let dir = golden_dir("v2");
    std::fs::create_dir_all(&dir).unwrap();
    let walk = WalkOptions {
        deterministic: true,
        ..WalkOptions::default()
    };
    for (next, name) in [(false, "tree.mmh"), (true, "next.mmh")] {
        let scratch = tempfile::tempdir().unwrap();
        write_tree(scratch.path(), &v2_tree(next));
        let base =
            next.then(|| FoldBase::open(&dir.join("tree.mmh"), BaseMode::Reference, &[]).unwrap());
        let mut archive = Vec::new();
        fold_tree(
            scratch.path(),
            &walk,
            &mut archive,
            &v2_options(base),
            &Quiet,
        )
        .unwrap();
        std::fs::write(dir.join(name), archive).unwrap();
    }
}

#[test]
fn golden_v2_pair_unfolds_to_its_recorded_trees() {
    read_golden("v2", "tree.mmh");
    read_golden("v2", "next.mmh");
    for (next, name) in [(false, "tree.mmh"), (true, "next.mmh")] {
        let archive = open_archive(&golden_dir("v2").join(name)).unwrap();
        mmh_verify::verify_archive(&archive, &|_| {}).unwrap();
        let out = tempfile::tempdir().unwrap();
        unfold_tree(&archive, out.path(), &[], Overwrite::Refuse, &Quiet).unwrap();
        for (file, content) in v2_tree(next) {
            assert_eq!(
                std::fs::read(out.path().join(file)).unwrap(),
                content,
                "{name}: {file}"
            );
        }
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(out.path().join("a/link")).unwrap(),
            PathBuf::from("notes.txt")
        );
    }
}

#[test]
fn golden_v2_uses_every_kind_of_chunk_source() {
    let bytes = read_golden("v2", "next.mmh");
    assert_eq!(bytes[8..10], [2, 0], "FORMAT.md §2: version 2");
    let archive = Archive::open(bytes.as_slice()).unwrap();
    let index = archive.index();
    let sources =
        |f: fn(&ChunkSource) -> bool| index.chunks.iter().filter(|c| f(&c.source)).count();
    assert!(sources(|s| matches!(s, ChunkSource::Frame { .. })) > 0);
    assert!(sources(|s| matches!(s, ChunkSource::Base { .. })) > 0);
    assert!(sources(|s| matches!(s, ChunkSource::Delta { .. })) > 0);
    assert!(
        index.frames.len() < index.chunks.len(),
        "chunks share frames"
    );
    assert_eq!(index.bases.len(), 1);
    assert_eq!(index.bases[0].name, "tree.mmh");
    // FORMAT.md §4: the index is postcard, here compressed with zstd (codec 1), and
    // re-encodes to the same bytes.
    let trailer_at = bytes.len() - TRAILER_LEN;
    let trailer =
        Trailer::parse(bytes[trailer_at..].try_into().unwrap(), trailer_at as u64).unwrap();
    let index_at = trailer.index_offset as usize;
    let header = FrameHeader::parse(
        bytes[index_at..index_at + FRAME_HEADER_LEN]
            .try_into()
            .unwrap(),
        index_at as u64,
    )
    .unwrap();
    assert_eq!(header.codec, 1);
    let stored = &bytes[index_at + FRAME_HEADER_LEN..trailer_at];
    let mut raw = Vec::new();
    mmh_codecs::decode(
        mmh_codecs::CodecId::Zstd,
        stored,
        header.raw_len as usize,
        &mmh_codecs::CpuAccelerator,
        &mut raw,
    )
    .unwrap();
    assert_eq!(
        index.to_bytes(),
        raw,
        "the index serialization changed: that is a new format version, not an edit of v2"
    );
}
