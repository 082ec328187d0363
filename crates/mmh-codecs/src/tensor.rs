//! Float tensors: each value split into an entropy-coded symbol and raw bits.
//!
//! Trained weights barely compress as bytes (zstd -3 keeps 79% of a bf16 model), but a
//! handful of exponent values carry almost all of them. The codec takes from every value
//! its exponent field and the top `k` mantissa bits as one symbol (the density of
//! weights falls across each binade, so those bits are skewed given the exponent), and
//! keeps the sign and the other mantissa bits as raw bits. Symbols are rANS-coded in
//! blocks of [`BLOCK_VALUES`] values with a table each (`rans.rs`); raw bits are
//! packed, less any low mantissa bits that are zero throughout the block: fp32 weights
//! that are really bf16 or fp16 values lose their zero bits that way. Blocks decode
//! independently, on CPU cores now and GPU threads later. FORMAT.md §7.1 fixes the
//! layout.

use crate::Error;
use crate::blocks;
use crate::codec::CodecId;
use crate::rans;
use crate::rans::Kernel;

/// Values per block that writers use, as a power of two: per-block statistics follow
/// the drift of weight statistics, and the table and states each block carries cost
/// less the longer it is. On the corpus, 32 Ki values code smaller than 16 Ki or 64 Ki
/// on all files but one (piper-bf16 67.18% against 67.17% with 16 Ki; khmer-fp16 84.77%
/// against 84.89% and 84.76%).
const BLOCK_LOG: u8 = 15;
/// Values per block that writers use.
pub const BLOCK_VALUES: usize = 1 << BLOCK_LOG;

/// The float formats the tensor codec knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloatKind {
    /// bfloat16: sign, 8 exponent bits, 7 mantissa bits.
    Bf16,
    /// IEEE half: sign, 5 exponent bits, 10 mantissa bits.
    F16,
    /// IEEE single: sign, 8 exponent bits, 23 mantissa bits.
    F32,
    /// IEEE double: sign, 11 exponent bits, 52 mantissa bits.
    F64,
    /// OCP FP8 E4M3: sign, 4 exponent bits, 3 mantissa bits.
    F8E4M3,
    /// OCP FP8 E5M2: sign, 5 exponent bits, 2 mantissa bits.
    F8E5M2,
}

/// How a kind's bits are laid out, and how many mantissa bits writers put in the symbol.
#[derive(Debug, Clone, Copy)]
struct Bits {
    exponent: u32,
    mantissa: u32,
    /// Mantissa bits in the symbol, as measured best on real weights (bf16 1 bit: 0.3%
    /// smaller than none; f32 2 bits: 0.2%).
    symbol_mantissa: u32,
}

impl FloatKind {
    /// Every kind, in codec id order.
    pub const ALL: [FloatKind; 6] = [
        FloatKind::Bf16,
        FloatKind::F16,
        FloatKind::F32,
        FloatKind::F64,
        FloatKind::F8E4M3,
        FloatKind::F8E5M2,
    ];

    /// Bytes per value.
    pub const fn width(self) -> usize {
        match self {
            FloatKind::F8E4M3 | FloatKind::F8E5M2 => 1,
            FloatKind::Bf16 | FloatKind::F16 => 2,
            FloatKind::F32 => 4,
            FloatKind::F64 => 8,
        }
    }

    /// The codec that codes values of this kind.
    pub const fn codec(self) -> CodecId {
        match self {
            FloatKind::Bf16 => CodecId::Bf16,
            FloatKind::F16 => CodecId::F16,
            FloatKind::F32 => CodecId::F32,
            FloatKind::F64 => CodecId::F64,
            FloatKind::F8E4M3 => CodecId::F8E4M3,
            FloatKind::F8E5M2 => CodecId::F8E5M2,
        }
    }

    /// The kind a tensor codec codes, if it is one.
    pub(crate) fn of(codec: CodecId) -> Option<FloatKind> {
        FloatKind::ALL
            .into_iter()
            .find(|kind| kind.codec() == codec)
    }

    /// Bits of the exponent field.
    pub const fn exponent_bits(self) -> u32 {
        self.bits().exponent
    }

    /// Bits of the mantissa field.
    pub const fn mantissa_bits(self) -> u32 {
        self.bits().mantissa
    }

    /// Top mantissa bits that writers put in each value's symbol with the exponent
    /// (`k`, FORMAT.md §7.1).
    pub const fn symbol_mantissa_bits(self) -> u32 {
        self.bits().symbol_mantissa
    }

    /// Bits of a value's symbol when it takes `k` mantissa bits: the exponent and those
    /// (`E + k`, FORMAT.md §7.1).
    pub const fn symbol_bits(self, k: u32) -> u32 {
        self.bits().exponent + k
    }

    /// Mantissa bits below the symbol when it takes `k` of them (`M - k`): the raw field
    /// holds the sign and these, less the block's zero bits.
    pub const fn low_bits(self, k: u32) -> u32 {
        self.bits().mantissa - k
    }

    const fn bits(self) -> Bits {
        let (exponent, mantissa, symbol_mantissa) = match self {
            FloatKind::Bf16 => (8, 7, 1),
            FloatKind::F16 => (5, 10, 2),
            FloatKind::F32 => (8, 23, 2),
            FloatKind::F64 => (11, 52, 1),
            FloatKind::F8E4M3 => (4, 3, 3),
            FloatKind::F8E5M2 => (5, 2, 2),
        };
        Bits {
            exponent,
            mantissa,
            symbol_mantissa,
        }
    }
}

