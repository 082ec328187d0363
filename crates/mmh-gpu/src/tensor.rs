//! The tensor codec's blocks on the device (`kernels/tensor.cl`).
//!
//! Encoding makes two trips to the host over each batch of blocks, the values uploaded
//! once: `tensor_split` gives each block's OR of low mantissa bits and symbol histogram;
//! the host turns those into zero bits, frequencies and encoder constants with
//! [`mmh_codecs::gpu`] (the CPU codec's own functions); `tensor_pack` packs the raw bits,
//! `tensor_encode_lanes` runs the rANS lanes (one work-item per lane, several blocks per
//! work-group) and `tensor_compact` puts each block's words in stored order. The host lays
//! out the payload from the parts with [`gpu::write_payload`], so it is the CPU's byte for
//! byte. Decoding checks the whole
//! payload on the host first ([`gpu::read_payload`]), then `tensor_decode_lanes` decodes
//! the symbols and `tensor_assemble` rebuilds the values.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard, TryLockError};

use mmh_codecs::gpu::{self, BlockToDecode, EncodedBlock, LANES};
use mmh_codecs::{BLOCK_VALUES, FloatKind};

use crate::{Access, Arg, Device, Error, Scalar, room};

/// Work-group sizes, as `tensor.cl` defines them.
const SPLIT_WG: usize = 256;
const PACK_WG: usize = 64;
const COMPACT_WG: usize = 64;
const ASSEMBLE_WG: usize = 64;
/// Work-items of a `tensor_encode_lanes` work-group, LANES per block: 8 blocks' lanes
/// keep two warps busy, where one work-group per block would leave most of a warp idle.
const LANES_WG: usize = 64;
/// Words of a block's decode parameters (`P_WORDS` in `tensor.cl`).
const PARAM_WORDS: usize = 7 + LANES;
/// A block's `P_PACKED_FIRST` when its decoding table is not packed (`NOT_PACKED`).
const NOT_PACKED: u32 = u32::MAX;
/// Words of an encoder table entry (`ENC_WORDS`).
const ENC_WORDS: usize = 5;

/// Codes `raw` as values of `kind`, in batches of at most `batch_limit` bytes of device
/// memory (and what the device allows).
pub(crate) fn encode<D: Device>(
    gpus: &[Mutex<D>],
    raw: &[u8],
    kind: FloatKind,
    out: &mut Vec<u8>,
    batch_limit: usize,
) -> Result<bool, mmh_codecs::Error> {
    let width = kind.width();
    let values = raw.len() / width;
    let k = kind.symbol_mantissa_bits();
    let blocks = values.div_ceil(BLOCK_VALUES);
    let mut parts = Parts::default();
    if blocks > 0 {
        let gpu = lock(gpus)?;
        let alphabet = 1usize << kind.symbol_bits(k);
        // Per block: the values, packed bits, emitted words (u32) and stored words
        // (u16), histogram and encoder table.
        let block_bytes = BLOCK_VALUES * (2 * width + 6) + alphabet * 4 * (1 + ENC_WORDS);
        let largest = BLOCK_VALUES * width.max(4);
        let batch = batch_blocks(&*gpu, batch_limit, block_bytes, largest);
        for start in (0..blocks).step_by(batch) {
            let end = (start + batch).min(blocks);
            let bytes =
                start * BLOCK_VALUES * width..(end * BLOCK_VALUES * width).min(values * width);
            encode_batch(&*gpu, &raw[bytes], kind, &mut parts)?;
        }
    }
    let blocks: Vec<EncodedBlock<'_>> = parts
        .blocks
        .iter()
        .map(|block| EncodedBlock {
            zero_bits: block.zero_bits,
            raw_bits: &parts.packed[block.raw_bits.clone()],
            freqs: &block.freqs,
            states: block.states,
            words: &parts.words[block.words.clone()],
        })
        .collect();
    Ok(gpu::write_payload(raw, kind, &blocks, out))
}

/// What the device coded, block by block: the packed raw bits and the words of all
/// blocks back to back, and each block's share.
#[derive(Default)]
struct Parts {
    packed: Vec<u8>,
    words: Vec<u16>,
    blocks: Vec<BlockParts>,
}

