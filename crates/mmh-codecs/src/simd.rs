//! AVX2 kernels for the two loops of the tensor decoder that take its time: the rANS
//! lanes (`rans.rs`) and, for 16-bit values, joining each symbol with its raw field
//! (`tensor.rs`). Each computes exactly what the scalar loop it replaces computes, and
//! the scalar code stays the reference: the `kernels_agree` tests in `rans.rs` and
//! `tensor.rs` compare the two on random, weight-like and damaged payloads.
//!
//! The 8 lanes of a block are one vector: a row of 8 symbols is a gather from the
//! block's table, a multiply-add, and a refill of the lanes that fell below
//! [`STATE_LOW`] with the next words in lane order (a permutation chosen by the mask of
//! those lanes, as in ryg's SIMD rANS). One row waits on the one before it, mostly on
//! the gather, so several blocks decode in step ([`Avx2::rans_rows_many`]; 5 measured
//! fastest with one table read a row: 2.48 GB/s on bf16 against 1.71 for 2, 2.11 for 3,
//! 2.27 for 4 and 2.36 for 6). Where a block's frequencies and symbols fit, its
//! table packs symbol, frequency and offset in one `u32`, one gather a row instead of
//! two; which table a block has is settled before its rows, each kind of table having
//! its own compiled loop. Rows read their words where the payload stores them while 8
//! are left, and only the last few from a padded copy. An AVX-512 refill (a compare
//! into a mask and an expanding load) measured no faster on an AMD EPYC with AVX-512
//! and was dropped, and so was a kernel with two blocks' lanes in one 512-bit vector (a
//! gather of 16, expands for the refills): 14% slower on the same machine, which runs
//! 512-bit operations as two 256-bit halves.
//!
//! Assembly builds 16 values at a time in 16-bit lanes when raw fields have at most 9
//! bits (always for bf16): a byte shuffle brings each field's 2 bytes to its lane and a
//! multiply by a power of two lifts the field to the top, where its sign bit already
//! sits at bit 15. Wider fields take 8 values at a time in 32-bit lanes.
//!
//! This is the crate's only unsafe code: intrinsics that read or write through
//! pointers, and calls into functions compiled for AVX2. Its invariants, which every
//! `// SAFETY:` comment cites by number:
//!
//! 1. An [`Avx2`] exists only when the CPU has AVX2 and POPCNT: [`Avx2::detect`] is its
//!    only constructor, so its methods may call the `#[target_feature]` functions.
//! 2. A gather from a decoder table uses slots `x & 4095`, below 4096: the step and
//!    packed tables hold 4096 `u32`, and the symbol table [`SYMBOL_TABLE_LEN`] `u16`, so
//!    that the 4-byte read at the `u16` of slot 4095 stays inside it.
//! 3. Every other load and store goes through a slice of exactly its size, taken with
//!    bounds-checked indexing just before.
//! 4. A gather from an encoder table ([`EncTable`]) uses indices `s & mask`, where the
//!    table's `Vec` holds `mask + 1` entries ([`EncTable::new`] is the only
//!    constructor, and the fields are private to this module).
//!
//! The encoder has two kernels. For 16-bit values, [`Avx2::split16`] takes 16 values at
//! a time apart into symbols and raw fields, and packs the fields with shifts within the
//! vector (pairs into 32 bits, then fours into 64), 8 fields being exactly `R` bytes.
//! [`Avx2::rans_encode_rows`] codes a row of 8 symbols with the 8 lanes in one vector:
//! two gathers of 4 `u64` from the block's packed encoder table (the even lanes', the
//! odd lanes'), the reciprocal's 32x32→64-bit
//! multiply on the even and the odd lanes, and the emitted words compacted, in the order
//! the scalar encoder emits them (lanes last to first), by a permutation chosen by the
//! mask of the emitting lanes. Measured and dropped (bf16 weights, one thread): two
//! gathers of 8 `u32` (about 15% slower than two of 4 `u64`), building the entries from
//! 8 scalar loads instead of gathers (about 20% slower), and coding the rows of two
//! blocks in step (no faster: the row loop is bound by throughput, not latency).

use std::arch::x86_64::*;

use crate::rans::{EncSymbol, PROB_SCALE, STATE_LOW};

/// Length of the decoder's symbol table: one `u16` a slot and one of padding, since the
/// gather reads 4 bytes at each slot (invariant 2).
pub(crate) const SYMBOL_TABLE_LEN: usize = PROB_SCALE as usize + 2;

