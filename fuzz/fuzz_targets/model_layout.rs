//! Any bytes as a model file, through both entry points of `mmh-model` (the stream
//! `sniff` and the random-access `layout`): a layout that keeps its invariant, "not a
//! model", or an error; never a panic, never an allocation from a claimed size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmh_model::{Layout, Sniff};

/// The invariant `Layout` documents: tensors sorted, disjoint and inside the file,
/// each shared tensor inside a listed one.
fn check(layout: &Layout, file_len: u64) {
    let mut end = layout.header_len;
    for tensor in &layout.tensors {
        assert!(
            end <= tensor.range.start,
            "{tensor:?} overlaps or precedes the header"
        );
        assert!(tensor.range.start <= tensor.range.end && tensor.range.end <= file_len);
        end = tensor.range.end;
    }
    for shared in &layout.shared {
        assert!(
            layout.tensors.iter().any(|t| {
                t.range.start <= shared.range.start && shared.range.end <= t.range.end
            }),
            "{shared:?} lies inside no tensor"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let file_len = data.len() as u64;
    if let Ok(Sniff::Model(layout)) = mmh_model::sniff(data, file_len) {
        check(&layout, file_len);
    }
    if let Ok(Some(layout)) = mmh_model::layout(&data) {
        check(&layout, file_len);
    }
});
