//! Codec, hashing, chunking and pipeline throughput.
//!
//! `cargo bench -p mmh-benches` (add a filter such as `encode/zstd-3` to run one case).
//! Data comes from `mmh_benches`' seeded generator, so every run measures the same bytes.

use std::hint::black_box;
use std::io::Read;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mmh_benches::{Kind, MixedData, sample};
use mmh_codecs::{
    Accelerator, CdcParams, CodecChoice, CodecId, CpuAccelerator, EncodeParams, decode, encode,
};
use mmh_dir::{EntryMeta, FoldOptions, Quiet, fold_stream, single_file, unfold_entry};
use mmh_format::Archive;

const CHUNK: usize = 4 << 20;

/// (label, choice) of every codec, zstd at the default level 3.
fn codecs() -> [(&'static str, CodecChoice); 5] {
    [
        ("store", CodecChoice::Only(CodecId::Store)),
        ("zstd-3", CodecChoice::Only(CodecId::Zstd)),
        ("lz4", CodecChoice::Only(CodecId::Lz4)),
        ("pattern", CodecChoice::Only(CodecId::Pattern)),
        ("auto", CodecChoice::Auto),
    ]
}

fn inputs() -> [(&'static str, Vec<u8>); 2] {
    [
        ("text", sample(Kind::Text, CHUNK, 1)),
        ("bf16", sample(Kind::Bf16, CHUNK, 2)),
    ]
}

fn params(choice: CodecChoice) -> EncodeParams {
    EncodeParams {
        choice,
        ..EncodeParams::default()
    }
}

fn encode_chunk(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    for (data_name, raw) in inputs() {
        for (codec_name, choice) in codecs() {
            let params = params(choice);
            let mut out = Vec::with_capacity(CHUNK);
            group.bench_function(BenchmarkId::new(codec_name, data_name), |b| {
                b.iter(|| encode(black_box(&raw), &params, &mut out).unwrap())
            });
        }
    }
    group.finish();
}

fn decode_chunk(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    for (data_name, raw) in inputs() {
        for (codec_name, choice) in codecs() {
            let mut stored = Vec::new();
            let codec = encode(&raw, &params(choice), &mut stored).unwrap();
            let mut out = Vec::with_capacity(CHUNK);
            // The id says which codec actually stored the chunk (store where it would grow).
            let id = BenchmarkId::new(codec_name, format!("{data_name} (as {codec})"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    decode(
                        codec,
                        black_box(&stored),
                        raw.len(),
                        &CpuAccelerator,
                        &mut out,
                    )
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

fn hashing_and_chunking(c: &mut Criterion) {
    let acc = CpuAccelerator;
    let mut group = c.benchmark_group("accelerator");

    let chunks: Vec<Vec<u8>> = (0..64).map(|i| sample(Kind::Random, 64 << 10, i)).collect();
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    group.throughput(Throughput::Bytes(64 * (64 << 10)));
    group.bench_function("digest_batch/64x64KiB", |b| {
        b.iter(|| acc.digest_batch(black_box(&slices)).unwrap())
    });

    let mut data = Vec::new();
    MixedData::new(3, 16 << 20).read_to_end(&mut data).unwrap();
    let cdc = CdcParams::default();
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("find_chunk_boundaries/16MiB", |b| {
        b.iter(|| acc.find_chunk_boundaries(black_box(&data), &cdc).unwrap())
    });
    group.finish();
}

/// The whole fold and verified unfold, in memory, on 32 MiB of mixed data.
fn pipeline(c: &mut Criterion) {
    let mut data = Vec::new();
    MixedData::new(4, 32 << 20).read_to_end(&mut data).unwrap();
    let meta = EntryMeta {
        name: "mixed.bin".into(),
        mode: 0o644,
        mtime: Default::default(),
    };
    let options = FoldOptions::default();
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(data.len() as u64));
    let mut archive = Vec::new();
    group.bench_function("fold/auto/32MiB", |b| {
        b.iter(|| {
            archive.clear();
            fold_stream(&data[..], meta.clone(), &mut archive, &options, &Quiet).unwrap()
        })
    });
    let archive = mmh_verify::Chain::standalone(Archive::open(archive).unwrap()).unwrap();
    let entry = single_file(archive.index()).unwrap();
    group.bench_function("unfold/auto/32MiB", |b| {
        b.iter(|| unfold_entry(&archive, entry, std::io::sink(), &Quiet).unwrap())
    });
    group.finish();
}

criterion_group!(
    benches,
    encode_chunk,
    decode_chunk,
    hashing_and_chunking,
    pipeline
);
criterion_main!(benches);
