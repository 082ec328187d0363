//! rANS entropy coding of one block of small symbols, in the layout FORMAT.md §7.2 fixes.
//!
//! Hand-written because no crate codes with a layout that a GPU decodes the same way:
//! the tensor codec needs many small blocks that decode independently, each with
//! [`LANES`] interleaved states over one shared stream of 16-bit words (ryg's
//! "interleaved rANS" with word renormalisation, the layout DietGPU decodes on GPUs: the
//! lanes of one row refill in lane order, so a SIMD group of `LANES` threads finds its
//! words with a prefix count of the lanes that need one). Symbols have at most
//! [`MAX_SYMBOL_BITS`] bits and probabilities are quantised to 1/4096; each block
//! carries its own table, because weight statistics drift within a tensor (on a bf16
//! model, tables per 16 Ki values code 1.2% smaller than one table per file).

use std::sync::OnceLock;

use crate::blocks;
#[cfg(target_arch = "x86_64")]
use crate::simd;

/// Probabilities are multiples of 2^-12.
pub const PROB_BITS: u32 = 12;
pub(crate) const PROB_SCALE: u32 = 1 << PROB_BITS;
/// Interleaved states per block: enough independent work for a CPU core, and a
/// quarter of a GPU warp.
pub const LANES: usize = 8;
/// The lower bound of a state; states stay in `[STATE_LOW, 2^31)`, so the encoder's
/// reciprocal division is exact and one 16-bit word always renormalises. Every lane
/// starts and ends here.
pub const STATE_LOW: u32 = 1 << 15;
/// The widest symbol the table can name.
pub(crate) const MAX_SYMBOL_BITS: u32 = 12;

/// Length of the decoder's symbol table: a `u16` a slot, and padding for the SIMD
/// gathers, which read 4 bytes at a slot.
#[cfg(target_arch = "x86_64")]
const SYMBOL_TABLE_LEN: usize = simd::SYMBOL_TABLE_LEN;
#[cfg(not(target_arch = "x86_64"))]
const SYMBOL_TABLE_LEN: usize = PROB_SCALE as usize;

/// The code that runs the decoder's hot loops: the scalar reference, or SIMD kernels
/// that produce the same bytes and the same errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Portable Rust, the reference.
    Scalar,
    /// AVX2 (`simd.rs`): the rANS lanes, and joining 16-bit values.
    #[cfg(target_arch = "x86_64")]
    Avx2(simd::Avx2),
}

impl Kernel {
    /// The fastest kernel this CPU runs, detected once.
    pub(crate) fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = simd::Avx2::detect() {
                return Kernel::Avx2(avx2);
            }
            Kernel::Scalar
        })
    }
}

/// Bytes per block of the byte codec, as a power of two: 16 KiB follows the change from
/// one byte plane of a delta to the next (the XOR of a checkpoint with its base: 17.4%
/// of the file with 16 KiB blocks, 20.6% with 32 KiB).
const BYTES_BLOCK_LOG: u8 = 14;

/// The rANS byte codec (FORMAT.md §7.3): `raw` in blocks of 16 KiB, each
/// coded as 8-bit symbols. Order-0 coding with exact probabilities is what skewed,
/// match-free data wants (the XORed byte planes of a changed tensor, quantised weights):
/// zstd's Huffman stage spends at least a bit on every byte. Returns whether the result
/// is smaller than `raw`.
pub(crate) fn encode_bytes(raw: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let (mut symbols, mut scratch) = (Vec::new(), EncodeScratch::default());
    blocks::write(out, raw, 1, BYTES_BLOCK_LOG, raw.len(), |block, out| {
        symbols.clear();
        symbols.extend(block.iter().map(|&b| u16::from(b)));
        encode(&symbols, 8, &mut scratch, out);
    })
}

/// Decodes what [`encode_bytes`] wrote into `out` (`raw_len` bytes).
pub(crate) fn decode_bytes(stored: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let mut scratch = DecodeScratch::default();
    let mut symbols = Vec::new();
    out.reserve_exact(raw_len);
    for (number, (block, len)) in blocks::read(stored, raw_len)?.into_iter().enumerate() {
        symbols.clear();
        symbols.resize(len, 0);
        decode(block, 8, Kernel::best(), &mut scratch, &mut symbols)
            .map_err(|reason| format!("block {number}: {reason}"))?;
        out.extend(symbols.iter().map(|&s| s as u8));
    }
    Ok(())
}

