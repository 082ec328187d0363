//! Independent blocks behind a directory of their lengths: how the entropy-coded codecs
//! (the tensor codec and the rANS byte codec, FORMAT.md §7.1 and §7.3) lay out a frame,
//! so that a decoder finds every block without decoding the ones before it, and blocks
//! decode in parallel.

/// Values (or bytes) per block: per-block statistics follow the drift of weight
/// statistics (on a bf16 model, 16 Ki values code 0.2% smaller than 64 Ki, tables
/// included).
pub const BLOCK_VALUES: usize = 16 << 10;

/// Appends a directory of block lengths (u32 LE), one per item, and the blocks that
/// `block` appends for each. Stops as soon as `out` reaches `limit` bytes and returns
/// false: the caller stores the frame instead.
pub(crate) fn write<T>(
    out: &mut Vec<u8>,
    items: impl ExactSizeIterator<Item = T>,
    limit: usize,
    mut block: impl FnMut(T, &mut Vec<u8>),
) -> bool {
    let directory = out.len();
    out.resize(directory + 4 * items.len(), 0);
    if out.len() >= limit {
        return false;
    }
    for (number, item) in items.enumerate() {
        let start = out.len();
        block(item, out);
        let len = (out.len() - start) as u32;
        out[directory + 4 * number..][..4].copy_from_slice(&len.to_le_bytes());
        if out.len() >= limit {
            return false;
        }
    }
    out.len() < limit
}

/// Splits `stored` into the `count` blocks that [`write`] laid out; nothing may follow
/// the last. Errors say which length does not fit.
pub(crate) fn read(stored: &[u8], count: usize) -> Result<Vec<&[u8]>, String> {
    let Some((directory, mut rest)) = count
        .checked_mul(4)
        .and_then(|len| stored.split_at_checked(len))
    else {
        return Err(format!("the directory of {count} blocks is cut short"));
    };
    let mut blocks = Vec::with_capacity(count);
    for (number, len) in directory.chunks_exact(4).enumerate() {
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let Some((block, after)) = rest.split_at_checked(len) else {
            return Err(format!(
                "block {number} declares {len} bytes, {} remain",
                rest.len()
            ));
        };
        blocks.push(block);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes follow the last block", rest.len()));
    }
    Ok(blocks)
}

/// The number of values in each block of `values` values.
pub(crate) fn lens(values: usize) -> impl Iterator<Item = usize> {
    (0..values)
        .step_by(BLOCK_VALUES)
        .map(move |start| BLOCK_VALUES.min(values - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_read_back_as_written() {
        let mut out = vec![9];
        assert!(write(&mut out, 0..3, 100, |i, out| out
            .extend(vec![i as u8; i + 1])));
        let blocks = read(&out[1..], 3).unwrap();
        assert_eq!(blocks, [&[0][..], &[1, 1], &[2, 2, 2]]);
        assert!(read(&out[1..out.len() - 1], 3).is_err());
        assert!(read(&out[1..], 2).is_err());
        let mut longer = out.clone();
        longer.push(0);
        assert!(read(&longer[1..], 3).is_err());
    }

    #[test]
    fn writing_stops_at_the_limit() {
        let mut out = Vec::new();
        assert!(!write(&mut out, 0..10, 50, |_, out| out.extend([0; 10])));
        // The directory (40 bytes) and the first block: the other nine are not coded.
        assert_eq!(out.len(), 50);
    }

    #[test]
    fn block_lengths_cover_the_values() {
        assert_eq!(lens(0).count(), 0);
        assert_eq!(
            lens(BLOCK_VALUES * 2 + 1).collect::<Vec<_>>(),
            [BLOCK_VALUES, BLOCK_VALUES, 1]
        );
    }
}