/// Where one block's values split, given the kind, `k` and the block's zero bits.
#[derive(Debug, Clone, Copy)]
struct Split {
    /// Bits of the symbol: the exponent and the top `k` mantissa bits.
    symbol_bits: u32,
    /// Mantissa bits below the symbol.
    low_bits: u32,
    /// Of those, the low ones that are zero in every value and not stored.
    zero_bits: u32,
    /// Bits of a value.
    value_bits: u32,
}

impl Split {
    /// Raw bits stored per value: the sign and the mantissa bits that are kept.
    fn raw_bits(self) -> u32 {
        1 + self.low_bits - self.zero_bits
    }

    /// The split of a 16-bit value, as the SIMD kernels take it.
    #[cfg(target_arch = "x86_64")]
    fn fields16(self) -> crate::simd::Fields16 {
        debug_assert_eq!(self.value_bits, 16);
        crate::simd::Fields16 {
            low_bits: self.low_bits,
            zero_bits: self.zero_bits,
        }
    }

    fn symbol(self, v: u64) -> u16 {
        ((v >> self.low_bits) & ((1 << self.symbol_bits) - 1)) as u16
    }

    fn raw(self, v: u64) -> u64 {
        let sign = v >> (self.value_bits - 1);
        let low = (v & ((1 << self.low_bits) - 1)) >> self.zero_bits;
        (sign << (self.low_bits - self.zero_bits)) | low
    }

    fn value(self, symbol: u16, raw: u64) -> u64 {
        let kept = self.low_bits - self.zero_bits;
        let sign = raw >> kept;
        let low = (raw & ((1 << kept) - 1)) << self.zero_bits;
        (sign << (self.value_bits - 1)) | (u64::from(symbol) << self.low_bits) | low
    }
}

/// Buffers reused across blocks.
#[derive(Default)]
struct Scratch {
    symbols: Vec<u16>,
    encoder: rans::EncodeScratch,
    /// A block's raw bits (those the SIMD kernel leaves) and 8 zero bytes, so that every
    /// field is one 8-byte read.
    raw: Vec<u8>,
    rans: rans::DecodeScratch,
}

/// Encodes `raw` as values of `kind` into `out` (FORMAT.md §7.1); returns whether the
/// result is smaller than `raw`.
pub(crate) fn encode(raw: &[u8], kind: FloatKind, out: &mut Vec<u8>) -> bool {
    encode_with(raw, kind, Kernel::best(), out)
}

/// [`encode`] with the hot loops run by `kernel`: the same bytes whichever it is.
pub(crate) fn encode_with(raw: &[u8], kind: FloatKind, kernel: Kernel, out: &mut Vec<u8>) -> bool {
    let mut scratch = Scratch::default();
    write_frame(raw, kind, out, |_, block, out| {
        encode_block(block, kind, kernel, &mut scratch, out);
    })
}

/// Clears `out` and writes the payload of `raw`: `k`, the tail, the block size and the
/// directory, then what `block` appends for each block (given its number and its values'
/// bytes). Stops as soon as the payload reaches `raw.len()` bytes and returns false.
fn write_frame<'a>(
    raw: &'a [u8],
    kind: FloatKind,
    out: &mut Vec<u8>,
    mut block: impl FnMut(usize, &'a [u8], &mut Vec<u8>),
) -> bool {
    out.clear();
    let width = kind.width();
    let whole = raw.len() - raw.len() % width;
    out.push(kind.bits().symbol_mantissa as u8);
    out.extend_from_slice(&raw[whole..]);
    let mut number = 0;
    blocks::write(
        out,
        &raw[..whole],
        width,
        BLOCK_LOG,
        raw.len(),
        |values, out| {
            block(number, values, out);
            number += 1;
        },
    )
}

/// A block's zero bits (FORMAT.md §7.1), given `ones`, the OR of its values' `low_bits`
/// low mantissa bits ([`FloatKind::low_bits`]): those of them that are zero throughout.
pub fn zero_bits(ones: u64, low_bits: u32) -> u32 {
    ones.trailing_zeros().min(low_bits)
}

/// One block of [`BLOCK_VALUES`] values (or fewer, the last), coded by a GPU backend in
/// parts, for [`write_payload`].
#[derive(Debug, Clone, Copy)]
pub struct EncodedBlock<'a> {
    /// The block's [`zero_bits`].
    pub zero_bits: u32,
    /// The raw fields, packed (FORMAT.md §7.1): `⌈n·R / 8⌉` bytes.
    pub raw_bits: &'a [u8],
    /// The frequencies, from [`normalize`](crate::gpu::normalize) of the block's symbol
    /// counts.
    pub freqs: &'a [u32],
    /// Each lane's state after coding the block's symbols last to first.
    pub states: [u32; rans::LANES],
    /// The words in stored order: by ascending index of the symbol that emitted each.
    pub words: &'a [u16],
}