/// A block's decoder tables (`rans.rs`) and its words. A block has the packed table or
/// the step and symbol tables: the latter hold another block's entries when `packed` is
/// given.
pub(crate) struct Tables<'a> {
    /// Per slot: frequency << 16 | offset.
    pub(crate) step: &'a [u32; PROB_SCALE as usize],
    /// Per slot: the symbol, and padding.
    pub(crate) symbol: &'a [u16; SYMBOL_TABLE_LEN],
    /// When no frequency passes 2048 and the block's symbols span at most 512: per
    /// slot, `(symbol - first) << 23 | freq << 11 | offset`, and `first`.
    pub(crate) packed: Option<(&'a [u32; PROB_SCALE as usize], u32)>,
    /// The words not yet read (u16 LE), a whole number of them, read where they are
    /// stored.
    pub(crate) words: &'a [u8],
}

impl<'a> Tables<'a> {
    /// The same tables, the words from word `start` on.
    pub(crate) fn skip_words(&self, start: usize) -> Tables<'a> {
        Tables {
            step: self.step,
            symbol: self.symbol,
            packed: self.packed,
            words: &self.words[2 * start..],
        }
    }
}

/// How a 16-bit value splits (`tensor.rs`): the symbol above its `low_bits` lowest bits,
/// of which the lowest `zero_bits` are zero throughout the block; the raw field holds the
/// sign and the other low bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fields16 {
    pub(crate) low_bits: u32,
    pub(crate) zero_bits: u32,
}

impl Fields16 {
    fn symbol_bits(self) -> u32 {
        15 - self.low_bits
    }

    /// `R`, the bits of a raw field: 1 to 16.
    fn raw_bits(self) -> u32 {
        1 + self.low_bits - self.zero_bits
    }
}

/// Proof that this CPU runs AVX2 and POPCNT code (invariant 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The token, when the CPU has what the kernels need.
    pub(crate) fn detect() -> Option<Avx2> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt")).then_some(Avx2(()))
    }

    /// Decodes whole rows of 8 symbols, as many as `symbols` holds (its length must be a
    /// multiple of 8), updating `states`. Returns how many words the rows took, or
    /// `None` as soon as a row takes more than `tables.words` holds.
    pub(crate) fn rans_rows(
        self,
        tables: &Tables<'_>,
        states: &mut [u32; 8],
        symbols: &mut [u16],
    ) -> Option<usize> {
        // SAFETY: invariant 1.
        unsafe { rans_rows(tables, states, symbols) }
    }

    /// [`Avx2::rans_rows`] of `N` blocks in step (their `symbols` of the same length),
    /// as long as every block has 8 words left before a row: for each, how many symbols
    /// all decoded and how many words it took. [`Avx2::rans_rows`] goes on from there.
    pub(crate) fn rans_rows_many<const N: usize>(
        self,
        tables: [&Tables<'_>; N],
        states: &mut [[u32; 8]; N],
        symbols: [&mut [u16]; N],
    ) -> [(usize, usize); N] {
        // SAFETY: invariant 1.
        unsafe { rans_rows_many(tables, states, symbols) }
    }

    /// Writes 16-bit values from their symbols and packed raw fields of `raw_bits` bits
    /// (1 to 16) as the scalar `assemble::<2>` does, 16 at a time in 16-bit lanes where
    /// fields have at most 9 bits (bf16 always), else 8 at a time in 32-bit lanes, as far
    /// as the groups of 8 fields can be read with 16-byte loads from `raw`; returns how
    /// many values it wrote (a multiple of 8). The rest is left to the scalar code, from byte
    /// `done * raw_bits / 8` of `raw`.
    pub(crate) fn assemble16(
        self,
        fields: Fields16,
        symbols: &[u16],
        raw: &[u8],
        dst: &mut [u8],
    ) -> usize {
        // SAFETY: invariant 1.
        unsafe { assemble16(fields, symbols, raw, dst) }
    }
}

impl Avx2 {
    /// The OR of the 16-bit little-endian values of `values` (an odd last byte is not
    /// one).
    pub(crate) fn or16(self, values: &[u8]) -> u16 {
        // SAFETY: invariant 1.
        unsafe { or16(values) }
    }

    /// Splits the 16-bit values of `values` as the scalar `encode_block_of::<2>` does,
    /// 16 at a time, as far as `symbols` (16 a group) and `raw` (`2R` bytes a group and
    /// 16 of room after the last) hold them: writes each value's symbol to `symbols` and
    /// its raw field of `R = 1 + low_bits - zero_bits` bits (1 to 16) to `raw`, packed
    /// as `BitPacker` packs them. Returns how many values it split (a multiple of 16),
    /// whose fields fill exactly the first `done * R / 8` bytes of `raw`.
    pub(crate) fn split16(
        self,
        values: &[u8],
        fields: Fields16,
        symbols: &mut [u16],
        raw: &mut [u8],
    ) -> usize {
        // SAFETY: invariant 1.
        unsafe { split16(values, fields, symbols, raw) }
    }