struct BlockParts {
    zero_bits: u32,
    raw_bits: Range<usize>,
    freqs: Vec<u32>,
    states: [u32; LANES],
    words: Range<usize>,
}

/// Codes the whole values in `raw` (at most a batch of blocks) and appends their parts.
fn encode_batch<D: Device>(
    gpu: &D,
    raw: &[u8],
    kind: FloatKind,
    parts: &mut Parts,
) -> Result<(), Error> {
    let width = kind.width();
    let values = raw.len() / width;
    let blocks = values.div_ceil(BLOCK_VALUES);
    let k = kind.symbol_mantissa_bits();
    let symbol_bits = kind.symbol_bits(k);
    let low_bits = kind.low_bits(k);
    let alphabet = 1usize << symbol_bits;
    let common: [Arg<D::Mem>; 5] = [
        Arg::U32(values as u32),
        Arg::U32(BLOCK_VALUES as u32),
        Arg::U32(width as u32),
        Arg::U32(symbol_bits),
        Arg::U32(low_bits),
    ];

    let raw_buf = upload(gpu, raw)?;
    let hists = scratch::<D, u32>(gpu, blocks * alphabet)?;
    let ors = scratch::<D, u32>(gpu, 2 * blocks)?;
    let mut args = vec![Arg::Mem(D::mem(&raw_buf))];
    args.extend(common);
    args.extend([Arg::Mem(D::mem(&hists)), Arg::Mem(D::mem(&ors))]);
    run(gpu, "tensor_split", blocks, SPLIT_WG, &args)?;
    let mut counts = vec![0u32; blocks * alphabet];
    download(gpu, &hists, &mut counts)?;
    let mut or_halves = vec![0u32; 2 * blocks];
    download(gpu, &ors, &mut or_halves)?;

    let mut zero_bits = Vec::with_capacity(blocks);
    let mut table = Vec::with_capacity(blocks * alphabet * ENC_WORDS);
    let mut freqs = Vec::with_capacity(blocks);
    for (number, block_counts) in counts.chunks_exact(alphabet).enumerate() {
        let ones = u64::from(or_halves[2 * number]) | u64::from(or_halves[2 * number + 1]) << 32;
        zero_bits.push(gpu::zero_bits(ones, low_bits) as u8);
        let n = BLOCK_VALUES.min(values - number * BLOCK_VALUES);
        let block_freqs = gpu::normalize(block_counts, n);
        for enc in gpu::encoder_table(&block_freqs) {
            table.extend([
                enc.x_max,
                enc.rcp_freq,
                enc.rcp_shift,
                enc.bias,
                enc.cmpl_freq,
            ]);
        }
        freqs.push(block_freqs);
    }

    let zero_buf = upload(gpu, &zero_bits)?;
    let packed = scratch::<D, u8>(gpu, raw.len())?;
    let args = [
        Arg::Mem(D::mem(&raw_buf)),
        Arg::U32(values as u32),
        Arg::U32(BLOCK_VALUES as u32),
        Arg::U32(width as u32),
        Arg::U32(low_bits),
        Arg::Mem(D::mem(&zero_buf)),
        Arg::Mem(D::mem(&packed)),
    ];
    run(gpu, "tensor_pack", blocks, PACK_WG, &args)?;

    let table_buf = upload(gpu, &table)?;
    let emits = scratch::<D, u32>(gpu, values)?;
    let states = scratch::<D, u32>(gpu, blocks * LANES)?;
    let mut args = vec![Arg::Mem(D::mem(&raw_buf))];
    args.extend(common);
    args.extend([&table_buf, &emits, &states].map(|buffer| Arg::Mem(D::mem(buffer))));
    run(
        gpu,
        "tensor_encode_lanes",
        (blocks * LANES).div_ceil(LANES_WG),
        LANES_WG,
        &args,
    )?;

    let words = scratch::<D, u16>(gpu, values)?;
    let word_counts = scratch::<D, u32>(gpu, blocks)?;
    let args = [
        Arg::U32(values as u32),
        Arg::U32(BLOCK_VALUES as u32),
        Arg::Mem(D::mem(&emits)),
        Arg::Mem(D::mem(&words)),
        Arg::Mem(D::mem(&word_counts)),
    ];
    run(gpu, "tensor_compact", blocks, COMPACT_WG, &args)?;

    let mut block_words = vec![0u32; blocks];
    download(gpu, &word_counts, &mut block_words)?;
    let mut block_states = vec![0u32; blocks * LANES];
    download(gpu, &states, &mut block_states)?;
    // Only what each block uses comes back: its packed bits and its words, back to back.
    let mut raw_ranges = Vec::with_capacity(blocks);
    let mut word_ranges = Vec::with_capacity(blocks);
    let (mut packed_at, mut words_at) = (parts.packed.len(), parts.words.len());
    for (number, &count) in block_words.iter().enumerate() {
        let n = BLOCK_VALUES.min(values - number * BLOCK_VALUES);
        let r = 1 + low_bits as usize - usize::from(zero_bits[number]);
        raw_ranges.push(packed_at..packed_at + (n * r).div_ceil(8));
        word_ranges.push(words_at..words_at + count as usize);
        (packed_at, words_at) = (packed_at + (n * r).div_ceil(8), words_at + count as usize);
    }
    let (packed_start, words_start) = (parts.packed.len(), parts.words.len());
    parts.packed.resize(packed_at, 0);
    parts.words.resize(words_at, 0);
    let mut packed_rest = &mut parts.packed[packed_start..];
    let mut words_rest = &mut parts.words[words_start..];
    for number in 0..blocks {
        let first = number * BLOCK_VALUES;
        let (into, rest) = std::mem::take(&mut packed_rest).split_at_mut(raw_ranges[number].len());
        packed_rest = rest;
        download_at(gpu, &packed, first * width, into)?;
        let (into, rest) = std::mem::take(&mut words_rest).split_at_mut(word_ranges[number].len());
        words_rest = rest;
        download_at(gpu, &words, first, into)?;
    }

    for (number, block_freqs) in freqs.into_iter().enumerate() {
        parts.blocks.push(BlockParts {
            zero_bits: u32::from(zero_bits[number]),
            raw_bits: raw_ranges[number].clone(),
            freqs: block_freqs,
            states: block_states[number * LANES..][..LANES]
                .try_into()
                .expect("LANES states"),
            words: word_ranges[number].clone(),
        });
    }
    Ok(())
}