/// What encoding a block needs besides its symbols, reused from block to block.
#[derive(Default)]
pub(crate) struct EncodeScratch {
    /// The emitted words.
    words: Vec<u16>,
    /// The histogram's four tables.
    counts: Vec<[u32; 1 << MAX_SYMBOL_BITS]>,
}

/// Appends the coded `symbols` (each below `2^symbol_bits`) to `out`: the frequency
/// table, the final state of each lane, then the words.
pub(crate) fn encode(
    symbols: &[u16],
    symbol_bits: u32,
    scratch: &mut EncodeScratch,
    out: &mut Vec<u8>,
) {
    encode_with(symbols, symbol_bits, Kernel::best(), scratch, out);
}

/// [`encode`] with the whole rows coded by `kernel`: the same bytes whichever it is.
pub(crate) fn encode_with(
    symbols: &[u16],
    symbol_bits: u32,
    kernel: Kernel,
    scratch: &mut EncodeScratch,
    out: &mut Vec<u8>,
) {
    debug_assert!(symbol_bits <= MAX_SYMBOL_BITS);
    let counts = histogram(symbols, symbol_bits, &mut scratch.counts);
    let freqs = normalize(&counts, symbols.len());
    write_table(&freqs, out);
    let encoders = encoder_table(&freqs);
    // Symbols are coded last to first so that they decode first to last; each can
    // emit at most one word. Whether it does is close to a coin toss for skewed
    // symbols, so the emission is arithmetic, not a branch: every step writes the word
    // at the end and only counts it when it is emitted.
    let words = &mut scratch.words;
    // One word a symbol at most, and room for the SIMD kernel's 8-word stores. Every
    // word that is counted is written first, so the old contents need no clearing.
    if words.len() < symbols.len() + LANES {
        words.resize(symbols.len() + LANES, 0);
    }
    let mut emitted = 0usize;
    let mut states = [STATE_LOW; LANES];
    let mut lane_step = |x: &mut u32, s: u16| {
        let enc = &encoders[usize::from(s)];
        let emit = u32::from(*x >= enc.x_max);
        words[emitted] = *x as u16;
        emitted += emit as usize;
        *x >>= 16 * emit;
        let q = ((u64::from(*x) * u64::from(enc.rcp_freq)) >> enc.rcp_shift) as u32;
        *x += enc.bias + q * enc.cmpl_freq;
    };
    let rows = symbols.chunks_exact(LANES);
    for (x, &s) in states.iter_mut().zip(rows.remainder()).rev() {
        lane_step(x, s);
    }
    match kernel {
        Kernel::Scalar => {
            for row in rows.rev() {
                for (x, &s) in states.iter_mut().zip(row).rev() {
                    lane_step(x, s);
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2(avx2) => {
            let whole = symbols.len() - symbols.len() % LANES;
            let table = simd::EncTable::new(&encoders, symbol_bits);
            emitted = avx2.rans_encode_rows(&table, &symbols[..whole], &mut states, words, emitted);
        }
    }
    for state in states {
        out.extend_from_slice(&state.to_le_bytes());
    }
    // The words in stored order, the reverse of the order they were emitted in.
    let start = out.len();
    out.resize(start + 2 * emitted, 0);
    for (bytes, word) in out[start..]
        .chunks_exact_mut(2)
        .zip(words[..emitted].iter().rev())
    {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
}

/// Appends the lanes' final states and the words, given in stored order (the reverse of
/// the order the encoder emitted them: ascending symbol index).
pub(crate) fn write_lanes(states: &[u32; LANES], words: &[u16], out: &mut Vec<u8>) {
    for state in states {
        out.extend_from_slice(&state.to_le_bytes());
    }
    let start = out.len();
    out.resize(start + 2 * words.len(), 0);
    for (bytes, word) in out[start..].chunks_exact_mut(2).zip(words) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
}

/// What follows a block's table, read and checked: what a decoder needs besides the
/// frequencies.
pub(crate) struct Lanes<'a> {
    /// The frequency of every symbol of the alphabet, summing to 4096.
    pub(crate) freqs: Vec<u32>,
    /// Each lane's initial state, in `[STATE_LOW, 2^31)`.
    pub(crate) states: [u32; LANES],
    /// The words as stored (u16 LE), a whole number of them.
    pub(crate) words: &'a [u8],
}

/// Reads the table, the states and the words of a stream written by [`encode`],
/// checking everything that can be checked without decoding.
pub(crate) fn read_lanes(stream: &[u8], symbol_bits: u32) -> Result<Lanes<'_>, String> {
    let (freqs, rest) = read_table(stream, symbol_bits)?;
    let Some((state_bytes, words)) = rest.split_at_checked(4 * LANES) else {
        return Err(format!("the {LANES} lane states are cut short"));
    };
    if words.len() % 2 != 0 {
        return Err(format!("{} bytes of words is not whole words", words.len()));
    }
    let mut states = [0u32; LANES];
    for (state, bytes) in states.iter_mut().zip(state_bytes.chunks_exact(4)) {
        *state = u32::from_le_bytes(bytes.try_into().expect("4 bytes"));
        if !(STATE_LOW..1 << 31).contains(state) {
            return Err(format!("lane state {state:#x} is out of range"));
        }
    }
    Ok(Lanes {
        freqs,
        states,
        words,
    })
}

/// What decoding a block needs besides its bytes, reused from block to block. A block
/// fills either the packed table or the step and symbol tables, never both: each holds
/// 4096 slots, and building tables a block does not read showed in its decode time.
pub(crate) struct DecodeScratch {
    /// The symbol of each slot of the probability range.
    symbol: Box<[u16; SYMBOL_TABLE_LEN]>,
    /// Per slot: the symbol's frequency in the high half, the slot's offset within the
    /// symbol's range in the low half.
    step: Box<[u32; PROB_SCALE as usize]>,
    /// Per slot, when no frequency passes 2048 and the symbols with a frequency lie
    /// within 512 of the first of them: `(symbol - first) << 23 | freq << 11 | offset`,
    /// one table read a symbol instead of two.
    packed: Box<[u32; PROB_SCALE as usize]>,
    /// `first`, when this block filled `packed` rather than `step` and `symbol`.
    packed_first: Option<u32>,
}

impl Default for DecodeScratch {
    fn default() -> Self {
        DecodeScratch {
            symbol: Box::new([0; SYMBOL_TABLE_LEN]),
            step: Box::new([0; PROB_SCALE as usize]),
            packed: Box::new([0; PROB_SCALE as usize]),
            packed_first: None,
        }
    }
}

/// The first symbol with a frequency, when `freqs` fit the packed decoding table (one
/// 32-bit word a slot, which the SIMD and GPU decoders read): none passes 2048 and those
/// with a frequency span at most 512 symbols.
pub fn packable(freqs: &[u32]) -> Option<u32> {
    let first = freqs.iter().position(|&f| f > 0)?;
    let last = freqs.iter().rposition(|&f| f > 0)?;
    let fits = last - first < 512 && freqs[first..=last].iter().all(|&f| f <= 2048);
    fits.then_some(first as u32)
}

/// Decodes `symbols.len()` symbols from `stream`, which must be exactly what
/// [`encode`] wrote. Errors say what is wrong; nothing here panics on hostile input.
pub(crate) fn decode(
    stream: &[u8],
    symbol_bits: u32,
    kernel: Kernel,
    scratch: &mut DecodeScratch,
    symbols: &mut [u16],
) -> Result<(), String> {
    let lanes = read_lanes(stream, symbol_bits)?;
    decode_lanes(
        &lanes.freqs,
        lanes.states,
        lanes.words,
        kernel,
        scratch,
        symbols,
    )
}

/// Decodes `symbols.len()` symbols from what [`read_lanes`] read, the whole rows with
/// `kernel`.
pub(crate) fn decode_lanes(
    freqs: &[u32],
    mut states: [u32; LANES],
    word_bytes: &[u8],
    kernel: Kernel,
    scratch: &mut DecodeScratch,
    symbols: &mut [u16],
) -> Result<(), String> {
    let whole = symbols.len() - symbols.len() % LANES;
    let (rows, rest) = symbols.split_at_mut(whole);
    let next = match kernel {
        Kernel::Scalar => {
            scratch.prepare(freqs, None);
            let mut next = 0;
            for row in rows.chunks_exact_mut(LANES) {
                for (x, out) in states.iter_mut().zip(row) {
                    scratch.lane_step(word_bytes, x, out, &mut next);
                }
                if 2 * next > word_bytes.len() {
                    return Err("the words run out".into());
                }
            }
            next
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2(avx2) => {
            scratch.prepare(freqs, packable(freqs));
            avx2.rans_rows(&scratch.tables(word_bytes), &mut states, rows)
                .ok_or("the words run out")?
        }
    };
    scratch.finish(word_bytes, states, next, rest)
}

/// One block's input to [`decode_lanes_many`]: its frequencies, initial states and
/// words, and where its symbols go.
#[cfg(target_arch = "x86_64")]
pub(crate) struct LanesToDecode<'a, 'b> {
    pub(crate) freqs: &'a [u32],
    pub(crate) states: [u32; LANES],
    pub(crate) words: &'a [u8],
    pub(crate) symbols: &'b mut [u16],
}

/// [`decode_lanes`] of `N` blocks at once with AVX2: each block's lanes wait on table
/// reads most of the time, and the others' fill that time. Returns each block's result,
/// as [`decode_lanes`] would return it.
#[cfg(target_arch = "x86_64")]
pub(crate) fn decode_lanes_many<const N: usize>(
    avx2: simd::Avx2,
    blocks: [LanesToDecode<'_, '_>; N],
    mut scratch: [&mut DecodeScratch; N],
) -> [Result<(), String>; N] {
    // The blocks decode in step with one kind of table: packed only if all fit it.
    let firsts = blocks.each_ref().map(|block| packable(block.freqs));
    let packed = firsts.iter().all(Option::is_some);
    let mut states = [[0; LANES]; N];
    for (i, block) in blocks.iter().enumerate() {
        scratch[i].prepare(block.freqs, firsts[i].filter(|_| packed));
        states[i] = block.states;
    }
    let words = blocks.each_ref().map(|block| block.words);
    let mut symbols = blocks.map(|block| block.symbols);
    let wholes = symbols.each_ref().map(|s| s.len() - s.len() % LANES);
    let together = wholes.iter().copied().min().unwrap_or(0);
    let scratch = scratch.each_mut().map(|s| &**s);
    let tables = std::array::from_fn(|i| scratch[i].tables(words[i]));
    let done = avx2.rans_rows_many(
        tables.each_ref(),
        &mut states,
        symbols.each_mut().map(|s| &mut s[..together]),
    );
    std::array::from_fn(|i| {
        let (rows_done, start) = done[i];
        let (_, rest) = symbols[i].split_at_mut(rows_done);
        let (rows, rest) = rest.split_at_mut(wholes[i] - rows_done);
        let next = start
            + avx2
                .rans_rows(&tables[i].skip_words(start), &mut states[i], rows)
                .ok_or("the words run out")?;
        scratch[i].finish(words[i], states[i], next, rest)
    })
}

impl DecodeScratch {
    /// Fills the packed table if `packed_first` is given, else the step and symbol
    /// tables, from the frequencies (which sum to 4096).
    fn prepare(&mut self, freqs: &[u32], packed_first: Option<u32>) {
        self.packed_first = packed_first;
        let mut cum = 0usize;
        // Filled through slices, range by range, so that the loops vectorise.
        for (s, &f) in freqs.iter().enumerate() {
            let range = cum..cum + f as usize;
            match packed_first {
                Some(first) => {
                    // s - first < 512: 9 bits; f ≤ 2048: 12 bits; offset < f: 11 bits.
                    let entry = ((s as u32).wrapping_sub(first) << 23) | (f << 11);
                    for (offset, slot) in self.packed[range].iter_mut().enumerate() {
                        *slot = entry | offset as u32;
                    }
                }
                None => {
                    self.symbol[range.clone()].fill(s as u16);
                    for (offset, slot) in self.step[range].iter_mut().enumerate() {
                        *slot = (f << 16) | offset as u32;
                    }
                }
            }
            cum += f as usize;
        }
    }

    /// What the SIMD kernels read, for a block of words `words` (u16 LE).
    #[cfg(target_arch = "x86_64")]
    fn tables<'a>(&'a self, words: &'a [u8]) -> simd::Tables<'a> {
        simd::Tables {
            step: &self.step,
            symbol: &self.symbol,
            packed: self.packed_first.map(|first| (&*self.packed, first)),
            words,
        }
    }

    /// Decodes one symbol of a lane reading `words` (u16 LE), the scalar reference of
    /// every kernel. A lane that needs a word past the end reads 0 and moves `next` past
    /// the end, for the caller to report.
    fn lane_step(&self, words: &[u8], x: &mut u32, out: &mut u16, next: &mut usize) {
        let slot = (*x & (PROB_SCALE - 1)) as usize;
        let (freq, offset, symbol) = match self.packed_first {
            Some(first) => {
                let e = self.packed[slot];
                ((e >> 11) & 0xFFF, e & 0x7FF, ((e >> 23) + first) as u16)
            }
            None => {
                let e = self.step[slot];
                (e >> 16, e & 0xFFFF, self.symbol[slot])
            }
        };
        let y = freq * (*x >> PROB_BITS) + offset;
        // A refill is close to a coin toss for skewed symbols: arithmetic, not a branch.
        let need = u32::from(y < STATE_LOW);
        let word = words
            .get(2 * *next..2 * *next + 2)
            .map_or(0, |w| u32::from(u16::from_le_bytes([w[0], w[1]])));
        *x = (y << (16 * need)) | (word & 0u32.wrapping_sub(need));
        *next += need as usize;
        *out = symbol;
    }

    /// Decodes the last, partial row (`rest`) from word `next` of `words`, then checks
    /// that every word was read and every lane is back in its initial state.
    fn finish(
        &self,
        words: &[u8],
        mut states: [u32; LANES],
        mut next: usize,
        rest: &mut [u16],
    ) -> Result<(), String> {
        for (x, out) in states.iter_mut().zip(rest) {
            self.lane_step(words, x, out, &mut next);
        }
        let count = words.len() / 2;
        if next > count {
            return Err("the words run out".into());
        }
        if next < count {
            return Err(format!("{} words follow the last value", count - next));
        }
        if states.iter().any(|&x| x != STATE_LOW) {
            return Err("a lane does not end in its initial state".into());
        }
        Ok(())
    }
}

/// How often each symbol below `2^symbol_bits` occurs. Four tables, summed at the end:
/// with one, runs of the same symbol (most of a weight block) wait on the previous
/// increment of the same counter. The tables (in `counts`, kept from block to block)
/// have room for any symbol of [`MAX_SYMBOL_BITS`], so that the masked indices need no
/// bounds checks.
fn histogram(
    symbols: &[u16],
    symbol_bits: u32,
    counts: &mut Vec<[u32; 1 << MAX_SYMBOL_BITS]>,
) -> Vec<u32> {
    const ROOM: usize = 1 << MAX_SYMBOL_BITS;
    let alphabet = 1usize << symbol_bits;
    counts.resize(4, [0; ROOM]);
    for table in counts.iter_mut() {
        table[..alphabet].fill(0);
    }
    let [t0, t1, t2, t3] = &mut counts[..] else {
        unreachable!("four tables")
    };
    let slot = |s: u16| usize::from(s) & (ROOM - 1);
    let mut quads = symbols.chunks_exact(4);
    for quad in &mut quads {
        t0[slot(quad[0])] += 1;
        t1[slot(quad[1])] += 1;
        t2[slot(quad[2])] += 1;
        t3[slot(quad[3])] += 1;
    }
    for &s in quads.remainder() {
        t0[slot(s)] += 1;
    }
    (0..alphabet)
        .map(|i| t0[i] + t1[i] + t2[i] + t3[i])
        .collect()
}

/// What coding one symbol takes: ryg's reciprocal form of
/// `x' = (x / f) * 4096 + x % f + cum`, exact for states below 2^31. One step of a lane,
/// given its state `x`: if `x >= x_max`, emit `x & 0xFFFF` and shift `x` right by 16;
/// then `q = (x * rcp_freq) >> rcp_shift` (a 64-bit product) and
/// `x += bias + q * cmpl_freq` (32-bit arithmetic, which never wraps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncSymbol {
    /// A state at or above this is renormalised first.
    pub x_max: u32,
    /// The reciprocal of the frequency, scaled by `2^rcp_shift`.
    pub rcp_freq: u32,
    /// The shift of the reciprocal (32 to 43).
    pub rcp_shift: u32,
    /// Added to the state: the symbol's cumulative frequency, corrected for frequency 1.
    pub bias: u32,
    /// `4096 - f`.
    pub cmpl_freq: u32,
}

/// The encoder's constants of every symbol, given the frequencies (from [`normalize`]):
/// symbols of frequency 0 get zeros, as they never occur.
pub fn encoder_table(freqs: &[u32]) -> Vec<EncSymbol> {
    let mut encoders = vec![EncSymbol::default(); freqs.len()];
    let mut cum = 0;
    for (enc, &f) in encoders.iter_mut().zip(freqs) {
        if f > 0 {
            *enc = EncSymbol::new(cum, f);
        }
        cum += f;
    }
    encoders
}

impl EncSymbol {
    fn new(cum: u32, freq: u32) -> EncSymbol {
        let x_max = ((STATE_LOW >> PROB_BITS) << 16) * freq;
        let cmpl_freq = PROB_SCALE - freq;
        if freq == 1 {
            // x * (2^32 - 1) >> 32 is x - 1: the bias makes up the difference.
            return EncSymbol {
                x_max,
                rcp_freq: u32::MAX,
                rcp_shift: 32,
                bias: cum + PROB_SCALE - 1,
                cmpl_freq,
            };
        }
        let shift = 32 - (freq - 1).leading_zeros();
        let rcp_freq = ((1u64 << (shift + 31)).div_ceil(u64::from(freq))) as u32;
        EncSymbol {
            x_max,
            rcp_freq,
            rcp_shift: shift + 31,
            bias: cum,
            cmpl_freq,
        }
    }
}

/// Frequencies summing to 4096, every symbol that occurs at least 1, from a block's
/// symbol counts (`counts[s]`: how often symbol `s` occurs; `total`: their sum, the
/// block's values): each symbol's share rounded down, what that leaves given to the most
/// frequent symbol, and what giving rare symbols 1 overspends taken back from the largest
/// ones first (FORMAT.md §7.2).
pub fn normalize(counts: &[u32], total: usize) -> Vec<u32> {
    let total = total.max(1) as u64;
    let mut freqs: Vec<u32> = counts
        .iter()
        .map(|&c| match c {
            0 => 0,
            c => ((u64::from(c) * u64::from(PROB_SCALE) / total) as u32).max(1),
        })
        .collect();
    let sum: u32 = freqs.iter().sum();
    if sum <= PROB_SCALE {
        let top = (0..counts.len()).max_by_key(|&s| (counts[s], std::cmp::Reverse(s)));
        freqs[top.unwrap_or(0)] += PROB_SCALE - sum;
        return freqs;
    }
    let mut excess = sum - PROB_SCALE;
    let mut order: Vec<usize> = (0..freqs.len()).filter(|&s| freqs[s] > 1).collect();
    order.sort_by_key(|&s| (std::cmp::Reverse(freqs[s]), s));
    // At most 4096 symbols occur, so the frequencies above 1 cover the excess.
    while excess > 0 {
        for &s in &order {
            if excess == 0 {
                break;
            }
            if freqs[s] > 1 {
                freqs[s] -= 1;
                excess -= 1;
            }
        }
    }
    freqs
}

/// The table: the first symbol with a frequency (u16), how many symbols follow from it
/// (u16), then their frequencies, each in one byte (1 to 127) or two (`0x80 | f >> 8`,
/// `f & 0xFF`), except that a run of `r` absent symbols (1 to 256) is the bytes 0 and
/// `r - 1`: outliers spread a table thin.
pub(crate) fn write_table(freqs: &[u32], out: &mut Vec<u8>) {
    let first = freqs.iter().position(|&f| f > 0).unwrap_or(0);
    let last = freqs.iter().rposition(|&f| f > 0).unwrap_or(0);
    out.extend_from_slice(&(first as u16).to_le_bytes());
    out.extend_from_slice(&((last - first + 1) as u16).to_le_bytes());
    let mut zeros = 0usize;
    for &f in &freqs[first..=last] {
        if f == 0 {
            zeros += 1;
            continue;
        }
        while zeros > 0 {
            let run = zeros.min(256);
            out.extend_from_slice(&[0, (run - 1) as u8]);
            zeros -= run;
        }
        if f < 0x80 {
            out.push(f as u8);
        } else {
            out.extend_from_slice(&[0x80 | (f >> 8) as u8, f as u8]);
        }
    }
}

/// Reads a table written by [`write_table`]; returns the frequency of every symbol below
/// `2^symbol_bits` and the bytes after the table.
fn read_table(stream: &[u8], symbol_bits: u32) -> Result<(Vec<u32>, &[u8]), String> {
    const SHORT: &str = "the frequency table is cut short";
    let alphabet = 1usize << symbol_bits;
    let Some((head, mut rest)) = stream.split_at_checked(4) else {
        return Err(SHORT.into());
    };
    let first = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let count = usize::from(u16::from_le_bytes([head[2], head[3]]));
    if count == 0 || first + count > alphabet {
        return Err(format!(
            "the table names symbols {first}..{} of an alphabet of {alphabet}",
            first + count
        ));
    }
    let mut freqs = vec![0u32; alphabet];
    let mut sum = 0u32;
    let mut s = first;
    while s < first + count {
        let (&b0, after) = rest.split_first().ok_or(SHORT)?;
        let (&b1, after_two) = after.split_first().unwrap_or((&0, after));
        match b0 {
            0 => {
                if after.is_empty() {
                    return Err(SHORT.into());
                }
                s += usize::from(b1) + 1;
                rest = after_two;
                continue;
            }
            1..0x80 => {
                freqs[s] = u32::from(b0);
                rest = after;
            }
            _ => {
                if after.is_empty() {
                    return Err(SHORT.into());
                }
                freqs[s] = (u32::from(b0 & 0x7F) << 8) | u32::from(b1);
                rest = after_two;
            }
        }
        sum += freqs[s];
        if sum > PROB_SCALE {
            return Err(format!("the frequencies sum past {PROB_SCALE}"));
        }
        s += 1;
    }
    if s != first + count {
        return Err(format!(
            "a run of absent symbols passes symbol {}",
            first + count
        ));
    }
    if sum != PROB_SCALE {
        return Err(format!("the frequencies sum to {sum}, not {PROB_SCALE}"));
    }
    Ok((freqs, rest))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn roundtrip(symbols: &[u16], bits: u32) -> Vec<u8> {
        let mut stream = Vec::new();
        encode(symbols, bits, &mut EncodeScratch::default(), &mut stream);
        let mut back = vec![0u16; symbols.len()];
        decode(
            &stream,
            bits,
            Kernel::best(),
            &mut DecodeScratch::default(),
            &mut back,
        )
        .unwrap();
        assert_eq!(back, symbols);
        stream
    }

    #[test]
    fn the_reciprocal_divides_exactly() {
        for freq in [1, 2, 3, 5, 7, 100, 1000, 2047, 2048, 2049, 4095, 4096] {
            let enc = EncSymbol::new(0, freq);
            for x in [STATE_LOW, STATE_LOW + 1, 123_456_789, (1 << 31) - 1] {
                if x >= enc.x_max {
                    continue;
                }
                let q = ((u64::from(x) * u64::from(enc.rcp_freq)) >> enc.rcp_shift) as u32;
                let coded = x + enc.bias + q * enc.cmpl_freq;
                assert_eq!(
                    coded,
                    (x / freq) * PROB_SCALE + x % freq,
                    "x {x} freq {freq}"
                );
            }
        }
    }

    #[test]
    fn a_skewed_stream_codes_near_its_entropy() {
        // 3/4 zeros, 1/4 ones over 64 Ki symbols: 0.811 bits a symbol, 6.6 KB.
        let symbols: Vec<u16> = (0..65536u32).map(|i| u16::from(i % 4 == 3)).collect();
        let stream = roundtrip(&symbols, 1);
        assert!(stream.len() < 6_700, "{} bytes", stream.len());
    }

    #[test]
    fn one_symbol_costs_only_the_table_and_states() {
        let stream = roundtrip(&[5; 10_000], 4);
        assert_eq!(stream.len(), 4 + 2 + 4 * LANES);
    }

    #[test]
    fn outliers_cost_a_few_bytes_of_table() {
        let mut symbols = vec![1u16; 5000];
        symbols[7] = 4000;
        let stream = roundtrip(&symbols, 12);
        // The run of 3998 absent symbols between the two takes 16 pairs of bytes.
        assert!(
            stream.len() < 4 + 1 + 32 + 2 + 4 * LANES + 20,
            "{} bytes",
            stream.len()
        );
    }

    #[test]
    fn frequencies_sum_to_the_scale_even_when_rare_symbols_overspend() {
        let mut counts = vec![1u32; 4096];
        counts[0] = 100_000;
        let freqs = normalize(&counts, 100_000 + 4095);
        assert_eq!(freqs.iter().sum::<u32>(), PROB_SCALE);
        assert!(freqs.iter().all(|&f| f >= 1));
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let symbols: Vec<u16> = (0..5000u32).map(|i| (i * i % 37) as u16).collect();
        let stream = roundtrip(&symbols, 6);
        let mut back = vec![0u16; symbols.len()];
        assert!(
            decode(
                &stream[..stream.len() - 2],
                6,
                Kernel::best(),
                &mut DecodeScratch::default(),
                &mut back
            )
            .is_err()
        );
        assert!(
            decode(
                &stream[..3],
                6,
                Kernel::best(),
                &mut DecodeScratch::default(),
                &mut back
            )
            .is_err()
        );
        assert!(
            decode(
                &stream,
                5,
                Kernel::best(),
                &mut DecodeScratch::default(),
                &mut back
            )
            .is_err()
        );
        let mut longer = stream.clone();
        longer.extend_from_slice(&[0, 0]);
        assert!(
            decode(
                &longer,
                6,
                Kernel::best(),
                &mut DecodeScratch::default(),
                &mut back
            )
            .is_err()
        );
    }

    #[test]
    fn skewed_bytes_code_below_a_bit_each_and_roundtrip() {
        // 90% zeros, 10% ones: 0.47 bits a byte (5.9 KB), where Huffman spends at least
        // 1 bit (12.5 KB).
        let raw: Vec<u8> = (0..100_000u32).map(|i| u8::from(i % 10 == 3)).collect();
        let mut stored = Vec::new();
        assert!(encode_bytes(&raw, &mut stored));
        assert!(stored.len() < 6_200, "{} bytes", stored.len());
        let mut back = Vec::new();
        decode_bytes(&stored, raw.len(), &mut back).unwrap();
        assert_eq!(back, raw);
        assert!(decode_bytes(&stored[..stored.len() - 1], raw.len(), &mut Vec::new()).is_err());
        assert!(decode_bytes(&stored, raw.len() + 1, &mut Vec::new()).is_err());
    }

    /// `len` seeded symbols below `2^bits`, from uniform (skew 1) to nearly always one
    /// symbol (skew 5).
    fn skewed(bits: u32, skew: u32, seed: u64, len: usize) -> Vec<u16> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let r = state % 4096;
                ((r.pow(skew) >> (12 * (skew - 1))) >> (12 - bits)) as u16
            })
            .collect()
    }

    proptest! {
        #[test]
        fn any_symbols_roundtrip(bits in 0u32..=12, seed in any::<u64>(), len in 0usize..3000) {
            let mut state = seed | 1;
            let symbols: Vec<u16> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Skewed: small symbols far more often than large ones.
                    let r = (state % 4096) as u32;
                    ((r * r / 4096) >> (12 - bits)) as u16
                })
                .collect();
            roundtrip(&symbols, bits);
        }

        #[test]
        fn the_kernels_agree(bits in 0u32..=12, skew in 1u32..4, seed in any::<u64>(), len in 0usize..3000, at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let symbols = skewed(bits, skew, seed, len);
            let mut stream = Vec::new();
            encode(&symbols, bits, &mut EncodeScratch::default(), &mut stream);
            let mut damaged = stream.clone();
            let i = at.index(damaged.len());
            damaged[i] ^= 1 << bit;
            for stream in [&stream, &damaged] {
                let (mut want, mut got) = (vec![0u16; len], vec![0u16; len]);
                let want_result = decode(stream, bits, Kernel::Scalar, &mut DecodeScratch::default(), &mut want);
                let got_result = decode(stream, bits, Kernel::best(), &mut DecodeScratch::default(), &mut got);
                prop_assert_eq!(&got_result, &want_result);
                if want_result.is_ok() {
                    prop_assert_eq!(&got, &want);
                }
            }
        }

        #[test]
        fn the_encoders_agree(bits in 0u32..=12, skew in 1u32..6, seed in any::<u64>(), len in 0usize..5000) {
            let symbols = skewed(bits, skew, seed, len);
            let (mut want, mut got) = (Vec::new(), Vec::new());
            encode_with(&symbols, bits, Kernel::Scalar, &mut EncodeScratch::default(), &mut want);
            encode_with(&symbols, bits, Kernel::best(), &mut EncodeScratch::default(), &mut got);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn flipped_bytes_never_panic(seed in any::<u64>(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let symbols: Vec<u16> = (0..2000u64).map(|i| ((i ^ seed) % 23) as u16).collect();
            let mut stream = Vec::new();
            encode(&symbols, 5, &mut EncodeScratch::default(), &mut stream);
            let i = at.index(stream.len());
            stream[i] ^= 1 << bit;
            let mut back = vec![0u16; symbols.len()];
            if decode(&stream, 5, Kernel::best(), &mut DecodeScratch::default(), &mut back).is_ok() {
                // A flip the checks cannot see must still decode to symbols of the alphabet.
                prop_assert!(back.iter().all(|&s| s < 32));
            }
        }
    }
}
