//! Directory trees: roundtrips with every entry kind, dedup, reproducible archives, and
//! hand-crafted hostile archives that must not write outside the target.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use mmh_dir::{
    Chain, FoldOptions, Overwrite, Quiet, WalkOptions, fold_tree, unfold_path, unfold_tree,
};
use mmh_format::{Archive, ArchiveWriter, ChunkRecord, ChunkSource, Entry, EntryKind, Timestamp};

/// An in-memory archive without bases, ready to read.
fn open(bytes: &[u8]) -> Chain<&[u8]> {
    Chain::standalone(Archive::open(bytes).unwrap()).unwrap()
}

/// Everything a tree holds that an archive must keep, by relative name.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = path.symlink_metadata().unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o} mtime {}", meta.mtime())
            } else {
                let content = fs::read(&path).unwrap();
                format!(
                    "file {mode:o} mtime {} nlink {} {:?}",
                    meta.mtime(),
                    meta.nlink(),
                    mmh_verify::sha256(&content)
                )
            };
            out.insert(name, what);
        }
    }
    out
}

fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    let weights: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(root.join("model.bin"), &weights).unwrap();
    fs::write(root.join("sub/copy-of-model.bin"), &weights).unwrap();
    fs::write(root.join("sub/deeper/config.json"), b"{\"layers\": 12}").unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("script.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::hard_link(root.join("script.sh"), root.join("sub/hardlinked.sh")).unwrap();
    symlink("deeper/config.json", root.join("sub/config-link")).unwrap();
    fs::set_permissions(root.join("sub/deeper"), fs::Permissions::from_mode(0o700)).unwrap();
}

/// The defaults (64 KiB chunks on average, 4 MiB frames): the sample tree's small files
/// then share one frame.
fn options() -> FoldOptions {
    FoldOptions::default()
}

fn fold(root: &Path, walk: &WalkOptions) -> (Vec<u8>, mmh_dir::FoldSummary) {
    let mut archive = Vec::new();
    let summary = fold_tree(root, walk, &mut archive, &options(), &Quiet).unwrap();
    (archive, summary)
}

#[test]
fn a_tree_with_every_entry_kind_roundtrips() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    sample_tree(&source);
    let (bytes, summary) = fold(&source, &WalkOptions::default());
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    let archive = open(&bytes);
    mmh_verify::verify_archive(&archive, &|_| {}).unwrap();
    let target = dir.path().join("target");
    let written = unfold_path(&archive, &target, &[], Overwrite::Refuse, &Quiet).unwrap();
    assert_eq!(written.entries, archive.index().entries.len() as u64);
    assert_eq!(snapshot(&target), snapshot(&source));
}

#[test]
fn a_repeated_file_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let (bytes, summary) = fold(dir.path(), &WalkOptions::default());
    assert_eq!(summary.deduplicated_bytes, 300_000);
    let archive = open(&bytes);
    let stored: u64 = archive
        .index()
        .chunks
        .iter()
        .map(|c| u64::from(c.raw_len))
        .sum();
    let content: u64 = mmh_dir::list_entries(archive.index())
        .iter()
        .map(|l| l.size)
        .sum();
    assert_eq!(
        content - stored,
        300_000,
        "the copy must reference the original's chunks"
    );
    let index = archive.index();
    let chunks_of = |name: &str| match &mmh_dir::find_entry(index, name).unwrap().kind {
        EntryKind::File { chunks, .. } => chunks.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(chunks_of("sub/copy-of-model.bin"), chunks_of("model.bin"));
    // Each stored chunk's bytes are in a frame once.
    let framed: u64 = index.frames.iter().map(|f| u64::from(f.raw_len)).sum();
    assert_eq!(framed, stored);
}

#[test]
fn small_files_share_frames_and_each_reads_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let content = format!("file {i}: ").repeat(i + 1).into_bytes();
            (format!("f{i:02}.txt"), content)
        })
        .collect();
    for (name, content) in &files {
        fs::write(dir.path().join(name), content).unwrap();
    }
    let options = FoldOptions {
        cdc: mmh_dir::CdcParams {
            min_size: 64,
            avg_size: 256,
            max_size: 1024,
        },
        frame_size: 2048,
        ..FoldOptions::default()
    };
    let mut bytes = Vec::new();
    fold_tree(
        dir.path(),
        &WalkOptions::default(),
        &mut bytes,
        &options,
        &Quiet,
    )
    .unwrap();
    let archive = open(&bytes);
    let index = archive.index();
    let total: usize = files.iter().map(|(_, c)| c.len()).sum();
    assert!(index.frames.len() >= total.div_ceil(2048));
    assert!(
        index.frames.len() * 4 < files.len(),
        "{} frames for {} files",
        index.frames.len(),
        files.len()
    );
    assert!(index.frames.iter().all(|f| f.raw_len <= 2048));
    for (name, content) in &files {
        let mut out = Vec::new();
        mmh_dir::read_range(&archive, name, 0..u64::MAX, &mut out).unwrap();
        assert_eq!(&out, content, "{name}");
    }
    let target = dir.path().join("out");
    unfold_tree(
        &archive,
        &target,
        &["f07.txt".into()],
        Overwrite::Refuse,
        &Quiet,
    )
    .unwrap();
    assert_eq!(fs::read(target.join("f07.txt")).unwrap(), files[7].1);
    assert_eq!(fs::read_dir(&target).unwrap().count(), 1);
}

#[test]
fn deterministic_folds_of_the_same_tree_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(&dir.path().join("a"));
    let walk = WalkOptions {
        deterministic: true,
        ..WalkOptions::default()
    };
    let (first, _) = fold(&dir.path().join("a"), &walk);
    fs::set_permissions(
        dir.path().join("a/sub/deeper"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    filetime_touch(&dir.path().join("a/model.bin"));
    let (second, _) = fold(&dir.path().join("a"), &walk);
    assert_eq!(first, second);
}

fn filetime_touch(path: &Path) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
}

