//! Any bytes given to the archive readers: seeking verify and pipe unfold must return an
//! error or the content, never panic, never allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmh_verify::Chain;

fuzz_target!(|data: &[u8]| {
    if let Ok(archive) = mmh_format::Archive::open(data) {
        // Listing and comparing read only the index, which opening has validated.
        let _ = mmh_dir::list_entries(archive.index());
        let _ = mmh_dir::diff(archive.index(), archive.index());
        // An archive that names bases cannot be read alone: that must be an error too.
        if let Ok(chain) = Chain::standalone(archive) {
            let _ = mmh_verify::verify_archive(&chain, &|_| {});
        }
    }
    let mut out = Vec::new();
    if mmh_dir::unfold_stream(data, &mut out, &mmh_codecs::CpuAccelerator, &mmh_dir::Quiet).is_ok()
    {
        // A stream the reader accepted must also pass the seeking reader.
        let archive = mmh_format::Archive::open(data).expect("stream-valid archive opens");
        let chain = Chain::standalone(archive).expect("a stream-valid archive has no bases");
        mmh_verify::verify_archive(&chain, &|_| {}).expect("stream-valid archive verifies");
    }
});
