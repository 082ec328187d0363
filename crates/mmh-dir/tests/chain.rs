//! Folding against a base archive: a fine-tuned model stores only what changed (chunks
//! found in the base are referenced, changed tensors coded as deltas), chains of
//! versions resolve through every link, a missing or wrong base is named, a
//! self-contained fold needs no base, and damage in a base is caught, never unfolded.

mod common;

use std::fs::{self, File};
use std::path::Path;

use common::{fold_on_disk, model_options, model_tensors, noise, nudge, safetensors};
use mmh_dir::{
    BaseMode, Chain, FoldBase, FoldOptions, FoldSummary, Overwrite, Quiet, WalkOptions, fold_path,
    fold_tree, open_archive, open_chain, open_file, read_range, single_file, unfold_entry,
    unfold_path, unfold_to_path,
};
use mmh_format::consts::FRAME_HEADER_LEN;
use mmh_format::{Archive, ChunkSource, Index};
use proptest::prelude::*;

const TENSORS: usize = 40;
/// F32 values per tensor: 32 KiB.
const VALUES: usize = 8192;
/// Two tensors of forty (5%) change from one version to the next.
const CHANGED: [usize; 2] = [7, 23];

fn base(path: &Path, mode: BaseMode) -> Option<FoldBase> {
    Some(FoldBase::open(path, mode, &[]).unwrap())
}

/// The only file of the archive, unfolded through `chain` and checked by `verify_archive`.
fn unfold_all(chain: &Chain<File>) -> Vec<u8> {
    let report = mmh_verify::verify_archive(chain, &|_| {}).unwrap();
    let mut out = Vec::new();
    unfold_entry(chain, single_file(chain.index()).unwrap(), &mut out, &Quiet).unwrap();
    assert_eq!(report.content_bytes, out.len() as u64);
    out
}

fn count(index: &Index, f: impl Fn(&ChunkSource) -> bool) -> usize {
    index.chunks.iter().filter(|c| f(&c.source)).count()
}

fn is_base(s: &ChunkSource) -> bool {
    matches!(s, ChunkSource::Base { .. })
}

fn is_delta(s: &ChunkSource) -> bool {
    matches!(s, ChunkSource::Delta { .. })
}

fn size(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// v1, and v2 where [`CHANGED`] tensors moved a little, both folded; v2 against v1.
fn fine_tuned(dir: &Path) -> (Vec<u8>, Vec<u8>, FoldSummary) {
    let tensors = model_tensors(TENSORS, VALUES, 1);
    let v1 = safetensors(&tensors);
    let v2 = safetensors(&nudge(&tensors, &CHANGED));
    assert_eq!(v1.len(), v2.len());
    fold_on_disk(dir, "v1", "model.safetensors", &v1, &model_options(None));
    let summary = fold_on_disk(
        dir,
        "v2",
        "model.safetensors",
        &v2,
        &model_options(base(&dir.join("v1.mmh"), BaseMode::Reference)),
    );
    (v1, v2, summary)
}

#[test]
fn a_fine_tuned_model_stores_only_its_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, v2, summary) = fine_tuned(dir.path());
    let (v1_size, v2_size) = (
        size(&dir.path().join("v1.mmh")),
        size(&dir.path().join("v2.mmh")),
    );
    // Weights keep most of their size even as planes, so what follows compares the base
    // fold with a full one, not with an archive of nothing.
    assert!(
        v1_size > v2.len() as u64 / 2,
        "weights keep most of their size: {v1_size}"
    );
    assert!(
        v2_size * 10 < v1_size,
        "v2 takes {v2_size} bytes against v1's {v1_size}"
    );
    // Every changed tensor is coded as a delta; everything else is found in the base.
    let changed_bytes = (CHANGED.len() * VALUES * 4) as u64;
    assert_eq!(summary.delta_bytes, changed_bytes, "{summary:?}");
    assert_eq!(
        summary.base_bytes,
        v2.len() as u64 - changed_bytes,
        "{summary:?}"
    );
    assert_eq!(summary.archive_bytes, v2_size);

    let v1_archive = open_file(&dir.path().join("v1.mmh")).unwrap();
    let v2_archive = open_file(&dir.path().join("v2.mmh")).unwrap();
    let index = v2_archive.index();
    assert_eq!(index.bases.len(), 1);
    assert_eq!(index.bases[0].name, "v1.mmh");
    assert_eq!(index.bases[0].index_digest, v1_archive.index_digest());
    // Two pieces of 16 KiB per changed tensor.
    assert_eq!(count(index, is_delta), 2 * CHANGED.len());
    assert_eq!(
        count(index, is_base),
        index.chunks.len() - 2 * CHANGED.len()
    );

    // The base sits next to it under its recorded name: found without being named.
    let chain = open_archive(&dir.path().join("v2.mmh")).unwrap();
    assert_eq!(chain.bases().len(), 1);
    assert_eq!(unfold_all(&chain), v2);
    // Ranges across the pieces of a changed tensor and its unchanged neighbour.
    let tensor_start = v2.len() - TENSORS * VALUES * 4;
    for t in CHANGED {
        let start = (tensor_start + t * VALUES * 4 - 100) as u64;
        for range in [start..start + 200, start + 16_000..start + 17_000] {
            let mut out = Vec::new();
            read_range(&chain, "model.safetensors", range.clone(), &mut out).unwrap();
            assert_eq!(out, v2[range.start as usize..range.end as usize]);
        }
    }
    let out = dir.path().join("out.safetensors");
    unfold_path(&chain, &out, &[], Overwrite::Refuse, &Quiet).unwrap();
    assert_eq!(fs::read(&out).unwrap(), v2);
}

