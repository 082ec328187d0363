//! Any content, folded with small content-defined chunks, a frame size and the codec the
//! first byte picks, unfolds to the same bytes by seeking and by streaming.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmh_codecs::{CdcParams, CodecChoice, CodecId, EncodeParams};
use mmh_dir::{Chain, EntryMeta, FoldOptions, Quiet};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    let choice = match selector % 5 {
        0 => CodecChoice::Auto,
        n => CodecChoice::Only(CodecId::ALL[usize::from(n - 1)]),
    };
    // min 64..=256, avg 4 × min, max 4 × avg (fastcdc's smallest sizes and up); frames
    // of one to three of the largest chunks.
    let min = 64 * (1 + u32::from(selector / 5 % 4));
    let cdc = CdcParams {
        min_size: min,
        avg_size: 4 * min,
        max_size: 16 * min,
    };
    let options = FoldOptions {
        encode: EncodeParams {
            choice,
            ..EncodeParams::default()
        },
        cdc,
        frame_size: cdc.max_size * (1 + u32::from(selector / 20 % 3)),
        ..FoldOptions::default()
    };
    let meta = EntryMeta {
        name: "fuzz".into(),
        mode: 0o644,
        mtime: Default::default(),
    };
    let mut archive = Vec::new();
    mmh_dir::fold_stream(content, meta, &mut archive, &options, &Quiet).expect("fold");
    let mut streamed = Vec::new();
    mmh_dir::unfold_stream(
        archive.as_slice(),
        &mut streamed,
        &mmh_codecs::CpuAccelerator,
        &Quiet,
    )
    .expect("stream unfold");
    assert_eq!(streamed, content);
    let opened = mmh_format::Archive::open(archive.as_slice()).expect("open");
    let chain = Chain::standalone(opened).expect("a fold without base has no bases");
    let mut seeked = Vec::new();
    let entry = mmh_dir::single_file(chain.index()).expect("one file");
    mmh_dir::unfold_entry(&chain, entry, &mut seeked, &Quiet).expect("unfold");
    assert_eq!(seeked, content);
});
