//! Test content shared by the integration tests.

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