    /// Codes the whole rows of 8 symbols in `rows` (its length a multiple of 8) last to
    /// first, as the scalar loop of `rans::encode` does, from `states`, which it updates:
    /// appends the emitted words to `words` from index `emitted` on, in the scalar
    /// encoder's order, and returns the new count. `words` must hold `emitted +
    /// rows.len() + 8` words (a row emits at most 8, and the store writes 8).
    pub(crate) fn rans_encode_rows(
        self,
        table: &EncTable,
        rows: &[u16],
        states: &mut [u32; 8],
        words: &mut [u16],
        emitted: usize,
    ) -> usize {
        // SAFETY: invariant 1.
        unsafe { rans_encode_rows(table, rows, states, words, emitted) }
    }
}

/// A block's encoder constants as the SIMD encoder reads them: per symbol, the
/// reciprocal in the low half, and `bias | freq << 13 | (rcp_shift - 32) << 26` in the
/// high half.
pub(crate) struct EncTable {
    entries: Vec<u64>,
    mask: u32,
}

impl EncTable {
    /// The table of `encoders` (from `rans::encoder_table`, one per symbol of an
    /// alphabet of `2^symbol_bits`, at most 4096).
    pub(crate) fn new(encoders: &[EncSymbol], symbol_bits: u32) -> EncTable {
        let len = 1usize << symbol_bits;
        let mut entries = vec![0; len];
        for (entry, enc) in entries.iter_mut().zip(encoders) {
            // bias < 8192, freq ≤ 4096, rcp_shift - 32 < 12: 13 + 13 + 4 bits. A symbol
            // of frequency 0 (all zeros) never occurs.
            let freq = PROB_SCALE - enc.cmpl_freq;
            let packed = enc.bias | freq << 13 | enc.rcp_shift.saturating_sub(32) << 26;
            *entry = u64::from(enc.rcp_freq) | u64::from(packed) << 32;
        }
        EncTable {
            entries,
            mask: len as u32 - 1,
        }
    }
}

/// For each mask of the lanes that emit a word (bit `j`: lane `j`), the emitting lanes
/// from the last to the first, then zeros: the permutation that compacts their words in
/// the order the scalar encoder emits them.
static EMIT_ORDER: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let mut at = 0;
        let mut lane = 8;
        while lane > 0 {
            lane -= 1;
            if mask & (1 << lane) != 0 {
                table[mask][at] = lane as u32;
                at += 1;
            }
        }
        mask += 1;
    }
    table
};

#[target_feature(enable = "avx2")]
fn or16(values: &[u8]) -> u16 {
    let mut acc = _mm256_setzero_si256();
    let chunks = values.chunks_exact(32);
    let rest = chunks.remainder();
    for chunk in chunks {
        // SAFETY: invariant 3 (32 bytes).
        acc = _mm256_or_si256(acc, unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) });
    }
    let mut lanes = [0u16; 16];
    // SAFETY: invariant 3 (16 u16).
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
    let ones = lanes.iter().fold(0, |a, &l| a | l);
    rest.chunks_exact(2)
        .fold(ones, |a, v| a | u16::from_le_bytes([v[0], v[1]]))
}