#[test]
fn a_chain_of_three_versions_unfolds_through_every_link() {
    let dir = tempfile::tempdir().unwrap();
    let step1 = model_tensors(TENSORS, VALUES, 2);
    let step2 = nudge(&step1, &[3]);
    let step3 = nudge(&step2, &[3, 30]);
    fold_on_disk(
        dir.path(),
        "step1",
        "model.safetensors",
        &safetensors(&step1),
        &model_options(None),
    );
    let path = |name: &str| dir.path().join(format!("{name}.mmh"));
    fold_on_disk(
        dir.path(),
        "step2",
        "model.safetensors",
        &safetensors(&step2),
        &model_options(base(&path("step1"), BaseMode::Reference)),
    );
    let summary = fold_on_disk(
        dir.path(),
        "step3",
        "model.safetensors",
        &safetensors(&step3),
        &model_options(base(&path("step2"), BaseMode::Reference)),
    );
    assert!(
        summary.base_bytes > 0 && summary.delta_bytes > 0,
        "{summary:?}"
    );
    assert!(size(&path("step3")) * 10 < size(&path("step1")));

    let chain = open_archive(&path("step3")).unwrap();
    assert_eq!(chain.bases().len(), 1);
    assert_eq!(chain.index().bases[0].name, "step2.mmh");
    let step2_chain = &chain.bases()[0];
    assert_eq!(step2_chain.bases().len(), 1);
    assert!(step2_chain.bases()[0].bases().is_empty());
    // Some chunks resolve through two links: a reference to a reference, and a delta
    // (tensor 3 changed twice) against a delta.
    let step2_index = step2_chain.index();
    let through = |f: fn(&ChunkSource) -> bool, g: fn(&ChunkSource) -> bool| {
        chain.index().chunks.iter().any(|c| match c.source {
            ChunkSource::Base { chunk, .. } | ChunkSource::Delta { chunk, .. } if f(&c.source) => {
                g(&step2_index.chunks[chunk as usize].source)
            }
            _ => false,
        })
    };
    assert!(through(is_base, is_base));
    assert!(through(is_delta, is_delta));
    assert_eq!(unfold_all(&chain), safetensors(&step3));

    // Moved elsewhere, the first link is named by the archive that references it, and
    // found again when given (matched by content, whatever its name).
    let moved = dir.path().join("elsewhere.mmh");
    fs::rename(path("step1"), &moved).unwrap();
    match open_archive(&path("step3")).unwrap_err() {
        mmh_dir::Error::BaseNotFound { name, archive } => {
            assert_eq!((name.as_str(), archive), ("step1.mmh", path("step2")));
        }
        other => panic!("{other}"),
    }
    let chain = open_chain(&path("step3"), &[moved]).unwrap();
    assert_eq!(unfold_all(&chain), safetensors(&step3));
}

