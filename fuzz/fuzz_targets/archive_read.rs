//! Any bytes given to the archive readers: seeking verify and pipe unfold must return an
//! error or the content, never panic, never allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(archive) = mmh_format::Archive::open(data) {
        let _ = mmh_verify::verify_archive(&archive, &|_| {});
    }
    let mut out = Vec::new();
    if mmh_dir::unfold_stream(data, &mut out, &mmh_dir::Quiet).is_ok() {
        // A stream the reader accepted must also pass the seeking reader.
        let archive = mmh_format::Archive::open(data).expect("stream-valid archive opens");
        mmh_verify::verify_archive(&archive, &|_| {}).expect("stream-valid archive verifies");
    }
});