#[target_feature(enable = "avx2")]
fn split16(values: &[u8], fields: Fields16, symbols: &mut [u16], raw: &mut [u8]) -> usize {
    let Fields16 {
        low_bits,
        zero_bits,
    } = fields;
    let symbol_bits = fields.symbol_bits();
    debug_assert!(zero_bits <= low_bits && low_bits <= 15);
    let kept = low_bits - zero_bits;
    let bits = kept as usize + 1;
    let groups = (values.len() / 32)
        .min(symbols.len() / 16)
        .min(raw.len().saturating_sub(16) / (2 * bits));
    let low_count = _mm_cvtsi32_si128(low_bits as i32);
    let symbol_mask = _mm256_set1_epi16(((1u32 << symbol_bits) - 1) as u16 as i16);
    let low_mask = _mm256_set1_epi16(((1u32 << low_bits) - 1) as u16 as i16);
    let zero_count = _mm_cvtsi32_si128(zero_bits as i32);
    let kept_count = _mm_cvtsi32_si128(kept as i32);
    let pair_count = _mm_cvtsi32_si128(bits as i32);
    let quad_count = _mm_cvtsi32_si128(2 * bits as i32);
    let eight_count = _mm_cvtsi32_si128(4 * bits as i32);
    let low16 = _mm256_set1_epi32(0xFFFF);
    let low32 = _mm256_set1_epi64x(0xFFFF_FFFF);
    // A group g of 16 values writes raw[2gR .. 2gR + R + 16]: in bounds for g < groups.
    for g in 0..groups {
        let chunk: &[u8; 32] = values[32 * g..32 * g + 32].try_into().expect("32 bytes");
        // SAFETY: invariant 3 (32 bytes).
        let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().cast()) };
        let symbol = _mm256_and_si256(_mm256_srl_epi16(v, low_count), symbol_mask);
        let out: &mut [u16; 16] = (&mut symbols[16 * g..16 * g + 16])
            .try_into()
            .expect("16 symbols");
        // SAFETY: invariant 3 (16 u16).
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), symbol) };
        let sign = _mm256_sll_epi16(_mm256_srli_epi16::<15>(v), kept_count);
        let low = _mm256_srl_epi16(_mm256_and_si256(v, low_mask), zero_count);
        let field = _mm256_or_si256(sign, low);
        // Fields 2j and 2j + 1 into 32-bit lane j, then those into 64-bit lanes: 4R bits
        // each, least significant field first.
        let pairs = _mm256_or_si256(
            _mm256_and_si256(field, low16),
            _mm256_sll_epi32(_mm256_srli_epi32::<16>(field), pair_count),
        );
        let quads = _mm256_or_si256(
            _mm256_and_si256(pairs, low32),
            _mm256_sll_epi64(_mm256_srli_epi64::<32>(pairs), quad_count),
        );
        // 8 fields are exactly R bytes.
        if bits <= 8 {
            // Then they fit in 64 bits: each half's two quads join in its low u64.
            let eights = _mm256_or_si256(
                quads,
                _mm256_bsrli_epi128::<8>(_mm256_sll_epi64(quads, eight_count)),
            );
            let halves = [
                _mm256_extract_epi64::<0>(eights),
                _mm256_extract_epi64::<2>(eights),
            ];
            for (half, eight) in halves.into_iter().enumerate() {
                let at = (2 * g + half) * bits;
                raw[at..at + 8].copy_from_slice(&eight.to_le_bytes());
            }
            continue;
        }
        let mut q = [0u64; 4];
        // SAFETY: invariant 3 (4 u64).
        unsafe { _mm256_storeu_si256(q.as_mut_ptr().cast(), quads) };
        for half in 0..2 {
            let eight = u128::from(q[2 * half]) | u128::from(q[2 * half + 1]) << (4 * bits);
            let at = (2 * g + half) * bits;
            raw[at..at + 16].copy_from_slice(&eight.to_le_bytes());
        }
    }
    16 * groups
}

#[target_feature(enable = "avx2,popcnt")]
fn rans_encode_rows(
    table: &EncTable,
    rows: &[u16],
    states: &mut [u32; 8],
    words: &mut [u16],
    mut emitted: usize,
) -> usize {
    let index_mask = _mm_set1_epi32(table.mask as i32);
    let low13 = _mm256_set1_epi32(0x1FFF);
    let one = _mm256_set1_epi32(1);
    let scale = _mm256_set1_epi32(PROB_SCALE as i32);
    let thirty_two = _mm256_set1_epi64x(32);
    let low32 = _mm256_set1_epi64x(0xFFFF_FFFF);
    let low4 = _mm256_set1_epi32(0xF);
    let shuffle = low_halves();
    // SAFETY: invariant 3 (8 u32).
    let mut x = unsafe { _mm256_loadu_si256(states.as_ptr().cast()) };
    for row in rows.chunks_exact(8).rev() {
        let row: &[u16; 8] = row.try_into().expect("8 symbols");
        // SAFETY: invariant 3 (8 u16).
        let pairs = unsafe { _mm_loadu_si128(row.as_ptr().cast()) };
        // The even lanes' symbols, then the odd lanes', as 4 indices each.
        let even_index = _mm_and_si128(pairs, index_mask);
        let odd_index = _mm_and_si128(_mm_srli_epi32::<16>(pairs), index_mask);
        // SAFETY: invariant 4 (indices masked by `table.mask`).
        let (even_entry, odd_entry) = unsafe {
            (
                _mm256_i32gather_epi64::<8>(table.entries.as_ptr().cast(), even_index),
                _mm256_i32gather_epi64::<8>(table.entries.as_ptr().cast(), odd_index),
            )
        };
        let packed =
            _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even_entry), odd_entry);
        let bias = _mm256_and_si256(packed, low13);
        let freq = _mm256_and_si256(_mm256_srli_epi32::<13>(packed), low13);
        // rcp_shift - 32 < 12: masked to 4 bits, the 64-bit shifts below are known to
        // stay under 64, and the compiler adds no selects for larger ones.
        let shift = _mm256_and_si256(_mm256_srli_epi32::<26>(packed), low4);
        // x_max = freq << 19 ≤ 2^31 and x < 2^31: a signed compare with x_max - 1.
        let x_max = _mm256_sub_epi32(_mm256_slli_epi32::<19>(freq), one);
        let emit = _mm256_cmpgt_epi32(x, x_max);
        let mask = _mm256_movemask_ps(_mm256_castsi256_ps(emit)) as usize & 0xFF;
        let order = &EMIT_ORDER[mask];
        // SAFETY: invariant 3 (8 u32).
        let order = unsafe { _mm256_loadu_si256(order.as_ptr().cast()) };
        let out: &mut [u16; 8] = (&mut words[emitted..emitted + 8])
            .try_into()
            .expect("8 words");
        let emitting = narrow(_mm256_permutevar8x32_epi32(x, order), shuffle);
        // SAFETY: invariant 3 (8 u16).
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), emitting) };
        emitted += mask.count_ones() as usize;
        let x_low = _mm256_blendv_epi8(x, _mm256_srli_epi32::<16>(x), emit);
        // q = (x * rcp) >> shift, on the even lanes and then the odd ones.
        let even = _mm256_srlv_epi64(
            _mm256_mul_epu32(x_low, even_entry),
            _mm256_add_epi64(_mm256_and_si256(shift, low32), thirty_two),
        );
        let odd = _mm256_srlv_epi64(
            _mm256_mul_epu32(_mm256_srli_epi64::<32>(x_low), odd_entry),
            _mm256_add_epi64(_mm256_srli_epi64::<32>(shift), thirty_two),
        );
        let q = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
        let cmpl = _mm256_sub_epi32(scale, freq);
        x = _mm256_add_epi32(_mm256_add_epi32(x_low, bias), _mm256_mullo_epi32(q, cmpl));
    }
    // SAFETY: invariant 3 (8 u32).
    unsafe { _mm256_storeu_si256(states.as_mut_ptr().cast(), x) };
    emitted
}