#[test]
fn a_missing_base_is_named_and_can_be_given() {
    let dir = tempfile::tempdir().unwrap();
    let (_, v2, _) = fine_tuned(dir.path());
    let v2_path = dir.path().join("v2.mmh");
    let moved = dir.path().join("kept-elsewhere.mmh");
    fs::rename(dir.path().join("v1.mmh"), &moved).unwrap();
    let err = open_archive(&v2_path).unwrap_err();
    assert!(!err.is_integrity(), "a missing file is not damage: {err}");
    assert!(err.to_string().contains("--base"), "{err}");
    match err {
        mmh_dir::Error::BaseNotFound { name, archive } => {
            assert_eq!(
                (name.as_str(), archive.as_path()),
                ("v1.mmh", v2_path.as_path())
            );
        }
        other => panic!("{other}"),
    }
    // Without its base the archive still lists, but it cannot be read.
    let alone = open_file(&v2_path).unwrap();
    assert!(matches!(
        Chain::standalone(alone).unwrap_err(),
        mmh_verify::Error::MissingBase { name } if name == "v1.mmh"
    ));
    let chain = open_chain(&v2_path, &[moved]).unwrap();
    assert_eq!(unfold_all(&chain), v2);
}

#[test]
fn a_different_archive_is_never_taken_for_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, _, _) = fine_tuned(dir.path());
    let v2_path = dir.path().join("v2.mmh");
    fs::rename(dir.path().join("v1.mmh"), dir.path().join("real-v1.mmh")).unwrap();
    // An impostor: the same model folded again with other options (another archive,
    // whose chunks partly coincide), under another name, then under the base's name.
    let other = FoldOptions {
        frame_size: 32 << 10,
        ..model_options(None)
    };
    fold_on_disk(dir.path(), "impostor", "model.safetensors", &v1, &other);
    let impostor = dir.path().join("impostor.mmh");
    let err = open_chain(&v2_path, std::slice::from_ref(&impostor)).unwrap_err();
    assert!(matches!(err, mmh_dir::Error::BaseNotFound { .. }), "{err}");
    fs::copy(&impostor, dir.path().join("v1.mmh")).unwrap();
    let err = open_archive(&v2_path).unwrap_err();
    assert!(matches!(err, mmh_dir::Error::BaseNotFound { .. }), "{err}");
    // Joined by hand, the chain refuses it.
    let err = Chain::new(
        open_file(&v2_path).unwrap(),
        vec![Chain::standalone(open_file(&impostor).unwrap()).unwrap()],
    )
    .unwrap_err();
    assert!(
        matches!(&err, mmh_verify::Error::WrongBase { name } if name == "v1.mmh"),
        "{err}"
    );
    assert!(err.is_integrity());
}

#[test]
fn a_self_contained_fold_needs_no_base() {
    let dir = tempfile::tempdir().unwrap();
    let (_, v2, _) = fine_tuned(dir.path());
    let copy = fold_on_disk(
        dir.path(),
        "v2-alone",
        "model.safetensors",
        &v2,
        &model_options(base(&dir.path().join("v1.mmh"), BaseMode::Copy)),
    );
    let changed_bytes = (CHANGED.len() * VALUES * 4) as u64;
    // The unchanged chunks are copied from the base as stored; the changed ones are
    // stored anew (no delta: there is no base to apply it to).
    assert_eq!(copy.base_bytes, v2.len() as u64 - changed_bytes, "{copy:?}");
    assert_eq!(copy.delta_bytes, 0);
    let path = dir.path().join("v2-alone.mmh");
    let index = open_file(&path).unwrap().index().clone();
    assert!(index.bases.is_empty());
    assert_eq!(
        count(&index, |s| matches!(s, ChunkSource::Frame { .. })),
        index.chunks.len()
    );
    // No old bytes of the changed tensors are carried along: about what folding v2 with
    // no base at all costs.
    fold_on_disk(
        dir.path(),
        "v2-plain",
        "model.safetensors",
        &v2,
        &model_options(None),
    );
    let plain = size(&dir.path().join("v2-plain.mmh"));
    assert!(
        size(&path) <= plain + plain / 100,
        "self-contained {} vs no base {plain}",
        size(&path)
    );

    let referenced = unfold_all(&open_archive(&dir.path().join("v2.mmh")).unwrap());
    fs::remove_file(dir.path().join("v1.mmh")).unwrap();
    let alone = unfold_all(&open_archive(&path).unwrap());
    assert_eq!(alone, v2);
    assert_eq!(alone, referenced);
}