/// Clears `out` and writes the payload of `raw` from the parts of its blocks, one per
/// [`BLOCK_VALUES`] values of `kind` in `raw`: byte for byte what the CPU codec writes,
/// and the same result, whether it is smaller than `raw`. The blocks' parts are not
/// checked: they are the backend's output, not input from outside.
///
/// # Panics
///
/// When `blocks` does not hold exactly one block per [`BLOCK_VALUES`] values.
pub fn write_payload(
    raw: &[u8],
    kind: FloatKind,
    blocks: &[EncodedBlock<'_>],
    out: &mut Vec<u8>,
) -> bool {
    assert_eq!(
        blocks.len(),
        (raw.len() / kind.width()).div_ceil(BLOCK_VALUES),
        "one block per {BLOCK_VALUES} values"
    );
    write_frame(raw, kind, out, |number, _, out| {
        let block = &blocks[number];
        out.push(block.zero_bits as u8);
        out.extend_from_slice(block.raw_bits);
        rans::write_table(block.freqs, out);
        rans::write_lanes(&block.states, block.words, out);
    })
}

fn encode_block(
    block: &[u8],
    kind: FloatKind,
    kernel: Kernel,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) {
    // One copy of the loops per width, so that values are read with single loads.
    match (kind.width(), kernel) {
        #[cfg(target_arch = "x86_64")]
        (2, Kernel::Avx2(avx2)) => encode_block16(block, kind, avx2, scratch, out),
        (1, _) => encode_block_of::<1>(block, kind, kernel, scratch, out),
        (2, _) => encode_block_of::<2>(block, kind, kernel, scratch, out),
        (4, _) => encode_block_of::<4>(block, kind, kernel, scratch, out),
        _ => encode_block_of::<8>(block, kind, kernel, scratch, out),
    }
}

/// [`encode_block_of::<2>`] with the AVX2 kernels: the same bytes.
#[cfg(target_arch = "x86_64")]
fn encode_block16(
    block: &[u8],
    kind: FloatKind,
    avx2: crate::simd::Avx2,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) {
    let k = kind.symbol_mantissa_bits();
    let low_bits = kind.low_bits(k);
    let ones = u64::from(avx2.or16(block)) & ((1u64 << low_bits) - 1);
    let split = Split {
        symbol_bits: kind.symbol_bits(k),
        low_bits,
        zero_bits: zero_bits(ones, low_bits),
        value_bits: 16,
    };
    out.push(split.zero_bits as u8);
    let bits = split.raw_bits() as usize;
    let n = block.len() / 2;
    let symbols = &mut scratch.symbols;
    // Every symbol is written below, so the old contents need no clearing.
    symbols.resize(n, 0);
    let start = out.len();
    out.resize(start + (n * bits).div_ceil(8) + 16, 0);
    let done = avx2.split16(block, split.fields16(), symbols, &mut out[start..]);
    // `done` is a multiple of 16 (of 8 would do): its fields end on a byte.
    out.truncate(start + done * bits / 8);
    let mut packer = BitPacker::new(out);
    for (value, symbol) in block[2 * done..]
        .chunks_exact(2)
        .map(read_le::<2>)
        .zip(&mut symbols[done..])
    {
        packer.put(split.raw(value), split.raw_bits());
        *symbol = split.symbol(value);
    }
    packer.finish();
    rans::encode_with(
        symbols,
        split.symbol_bits,
        Kernel::Avx2(avx2),
        &mut scratch.encoder,
        out,
    );
}

fn encode_block_of<const W: usize>(
    block: &[u8],
    kind: FloatKind,
    kernel: Kernel,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) {
    let k = kind.symbol_mantissa_bits();
    let low_bits = kind.low_bits(k);
    let values = || block.chunks_exact(W).map(read_le::<W>);
    let low_mask = (1u64 << low_bits) - 1;
    let ones = values().fold(0, |acc, v| acc | (v & low_mask));
    let split = Split {
        symbol_bits: kind.symbol_bits(k),
        low_bits,
        zero_bits: zero_bits(ones, low_bits),
        value_bits: 8 * W as u32,
    };
    out.push(split.zero_bits as u8);
    let mut packer = BitPacker::new(out);
    for v in values() {
        packer.put(split.raw(v), split.raw_bits());
    }
    packer.finish();
    scratch.symbols.clear();
    scratch.symbols.extend(values().map(|v| split.symbol(v)));
    rans::encode_with(
        &scratch.symbols,
        split.symbol_bits,
        kernel,
        &mut scratch.encoder,
        out,
    );
}

/// Decodes what [`encode`] wrote into `out` (`raw_len` bytes), treating `stored` as
/// hostile: lengths are checked before anything is allocated.
pub(crate) fn decode(
    stored: &[u8],
    raw_len: usize,
    kind: FloatKind,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    decode_with(stored, raw_len, kind, Kernel::best(), out)
}

/// [`decode`] with the hot loops run by `kernel`: the same bytes, or the same error,
/// whichever it is.
pub(crate) fn decode_with(
    stored: &[u8],
    raw_len: usize,
    kind: FloatKind,
    kernel: Kernel,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let (k, tail, blocks) = read_frame(stored, raw_len, kind)?;
    out.reserve_exact(raw_len);
    let at = |number: usize| move |reason| format!("block {number}: {reason}");
    // SIMD kernels decode up to GROUP blocks together; errors are reported for the first
    // bad block in block order, as the one-block loop reports them.
    let width = match kernel {
        Kernel::Scalar => 1,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2(_) => GROUP.min(blocks.len()).max(1),
    };
    let mut scratch: Vec<Scratch> = (0..width).map(|_| Scratch::default()).collect();
    let mut blocks = blocks.into_iter().enumerate();
    loop {
        let mut group = Vec::with_capacity(width);
        let mut unreadable = None;
        for (number, (block, values)) in blocks.by_ref().take(width) {
            match read_block(block, values, kind, k) {
                Ok(block) => group.push((number, block)),
                Err(reason) => {
                    unreadable = Some(at(number)(reason));
                    break;
                }
            }
        }
        let last = group.len() < width || unreadable.is_some();
        decode_group(&group, kind, k, kernel, &mut scratch, out)?;
        if let Some(error) = unreadable {
            return Err(error);
        }
        if last {
            break;
        }
    }
    out.extend_from_slice(tail);
    Ok(())
}

/// The symbol's mantissa bits `k`, the tail and each block's bytes and values, checked.
type Frame<'a> = (u32, &'a [u8], Vec<(&'a [u8], usize)>);

fn read_frame(stored: &[u8], raw_len: usize, kind: FloatKind) -> Result<Frame<'_>, String> {
    let width = kind.width();
    let bits = kind.bits();
    let whole = raw_len - raw_len % width;
    let Some((&k, rest)) = stored.split_first() else {
        return Err("the payload is empty".into());
    };
    let k = u32::from(k);
    if k > bits.mantissa || bits.exponent + k > rans::MAX_SYMBOL_BITS {
        return Err(format!(
            "{k} mantissa bits in the symbol: at most {} for this kind",
            bits.mantissa.min(rans::MAX_SYMBOL_BITS - bits.exponent)
        ));
    }
    let Some((tail, rest)) = rest.split_at_checked(raw_len % width) else {
        return Err("the tail bytes are cut short".into());
    };
    Ok((k, tail, blocks::read(rest, whole / width)?))
}

/// A tensor codec payload, read and checked as far as it can be without decoding: what a
/// GPU backend decodes from, from [`read_payload`].
#[derive(Debug)]
pub struct Payload<'a> {
    /// The mantissa bits in each symbol (`k`): see [`FloatKind::symbol_bits`] and
    /// [`FloatKind::low_bits`].
    pub symbol_mantissa_bits: u32,
    /// The bytes after the last whole value, to append as they are.
    pub tail: &'a [u8],
    /// The blocks, in order.
    pub blocks: Vec<BlockToDecode<'a>>,
}