/// For each mask of the lanes that refill (bit `j`: lane `j`), in nibble `j` the number
/// of refilling lanes below lane `j`: the index of lane `j`'s word among the row's.
static PREFIX: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut mask = 0;
    while mask < 256 {
        let mut lane = 0;
        while lane < 8 {
            let below = (mask & ((1u32 << lane) - 1)).count_ones();
            table[mask as usize] |= below << (4 * lane);
            lane += 1;
        }
        mask += 1;
    }
    table
};

/// The byte shuffle that keeps the low 2 bytes of each 32-bit lane, packed into the low
/// 8 bytes of each 128-bit half.
#[target_feature(enable = "avx2")]
fn low_halves() -> __m256i {
    const Z: i8 = -128;
    #[rustfmt::skip]
    let v = _mm256_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, Z, Z, Z, Z, Z, Z, Z, Z,
        0, 1, 4, 5, 8, 9, 12, 13, Z, Z, Z, Z, Z, Z, Z, Z,
    );
    v
}

/// The 8 low halves of the 32-bit lanes of `v`, as 8 `u16` (upper bits dropped).
#[target_feature(enable = "avx2")]
fn narrow(v: __m256i, shuffle: __m256i) -> __m128i {
    _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(_mm256_shuffle_epi8(
        v, shuffle,
    )))
}

/// The constants of a row step.
struct RowConstants {
    slot_mask: __m256i,
    low: __m256i,
    offset_mask: __m256i,
    nibbles: __m256i,
    shuffle: __m256i,
    low11: __m256i,
}

impl RowConstants {
    #[target_feature(enable = "avx2")]
    fn new() -> RowConstants {
        RowConstants {
            slot_mask: _mm256_set1_epi32(PROB_SCALE as i32 - 1),
            low: _mm256_set1_epi32(STATE_LOW as i32),
            offset_mask: _mm256_set1_epi32(0xFFFF),
            nibbles: _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28),
            shuffle: low_halves(),
            low11: _mm256_set1_epi32(0x7FF),
        }
    }
}

/// Where a block's rows find each slot's entry: the packed table (`PACKED`), or the
/// step and symbol tables. Resolved once a block, so that a row does not branch on it.
struct Lookup<'a> {
    /// The packed or the step table.
    entries: &'a [u32; PROB_SCALE as usize],
    symbols: &'a [u16; SYMBOL_TABLE_LEN],
    /// The packed table's first symbol, in every lane.
    first: __m256i,
    words: &'a [u8],
}

impl<'a> Tables<'a> {
    /// The lookup of a kernel built for `PACKED`; `None` if this block has no packed
    /// table and `PACKED` wants one.
    #[target_feature(enable = "avx2")]
    fn lookup<const PACKED: bool>(&self) -> Option<Lookup<'a>> {
        let (entries, first) = match (PACKED, self.packed) {
            (true, Some((packed, first))) => (packed, first),
            (true, None) => return None,
            (false, _) => (self.step, 0),
        };
        Some(Lookup {
            entries,
            symbols: self.symbol,
            first: _mm256_set1_epi32(first as i32),
            words: self.words,
        })
    }
}