#[test]
fn the_same_big_file_twice_in_a_tree_costs_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let big = noise(1 << 20, 11);
    let tree = dir.path().join("tree");
    common::write_files(&tree, &[("a.bin", &big), ("sub/same-as-a.bin", &big)]);
    let mut single = Vec::new();
    fold_path(
        &tree.join("a.bin"),
        &WalkOptions::default(),
        &mut single,
        &model_options(None),
        &Quiet,
    )
    .unwrap();
    let mut both = Vec::new();
    let summary = fold_tree(
        &tree,
        &WalkOptions::default(),
        &mut both,
        &model_options(None),
        &Quiet,
    )
    .unwrap();
    assert_eq!(summary.deduplicated_bytes, big.len() as u64);
    assert!(
        (both.len() as f64) < 1.1 * single.len() as f64,
        "{} bytes for both, {} for one",
        both.len(),
        single.len()
    );
    let chain = common::chain(&both);
    for name in ["a.bin", "sub/same-as-a.bin"] {
        let mut out = Vec::new();
        read_range(&chain, name, 0..u64::MAX, &mut out).unwrap();
        assert!(out == big, "{name}");
    }
}

/// Flips a byte in the stored bytes of frame `frame` of the archive at `path`.
fn damage_frame(path: &Path, frame: u32) -> u64 {
    let offset = open_file(path).unwrap().index().frames[frame as usize].offset;
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize + FRAME_HEADER_LEN + 5] ^= 0x01;
    fs::write(path, bytes).unwrap();
    offset
}

#[test]
fn damage_in_the_base_fails_the_unfold_and_never_gives_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, v2, _) = fine_tuned(dir.path());
    let v1_path = dir.path().join("v1.mmh");
    let pristine = fs::read(&v1_path).unwrap();
    let v1_index = open_file(&v1_path).unwrap().index().clone();
    let v2_index = open_file(&dir.path().join("v2.mmh"))
        .unwrap()
        .index()
        .clone();
    // A base frame that a referenced chunk lies in, and one that a delta is taken against.
    let base_frame = |f: fn(&ChunkSource) -> bool| {
        let chunk = v2_index
            .chunks
            .iter()
            .find_map(|c| match c.source {
                ChunkSource::Base { chunk, .. } | ChunkSource::Delta { chunk, .. }
                    if f(&c.source) =>
                {
                    Some(chunk)
                }
                _ => None,
            })
            .unwrap();
        match v1_index.chunks[chunk as usize].source {
            ChunkSource::Frame { frame, .. } => frame,
            other => panic!("{other:?}"),
        }
    };
    for (what, frame) in [
        ("referenced", base_frame(is_base)),
        ("delta", base_frame(is_delta)),
    ] {
        fs::write(&v1_path, &pristine).unwrap();
        let offset = damage_frame(&v1_path, frame);
        // The base's index is intact, so the chain opens; reading the frame fails.
        let chain = open_archive(&dir.path().join("v2.mmh")).unwrap();
        // The error names the base archive, then the frame in it.
        match mmh_verify::verify_archive(&chain, &|_| {}).unwrap_err() {
            mmh_verify::Error::InBase { name, source } => match *source {
                mmh_verify::Error::Frame {
                    frame: f,
                    archive_offset,
                    ..
                } => assert_eq!(
                    (name.as_str(), f, archive_offset),
                    ("v1.mmh", frame, offset),
                    "{what}"
                ),
                other => panic!("{what}: {other}"),
            },
            other => panic!("{what}: {other}"),
        }
        let mut out = Vec::new();
        let entry = single_file(chain.index()).unwrap();
        let err = unfold_entry(&chain, entry, &mut out, &Quiet).unwrap_err();
        assert!(err.is_integrity(), "{what}: {err}");
        assert!(
            out.len() < v2.len() && v2.starts_with(&out),
            "{what}: wrong bytes written"
        );
        let dest = dir.path().join("out");
        let err = unfold_to_path(&chain, entry, &dest, Overwrite::Refuse, &Quiet).unwrap_err();
        assert!(err.is_integrity(), "{what}: {err}");
        assert!(!dest.exists(), "{what}: a damaged output was committed");
        // The base itself reports the same damage.
        let base = open_archive(&v1_path).unwrap();
        assert!(mmh_verify::verify_archive(&base, &|_| {}).is_err());
    }
}

