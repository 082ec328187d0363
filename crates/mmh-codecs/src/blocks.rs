//! Independent blocks behind a directory of their lengths: how the entropy-coded codecs
//! (the tensor codec and the rANS byte codec, FORMAT.md §7.1 and §7.3) lay out a frame,
//! so that a decoder finds every block without decoding the ones before it, and blocks
//! decode in parallel.

/// The block sizes a reader accepts, as powers of two (1 Ki to 1 Mi values).
const BLOCK_LOGS: std::ops::RangeInclusive<u8> = 10..=20;

/// Appends the block size (`log`: blocks of `2^log` values), a directory of block
/// lengths (u32 LE) and the blocks that `block` appends for each run of `2^log` values
/// of `width` bytes in `data`. Stops as soon as `out` reaches `limit` bytes and returns
/// false: the caller stores the frame instead.
pub(crate) fn write<'a>(
    out: &mut Vec<u8>,
    data: &'a [u8],
    width: usize,
    log: u8,
    limit: usize,
    mut block: impl FnMut(&'a [u8], &mut Vec<u8>),
) -> bool {
    debug_assert!(BLOCK_LOGS.contains(&log));
    out.push(log);
    let directory = out.len();
    let blocks = data.chunks(width << log);
    out.resize(directory + 4 * blocks.len(), 0);
    if out.len() >= limit {
        return false;
    }
    for (number, values) in blocks.enumerate() {
        let start = out.len();
        block(values, out);
        let len = (out.len() - start) as u32;
        out[directory + 4 * number..][..4].copy_from_slice(&len.to_le_bytes());
        if out.len() >= limit {
            return false;
        }
    }
    out.len() < limit
}

/// Splits what [`write`] laid out for `values` values into each block's bytes and its
/// number of values; nothing may follow the last block. Errors say which field does not
/// fit.
pub(crate) fn read(stored: &[u8], values: usize) -> Result<Vec<(&[u8], usize)>, String> {
    let Some((&log, rest)) = stored.split_first() else {
        return Err("the block size is missing".into());
    };
    if !BLOCK_LOGS.contains(&log) {
        return Err(format!(
            "blocks of 2^{log} values: a reader takes 2^{} to 2^{}",
            BLOCK_LOGS.start(),
            BLOCK_LOGS.end()
        ));
    }
    let per_block = 1usize << log;
    let count = values.div_ceil(per_block);
    let Some((directory, mut rest)) = count
        .checked_mul(4)
        .and_then(|len| rest.split_at_checked(len))
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
        blocks.push((block, per_block.min(values - number * per_block)));
        rest = after;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes follow the last block", rest.len()));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: u8 = 10;
    const VALUES: usize = 1 << LOG;

    #[test]
    fn blocks_read_back_as_written() {
        let data: Vec<u8> = (0..VALUES * 2 + 3).map(|i| i as u8).collect();
        let mut out = vec![9];
        let coded = |values: &[u8], out: &mut Vec<u8>| out.push(values.len() as u8);
        assert!(write(&mut out, &data, 1, LOG, usize::MAX, coded));
        let blocks = read(&out[1..], data.len()).unwrap();
        let lens: Vec<usize> = blocks.iter().map(|&(_, n)| n).collect();
        assert_eq!(lens, [VALUES, VALUES, 3]);
        assert_eq!(blocks[2].0, [3]);
        assert!(read(&out[1..out.len() - 1], data.len()).is_err());
        assert!(read(&out[1..], data.len() - 3).is_err());
        let mut longer = out.clone();
        longer.push(0);
        assert!(read(&longer[1..], data.len()).is_err());
        let mut odd_size = out.clone();
        odd_size[1] = 40;
        assert!(read(&odd_size[1..], data.len()).is_err());
    }

    #[test]
    fn writing_stops_at_the_limit() {
        let data = vec![0u8; 10 * VALUES];
        let mut out = Vec::new();
        assert!(!write(&mut out, &data, 1, LOG, 60, |_, out| out.extend([0; 10])));
        // The size byte, the directory (40 bytes) and the first two blocks: the other
        // eight are not coded.
        assert_eq!(out.len(), 61);
    }

    #[test]
    fn no_values_make_no_blocks() {
        let mut out = Vec::new();
        assert!(!write(&mut out, &[], 2, LOG, 1, |_, _| unreachable!(
            "no block"
        )));
        assert_eq!(read(&out, 0).unwrap(), []);
    }
}
