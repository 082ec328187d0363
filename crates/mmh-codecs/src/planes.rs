//! Byte planes: the bytes of fixed-width values regrouped by position within the value.
//!
//! In a float tensor's bytes the sign and exponent sit in the high byte of every value,
//! and change far less than the low mantissa bytes; regrouped, each plane is far more
//! uniform and compresses better (a slightly changed bf16 tensor XORed with its old
//! bytes: 588 KB with zstd -3, 497 KB as two planes with zstd -3).

/// Appends `bytes` to `out` as `width` planes: every `width`-th byte starting at 0, then
/// at 1, and so on, followed by the `len % width` bytes of an incomplete last value.
pub fn split_planes(bytes: &[u8], width: usize, out: &mut Vec<u8>) {
    let width = width.max(1);
    let whole = bytes.len() - bytes.len() % width;
    out.reserve(bytes.len());
    for plane in 0..width {
        out.extend(bytes[..whole].iter().skip(plane).step_by(width));
    }
    out.extend_from_slice(&bytes[whole..]);
}

/// Inverts [`split_planes`]: appends the original bytes of `planes` to `out`.
pub fn join_planes(planes: &[u8], width: usize, out: &mut Vec<u8>) {
    let width = width.max(1);
    let whole = planes.len() - planes.len() % width;
    let values = whole / width;
    let start = out.len();
    out.resize(start + whole, 0);
    for (plane, bytes) in planes[..whole].chunks(values.max(1)).enumerate() {
        for (value, &byte) in bytes.iter().enumerate() {
            out[start + value * width + plane] = byte;
        }
    }
    out.extend_from_slice(&planes[whole..]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn planes_group_bytes_by_position() {
        let mut out = Vec::new();
        split_planes(&[1, 2, 3, 4, 5, 6, 7], 2, &mut out);
        assert_eq!(out, [1, 3, 5, 2, 4, 6, 7]);
        let mut back = Vec::new();
        join_planes(&out, 2, &mut back);
        assert_eq!(back, [1, 2, 3, 4, 5, 6, 7]);
    }

    proptest! {
        #[test]
        fn join_inverts_split(bytes in proptest::collection::vec(any::<u8>(), 0..300), width in 1usize..9) {
            let mut planes = Vec::new();
            split_planes(&bytes, width, &mut planes);
            prop_assert_eq!(planes.len(), bytes.len());
            let mut back = Vec::new();
            join_planes(&planes, width, &mut back);
            prop_assert_eq!(back, bytes);
        }
    }
}
