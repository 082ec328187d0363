//! Any stored bytes, any codec id, any raw length up to 1 MiB: decode returns exactly
//! raw_len bytes or an error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [id, a, b, c, stored @ ..] = data else {
        return;
    };
    let raw_len = usize::from_le_bytes([*a, *b, *c & 0x0F, 0, 0, 0, 0, 0]);
    let Ok(codec) = mmh_codecs::CodecId::try_from(*id % 16) else {
        return;
    };
    let mut out = Vec::new();
    if mmh_codecs::decode(
        codec,
        stored,
        raw_len,
        &mmh_codecs::CpuAccelerator,
        &mut out,
    )
    .is_ok()
    {
        assert_eq!(out.len(), raw_len);
    }
});