/// One block of a [`Payload`], its lengths checked against each other.
#[derive(Debug)]
pub struct BlockToDecode<'a> {
    /// How many values it decodes to.
    pub values: usize,
    /// Its zero bits, at most [`FloatKind::low_bits`].
    pub zero_bits: u32,
    /// The packed raw fields: exactly `⌈values·R / 8⌉` bytes.
    pub raw_bits: &'a [u8],
    /// The frequency of every symbol below `2^symbol_bits`, summing to 4096.
    pub freqs: Vec<u32>,
    /// Each lane's initial state, in `[STATE_LOW, 2^31)`.
    pub states: [u32; rans::LANES],
    /// The words (u16 LE), a whole number of them. Whether the lanes use exactly these
    /// is known only by decoding: running out, leaving words over, or a lane that does
    /// not end in [`STATE_LOW`](crate::gpu::STATE_LOW) is corruption.
    pub words: &'a [u8],
}

/// Reads a payload of `raw_len` bytes of `kind`, treating `stored` as hostile: every
/// length, the `k`, each block's zero bits, table and states are checked, and errors are
/// [`Error::Corrupt`] naming the block, as the CPU codec reports them.
pub fn read_payload(stored: &[u8], raw_len: usize, kind: FloatKind) -> Result<Payload<'_>, Error> {
    let corrupt = |reason| Error::Corrupt {
        codec: kind.codec(),
        reason,
    };
    let (k, tail, blocks) = read_frame(stored, raw_len, kind).map_err(corrupt)?;
    let blocks = blocks
        .into_iter()
        .enumerate()
        .map(|(number, (block, values))| {
            read_block(block, values, kind, k)
                .map_err(|reason| corrupt(format!("block {number}: {reason}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Payload {
        symbol_mantissa_bits: k,
        tail,
        blocks,
    })
}

fn read_block(
    block: &[u8],
    values: usize,
    kind: FloatKind,
    k: u32,
) -> Result<BlockToDecode<'_>, String> {
    let low_bits = kind.low_bits(k);
    let Some((&zero_bits, rest)) = block.split_first() else {
        return Err("it is empty".into());
    };
    let zero_bits = u32::from(zero_bits);
    if zero_bits > low_bits {
        return Err(format!(
            "{zero_bits} zero mantissa bits, more than the {low_bits} below the symbol"
        ));
    }
    let raw_len = (values * (1 + low_bits - zero_bits) as usize).div_ceil(8);
    let Some((raw_bits, stream)) = rest.split_at_checked(raw_len) else {
        return Err(format!("its {raw_len} bytes of raw bits are cut short"));
    };
    let rans::Lanes {
        freqs,
        states,
        words,
    } = rans::read_lanes(stream, kind.symbol_bits(k))?;
    Ok(BlockToDecode {
        values,
        zero_bits,
        raw_bits,
        freqs,
        states,
        words,
    })
}

fn decode_block(
    block: &BlockToDecode<'_>,
    kind: FloatKind,
    k: u32,
    kernel: Kernel,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    scratch.symbols.clear();
    scratch.symbols.resize(block.values, 0);
    rans::decode_lanes(
        &block.freqs,
        block.states,
        block.words,
        kernel,
        &mut scratch.rans,
        &mut scratch.symbols,
    )?;
    assemble_block(block, kind, k, kernel, scratch, out);
    Ok(())
}

/// Blocks that SIMD kernels decode together: enough to hide the latency of one
/// block's table reads.
#[cfg(target_arch = "x86_64")]
const GROUP: usize = 5;

/// Decodes the numbered blocks of `group` (at most [`GROUP`], and at most one a
/// scratch) and appends their values; errors name the first bad block.
fn decode_group(
    group: &[(usize, BlockToDecode<'_>)],
    kind: FloatKind,
    k: u32,
    kernel: Kernel,
    scratch: &mut [Scratch],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let at = |number: usize| move |reason| format!("block {number}: {reason}");
    #[cfg(target_arch = "x86_64")]
    if let Kernel::Avx2(avx2) = kernel
        && group.len() > 1
    {
        let results = match group.len() {
            2 => symbols_many::<2>(avx2, group, scratch).to_vec(),
            3 => symbols_many::<3>(avx2, group, scratch).to_vec(),
            4 => symbols_many::<4>(avx2, group, scratch).to_vec(),
            _ => symbols_many::<5>(avx2, group, scratch).to_vec(),
        };
        for (((number, block), result), scratch) in group.iter().zip(results).zip(scratch) {
            result.map_err(at(*number))?;
            assemble_block(block, kind, k, kernel, scratch, out);
        }
        return Ok(());
    }
    for ((number, block), scratch) in group.iter().zip(scratch.iter_mut()) {
        decode_block(block, kind, k, kernel, scratch, out).map_err(at(*number))?;
    }
    Ok(())
}

/// The symbols of `N` blocks, each into its scratch's `symbols`, decoded together.
#[cfg(target_arch = "x86_64")]
fn symbols_many<const N: usize>(
    avx2: crate::simd::Avx2,
    group: &[(usize, BlockToDecode<'_>)],
    scratch: &mut [Scratch],
) -> [Result<(), String>; N] {
    let scratch: &mut [Scratch; N] = (&mut scratch[..N]).try_into().expect("N scratches");
    let mut rans = Vec::with_capacity(N);
    let mut lanes = Vec::with_capacity(N);
    for ((_, block), scratch) in group.iter().zip(scratch.iter_mut()) {
        scratch.symbols.clear();
        scratch.symbols.resize(block.values, 0);
        rans.push(&mut scratch.rans);
        lanes.push(rans::LanesToDecode {
            freqs: &block.freqs,
            states: block.states,
            words: block.words,
            symbols: &mut scratch.symbols,
        });
    }
    let (Ok(lanes), Ok(rans)) = (lanes.try_into(), rans.try_into()) else {
        unreachable!("N blocks and scratches");
    };
    rans::decode_lanes_many(avx2, lanes, rans)
}

/// Appends a block's values, given its symbols in `scratch.symbols`.
fn assemble_block(
    block: &BlockToDecode<'_>,
    kind: FloatKind,
    k: u32,
    kernel: Kernel,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) {
    let split = Split {
        symbol_bits: kind.symbol_bits(k),
        low_bits: kind.low_bits(k),
        zero_bits: block.zero_bits,
        value_bits: 8 * kind.width() as u32,
    };
    let start = out.len();
    out.resize(start + block.values * kind.width(), 0);
    let dst = &mut out[start..];
    let symbols = &scratch.symbols[..];
    // The SIMD kernel reads the block's raw bits where they are and leaves the last
    // fields to the scalar code, which wants them followed by 8 spare bytes.
    let (done, raw_from) = match (kernel, kind.width()) {
        #[cfg(target_arch = "x86_64")]
        (Kernel::Avx2(avx2), 2) => {
            let bits = split.raw_bits();
            let done = avx2.assemble16(split.fields16(), symbols, block.raw_bits, dst);
            // Groups of 8 fields are whole bytes: the rest starts at a byte.
            (done, done * bits as usize / 8)
        }
        _ => (0, 0),
    };
    scratch.raw.clear();
    scratch.raw.extend_from_slice(&block.raw_bits[raw_from..]);
    scratch.raw.extend_from_slice(&[0; 8]);
    let (symbols, raw, dst) = (
        &symbols[done..],
        &scratch.raw[..],
        &mut dst[kind.width() * done..],
    );
    match kind.width() {
        1 => assemble::<1>(split, symbols, raw, dst),
        2 => assemble::<2>(split, symbols, raw, dst),
        4 => assemble::<4>(split, symbols, raw, dst),
        _ => assemble::<8>(split, symbols, raw, dst),
    }
}

/// Writes each value from its symbol and its field of the packed raw bits (followed by
/// 8 spare bytes).
fn assemble<const W: usize>(split: Split, symbols: &[u16], raw: &[u8], dst: &mut [u8]) {
    let bits = split.raw_bits() as usize;
    let mask = (1u64 << bits) - 1;
    let mut at = 0;
    for (value, &symbol) in dst.chunks_exact_mut(W).zip(symbols) {
        let word = u64::from_le_bytes(raw[at / 8..at / 8 + 8].try_into().expect("8 bytes"));
        let v = split.value(symbol, (word >> (at % 8)) & mask);
        value.copy_from_slice(&v.to_le_bytes()[..W]);
        at += bits;
    }
}

/// A little-endian value of `W` bytes (1 to 8).
fn read_le<const W: usize>(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..W].copy_from_slice(&bytes[..W]);
    u64::from_le_bytes(word)
}

/// Appends fields of up to 64 bits, least significant bit first.
struct BitPacker<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    filled: u32,
}

impl<'a> BitPacker<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitPacker {
            out,
            acc: 0,
            filled: 0,
        }
    }

    fn put(&mut self, field: u64, bits: u32) {
        if bits > 32 {
            self.put(field & 0xFFFF_FFFF, 32);
            self.put(field >> 32, bits - 32);
            return;
        }
        self.acc |= field << self.filled;
        self.filled += bits;
        if self.filled >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.filled -= 32;
        }
    }

    fn finish(self) {
        let bytes = self.filled.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::parity::weights;

    /// Encodes and decodes `raw`; returns the payload, or `None` when the codec would
    /// not shrink it (then the payload is not complete: encode stops early).
    fn roundtrip(raw: &[u8], kind: FloatKind) -> Option<Vec<u8>> {
        let mut stored = Vec::new();
        if !encode(raw, kind, &mut stored) {
            return None;
        }
        let mut back = Vec::new();
        decode(&stored, raw.len(), kind, &mut back).unwrap();
        assert_eq!(back, raw, "{kind:?}");
        Some(stored)
    }

    #[test]
    fn a_bf16_value_splits_into_exponent_and_top_mantissa_bit_then_sign_and_the_rest() {
        // -2.75 = 0xC030: sign 1, exponent 128, mantissa 0b011_0000.
        let split = Split {
            symbol_bits: 9,
            low_bits: 6,
            zero_bits: 0,
            value_bits: 16,
        };
        assert_eq!(split.symbol(0xC030), 128 << 1);
        assert_eq!(split.raw(0xC030), (1 << 6) | 0b11_0000);
        assert_eq!(split.value(128 << 1, (1 << 6) | 0b11_0000), 0xC030);
    }

    #[test]
    fn fp32_holding_bf16_values_costs_what_the_bf16_values_cost() {
        let bf16 = weights(FloatKind::Bf16, 100_000, 3);
        let fp32: Vec<u8> = bf16.chunks(2).flat_map(|v| [0, 0, v[0], v[1]]).collect();
        let as_bf16 = roundtrip(&bf16, FloatKind::Bf16).unwrap().len();
        let as_fp32 = roundtrip(&fp32, FloatKind::F32).unwrap().len();
        assert!(
            as_fp32 < as_bf16 + as_bf16 / 20,
            "{as_fp32} vs {as_bf16} bytes"
        );
    }

    #[test]
    fn special_values_roundtrip_in_every_kind() {
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
            let mut raw = weights(kind, 3000, 9);
            for (value, special) in raw.chunks_exact_mut(kind.width()).zip(specials) {
                value.copy_from_slice(&special.to_le_bytes()[..kind.width()]);
            }
            for cut in 0..kind.width() {
                assert!(roundtrip(&raw[..raw.len() - cut], kind).is_some());
            }
        }
    }

    #[test]
    fn hostile_payloads_are_errors() {
        let raw = weights(FloatKind::Bf16, 40_000, 1);
        let mut stored = Vec::new();
        assert!(encode(&raw, FloatKind::Bf16, &mut stored));
        let mut out = Vec::new();
        for cut in [0, 1, 5, stored.len() - 1] {
            assert!(decode(&stored[..cut], raw.len(), FloatKind::Bf16, &mut out).is_err());
        }
        let mut bad_k = stored.clone();
        bad_k[0] = 9;
        assert!(decode(&bad_k, raw.len(), FloatKind::Bf16, &mut out).is_err());
        // After `k` and the block size: the first block's length.
        let mut huge_block = stored.clone();
        huge_block[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge_block, raw.len(), FloatKind::Bf16, &mut out).is_err());
    }

    /// Decodes `stored` with the scalar kernel and with the best one this CPU runs, and
    /// requires the same bytes or the same error.
    fn kernels_agree(stored: &[u8], raw_len: usize, kind: FloatKind) -> Result<(), TestCaseError> {
        let (mut want, mut got) = (Vec::new(), Vec::new());
        let want_result = decode_with(stored, raw_len, kind, Kernel::Scalar, &mut want);
        let got_result = decode_with(stored, raw_len, kind, Kernel::best(), &mut got);
        prop_assert_eq!(&got_result, &want_result, "{:?}, {} bytes", kind, raw_len);
        if want_result.is_ok() {
            prop_assert!(got == want, "{kind:?}: the kernels decode different bytes");
        }
        Ok(())
    }

    /// `values` weight-like values of `kind`, the lowest `zeros` bits of each cleared (so
    /// that blocks have zero bits and narrower raw fields), then `tail` bytes.
    fn weights_with(kind: FloatKind, values: usize, seed: u64, zeros: u32, tail: usize) -> Vec<u8> {
        let width = kind.width();
        let mut raw = weights(kind, values, seed);
        let clear = !((1u64 << zeros.min(kind.mantissa_bits())) - 1);
        for value in raw.chunks_exact_mut(width) {
            let v = read_le::<8>(&[value, &[0; 8][width..]].concat()) & clear;
            value.copy_from_slice(&v.to_le_bytes()[..width]);
        }
        raw.extend(std::iter::repeat_n(0x5A, tail % width));
        raw
    }

    /// Encodes `raw` with the scalar kernel and with the best one this CPU runs, and
    /// requires the same bytes and the same result.
    fn encoders_agree(raw: &[u8], kind: FloatKind) -> Result<(), TestCaseError> {
        let (mut want, mut got) = (Vec::new(), Vec::new());
        let want_done = encode_with(raw, kind, Kernel::Scalar, &mut want);
        let got_done = encode_with(raw, kind, Kernel::best(), &mut got);
        prop_assert_eq!(got_done, want_done, "{:?}, {} bytes", kind, raw.len());
        prop_assert!(
            got == want,
            "{kind:?}, {} bytes: the kernels encode different bytes",
            raw.len()
        );
        Ok(())
    }

    #[test]
    fn the_encoders_agree_at_boundary_lengths_and_on_plain_data() {
        // 16-bit kinds take the SIMD split; all take the SIMD rANS rows.
        for kind in FloatKind::ALL {
            for values in [
                0,
                1,
                7,
                8,
                15,
                16,
                17,
                31,
                32,
                33,
                63,
                64,
                65,
                BLOCK_VALUES - 1,
                BLOCK_VALUES,
                BLOCK_VALUES + 1,
                3 * BLOCK_VALUES + 17,
            ] {
                for zeros in [0, 3, 6, 10, 16] {
                    for tail in [0, 1] {
                        let raw = weights_with(kind, values, values as u64, zeros, tail);
                        encoders_agree(&raw, kind).unwrap();
                    }
                }
                // Constant values, and one outlier among them.
                let mut raw: Vec<u8> = std::iter::repeat_n([0x3F, 0x80], values)
                    .flatten()
                    .collect();
                encoders_agree(&raw, kind).unwrap();
                if let Some(byte) = raw.get_mut(values) {
                    *byte = 0xFF;
                }
                encoders_agree(&raw, kind).unwrap();
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn this_machine_runs_the_simd_kernels() {
        // The parity tests below compare something only where this holds.
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt") {
            assert!(
                matches!(Kernel::best(), Kernel::Avx2(_)),
                "{:?}",
                Kernel::best()
            );
        }
    }

    /// Best-of-N decode speed of each kernel on 64 MiB of weights in 4 MiB frames (as
    /// `cargo xtask bench` decodes them: into a reused buffer), the kernels taking turns
    /// so that drift in the machine's speed hits both alike.
    #[test]
    #[ignore = "a benchmark: cargo test --release -p mmh-codecs --lib decode_speed -- --ignored --nocapture"]
    fn decode_speed() {
        let runs: usize = std::env::var("MMH_BENCH_RUNS").map_or(7, |v| v.parse().unwrap());
        // MMH_BENCH_KERNEL=scalar or =best runs one kernel.
        let kernels: &[Kernel] = match std::env::var("MMH_BENCH_KERNEL").as_deref() {
            Ok("scalar") => &[Kernel::Scalar],
            Ok("best") => &[Kernel::best()],
            _ => &[Kernel::Scalar, Kernel::best()],
        };
        for kind in [FloatKind::Bf16, FloatKind::F16] {
            let raw = weights(kind, 32 << 20, 1);
            let frames: Vec<(&[u8], Vec<u8>)> = raw
                .chunks(4 << 20)
                .map(|frame| {
                    let mut stored = Vec::new();
                    assert!(encode(frame, kind, &mut stored));
                    (frame, stored)
                })
                .collect();
            let mut times = vec![Vec::new(); kernels.len()];
            let mut out = Vec::new();
            for _ in 0..runs {
                for (kernel, times) in kernels.iter().zip(&mut times) {
                    let mut time = 0.0;
                    for (frame, stored) in &frames {
                        out.clear();
                        let start = std::time::Instant::now();
                        decode_with(stored, frame.len(), kind, *kernel, &mut out).unwrap();
                        time += start.elapsed().as_secs_f64();
                        assert!(out == *frame);
                    }
                    times.push(time);
                }
            }
            for (kernel, times) in kernels.iter().zip(&mut times) {
                if times.is_empty() {
                    continue;
                }
                times.sort_by(f64::total_cmp);
                let mbs = |t: f64| raw.len() as f64 / t / 1e6;
                println!(
                    "{kind:?} {kernel:?}: best {:.0} MB/s, median {:.0}, worst {:.0} ({runs} runs)",
                    mbs(times[0]),
                    mbs(times[times.len() / 2]),
                    mbs(times[times.len() - 1])
                );
            }
        }
    }

    #[test]
    fn the_kernels_agree_at_boundary_lengths() {
        for kind in [
            FloatKind::Bf16,
            FloatKind::F16,
            FloatKind::F32,
            FloatKind::F8E4M3,
        ] {
            for values in [
                0,
                1,
                7,
                8,
                9,
                15,
                16,
                17,
                63,
                64,
                65,
                BLOCK_VALUES - 1,
                BLOCK_VALUES,
                BLOCK_VALUES + 1,
                2 * BLOCK_VALUES + 9,
            ] {
                for zeros in [0, 3, 10] {
                    let raw = weights_with(kind, values, values as u64, zeros, 1);
                    let mut stored = Vec::new();
                    encode(&raw, kind, &mut stored);
                    kernels_agree(&stored, raw.len(), kind).unwrap();
                    // A complete payload also decodes to the values.
                    if stored.len() < raw.len() {
                        let mut back = Vec::new();
                        decode(&stored, raw.len(), kind, &mut back).unwrap();
                        assert_eq!(back, raw);
                    }
                }
            }
        }
    }

    #[test]
    fn the_assembly_kernels_agree_for_every_field_width() {
        // Every k and zero bits of the 16-bit kinds: raw fields of 1 to 16 bits, which
        // the SIMD assembly takes in 16-bit lanes up to 9 bits and in 32-bit lanes above.
        let mut next = crate::parity::random(7);
        for kind in [FloatKind::Bf16, FloatKind::F16] {
            let max_k = kind
                .mantissa_bits()
                .min(rans::MAX_SYMBOL_BITS - kind.exponent_bits());
            for k in 0..=max_k {
                for zero_bits in 0..=kind.low_bits(k) {
                    for values in [0, 7, 8, 15, 16, 17, 33, 1000] {
                        let field_bits = (1 + kind.low_bits(k) - zero_bits) as usize;
                        let raw_bits: Vec<u8> = (0..(values * field_bits).div_ceil(8))
                            .map(|_| next() as u8)
                            .collect();
                        let symbol_mask = (1u64 << kind.symbol_bits(k)) - 1;
                        let symbols: Vec<u16> =
                            (0..values).map(|_| (next() & symbol_mask) as u16).collect();
                        let block = BlockToDecode {
                            values,
                            zero_bits,
                            raw_bits: &raw_bits,
                            freqs: Vec::new(),
                            states: [0; rans::LANES],
                            words: &[],
                        };
                        let [want, got] = [Kernel::Scalar, Kernel::best()].map(|kernel| {
                            let mut scratch = Scratch {
                                symbols: symbols.clone(),
                                ..Scratch::default()
                            };
                            let mut out = vec![0xEE];
                            assemble_block(&block, kind, k, kernel, &mut scratch, &mut out);
                            out
                        });
                        assert!(
                            want == got,
                            "{kind:?}, k {k}, {zero_bits} zero bits, {values} values"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_kernels_agree_on_blocks_with_and_without_packed_tables() {
        // Weights fit the packed table; weights of which 3 in 4 are 1.0 do not (a
        // symbol's frequency passes 2048). Blocks decoded together take one kind of
        // table, so each mix of the two is a case: 6 blocks, a group and one more.
        for pattern in 0u32..64 {
            let raw: Vec<u8> = (0..6u32)
                .flat_map(|block| {
                    let mut values = weights(FloatKind::Bf16, BLOCK_VALUES, u64::from(block));
                    if pattern >> block & 1 == 0 {
                        for (i, value) in values.chunks_exact_mut(2).enumerate() {
                            if i % 4 != 0 {
                                value.copy_from_slice(&[0x80, 0x3F]);
                            }
                        }
                    }
                    values
                })
                .collect();
            let mut stored = Vec::new();
            assert!(encode(&raw, FloatKind::Bf16, &mut stored));
            #[cfg(target_arch = "x86_64")]
            {
                let payload = read_payload(&stored, raw.len(), FloatKind::Bf16).unwrap();
                let packed = payload.blocks.iter().enumerate().fold(0, |mask, (i, b)| {
                    mask | u32::from(rans::packable(&b.freqs).is_some()) << i
                });
                assert_eq!(packed, pattern, "the blocks with packed tables");
            }
            kernels_agree(&stored, raw.len(), FloatKind::Bf16).unwrap();
            let mut back = Vec::new();
            decode(&stored, raw.len(), FloatKind::Bf16, &mut back).unwrap();
            assert!(back == raw, "pattern {pattern:04b}");
        }
    }

    proptest! {
        #[test]
        fn the_encoders_agree_on_weights(
            values in 0usize..80_000,
            tail in 0usize..2,
            seed in any::<u64>(),
            zeros in 0u32..17,
            f16 in any::<bool>(),
        ) {
            let kind = if f16 { FloatKind::F16 } else { FloatKind::Bf16 };
            encoders_agree(&weights_with(kind, values, seed, zeros, tail), kind)?;
        }

        #[test]
        fn the_encoders_agree_on_random_bytes(
            raw in prop::collection::vec(any::<u8>(), 0..5000),
            f16 in any::<bool>(),
        ) {
            let kind = if f16 { FloatKind::F16 } else { FloatKind::Bf16 };
            encoders_agree(&raw, kind)?;
        }

        #[test]
        fn the_kernels_agree_on_weights_and_damage(
            values in 0usize..80_000,
            tail in 0usize..2,
            seed in any::<u64>(),
            zeros in 0u32..12,
            f16 in any::<bool>(),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            cut in any::<prop::sample::Index>(),
        ) {
            let kind = if f16 { FloatKind::F16 } else { FloatKind::Bf16 };
            let raw = weights_with(kind, values, seed, zeros, tail);
            let mut stored = Vec::new();
            let complete = encode(&raw, kind, &mut stored);
            kernels_agree(&stored, raw.len(), kind)?;
            if complete {
                let mut back = Vec::new();
                prop_assert!(decode(&stored, raw.len(), kind, &mut back).is_ok());
                prop_assert!(back == raw);
            }
            if !stored.is_empty() {
                let mut flipped = stored.clone();
                flipped[at.index(stored.len())] ^= 1 << bit;
                kernels_agree(&flipped, raw.len(), kind)?;
                kernels_agree(&stored[..cut.index(stored.len())], raw.len(), kind)?;
            }
            // One word too many, and one word too few, at the end of the last block.
            let mut longer = stored.clone();
            longer.extend_from_slice(&[0x34, 0x12]);
            kernels_agree(&longer, raw.len(), kind)?;
        }

        #[test]
        fn the_kernels_agree_on_any_bytes(raw in proptest::collection::vec(any::<u8>(), 0..5000), kind in 0usize..6, at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let kind = FloatKind::ALL[kind];
            let mut stored = Vec::new();
            encode(&raw, kind, &mut stored);
            kernels_agree(&stored, raw.len(), kind)?;
            if !stored.is_empty() {
                let i = at.index(stored.len());
                stored[i] ^= 1 << bit;
                kernels_agree(&stored, raw.len(), kind)?;
            }
        }

        #[test]
        fn any_bytes_roundtrip_or_are_refused(raw in proptest::collection::vec(any::<u8>(), 0..3000), kind in 0usize..6) {
            roundtrip(&raw, FloatKind::ALL[kind]);
        }

        #[test]
        fn weights_shrink_and_roundtrip(values in 0usize..40_000, tail in 0usize..8, seed in any::<u64>(), kind in 0usize..6) {
            let kind = FloatKind::ALL[kind];
            let mut raw = weights(kind, values, seed);
            raw.extend(std::iter::repeat_n(0xA5, tail % kind.width()));
            let shrank = roundtrip(&raw, kind).is_some();
            prop_assert!(shrank || raw.len() < 4096, "{values} values did not shrink");
        }

        #[test]
        fn flipped_bits_never_panic(at in any::<prop::sample::Index>(), bit in 0u8..8, kind in 0usize..6) {
            let kind = FloatKind::ALL[kind];
            let raw = weights(kind, 20_000, 5);
            let mut stored = Vec::new();
            prop_assert!(encode(&raw, kind, &mut stored));
            let i = at.index(stored.len());
            stored[i] ^= 1 << bit;
            let mut out = Vec::new();
            // A flip the checks cannot see still decodes to exactly the recorded length.
            if decode(&stored, raw.len(), kind, &mut out).is_ok() {
                prop_assert_eq!(out.len(), raw.len());
            }
        }
    }
}