/// A damaged base that passes its frame checksum (a forger re-sealed it) is still
/// caught by the chunk digests.
#[test]
fn a_forged_base_frame_is_caught_by_the_chunk_digest() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = model_tensors(TENSORS, VALUES, 1);
    let stored_raw = FoldOptions {
        encode: mmh_codecs::EncodeParams {
            choice: mmh_codecs::CodecChoice::Only(mmh_codecs::CodecId::Store),
            ..Default::default()
        },
        ..model_options(None)
    };
    fold_on_disk(
        dir.path(),
        "v1",
        "model.safetensors",
        &safetensors(&tensors),
        &stored_raw,
    );
    let v1_path = dir.path().join("v1.mmh");
    let v2 = safetensors(&nudge(&tensors, &CHANGED));
    fold_on_disk(
        dir.path(),
        "v2",
        "model.safetensors",
        &v2,
        &model_options(base(&v1_path, BaseMode::Reference)),
    );
    let archive = Archive::open(fs::read(&v1_path).unwrap()).unwrap();
    // A frame stored raw: change a byte of a tensor, re-seal its checksum.
    let (number, record) = archive.index().frames.iter().enumerate().nth(3).unwrap();
    let mut bytes = fs::read(&v1_path).unwrap();
    let body = record.offset as usize + FRAME_HEADER_LEN;
    bytes[body + 100] ^= 0x80;
    let stored = bytes[body..body + record.stored_len as usize].to_vec();
    let header = mmh_format::FrameHeader::new(
        mmh_format::FrameKind::Data,
        record.codec,
        record.raw_len,
        &stored,
    )
    .unwrap();
    bytes[record.offset as usize..body].copy_from_slice(&header.to_bytes());
    fs::write(&v1_path, bytes).unwrap();
    let chain = open_archive(&dir.path().join("v2.mmh")).unwrap();
    let err = mmh_verify::verify_archive(&chain, &|_| {}).unwrap_err();
    match &err {
        mmh_verify::Error::InBase { name, source } => match &**source {
            mmh_verify::Error::ChunkDigest { location, .. } => {
                assert_eq!(name, "v1.mmh");
                assert_eq!(location.archive_offset, record.offset, "{err}");
            }
            other => panic!("frame {number}: {other}"),
        },
        other => panic!("frame {number}: {other}"),
    }
    let mut out = Vec::new();
    let entry = single_file(chain.index()).unwrap();
    assert!(unfold_entry(&chain, entry, &mut out, &Quiet).is_err());
    assert!(v2.starts_with(&out), "wrong bytes written");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Any model, any edit of some of its tensors, any chunking: the version folded
    /// against the previous one unfolds to exactly its bytes.
    #[test]
    fn any_edit_folded_against_its_base_unfolds_exactly(
        shapes in prop::collection::vec(1usize..3000, 1..10),
        changed in prop::collection::vec(any::<bool>(), 10),
        seed in any::<u64>(),
        (cdc, frame_size) in prop_oneof![
            Just((common::SMALL_CDC, 1024u32)),
            Just((common::SMALL_CDC, 8192)),
            Just((model_options(None).cdc, 16384)),
        ],
    ) {
        let tensors: Vec<(String, Vec<f32>)> = shapes
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let values = model_tensors(1, len, seed ^ i as u64).remove(0).1;
                (format!("t{i}"), values)
            })
            .collect();
        let changed: Vec<usize> = (0..shapes.len()).filter(|&i| changed[i]).collect();
        let old = safetensors(&tensors);
        let new = safetensors(&nudge(&tensors, &changed));
        let dir = tempfile::tempdir().unwrap();
        let (old_path, new_path) = (dir.path().join("old.mmh"), dir.path().join("new.mmh"));
        let options = |base| FoldOptions { cdc, frame_size, threads: Some(2), base, ..FoldOptions::default() };
        let mut file = File::create(&old_path).unwrap();
        mmh_dir::fold_stream(old.as_slice(), common::meta("m.safetensors"), &mut file, &options(None), &Quiet).unwrap();
        let mut file = File::create(&new_path).unwrap();
        let summary = mmh_dir::fold_stream(
            new.as_slice(),
            common::meta("m.safetensors"),
            &mut file,
            &options(base(&old_path, BaseMode::Reference)),
            &Quiet,
        )
        .unwrap();
        prop_assert!(summary.base_bytes > 0, "{:?}", summary);
        if changed.is_empty() {
            prop_assert_eq!(summary.base_bytes, new.len() as u64);
        }
        let chain = open_archive(&new_path).unwrap();
        prop_assert_eq!(unfold_all(&chain), new);
    }
}