/// One row: decodes the symbols of states `x` into `row` and returns the new states,
/// reading words from `next`, which it advances. The caller keeps 8 words from `next`
/// in bounds.
#[target_feature(enable = "avx2,popcnt")]
#[inline]
fn row_step<const PACKED: bool>(
    c: &RowConstants,
    lookup: &Lookup<'_>,
    x: __m256i,
    next: &mut usize,
    row: &mut [u16; 8],
) -> __m256i {
    let slot = _mm256_and_si256(x, c.slot_mask);
    // SAFETY: invariant 2 (the packed and step tables hold 4096 u32).
    let e = unsafe { _mm256_i32gather_epi32::<4>(lookup.entries.as_ptr().cast(), slot) };
    let (y, s) = if PACKED {
        let freq = _mm256_and_si256(_mm256_srli_epi32::<11>(e), c.slot_mask);
        let y = _mm256_add_epi32(
            _mm256_mullo_epi32(freq, _mm256_srli_epi32::<12>(x)),
            _mm256_and_si256(e, c.low11),
        );
        (
            y,
            _mm256_add_epi32(_mm256_srli_epi32::<23>(e), lookup.first),
        )
    } else {
        // SAFETY: invariant 2.
        let s = unsafe { _mm256_i32gather_epi32::<2>(lookup.symbols.as_ptr().cast(), slot) };
        let y = _mm256_add_epi32(
            _mm256_mullo_epi32(_mm256_srli_epi32::<16>(e), _mm256_srli_epi32::<12>(x)),
            _mm256_and_si256(e, c.offset_mask),
        );
        (y, s)
    };
    // States stay below 2^31 (rans.rs), so signed comparisons are exact.
    let need = _mm256_cmpgt_epi32(c.low, y);
    let mask = _mm256_movemask_ps(_mm256_castsi256_ps(need)) as usize;
    let row_words: &[u8; 16] = lookup.words[2 * *next..2 * *next + 16]
        .try_into()
        .expect("8 words");
    // SAFETY: invariant 3 (16 bytes).
    let w = _mm256_cvtepu16_epi32(unsafe { _mm_loadu_si128(row_words.as_ptr().cast()) });
    let index = _mm256_srlv_epi32(_mm256_set1_epi32(PREFIX[mask] as i32), c.nibbles);
    let w = _mm256_permutevar8x32_epi32(w, index);
    *next += mask.count_ones() as usize;
    // SAFETY: invariant 3 (8 u16).
    unsafe { _mm_storeu_si128(row.as_mut_ptr().cast(), narrow(s, c.shuffle)) };
    _mm256_blendv_epi8(y, _mm256_or_si256(_mm256_slli_epi32::<16>(y), w), need)
}

#[target_feature(enable = "avx2,popcnt")]
fn rans_rows(tables: &Tables<'_>, states: &mut [u32; 8], symbols: &mut [u16]) -> Option<usize> {
    match tables.lookup::<true>() {
        Some(lookup) => rans_rows_with::<true>(&lookup, states, symbols),
        None => rans_rows_with::<false>(&tables.lookup::<false>()?, states, symbols),
    }
}

/// Rows read their words where they are stored while 8 are left, and the last few from
/// a padded copy, so that no block's words are copied whole.
#[target_feature(enable = "avx2,popcnt")]
fn rans_rows_with<const PACKED: bool>(
    lookup: &Lookup<'_>,
    states: &mut [u32; 8],
    symbols: &mut [u16],
) -> Option<usize> {
    debug_assert!(symbols.len().is_multiple_of(8));
    let c = RowConstants::new();
    // SAFETY: invariant 3 (8 u32).
    let mut x = unsafe { _mm256_loadu_si256(states.as_ptr().cast()) };
    let count = lookup.words.len() / 2;
    let mut rows = symbols.as_chunks_mut::<8>().0.iter_mut();
    let mut next = 0usize;
    while next + 8 <= count
        && let Some(row) = rows.next()
    {
        x = row_step::<PACKED>(&c, lookup, x, &mut next, row);
    }
    // If rows are left, fewer than 8 words are.
    let left = &lookup.words[2 * next..];
    let left = &left[..left.len().min(16)];
    let mut tail = [0u8; 32];
    tail[..left.len()].copy_from_slice(left);
    let tail_lookup = Lookup {
        words: &tail,
        ..*lookup
    };
    let mut taken = 0;
    for row in rows {
        x = row_step::<PACKED>(&c, &tail_lookup, x, &mut taken, row);
        // Reads stay in the copy: at most 7 words are left, and 8 of padding follow.
        if 2 * taken > left.len() {
            return None;
        }
    }
    // SAFETY: invariant 3 (8 u32).
    unsafe { _mm256_storeu_si256(states.as_mut_ptr().cast(), x) };
    Some(next + taken)
}