#[test]
fn a_subset_unfolds_only_what_lies_under_the_paths() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(&dir.path().join("src"));
    let (bytes, _) = fold(&dir.path().join("src"), &WalkOptions::default());
    let archive = open(&bytes);
    let target = dir.path().join("out");
    unfold_tree(
        &archive,
        &target,
        &["sub/deeper".into(), "script.sh".into()],
        Overwrite::Refuse,
        &Quiet,
    )
    .unwrap();
    let names: Vec<String> = snapshot(&target).into_keys().collect();
    assert_eq!(
        names,
        ["script.sh", "sub", "sub/deeper", "sub/deeper/config.json"]
    );
    // A path that names nothing fails before anything is created.
    let nothing = dir.path().join("nothing");
    let err = unfold_tree(
        &archive,
        &nothing,
        &["script.sh".into(), "sub/nope".into()],
        Overwrite::Refuse,
        &Quiet,
    )
    .unwrap_err();
    assert!(
        matches!(&err, mmh_dir::Error::NoSuchEntry { name } if name == "sub/nope"),
        "{err}"
    );
    assert!(!nothing.exists());
}

#[test]
fn existing_files_are_kept_unless_replacing_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(&dir.path().join("src"));
    let (bytes, _) = fold(&dir.path().join("src"), &WalkOptions::default());
    let archive = open(&bytes);
    let target = dir.path().join("out");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("script.sh"), b"mine").unwrap();
    let err = unfold_tree(&archive, &target, &[], Overwrite::Refuse, &Quiet).unwrap_err();
    assert!(matches!(err, mmh_dir::Error::OutputExists { .. }), "{err}");
    assert_eq!(fs::read(target.join("script.sh")).unwrap(), b"mine");
    unfold_tree(&archive, &target, &[], Overwrite::Replace, &Quiet).unwrap();
    assert_eq!(
        fs::read(target.join("script.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
}

/// An archive of the given entries; file entries get `content`.
fn hostile(entries: &[(&str, EntryKind)], content: &[u8]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new()).unwrap();
    let digest = mmh_verify::sha256(content);
    let frame = writer.push_frame(0, content.len() as u32, content).unwrap();
    let chunk = ChunkRecord {
        raw_len: content.len() as u32,
        digest,
        source: ChunkSource::Frame { frame, start: 0 },
    };
    let entries = entries
        .iter()
        .map(|(name, kind)| Entry {
            name: (*name).into(),
            mode: 0o644,
            mtime: Timestamp::default(),
            kind: match kind {
                EntryKind::File { .. } => EntryKind::File {
                    size: content.len() as u64,
                    digest,
                    chunks: vec![0],
                },
                other => other.clone(),
            },
        })
        .collect();
    writer
        .finish(
            vec![chunk],
            entries,
            Vec::new(),
            mmh_verify::merkle_root(&[digest]),
        )
        .unwrap()
        .0
}

fn file() -> EntryKind {
    EntryKind::File {
        size: 0,
        digest: [0; 32],
        chunks: vec![],
    }
}

/// Unfolds `bytes` into a fresh target beside an `outside` directory; returns the error
/// and checks that nothing appeared outside the target.
fn unfold_hostile(bytes: &[u8]) -> (mmh_dir::Error, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("outside")).unwrap();
    let archive = open(bytes);
    let err = unfold_tree(
        &archive,
        &dir.path().join("target"),
        &[],
        Overwrite::Replace,
        &Quiet,
    )
    .unwrap_err();
    assert!(
        err.is_integrity(),
        "hostile input must be an integrity error: {err}"
    );
    assert_eq!(
        fs::read_dir(dir.path().join("outside")).unwrap().count(),
        0,
        "wrote outside the target"
    );
    (err, dir)
}

#[test]
fn absolute_and_parent_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let absolute = dir.path().join("abs-victim");
    for name in [
        absolute.to_str().unwrap(),
        "../outside/x",
        "a/../../outside/x",
        "./x",
        "a//b",
        "",
    ] {
        let (err, _) = unfold_hostile(&hostile(&[(name, file())], b"pwned"));
        assert!(
            err.to_string().starts_with("refusing entry"),
            "{name:?}: {err}"
        );
    }
    assert!(!absolute.exists());
}

#[test]
fn a_path_through_a_symlink_made_earlier_in_the_unfold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("elsewhere");
    fs::create_dir(&outside).unwrap();
    let link = EntryKind::Symlink {
        target: outside.to_str().unwrap().into(),
    };
    let (err, _) = unfold_hostile(&hostile(
        &[("link", link), ("link/pwned", file())],
        b"pwned",
    ));
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

    let relative = EntryKind::Symlink {
        target: "../outside".into(),
    };
    let (err, _) = unfold_hostile(&hostile(
        &[("up", relative), ("up/pwned", file())],
        b"pwned",
    ));
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

#[test]
fn a_symlink_already_in_the_target_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    let target = dir.path().join("target");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(&target).unwrap();
    symlink(&outside, target.join("d")).unwrap();
    let bytes = hostile(
        &[("d", EntryKind::Directory), ("d/pwned", file())],
        b"pwned",
    );
    let archive = open(&bytes);
    assert!(unfold_tree(&archive, &target, &[], Overwrite::Replace, &Quiet).is_err());
    let bytes = hostile(&[("d/pwned", file())], b"pwned");
    let archive = open(&bytes);
    let err = unfold_tree(&archive, &target, &[], Overwrite::Replace, &Quiet).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}