#[test]
fn a_chain_deeper_than_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let content = b"the same small file, version after version\n".repeat(3);
    let path = |n: usize| dir.path().join(format!("v{n}.mmh"));
    // v0 stands alone; each later version references the one before.
    let last = mmh_verify::MAX_CHAIN_DEPTH + 1;
    for n in 0..=last {
        let base = n
            .checked_sub(1)
            .map(|p| FoldBase::open(&path(p), BaseMode::Reference, &[]).unwrap());
        let mut file = File::create(path(n)).unwrap();
        let summary = mmh_dir::fold_stream(
            content.as_slice(),
            common::meta("f"),
            &mut file,
            &model_options(base),
            &Quiet,
        )
        .unwrap();
        assert_eq!(
            summary.base_bytes,
            if n == 0 { 0 } else { content.len() as u64 }
        );
    }
    // MAX_CHAIN_DEPTH links below the head: still read, through every one.
    let deepest = open_archive(&path(last - 1)).unwrap();
    assert_eq!(unfold_all(&deepest), content);
    // One more is refused, as an archive to read and as a base.
    let too_deep = |err: &mmh_dir::Error| {
        matches!(err, mmh_dir::Error::Verify(e)
            if matches!(**e, mmh_verify::Error::ChainTooDeep { limit } if limit == mmh_verify::MAX_CHAIN_DEPTH))
    };
    let err = open_archive(&path(last)).unwrap_err();
    assert!(too_deep(&err), "{err}");
    let err = FoldBase::open(&path(last), BaseMode::Reference, &[]).unwrap_err();
    assert!(too_deep(&err), "{err}");
}

#[test]
fn a_tree_folds_against_its_previous_version_and_diffs_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let big = noise(300 << 10, 21);
    let mut edited = big.clone();
    edited[150_000..150_100].fill(0);
    let walk = WalkOptions {
        deterministic: true,
        ..WalkOptions::default()
    };
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    common::write_files(
        &old,
        &[
            ("weights.bin", &big),
            ("notes.txt", b"v1\n"),
            ("gone.txt", b"bye\n"),
        ],
    );
    common::write_files(
        &new,
        &[
            ("moved/weights.bin", &big),
            ("edited.bin", &edited),
            ("notes.txt", b"v2\n"),
        ],
    );
    let old_path = dir.path().join("old.mmh");
    fold_tree(
        &old,
        &walk,
        File::create(&old_path).unwrap(),
        &model_options(None),
        &Quiet,
    )
    .unwrap();
    let new_path = dir.path().join("new.mmh");
    let base = base(&old_path, BaseMode::Reference);
    let summary = fold_tree(
        &new,
        &walk,
        File::create(&new_path).unwrap(),
        &model_options(base),
        &Quiet,
    )
    .unwrap();
    // The moved file is all in the base, and the edited copy of it mostly.
    assert!(
        summary.base_bytes > 2 * big.len() as u64 - 40_000,
        "{summary:?}"
    );
    assert!(size(&new_path) < 40_000, "{} bytes", size(&new_path));

    let chain = open_archive(&new_path).unwrap();
    mmh_verify::verify_archive(&chain, &|_| {}).unwrap();
    let out = dir.path().join("out");
    mmh_dir::unfold_tree(&chain, &out, &[], Overwrite::Refuse, &Quiet).unwrap();
    assert!(fs::read(out.join("moved/weights.bin")).unwrap() == big);
    assert!(fs::read(out.join("edited.bin")).unwrap() == edited);
    assert_eq!(fs::read(out.join("notes.txt")).unwrap(), b"v2\n");

    let (old_index, new_index) = (open_file(&old_path).unwrap(), open_file(&new_path).unwrap());
    let diff = mmh_dir::diff(old_index.index(), new_index.index());
    let names = |entries: &[&mmh_format::Entry]| -> Vec<String> {
        entries.iter().map(|e| e.name.clone()).collect()
    };
    assert_eq!(
        names(&diff.added),
        ["edited.bin", "moved", "moved/weights.bin"]
    );
    assert_eq!(names(&diff.removed), ["gone.txt", "weights.bin"]);
    assert_eq!(names(&diff.changed), ["notes.txt"]);
    assert_eq!(diff.unchanged, 0);
    // What the new version stores: the chunks around the edit, and the new notes.
    let stored: u64 = new_index
        .index()
        .chunks
        .iter()
        .filter(|c| !is_base(&c.source))
        .map(|c| u64::from(c.raw_len))
        .sum();
    assert_eq!(diff.new_chunk_bytes, stored);
    assert!(
        diff.new_chunks >= 2 && diff.new_chunk_bytes < 40_000,
        "{diff:?}"
    );
}