/// Decodes a tensor codec payload into `out`, in batches of at most `batch_limit` bytes
/// of device memory (and what the device allows).
pub(crate) fn decode<D: Device>(
    gpus: &[Mutex<D>],
    stored: &[u8],
    raw_len: usize,
    kind: FloatKind,
    out: &mut Vec<u8>,
    batch_limit: usize,
) -> Result<(), mmh_codecs::Error> {
    out.clear();
    let payload = gpu::read_payload(stored, raw_len, kind)?;
    out.reserve_exact(raw_len);
    if !payload.blocks.is_empty() {
        let gpu = lock(gpus)?;
        let k = payload.symbol_mantissa_bits;
        let (memory, buffer) = limits(&*gpu, batch_limit);
        let alphabet = 1usize << kind.symbol_bits(k);
        let width = kind.width();
        let mut first_block = 0;
        while first_block < payload.blocks.len() {
            // As many blocks as fit: their stored bytes, symbols, values, tables and
            // parameters in memory, each buffer under the largest allocation.
            let (mut count, mut values, mut stored_bytes) = (0, 0, 0);
            for block in &payload.blocks[first_block..] {
                let bytes = offset_in(stored, block.words) + block.words.len()
                    - offset_in(stored, block.raw_bits);
                let (next_values, next_stored) = (values + block.values, stored_bytes + bytes);
                let total = next_values * (width + 2)
                    + next_stored
                    + (count + 1) * (alphabet + PARAM_WORDS) * 4;
                if count > 0 && (total > memory || next_stored.max(next_values * width) > buffer) {
                    break;
                }
                if bytes > buffer {
                    out.clear();
                    return Err(mmh_codecs::Error::Corrupt {
                        codec: kind.codec(),
                        reason: format!(
                            "block {}: {bytes} bytes, more than its {} values can use",
                            first_block + count,
                            block.values
                        ),
                    });
                }
                (count, values, stored_bytes) = (count + 1, next_values, next_stored);
            }
            let blocks = &payload.blocks[first_block..first_block + count];
            let result = decode_batch(&*gpu, stored, blocks, kind, k, out)
                .map_err(mmh_codecs::Error::from)
                .and_then(|bad| match bad {
                    None => Ok(()),
                    Some((number, reason)) => Err(mmh_codecs::Error::Corrupt {
                        codec: kind.codec(),
                        reason: format!("block {}: {reason}", first_block + number),
                    }),
                });
            if let Err(error) = result {
                out.clear();
                return Err(error);
            }
            first_block += count;
        }
    }
    out.extend_from_slice(payload.tail);
    Ok(())
}