#[target_feature(enable = "avx2,popcnt")]
fn rans_rows_many<const N: usize>(
    tables: [&Tables<'_>; N],
    states: &mut [[u32; 8]; N],
    symbols: [&mut [u16]; N],
) -> [(usize, usize); N] {
    // The caller gives all blocks packed tables, or none.
    let packed = tables.map(|t| t.lookup::<true>());
    if packed.iter().all(Option::is_some) {
        return rans_rows_many_with::<N, true>(packed.map(Option::unwrap), states, symbols);
    }
    debug_assert!(packed.iter().all(Option::is_none));
    let split = tables.map(|t| t.lookup::<false>().expect("a lookup without packing"));
    rans_rows_many_with::<N, false>(split, states, symbols)
}

#[target_feature(enable = "avx2,popcnt")]
fn rans_rows_many_with<const N: usize, const PACKED: bool>(
    lookups: [Lookup<'_>; N],
    states: &mut [[u32; 8]; N],
    symbols: [&mut [u16]; N],
) -> [(usize, usize); N] {
    let rows = symbols.map(|s| s.as_chunks_mut::<8>().0);
    let len = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    debug_assert!(rows.iter().all(|r| r.len() == len));
    let counts = lookups.each_ref().map(|l| l.words.len() / 2);
    let c = RowConstants::new();
    let mut x = [_mm256_setzero_si256(); N];
    for (x, state) in x.iter_mut().zip(states.iter()) {
        // SAFETY: invariant 3 (8 u32).
        *x = unsafe { _mm256_loadu_si256(state.as_ptr().cast()) };
    }
    let mut next = [0usize; N];
    let mut done = 0;
    while done < len && (0..N).all(|i| next[i] + 8 <= counts[i]) {
        for i in 0..N {
            x[i] = row_step::<PACKED>(&c, &lookups[i], x[i], &mut next[i], &mut rows[i][done]);
        }
        done += 1;
    }
    for (state, x) in states.iter_mut().zip(x) {
        // SAFETY: invariant 3 (8 u32).
        unsafe { _mm256_storeu_si256(state.as_mut_ptr().cast(), x) };
    }
    std::array::from_fn(|i| (8 * done, next[i]))
}

#[target_feature(enable = "avx2")]
fn assemble16(fields: Fields16, symbols: &[u16], raw: &[u8], dst: &mut [u8]) -> usize {
    let Fields16 {
        low_bits,
        zero_bits,
    } = fields;
    let raw_bits = fields.raw_bits();
    debug_assert!(zero_bits <= low_bits && low_bits <= 15);
    let bits = raw_bits as usize;
    // Field i of a group of 8 starts at bit i·R of the group's R bytes: 4 bytes from its
    // first byte, shifted right by the bits before it, hold it (shift + R ≤ 23 bits).
    let mut control = [0i8; 32];
    let mut shifts = [0i32; 8];
    for i in 0..8 {
        let first = i * bits / 8;
        for b in 0..4 {
            let at = first + b;
            let byte = if at < 16 { at as i8 } else { -128 };
            // Both halves hold the 16 bytes, and each lane indexes its own half.
            control[4 * i + b] = byte;
        }
        shifts[i] = (i * bits % 8) as i32;
    }
    // SAFETY: invariant 3 (32 i8, 8 i32).
    let (control, shifts) = unsafe {
        (
            _mm256_loadu_si256(control.as_ptr().cast()),
            _mm256_loadu_si256(shifts.as_ptr().cast()),
        )
    };
    let field_mask = _mm256_set1_epi32((1 << bits) - 1);
    let kept = raw_bits - 1;
    let kept_mask = _mm256_set1_epi32((1 << kept) - 1);
    let kept_count = _mm_cvtsi32_si128(kept as i32);
    let low_count = _mm_cvtsi32_si128(low_bits as i32);
    let zero_count = _mm_cvtsi32_si128(zero_bits as i32);
    let shuffle = low_halves();
    let groups = (symbols.len() / 8)
        .min(dst.len() / 16)
        .min(raw.len().saturating_sub(16 - bits.min(16)) / bits);
    let narrow_done = match raw_bits {
        ..=9 => assemble16_narrow(fields, symbols, raw, dst),
        _ => 0,
    };
    // A group g reads raw[g·R .. g·R + 16]: g·R + 16 ≤ raw.len() for g < groups.
    for g in narrow_done / 8..groups {
        let bytes: &[u8; 16] = raw[g * bits..g * bits + 16].try_into().expect("16 bytes");
        let syms: &[u16; 8] = symbols[8 * g..8 * g + 8].try_into().expect("8 symbols");
        // SAFETY: invariant 3 (16 bytes, 8 u16).
        let (packed, syms) = unsafe {
            (
                _mm_loadu_si128(bytes.as_ptr().cast()),
                _mm_loadu_si128(syms.as_ptr().cast()),
            )
        };
        let packed = _mm256_broadcastsi128_si256(packed);
        let field = _mm256_and_si256(
            _mm256_srlv_epi32(_mm256_shuffle_epi8(packed, control), shifts),
            field_mask,
        );
        let sign = _mm256_slli_epi32::<15>(_mm256_srl_epi32(field, kept_count));
        let low = _mm256_sll_epi32(_mm256_and_si256(field, kept_mask), zero_count);
        let symbol = _mm256_sll_epi32(_mm256_cvtepu16_epi32(syms), low_count);
        let value = _mm256_or_si256(_mm256_or_si256(sign, low), symbol);
        let out: &mut [u8; 16] = (&mut dst[16 * g..16 * g + 16])
            .try_into()
            .expect("16 bytes");
        // SAFETY: invariant 3 (16 bytes).
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), narrow(value, shuffle)) };
    }
    8 * groups
}

