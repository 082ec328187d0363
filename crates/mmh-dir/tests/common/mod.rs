//! Test content shared by the integration tests.
//!
//! Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

use std::path::Path;

use mmh_codecs::{Accelerator, CdcParams, CpuAccelerator};
use mmh_dir::{
    Chain, EntryMeta, FoldBase, FoldOptions, FoldSummary, Quiet, WalkOptions, fold_path,
    fold_stream,
};
use mmh_format::{Archive, Digest, EntryKind, Index, Timestamp};

/// 1 KiB of zeros, 1 KiB of xorshift bytes and 1.5 KiB of text: folded in 1 KiB chunks
/// with `--codec auto`, it gives pattern, store and zstd/lz4 chunks. It is also the
/// content of the golden archive golden/v1/mixed.mmh, so it must never change.
pub fn mixed_content() -> Vec<u8> {
    let mut data = vec![0u8; 1024];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    data.extend((0..1024).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    data.extend(
        b"the quick brown fox jumps over the lazy dog. "
            .iter()
            .cycle()
            .take(1500),
    );
    data
}

/// The smallest content-defined chunking fastcdc allows: chunks of 64..=1024 bytes
/// around 256, so that a few KiB of test content cut into many chunks.
pub const SMALL_CDC: CdcParams = CdcParams {
    min_size: 64,
    avg_size: 256,
    max_size: 1024,
};

/// Fold options with small chunks and frames of `frame_size` bytes.
pub fn small_options(frame_size: u32) -> FoldOptions {
    FoldOptions {
        cdc: SMALL_CDC,
        frame_size,
        threads: Some(2),
        ..FoldOptions::default()
    }
}

/// Fold options for model tests: chunks of 1..16 KiB (a tensor of 8192 f32 values is
/// two pieces of 16 KiB), frames of 64 KiB, two threads, folding against `base`.
pub fn model_options(base: Option<FoldBase>) -> FoldOptions {
    FoldOptions {
        cdc: CdcParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
        },
        frame_size: 64 << 10,
        threads: Some(2),
        base,
        ..FoldOptions::default()
    }
}

/// Writes `content` to `dir/name/file_name` and folds it from there, as `mmh fold`
/// does a file, into `dir/name.mmh`.
pub fn fold_on_disk(
    dir: &Path,
    name: &str,
    file_name: &str,
    content: &[u8],
    options: &FoldOptions,
) -> FoldSummary {
    let source = dir.join(name).join(file_name);
    std::fs::create_dir_all(source.parent().unwrap()).unwrap();
    std::fs::write(&source, content).unwrap();
    let output = std::fs::File::create(dir.join(format!("{name}.mmh"))).unwrap();
    fold_path(&source, &WalkOptions::default(), output, options, &Quiet).unwrap()
}

/// `len` xorshift bytes: incompressible, and different for each seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Metadata of a test entry called `name`.
pub fn meta(name: &str) -> EntryMeta {
    EntryMeta {
        name: name.into(),
        mode: 0o644,
        mtime: Timestamp::default(),
    }
}

/// Folds `data` as one stream called `name` into an in-memory archive.
pub fn fold_bytes(data: &[u8], name: &str, options: &FoldOptions) -> (Vec<u8>, FoldSummary) {
    let mut archive = Vec::new();
    let summary = fold_stream(data, meta(name), &mut archive, options, &Quiet).unwrap();
    assert_eq!(summary.input_bytes, data.len() as u64);
    assert_eq!(summary.archive_bytes, archive.len() as u64);
    (archive, summary)
}

/// An in-memory archive without bases, ready to read.
pub fn chain(bytes: &[u8]) -> Chain<&[u8]> {
    Chain::standalone(Archive::open(bytes).unwrap()).unwrap()
}

/// The chunk numbers of the file entry `name`.
pub fn file_chunks<'a>(index: &'a Index, name: &str) -> &'a [u32] {
    let entry = index
        .entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no entry {name:?}"));
    match &entry.kind {
        EntryKind::File { chunks, .. } => chunks,
        other => panic!("{name:?} is not a file: {other:?}"),
    }
}

/// The raw lengths of the chunks of the file entry `name`, in content order.
pub fn chunk_lens(index: &Index, name: &str) -> Vec<u32> {
    file_chunks(index, name)
        .iter()
        .map(|&c| index.chunks[c as usize].raw_len)
        .collect()
}

/// The SHA-256 of the chunks of the file entry `name`, in content order.
pub fn chunk_digests(index: &Index, name: &str) -> Vec<Digest> {
    file_chunks(index, name)
        .iter()
        .map(|&c| index.chunks[c as usize].digest)
        .collect()
}

/// The chunk lengths a whole content-defined pass over `data` gives: what every fold of
/// content that is not a model must produce (the reference backend is the oracle).
pub fn cdc_lens(data: &[u8], cdc: &CdcParams) -> Vec<u32> {
    let ends = CpuAccelerator.find_chunk_boundaries(data, cdc).unwrap();
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let len = (end - start) as u32;
            start = end;
            len
        })
        .collect()
}

/// A safetensors file: the 8-byte little-endian header length, the JSON header, then the
/// tensors' F32 values back to back in the order given.
pub fn safetensors(tensors: &[(String, Vec<f32>)]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut offset = 0;
    for (i, (name, values)) in tensors.iter().enumerate() {
        let end = offset + 4 * values.len();
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            r#""{name}":{{"dtype":"F32","shape":[{}],"data_offsets":[{offset},{end}]}}"#,
            values.len()
        ));
        offset = end;
    }
    header.push('}');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for (_, values) in tensors {
        for value in values {
            file.extend_from_slice(&value.to_le_bytes());
        }
    }
    file
}

/// `count` tensors `layer.{i}.weight` of `len` small pseudo-random F32 values each, like
/// trained weights (incompressible mantissas).
pub fn model_tensors(count: usize, len: usize, seed: u64) -> Vec<(String, Vec<f32>)> {
    let bytes = noise(count * len * 4, seed);
    (0..count)
        .map(|t| {
            let values = bytes[t * len * 4..(t + 1) * len * 4]
                .chunks_exact(4)
                .map(|b| {
                    (u32::from_le_bytes(b.try_into().unwrap()) as f32 / u32::MAX as f32 - 0.5) * 0.1
                })
                .collect();
            (format!("layer.{t}.weight"), values)
        })
        .collect()
}

/// One training step: every value of the tensors numbered in `changed` moves a little.
pub fn nudge(tensors: &[(String, Vec<f32>)], changed: &[usize]) -> Vec<(String, Vec<f32>)> {
    tensors
        .iter()
        .enumerate()
        .map(|(t, (name, values))| {
            let values = if changed.contains(&t) {
                values.iter().map(|v| v * 1.001 + 1e-5).collect()
            } else {
                values.clone()
            };
            (name.clone(), values)
        })
        .collect()
}

/// Writes `files` (relative name, content) under `root`, creating directories.
pub fn write_files(root: &Path, files: &[(&str, &[u8])]) {
    for (name, content) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
}