/// Decodes a batch of blocks and appends their values to `out`; returns the first block
/// (numbered within the batch) that the lanes found corrupt, and why.
fn decode_batch<D: Device>(
    gpu: &D,
    stored: &[u8],
    blocks: &[BlockToDecode<'_>],
    kind: FloatKind,
    k: u32,
    out: &mut Vec<u8>,
) -> Result<Option<(usize, String)>, Error> {
    let width = kind.width();
    let alphabet = 1usize << kind.symbol_bits(k);
    // Blocks lie back to back in `stored`: upload from the first one's raw bits to the
    // last one's words.
    let (first, last) = (&blocks[0], &blocks[blocks.len() - 1]);
    let start = offset_in(stored, first.raw_bits);
    let end = offset_in(stored, last.words) + last.words.len();
    let mut params = Vec::with_capacity(blocks.len() * PARAM_WORDS);
    let mut tables = Vec::with_capacity(blocks.len() * alphabet);
    let mut values = 0usize;
    for block in blocks {
        params.extend([
            block.values as u32,
            values as u32,
            block.zero_bits,
            (offset_in(stored, block.raw_bits) - start) as u32,
            (offset_in(stored, block.words) - start) as u32,
            (block.words.len() / 2) as u32,
            gpu::packable(&block.freqs).unwrap_or(NOT_PACKED),
        ]);
        params.extend(block.states);
        let mut cum = 0;
        for &f in &block.freqs {
            tables.push(cum << 16 | f);
            cum += f;
        }
        values += block.values;
    }
    let stored_buf = upload(gpu, &stored[start..end])?;
    let params_buf = upload(gpu, &params)?;
    let tables_buf = upload(gpu, &tables)?;
    let symbols = scratch::<D, u16>(gpu, values)?;
    let status = scratch::<D, u32>(gpu, 2 * blocks.len())?;
    let values_buf = scratch::<D, u8>(gpu, values * width)?;
    run(
        gpu,
        "tensor_decode_lanes",
        blocks.len(),
        LANES,
        &[
            Arg::Mem(D::mem(&stored_buf)),
            Arg::Mem(D::mem(&params_buf)),
            Arg::Mem(D::mem(&tables_buf)),
            Arg::U32(alphabet as u32),
            Arg::Mem(D::mem(&symbols)),
            Arg::Mem(D::mem(&status)),
        ],
    )?;
    run(
        gpu,
        "tensor_assemble",
        blocks.len(),
        ASSEMBLE_WG,
        &[
            Arg::Mem(D::mem(&stored_buf)),
            Arg::Mem(D::mem(&params_buf)),
            Arg::Mem(D::mem(&symbols)),
            Arg::U32(width as u32),
            Arg::U32(kind.low_bits(k)),
            Arg::Mem(D::mem(&values_buf)),
        ],
    )?;
    let mut ends = vec![0u32; 2 * blocks.len()];
    download(gpu, &status, &mut ends)?;
    if let Some((number, end)) = ends
        .chunks_exact(2)
        .enumerate()
        .find(|(_, end)| end[0] != 0)
    {
        // The messages of the CPU codec's rans.rs, so that both backends report alike.
        let reason = match end[0] {
            1 => "the words run out".to_string(),
            2 => format!("{} words follow the last value", end[1]),
            _ => "a lane does not end in its initial state".to_string(),
        };
        return Ok(Some((number, reason)));
    }
    let at = out.len();
    out.resize(at + values * width, 0);
    download(gpu, &values_buf, &mut out[at..])?;
    Ok(None)
}

/// Where `inner`, a subslice of `outer`, starts in it.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// The first device that is free, or else the first one, once it is.
fn lock<D: Device>(gpus: &[Mutex<D>]) -> Result<MutexGuard<'_, D>, Error> {
    for gpu in gpus {
        match gpu.try_lock() {
            Ok(guard) => return Ok(guard),
            // A panic elsewhere left no device state that the next batch depends on.
            Err(TryLockError::Poisoned(poisoned)) => return Ok(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => {}
        }
    }
    let first = gpus.first().ok_or(Error::NoDevice {
        backend: D::BACKEND,
        which: String::new(),
    })?;
    Ok(crate::lock(first))
}

/// How many blocks of `block_bytes` of device memory in all, the largest buffer taking
/// `largest` bytes of them, a batch may hold.
fn batch_blocks<D: Device>(
    gpu: &D,
    batch_limit: usize,
    block_bytes: usize,
    largest: usize,
) -> usize {
    let (memory, buffer) = limits(gpu, batch_limit);
    (memory / block_bytes).min(buffer / largest).max(1)
}

/// The bytes a batch may take in all (the device's [`room`] for at most `batch_limit`)
/// and in one buffer (its largest allocation, and no more than the kernels' 32-bit
/// offsets address).
fn limits<D: Device>(gpu: &D, batch_limit: usize) -> (usize, usize) {
    let info = gpu.info();
    let buffer = info.max_buffer.min(u64::from(u32::MAX / 2));
    (
        room(info, gpu.free_memory(), batch_limit),
        usize::try_from(buffer).unwrap_or(usize::MAX),
    )
}

/// Launches `kernel` of `tensor.cl` on `groups` work-groups of `group` work-items.
fn run<D: Device>(
    gpu: &D,
    kernel: &str,
    groups: usize,
    group: usize,
    args: &[Arg<D::Mem>],
) -> Result<(), Error> {
    // SAFETY: the arguments are the kernel's, in its order and types (`tensor.cl`), and
    // every index a kernel computes lies inside its buffers: block offsets come from the
    // batch's own layout, and the host has checked every length of a payload against the
    // stored bytes before any kernel reads them.
    unsafe { gpu.run("tensor.cl", kernel, args, groups * group, Some(group)) }
}

/// A buffer holding a copy of `data` (one element when it is empty: a device buffer
/// cannot be empty).
fn upload<D: Device, T: Scalar>(gpu: &D, data: &[T]) -> Result<D::Buffer<T>, Error> {
    match data.is_empty() {
        true => scratch::<D, T>(gpu, 1),
        false => gpu.upload(data),
    }
}

/// A device buffer of `count` elements (at least one).
fn scratch<D: Device, T: Scalar>(gpu: &D, count: usize) -> Result<D::Buffer<T>, Error> {
    gpu.buffer(Access::ReadWrite, count.max(1))
}

/// Reads `into.len()` elements of `buffer` from element `at`, after the kernels before.
fn download_at<D: Device, T: Scalar>(
    gpu: &D,
    buffer: &D::Buffer<T>,
    at: usize,
    into: &mut [T],
) -> Result<(), Error> {
    match into.is_empty() {
        true => Ok(()),
        false => gpu.read(buffer, at, into),
    }
}

/// Reads the first `into.len()` elements of `buffer`, after the kernels before.
fn download<D: Device, T: Scalar>(
    gpu: &D,
    buffer: &D::Buffer<T>,
    into: &mut [T],
) -> Result<(), Error> {
    download_at(gpu, buffer, 0, into)
}