/// [`assemble16`] 16 values at a time for fields of at most 9 bits: then a field and the
/// bits before it in its first byte fit in 16 bits, so each value is built in a 16-bit
/// lane, each 128-bit half of the vector taking a group of 8 fields. Returns how many
/// values it wrote (a multiple of 16).
#[target_feature(enable = "avx2")]
fn assemble16_narrow(fields: Fields16, symbols: &[u16], raw: &[u8], dst: &mut [u8]) -> usize {
    let Fields16 {
        low_bits,
        zero_bits,
    } = fields;
    let raw_bits = fields.raw_bits();
    debug_assert!(raw_bits <= 9 && zero_bits <= low_bits);
    let bits = raw_bits as usize;
    // Field i of a group starts at bit i·R: the 2 bytes from its first byte hold it,
    // and multiplying them by 2^(16 - R - shift) moves it to the top of the lane.
    let mut control = [0i8; 32];
    let mut lift = [0i16; 16];
    for i in 0..8 {
        let first = (i * bits / 8) as i8;
        for half in 0..2 {
            control[16 * half + 2 * i] = first;
            control[16 * half + 2 * i + 1] = first + 1;
            lift[8 * half + i] = (1u32 << (16 - bits - i * bits % 8)) as u16 as i16;
        }
    }
    // SAFETY: invariant 3 (32 i8, 16 i16).
    let (control, lift) = unsafe {
        (
            _mm256_loadu_si256(control.as_ptr().cast()),
            _mm256_loadu_si256(lift.as_ptr().cast()),
        )
    };
    let top = _mm_cvtsi32_si128(16 - raw_bits as i32);
    let sign_mask = _mm256_set1_epi16(i16::MIN);
    let kept_mask = _mm256_set1_epi16(((1u32 << (raw_bits - 1)) - 1) as i16);
    let low_count = _mm_cvtsi32_si128(low_bits as i32);
    let zero_count = _mm_cvtsi32_si128(zero_bits as i32);
    let pairs = (symbols.len() / 16)
        .min(dst.len() / 32)
        .min(raw.len().saturating_sub(16 + bits) / (2 * bits));
    // A pair p reads raw[2pR .. (2p + 1)R + 16]: in bounds for p < pairs.
    for p in 0..pairs {
        let at = 2 * p * bits;
        let first: &[u8; 16] = raw[at..at + 16].try_into().expect("16 bytes");
        let second: &[u8; 16] = raw[at + bits..at + bits + 16].try_into().expect("16 bytes");
        let syms: &[u16; 16] = symbols[16 * p..16 * p + 16].try_into().expect("16 symbols");
        // SAFETY: invariant 3 (16 bytes, 16 bytes, 16 u16).
        let (packed, syms) = unsafe {
            (
                _mm256_loadu2_m128i(second.as_ptr().cast(), first.as_ptr().cast()),
                _mm256_loadu_si256(syms.as_ptr().cast()),
            )
        };
        let lifted = _mm256_mullo_epi16(_mm256_shuffle_epi8(packed, control), lift);
        let field = _mm256_srl_epi16(lifted, top);
        let sign = _mm256_and_si256(lifted, sign_mask);
        let low = _mm256_sll_epi16(_mm256_and_si256(field, kept_mask), zero_count);
        let symbol = _mm256_sll_epi16(syms, low_count);
        let value = _mm256_or_si256(_mm256_or_si256(sign, low), symbol);
        let out: &mut [u8; 32] = (&mut dst[32 * p..32 * p + 32])
            .try_into()
            .expect("32 bytes");
        // SAFETY: invariant 3 (32 bytes).
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), value) };
    }
    16 * pairs
}
