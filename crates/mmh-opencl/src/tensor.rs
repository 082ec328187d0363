//! The tensor codec's blocks on the device (`kernels/tensor.cl`).
//!
//! Encoding runs in two passes over each batch of blocks, the values uploaded once:
//! `tensor_split` gives each block's OR of low mantissa bits and symbol histogram; the
//! host turns those into zero bits, frequencies and encoder constants with
//! [`mmh_codecs::gpu`] (the CPU codec's own functions); `tensor_encode` packs the raw
//! bits and runs the rANS lanes. The host lays out the payload from the parts with
//! [`gpu::write_payload`], so it is the CPU's byte for byte. Decoding checks the whole
//! payload on the host first ([`gpu::read_payload`]), then `tensor_decode_lanes` decodes
//! the symbols and `tensor_assemble` rebuilds the values.
//!
//! Unsafe code here is only what opencl3 requires to create buffers, set kernel
//! arguments, enqueue kernels and read buffers back. The invariants its `SAFETY` comments
//! cite:
//!
//! 1. A buffer created from host data copies `count` elements from a live slice of that
//!    length (`CL_MEM_COPY_HOST_PTR`), and OpenCL only reads from it.
//! 2. A blocking read fills a host slice no longer than the buffer, from offset 0.
//! 3. Kernel arguments have the types and order of the kernel's parameters in
//!    `tensor.cl`: `cl_mem` for pointers and `u32` for `uint`; the buffers outlive the
//!    kernels that use them (the queue is finished by a blocking read before they drop).
//! 4. Every index a kernel computes lies inside its buffers: block offsets come from the
//!    batch's own layout, and the host has checked every length of a payload against
//!    the stored bytes before any kernel reads them.
//! 5. A read that does not wait fills a host slice that lies inside the buffer's range
//!    from its offset, and the queue is finished before that slice is used or dropped,
//!    on the error path too.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard, TryLockError};

use mmh_codecs::gpu::{self, BlockToDecode, EncodedBlock, LANES};
use mmh_codecs::{BLOCK_VALUES, FloatKind};
use opencl3::kernel::Kernel;
use opencl3::memory::{Buffer, CL_MEM_COPY_HOST_PTR, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE, ClMem};
use opencl3::types::{CL_BLOCKING, CL_NON_BLOCKING, cl_mem};

use crate::{Error, Gpu};

/// Work-group sizes, as `tensor.cl` defines them.
const SPLIT_WG: usize = 256;
const ENCODE_WG: usize = 64;
const ASSEMBLE_WG: usize = 64;
/// Words of a block's decode parameters (`P_WORDS` in `tensor.cl`).
const PARAM_WORDS: usize = 6 + LANES;
/// Words of an encoder table entry (`ENC_WORDS`).
const ENC_WORDS: usize = 5;

