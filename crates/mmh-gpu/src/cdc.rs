//! Content-defined chunk boundaries on the device (`kernels/cdc.cl`), identical to
//! `fastcdc::v2020::FastCDC::new(data, min, avg, max)`.
//!
//! What fastcdc v2020 tests, worked out from its `cut_gear_arr`: from a chunk's start
//! `s`, its hash starts at zero at `s + min` and takes the bytes two at a time,
//! `hash = (hash << 2) + GEAR_LS[b(a)]`, tested with `mask << 1` and answering `a`, then
//! `hash += GEAR[b(a + 1)]`, tested with `mask` and answering `a + 1`. Since
//! `GEAR_LS[x] = GEAR[x] << 1`, the first test is the byte-at-a-time gear hash after byte
//! `a`, shifted left by one, against the mask shifted left by one: the same test, as no
//! mask has bit 63. So fastcdc cuts before the first position `p >= s + min` whose
//! byte-at-a-time hash (over the bytes from `s + min` to `p`) passes the strict mask
//! while `p - s < avg` (or the remaining length, when shorter) and the relaxed one
//! while `p - s < max` (or the remaining length), both rounded down to even (the pairs),
//! cutting at `s + max` or the end of the data when none does.
//!
//! The hash over the bytes from `s + min` equals the gear hash over the last 64 bytes as
//! soon as it has seen 64 of them. So the device marks, in two bitmaps, where the 64-byte
//! hash passes each mask (one pass over the data, all positions in parallel), and the
//! host walks the chunks: for each, it hashes the 63 positions from `s + min` itself and
//! then looks up the first marked position in the bitmaps. The walk is on the host
//! because it is sequential, each chunk starting where the last one ended, but it only
//! reads one bit per position, 64 at a time; a kernel would be one work-item doing the
//! same, with a round trip anyway to read the cut points back.
//!
//! Data larger than a device buffer goes in windows, each carrying the 64 bytes before
//! it; with several devices, each takes one window of every round.

use std::ops::Range;
use std::sync::Mutex;

use fastcdc::v2020::{Normalization, get_gear_with_seed, select_masks};
use mmh_codecs::CdcParams;

use crate::{Access, Arg, Device, DeviceInfo, Error, lock, on_each_device, room};

/// Bytes of one work-group's tile in the kernel (`TILE`); windows are whole tiles.
const TILE: usize = 4096;

/// Work-items in a work-group (`GROUP`), each of 64 positions.
const GROUP: usize = 64;

/// History bytes before each window, enough for the first position's hash.
const HISTORY: usize = 64;

/// The masks, gear table and sizes of one call.
struct Rules {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Vec<u64>,
}

/// The chunk boundaries of `data`, in windows of at most `cap` bytes (rounded down to
/// whole tiles).
pub(crate) fn boundaries<D: Device>(
    gpus: &[Mutex<D>],
    data: &[u8],
    params: &CdcParams,
    cap: usize,
) -> Result<Vec<usize>, Error> {
    let cap = (cap / TILE * TILE).max(TILE);
    let (mask_s, mask_l) = select_masks(params.avg_size as usize, Normalization::Level1);
    let rules = Rules {
        min: params.min_size as usize,
        avg: params.avg_size as usize,
        max: params.max_size as usize,
        mask_s,
        mask_l,
        gear: get_gear_with_seed(0).0.into_owned(),
    };
    let mut cuts = Vec::new();
    let mut marks = Marks::default();
    let mut start = 0;
    loop {
        while let Some(cut) = next_cut(data, start, &marks, &rules) {
            cuts.push(cut);
            start = cut;
        }
        if start == data.len() {
            return Ok(cuts);
        }
        marks.forget_before(start);
        // Windows of this round, one per device, from where the marks end.
        let mut windows = Vec::with_capacity(gpus.len());
        for gpu in gpus {
            let from = windows.last().map_or(marks.known, |w: &Range<usize>| w.end);
            if from < data.len() {
                let gpu = lock(gpu);
                let size = window_limit(gpu.info(), gpu.free_memory(), cap);
                windows.push(from..data.len().min(from + size));
            }
        }
        for (strict, relaxed) in mark_windows(gpus, data, &windows, &rules)? {
            marks.strict.extend(strict);
            marks.relaxed.extend(relaxed);
        }
        marks.known = windows.last().map_or(data.len(), |w| w.end);
    }
}

/// The largest window for a device: its input and bitmaps (a quarter of its size) in its
/// [`room`] for a batch of at most `cap` bytes, and in its largest buffer.
fn window_limit(info: &DeviceInfo, free: Option<u64>, cap: usize) -> usize {
    let buffer = info.max_buffer.saturating_sub(HISTORY as u64);
    let room = (room(info, free, cap) / 5 * 4).min(usize::try_from(buffer).unwrap_or(usize::MAX));
    (room / TILE * TILE).max(TILE)
}

/// Where the 64-byte gear hash passes each mask: bit `k` of word `w` is position
/// `base + 64 w + k`, for the positions from `base` (a multiple of 64) to `known`.
#[derive(Default)]
struct Marks {
    base: usize,
    known: usize,
    strict: Vec<u64>,
    relaxed: Vec<u64>,
}

impl Marks {
    /// The first marked position of `bits` in `range`.
    fn first(&self, bits: &[u64], range: Range<usize>) -> Option<usize> {
        let mut at = range.start;
        while at < range.end {
            let word = (at - self.base) / 64;
            let found = bits[word] & (!0 << (at % 64));
            if found != 0 {
                let position = self.base + word * 64 + found.trailing_zeros() as usize;
                return (position < range.end).then_some(position);
            }
            at = self.base + (word + 1) * 64;
        }
        None
    }

