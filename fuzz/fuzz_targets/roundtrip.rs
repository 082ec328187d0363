//! Any content, folded with a small chunk size and the codec the first byte picks,
//! unfolds to the same bytes by seeking and by streaming.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmh_codecs::{CodecChoice, CodecId, EncodeParams};
use mmh_dir::{EntryMeta, FoldOptions, Quiet};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    let choice = match selector % 5 {
        0 => CodecChoice::Auto,
        n => CodecChoice::Only(CodecId::ALL[usize::from(n - 1)]),
    };
    let options = FoldOptions {
        encode: EncodeParams {
            choice,
            ..EncodeParams::default()
        },
        chunk_size: 1 + u32::from(selector) * 64,
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
    mmh_dir::unfold_stream(archive.as_slice(), &mut streamed, &Quiet).expect("stream unfold");
    assert_eq!(streamed, content);
    let opened = mmh_format::Archive::open(archive.as_slice()).expect("open");
    let mut seeked = Vec::new();
    let entry = mmh_dir::single_file(opened.index()).expect("one file");
    mmh_dir::unfold_entry(&opened, entry, &mut seeked, &Quiet).expect("unfold");
    assert_eq!(seeked, content);
});