pub(crate) fn encode(
    gpus: &[Mutex<Gpu>],
    raw: &[u8],
    kind: FloatKind,
    out: &mut Vec<u8>,
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
        let batch = batch_blocks(&gpu, block_bytes, largest);
        for start in (0..blocks).step_by(batch) {
            let end = (start + batch).min(blocks);
            let bytes =
                start * BLOCK_VALUES * width..(end * BLOCK_VALUES * width).min(values * width);
            encode_batch(&gpu, &raw[bytes], kind, &mut parts)?;
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
fn encode_batch(gpu: &Gpu, raw: &[u8], kind: FloatKind, parts: &mut Parts) -> Result<(), Error> {
    let width = kind.width();
    let values = raw.len() / width;
    let blocks = values.div_ceil(BLOCK_VALUES);
    let k = kind.symbol_mantissa_bits();
    let symbol_bits = kind.symbol_bits(k);
    let low_bits = kind.low_bits(k);
    let alphabet = 1usize << symbol_bits;
    let common = [
        Arg::U32(values as u32),
        Arg::U32(BLOCK_VALUES as u32),
        Arg::U32(width as u32),
        Arg::U32(symbol_bits),
        Arg::U32(low_bits),
    ];

    let raw_buf = upload(gpu, raw)?;
    let hists = scratch::<u32>(gpu, blocks * alphabet)?;
    let ors = scratch::<u32>(gpu, 2 * blocks)?;
    let mut args = vec![Arg::Mem(raw_buf.get())];
    args.extend(common);
    args.extend([Arg::Mem(hists.get()), Arg::Mem(ors.get())]);
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
    let table_buf = upload(gpu, &table)?;
    let packed = scratch::<u8>(gpu, raw.len())?;
    let emits = scratch::<u32>(gpu, values)?;
    let words = scratch::<u16>(gpu, values)?;
    let word_counts = scratch::<u32>(gpu, blocks)?;
    let states = scratch::<u32>(gpu, blocks * LANES)?;
    let mut args = vec![Arg::Mem(raw_buf.get())];
    args.extend(common);
    args.extend(
        [
            zero_buf.get(),
            table_buf.get(),
            packed.get(),
            emits.get(),
            words.get(),
            word_counts.get(),
            states.get(),
        ]
        .map(Arg::Mem),
    );
    run(gpu, "tensor_encode", blocks, ENCODE_WG, &args)?;

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
    let reads = {
        let mut packed_rest = &mut parts.packed[packed_start..];
        let mut words_rest = &mut parts.words[words_start..];
        (0..blocks).try_for_each(|number| {
            let first = number * BLOCK_VALUES;
            let (into, rest) =
                std::mem::take(&mut packed_rest).split_at_mut(raw_ranges[number].len());
            packed_rest = rest;
            read_at(gpu, &packed, first * width, into)?;
            let (into, rest) =
                std::mem::take(&mut words_rest).split_at_mut(word_ranges[number].len());
            words_rest = rest;
            read_at(gpu, &words, first, into)
        })
    };
    // Whether or not every read was enqueued, none may still be writing into `parts`
    // once this returns.
    gpu.queue.finish().map_err(gpu.failed("clFinish"))?;
    reads?;

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

pub(crate) fn decode(
    gpus: &[Mutex<Gpu>],
    stored: &[u8],
    raw_len: usize,
    kind: FloatKind,
    out: &mut Vec<u8>,
) -> Result<(), mmh_codecs::Error> {
    out.clear();
    let payload = gpu::read_payload(stored, raw_len, kind)?;
    out.reserve_exact(raw_len);
    if !payload.blocks.is_empty() {
        let gpu = lock(gpus)?;
        let k = payload.symbol_mantissa_bits;
        let (memory, buffer) = limits(&gpu);
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
            let result = decode_batch(&gpu, stored, blocks, kind, k, out)
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
fn decode_batch(
    gpu: &Gpu,
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
    let symbols = scratch::<u16>(gpu, values)?;
    let status = scratch::<u32>(gpu, 2 * blocks.len())?;
    let values_buf = scratch::<u8>(gpu, values * width)?;
    run(
        gpu,
        "tensor_decode_lanes",
        blocks.len(),
        LANES,
        &[
            Arg::Mem(stored_buf.get()),
            Arg::Mem(params_buf.get()),
            Arg::Mem(tables_buf.get()),
            Arg::U32(alphabet as u32),
            Arg::Mem(symbols.get()),
            Arg::Mem(status.get()),
        ],
    )?;
    run(
        gpu,
        "tensor_assemble",
        blocks.len(),
        ASSEMBLE_WG,
        &[
            Arg::Mem(stored_buf.get()),
            Arg::Mem(params_buf.get()),
            Arg::Mem(symbols.get()),
            Arg::U32(width as u32),
            Arg::U32(kind.low_bits(k)),
            Arg::Mem(values_buf.get()),
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
fn lock(gpus: &[Mutex<Gpu>]) -> Result<MutexGuard<'_, Gpu>, Error> {
    for gpu in gpus {
        match gpu.try_lock() {
            Ok(guard) => return Ok(guard),
            // A panic elsewhere left no device state that the next batch depends on.
            Err(TryLockError::Poisoned(poisoned)) => return Ok(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => {}
        }
    }
    let first = gpus.first().ok_or_else(|| Error::NoDevice(String::new()))?;
    Ok(first
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// How many blocks of `block_bytes` of device memory in all, the largest buffer taking
/// `largest` bytes of them, a batch may hold.
fn batch_blocks(gpu: &Gpu, block_bytes: usize, largest: usize) -> usize {
    let (memory, buffer) = limits(gpu);
    (memory / block_bytes).min(buffer / largest).max(1)
}

/// The bytes a batch may take in all (half the device's memory, as other work may share
/// it) and in one buffer (its largest allocation, and no more than the kernels' 32-bit
/// offsets address).
fn limits(gpu: &Gpu) -> (usize, usize) {
    let memory = usize::try_from(gpu.info.memory / 2).unwrap_or(usize::MAX);
    let buffer = gpu.info.max_buffer.min(u64::from(u32::MAX / 2));
    (memory, usize::try_from(buffer).unwrap_or(usize::MAX))
}

/// A kernel argument.
#[derive(Clone, Copy)]
enum Arg {
    Mem(cl_mem),
    U32(u32),
}

/// Enqueues `kernel` of `tensor.cl` on `groups` work-groups of `group` work-items.
fn run(
    gpu: &Gpu,
    kernel: &'static str,
    groups: usize,
    group: usize,
    args: &[Arg],
) -> Result<(), Error> {
    let kernel =
        Kernel::create(gpu.program("tensor.cl"), kernel).map_err(gpu.failed("clCreateKernel"))?;
    for (index, arg) in args.iter().enumerate() {
        // SAFETY: invariant 3.
        unsafe {
            match arg {
                Arg::Mem(mem) => kernel.set_arg(index as u32, mem),
                Arg::U32(value) => kernel.set_arg(index as u32, value),
            }
        }
        .map_err(gpu.failed("clSetKernelArg"))?;
    }
    let (global, local) = (groups * group, group);
    // SAFETY: invariants 3 and 4; the work sizes are one-dimensional, as the pointers say.
    unsafe {
        gpu.queue
            .enqueue_nd_range_kernel(kernel.get(), 1, std::ptr::null(), &global, &local, &[])
    }
    .map_err(gpu.failed("clEnqueueNDRangeKernel"))?;
    Ok(())
}

/// A read-only buffer holding a copy of `data` (one element of padding when it is
/// empty: OpenCL has no empty buffers).
fn upload<T: Copy>(gpu: &Gpu, data: &[T]) -> Result<Buffer<T>, Error> {
    if data.is_empty() {
        return scratch(gpu, 1);
    }
    // SAFETY: invariant 1.
    unsafe {
        Buffer::create(
            &gpu.context,
            CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
            data.len(),
            data.as_ptr() as *mut std::ffi::c_void,
        )
    }
    .map_err(gpu.failed("clCreateBuffer"))
}

/// A device buffer of `count` elements (at least one).
fn scratch<T>(gpu: &Gpu, count: usize) -> Result<Buffer<T>, Error> {
    // SAFETY: no host pointer; OpenCL allocates.
    unsafe {
        Buffer::create(
            &gpu.context,
            CL_MEM_READ_WRITE,
            count.max(1),
            std::ptr::null_mut(),
        )
    }
    .map_err(gpu.failed("clCreateBuffer"))
}

/// Enqueues a read of `into.len()` elements of `buffer` from element `at`, without
/// waiting: the caller finishes the queue before it touches `into` again or lets it go.
fn read_at<T>(gpu: &Gpu, buffer: &Buffer<T>, at: usize, into: &mut [T]) -> Result<(), Error> {
    if into.is_empty() {
        return Ok(());
    }
    // SAFETY: invariant 5.
    unsafe {
        gpu.queue.enqueue_read_buffer(
            buffer,
            CL_NON_BLOCKING,
            at * std::mem::size_of::<T>(),
            into,
            &[],
        )
    }
    .map_err(gpu.failed("clEnqueueReadBuffer"))?;
    Ok(())
}

/// Reads the first `into.len()` elements of `buffer`, waiting for the kernels before.
fn download<T>(gpu: &Gpu, buffer: &Buffer<T>, into: &mut [T]) -> Result<(), Error> {
    if into.is_empty() {
        return Ok(());
    }
    // SAFETY: invariant 2.
    unsafe {
        gpu.queue
            .enqueue_read_buffer(buffer, CL_BLOCKING, 0, into, &[])
    }
    .map_err(gpu.failed("clEnqueueReadBuffer"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use mmh_codecs::{Accelerator, BLOCK_VALUES, CpuAccelerator, FloatKind};
    use proptest::prelude::*;

    use crate::{Error, OpenClAccelerator};

    /// The machine's devices, or `None` (with the reason printed) when it has no OpenCL
    /// platform or device, unless `MMH_REQUIRE_OPENCL=1` makes that a failure. Kernels
    /// that do not build always fail.
    fn device() -> Option<&'static OpenClAccelerator> {
        static DEVICE: OnceLock<Option<OpenClAccelerator>> = OnceLock::new();
        DEVICE
            .get_or_init(|| match OpenClAccelerator::new(None) {
                Ok(device) => Some(device),
                Err(error @ (Error::NoPlatform(_) | Error::NoDevice(_)))
                    if std::env::var("MMH_REQUIRE_OPENCL").as_deref() != Ok("1") =>
                {
                    eprintln!("skipping the OpenCL tensor tests: {error}");
                    None
                }
                Err(error) => panic!("{error}"),
            })
            .as_ref()
    }

    /// Values of `kind` as weights hold them (as in mmh-codecs' tensor tests): a few
    /// exponents, any sign and mantissa, and every tenth value any bits at all.
    fn weights(kind: FloatKind, values: usize, seed: u64) -> Vec<u8> {
        let (exponent, mantissa) = (kind.exponent_bits(), kind.mantissa_bits());
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let bias = (1u64 << (exponent - 1)) - 1;
        (0..values)
            .flat_map(|_| {
                let r = next();
                let v = if r % 10 == 0 {
                    next()
                } else {
                    let e = bias - 1 - (r >> 8) % 4 - (r >> 12) % 3;
                    (r >> 63 << (exponent + mantissa))
                        | (e << mantissa)
                        | (next() >> (64 - mantissa))
                };
                v.to_le_bytes()[..kind.width()].to_vec()
            })
            .collect()
    }

    /// Encodes `raw` on both backends and checks the same verdict and bytes, then
    /// decodes each payload with the other backend.
    fn same_as_cpu(device: &OpenClAccelerator, raw: &[u8], kind: FloatKind) -> bool {
        let (mut cpu, mut ocl) = (Vec::new(), Vec::new());
        let shrank = CpuAccelerator.encode_tensor(raw, kind, &mut cpu).unwrap();
        assert_eq!(device.encode_tensor(raw, kind, &mut ocl).unwrap(), shrank);
        assert!(cpu == ocl, "{kind:?}, {} bytes: payloads differ", raw.len());
        if shrank {
            let mut back = vec![1];
            device
                .decode_tensor(&cpu, raw.len(), kind, &mut back)
                .unwrap();
            assert!(back == raw, "{kind:?}, {} bytes: decodes wrong", raw.len());
            CpuAccelerator
                .decode_tensor(&ocl, raw.len(), kind, &mut back)
                .unwrap();
            assert!(back == raw);
        }
        shrank
    }

    #[test]
    fn boundary_lengths_match_the_cpu_in_every_kind() {
        let Some(device) = device() else { return };
        for kind in FloatKind::ALL {
            let width = kind.width();
            for values in [
                0,
                1,
                7,
                8,
                9,
                BLOCK_VALUES - 1,
                BLOCK_VALUES,
                2 * BLOCK_VALUES + 3,
            ] {
                let mut raw = weights(kind, values, values as u64 + 11);
                same_as_cpu(device, &raw, kind);
                raw.extend(std::iter::repeat_n(0xA5, width - 1));
                same_as_cpu(device, &raw, kind);
            }
        }
    }

    #[test]
    fn special_values_match_the_cpu_in_every_kind() {
        let Some(device) = device() else { return };
        let specials: [u64; 10] = [
            0,
            u64::MAX,
            1,
            0x8000_0000_0000_0000,
            0x7FF0_0000_0000_0001,
            0x7FC0_1234_5678_9ABC,
            0x0000_0000_8000_0000,
            0x7F80_0001_7F80_0001,
            0xFFFF_0000_FFFF_0000,
            0x0001_0002_0003_0004,
        ];
        for kind in FloatKind::ALL {
            let width = kind.width();
            let mut raw = weights(kind, 3000, 9);
            for (at, value) in raw.chunks_exact_mut(width).enumerate().step_by(97) {
                let special = specials[at % specials.len()] >> (at % 3);
                value.copy_from_slice(&special.to_le_bytes()[..width]);
            }
            assert!(same_as_cpu(device, &raw, kind), "{kind:?}");
        }
    }

    #[test]
    fn fp32_holding_bf16_values_drops_the_zero_bits_as_the_cpu_does() {
        let Some(device) = device() else { return };
        let bf16 = weights(FloatKind::Bf16, 40_000, 3);
        let fp32: Vec<u8> = bf16.chunks(2).flat_map(|v| [0, 0, v[0], v[1]]).collect();
        assert!(same_as_cpu(device, &fp32, FloatKind::F32));
    }

    #[test]
    fn hostile_payloads_are_the_errors_the_cpu_reports() {
        let Some(device) = device() else { return };
        let kind = FloatKind::Bf16;
        let raw = weights(kind, 40_000, 1);
        let mut stored = Vec::new();
        assert!(
            CpuAccelerator
                .encode_tensor(&raw, kind, &mut stored)
                .unwrap()
        );
        let mut out = Vec::new();
        for cut in [0, 1, 5, stored.len() - 2, stored.len() - 1] {
            let error = device
                .decode_tensor(&stored[..cut], raw.len(), kind, &mut out)
                .unwrap_err();
            assert!(out.is_empty());
            let cpu = CpuAccelerator
                .decode_tensor(&stored[..cut], raw.len(), kind, &mut out)
                .unwrap_err();
            assert_eq!(error.to_string(), cpu.to_string());
        }
        // The last block's words, one longer: a word is left over.
        let mut longer = stored.clone();
        longer.extend([0, 0]);
        let directory = 2 + 4;
        let len = u32::from_le_bytes(longer[directory..][..4].try_into().unwrap());
        longer[directory..][..4].copy_from_slice(&(len + 2).to_le_bytes());
        let error = device
            .decode_tensor(&longer, raw.len(), kind, &mut out)
            .unwrap_err();
        let cpu = CpuAccelerator
            .decode_tensor(&longer, raw.len(), kind, &mut out)
            .unwrap_err();
        assert_eq!(error.to_string(), cpu.to_string());
    }

    #[test]
    fn payloads_with_smaller_blocks_decode_as_on_the_cpu() {
        let Some(device) = device() else { return };
        // Writers use blocks of 2^15 values; a reader takes 2^10 to 2^20. A block's bytes
        // depend only on its values, so coding each run of 2^g values alone gives the
        // blocks of a payload with blocks of 2^g values.
        for (kind, log) in [
            (FloatKind::Bf16, 10),
            (FloatKind::F32, 12),
            (FloatKind::F8E5M2, 11),
        ] {
            let width = kind.width();
            let mut raw = weights(kind, 5 << log, u64::from(log));
            raw.extend(std::iter::repeat_n(7, width - 1));
            let whole = raw.len() - raw.len() % width;
            let mut stored = vec![kind.symbol_mantissa_bits() as u8];
            stored.extend_from_slice(&raw[whole..]);
            stored.push(log);
            let mut blocks = Vec::new();
            for values in raw[..whole].chunks(width << log) {
                let mut alone = Vec::new();
                assert!(
                    CpuAccelerator
                        .encode_tensor(values, kind, &mut alone)
                        .unwrap()
                );
                // After k, the block size and a directory of one block.
                let block = &alone[1 + 1 + 4..];
                stored.extend_from_slice(&(block.len() as u32).to_le_bytes());
                blocks.extend_from_slice(block);
            }
            stored.extend_from_slice(&blocks);
            let (mut cpu, mut ocl) = (Vec::new(), Vec::new());
            CpuAccelerator
                .decode_tensor(&stored, raw.len(), kind, &mut cpu)
                .unwrap();
            assert!(cpu == raw, "{kind:?}");
            device
                .decode_tensor(&stored, raw.len(), kind, &mut ocl)
                .unwrap();
            assert!(ocl == raw, "{kind:?}");
        }
    }

    #[test]
    fn a_device_with_little_memory_codes_in_batches_as_the_cpu_does() {
        if device().is_none() {
            return;
        }
        let small = OpenClAccelerator::new(None).unwrap();
        for gpu in &small.gpus {
            // Room for a few blocks a batch.
            gpu.lock().unwrap().info.memory = 2 << 20;
        }
        for kind in [FloatKind::Bf16, FloatKind::F64, FloatKind::F8E4M3] {
            let raw = weights(kind, 7 * BLOCK_VALUES + 1234, 17);
            assert!(same_as_cpu(&small, &raw, kind), "{kind:?}");
        }
    }

    /// `cargo test --release -p mmh-opencl --lib tensor_speed -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn tensor_speed_on_32_mb_of_bf16_weights() {
        let Some(device) = device() else { return };
        let kind = FloatKind::Bf16;
        let raw = weights(kind, 16 << 20, 7);
        let (mut stored, mut back) = (Vec::new(), Vec::new());
        let backends: [&dyn Accelerator; 2] = [&CpuAccelerator, device];
        for backend in backends {
            let (mut encode, mut decode) = (f64::MAX, f64::MAX);
            for _ in 0..3 {
                let start = std::time::Instant::now();
                assert!(backend.encode_tensor(&raw, kind, &mut stored).unwrap());
                encode = encode.min(start.elapsed().as_secs_f64());
                let start = std::time::Instant::now();
                backend
                    .decode_tensor(&stored, raw.len(), kind, &mut back)
                    .unwrap();
                decode = decode.min(start.elapsed().as_secs_f64());
                assert!(back == raw);
            }
            let mb = raw.len() as f64 / 1e6;
            println!(
                "{}: {} bytes to {}: encode {:.0} MB/s, decode {:.0} MB/s (best of 3)",
                backend.name(),
                raw.len(),
                stored.len(),
                mb / encode,
                mb / decode
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn any_bytes_match_the_cpu(raw in proptest::collection::vec(any::<u8>(), 0..3000), kind in 0usize..6) {
            let Some(device) = device() else { return Ok(()) };
            same_as_cpu(device, &raw, FloatKind::ALL[kind]);
        }

        #[test]
        fn weights_match_the_cpu(values in 0usize..70_000, tail in 0usize..8, seed in any::<u64>(), kind in 0usize..6) {
            let Some(device) = device() else { return Ok(()) };
            let kind = FloatKind::ALL[kind];
            let mut raw = weights(kind, values, seed);
            raw.extend(std::iter::repeat_n(0x5A, tail % kind.width()));
            same_as_cpu(device, &raw, kind);
        }

        #[test]
        fn flipped_bits_decode_as_on_the_cpu(at in any::<prop::sample::Index>(), bit in 0u8..8, kind in 0usize..6) {
            let Some(device) = device() else { return Ok(()) };
            let kind = FloatKind::ALL[kind];
            let raw = weights(kind, 20_000, 5);
            let mut stored = Vec::new();
            prop_assert!(CpuAccelerator.encode_tensor(&raw, kind, &mut stored).unwrap());
            let i = at.index(stored.len());
            stored[i] ^= 1 << bit;
            let (mut cpu, mut ocl) = (Vec::new(), Vec::new());
            let cpu_result = CpuAccelerator.decode_tensor(&stored, raw.len(), kind, &mut cpu);
            let ocl_result = device.decode_tensor(&stored, raw.len(), kind, &mut ocl);
            prop_assert_eq!(cpu_result.is_ok(), ocl_result.is_ok(), "{:?} / {:?}", cpu_result, ocl_result);
            prop_assert!(cpu == ocl);
            if ocl_result.is_ok() {
                prop_assert_eq!(ocl.len(), raw.len());
            }
        }
    }
}