    /// Drops the words before the one holding `position`.
    fn forget_before(&mut self, position: usize) {
        let words = (position - self.base) / 64;
        self.strict.drain(..words);
        self.relaxed.drain(..words);
        self.base += words * 64;
    }
}

/// The cut that ends the chunk starting at `start`, or `None` when the data ends there
/// or its decision needs marks not computed yet.
fn next_cut(data: &[u8], start: usize, marks: &Marks, rules: &Rules) -> Option<usize> {
    let rest = data.len() - start;
    if rest == 0 {
        return None;
    }
    if rest <= rules.min {
        return Some(data.len());
    }
    let size = rest.min(rules.max);
    if start + size > marks.known {
        return None;
    }
    // fastcdc's `center` and `remaining`, rounded down to whole pairs.
    let strict_end = start + rest.min(rules.avg) / 2 * 2;
    let relaxed_end = start + size / 2 * 2;
    let first = start + rules.min;
    // Until it has seen 64 bytes, the chunk's hash differs from the device's.
    let warm = (first + 63).min(relaxed_end);
    let mut hash = 0u64;
    for (position, &byte) in (first..warm).zip(&data[first..warm]) {
        hash = (hash << 1).wrapping_add(rules.gear[byte as usize]);
        let mask = if position < strict_end {
            rules.mask_s
        } else {
            rules.mask_l
        };
        if hash & mask == 0 {
            return Some(position);
        }
    }
    marks
        .first(&marks.strict, warm..strict_end)
        .or_else(|| marks.first(&marks.relaxed, warm.max(strict_end)..relaxed_end))
        .or(Some(start + size))
}

/// A window's strict-mask and relaxed-mask bitmaps, as in [`Marks`].
type Bitmaps = (Vec<u64>, Vec<u64>);

/// The bitmaps of each window, window `i` on device `i`.
fn mark_windows<D: Device>(
    gpus: &[Mutex<D>],
    data: &[u8],
    windows: &[Range<usize>],
    rules: &Rules,
) -> Result<Vec<Bitmaps>, Error> {
    if let [window] = windows {
        return mark_window(&*lock(&gpus[0]), data, window.clone(), rules).map(|marks| vec![marks]);
    }
    on_each_device(&gpus[..windows.len()], |number, gpu| {
        mark_window(gpu, data, windows[number].clone(), rules)
    })
    .into_iter()
    .collect()
}

/// Runs `gear_candidates` over one window, whose start is a multiple of 64.
fn mark_window<D: Device>(
    gpu: &D,
    data: &[u8],
    window: Range<usize>,
    rules: &Rules,
) -> Result<Bitmaps, Error> {
    let len = window.len();
    let groups = len.div_ceil(TILE);
    let capacity = groups * GROUP;
    let mut input = gpu.buffer::<u8>(Access::ReadOnly, HISTORY + groups * TILE)?;
    // Before the data there is no history; zeros stand in. They change the hash of the
    // first 63 positions only, which are never looked up: the host hashes every chunk's
    // first 63 tested positions itself, and the first chunk's start at `min` >= 64.
    let history = match window.start.checked_sub(HISTORY) {
        Some(from) => &data[from..window.start],
        None => &[0; HISTORY],
    };
    gpu.write(&mut input, 0, history)?;
    // The rest of the last tile stays as it is: the bits of its positions are not read.
    gpu.write(&mut input, HISTORY, &data[window])?;
    let gear = gpu.upload(&rules.gear)?;
    let bits = gpu.buffer::<u64>(Access::WriteOnly, 2 * capacity)?;
    let args = [
        Arg::Mem(D::mem(&input)),
        Arg::Mem(D::mem(&gear)),
        Arg::U64(rules.mask_s),
        Arg::U64(rules.mask_l),
        Arg::Mem(D::mem(&bits)),
        Arg::U64(capacity as u64),
    ];
    // SAFETY: the arguments are gear_candidates' six, in order; work-group
    // g reads bytes g * TILE .. g * TILE + HISTORY + TILE of `input`, which has `groups`
    // tiles after the history, and the 256 values of `gear`; work-item i writes words i
    // and capacity + i of `bits`, which has 2 * capacity.
    unsafe {
        gpu.run("cdc.cl", "gear_candidates", &args, capacity, Some(GROUP))?;
    }
    let words = len.div_ceil(64);
    let mut strict = vec![0; words];
    let mut relaxed = vec![0; words];
    gpu.read(&bits, 0, &mut strict)?;
    gpu.read(&bits, capacity, &mut relaxed)?;
    Ok((strict, relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_follows_the_device() {
        let info = DeviceInfo {
            platform: String::new(),
            name: String::new(),
            version: String::new(),
            memory: 100_000,
            max_buffer: 25_000,
            compute_units: 1,
            is_gpu: false,
        };
        let cap = crate::DEFAULT_BATCH_LIMIT;
        // A stream's quarter of a quarter of the memory, but one tile at least.
        assert_eq!(window_limit(&info, None, cap), 4096);
        // What is free, but in the largest buffer, in whole tiles.
        assert_eq!(window_limit(&info, Some(1 << 20), cap), 24576);
        assert_eq!(window_limit(&info, Some(1 << 20), 10_000), 4096);
        let big = DeviceInfo {
            memory: 1 << 40,
            max_buffer: 1 << 38,
            ..info
        };
        assert_eq!(window_limit(&big, None, cap), cap / 5 * 4 / 4096 * 4096);
        assert_eq!(window_limit(&big, Some(1 << 20), cap), 208_896);
    }
}
