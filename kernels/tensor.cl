// The tensor codec's blocks (FORMAT.md §7.1, §7.2), byte-identical to mmh-codecs'
// tensor.rs and rans.rs. OpenCL C 1.2. One work-group per block, so that many blocks are
// in flight; the host (mmh_codecs::gpu) does what depends only on the alphabet or the
// block count: frequencies, encoder constants, tables, the payload's layout and every
// length check before decoding.
//
// Values are read and written byte by byte: any alignment, and the same result whatever
// the device's endianness.

#define LANES 8
#define PROB_BITS 12
#define PROB_SCALE (1u << PROB_BITS)
#define STATE_LOW (1u << 15)
#define MAX_ALPHABET 4096

// Work-group sizes; the host uses the same numbers.
#define SPLIT_WG 256
#define PACK_WG 64
#define COMPACT_WG 64
#define ASSEMBLE_WG 64

// Words of an encoder table entry, mmh_codecs::gpu::EncSymbol's fields in order.
#define ENC_X_MAX 0
#define ENC_RCP_FREQ 1
#define ENC_RCP_SHIFT 2
#define ENC_BIAS 3
#define ENC_CMPL_FREQ 4
#define ENC_WORDS 5

// Words of a block's decode parameters.
#define P_VALUES 0
#define P_FIRST 1
#define P_ZERO_BITS 2
#define P_RAW_AT 3
#define P_WORDS_AT 4
#define P_WORD_COUNT 5
#define P_PACKED_FIRST 6
#define P_STATES 7
#define P_WORDS (P_STATES + LANES)
// P_PACKED_FIRST of a block whose slots are not packed.
#define NOT_PACKED 0xFFFFFFFFu

// A block's decode status.
#define OK 0
#define RUN_OUT 1
#define WORDS_LEFT 2
#define BAD_END 3

inline ulong load_value(__global const uchar *raw, uint i, uint width) {
    __global const uchar *p = raw + (size_t)i * width;
    ulong v = 0;
    for (uint b = 0; b < width; b++) {
        v |= (ulong)p[b] << (8 * b);
    }
    return v;
}

inline void store_value(__global uchar *out, uint i, uint width, ulong v) {
    __global uchar *p = out + (size_t)i * width;
    for (uint b = 0; b < width; b++) {
        p[b] = (uchar)(v >> (8 * b));
    }
}

// Per block: the OR of the values' low mantissa bits (the host takes its trailing zeros)
// and the symbol histogram, counted with local atomics.
__kernel __attribute__((reqd_work_group_size(SPLIT_WG, 1, 1))) void
tensor_split(__global const uchar *raw, uint values, uint block_values, uint width,
             uint symbol_bits, uint low_bits, __global uint *hists, __global uint *ors) {
    __local uint hist[MAX_ALPHABET];
    // 64-bit local atomics are an extension; the OR is reduced as two 32-bit halves.
    __local uint or_lo[SPLIT_WG];
    __local uint or_hi[SPLIT_WG];
    uint block = get_group_id(0);
    uint lid = get_local_id(0);
    uint alphabet = 1u << symbol_bits;
    for (uint s = lid; s < alphabet; s += SPLIT_WG) {
        hist[s] = 0;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    uint first = block * block_values;
    uint n = min(block_values, values - first);
    ulong low_mask = ((ulong)1 << low_bits) - 1;
    ulong ones = 0;
    for (uint i = lid; i < n; i += SPLIT_WG) {
        ulong v = load_value(raw, first + i, width);
        ones |= v & low_mask;
        uint symbol = (uint)(v >> low_bits) & (alphabet - 1);
#ifdef MMH_CUDA
        // Weights' exponents crowd into few symbols, so many work-items of a warp add to
        // the same counter: one of each group of equal symbols adds the group's size.
        uint peers = __match_any_sync(__activemask(), symbol);
        if ((threadIdx.x & 31) == (uint)(__ffs(peers) - 1)) {
            atomicAdd(&hist[symbol], __popc(peers));
        }
#else
        atomic_inc(&hist[symbol]);
#endif
    }
    or_lo[lid] = (uint)ones;
    or_hi[lid] = (uint)(ones >> 32);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint span = SPLIT_WG / 2; span > 0; span >>= 1) {
        if (lid < span) {
            or_lo[lid] |= or_lo[lid + span];
            or_hi[lid] |= or_hi[lid + span];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    __global uint *h = hists + (size_t)block * alphabet;
    for (uint s = lid; s < alphabet; s += SPLIT_WG) {
        h[s] = hist[s];
    }
    if (lid == 0) {
        ors[2 * block] = or_lo[0];
        ors[2 * block + 1] = or_hi[0];
    }
}

// Per block, given its zero bits from the host: packs the raw fields. A work-item takes 8
// values at a time, whose fields fill exactly R bytes, so work-items never share a byte.
__kernel __attribute__((reqd_work_group_size(PACK_WG, 1, 1))) void
tensor_pack(__global const uchar *raw, uint values, uint block_values, uint width,
            uint low_bits, __global const uchar *zero_bits, __global uchar *packed) {
    uint block = get_group_id(0);
    uint lid = get_local_id(0);
    uint first = block * block_values;
    uint n = min(block_values, values - first);
    uint z = zero_bits[block];
    uint kept = low_bits - z;
    uint r = 1 + kept;
    ulong low_mask = ((ulong)1 << low_bits) - 1;
    uint sign_shift = 8 * width - 1;
    // A block's fields take at most as many bytes as its values.
    __global uchar *pk = packed + (size_t)first * width;
    uint groups = (n + 7) / 8;
    for (uint g = lid; g < groups; g += PACK_WG) {
        ulong acc = 0;
        uint filled = 0;
        uint at = g * r;
        uint end = min(n, 8 * g + 8);
        for (uint i = 8 * g; i < end; i++) {
            ulong v = load_value(raw, first + i, width);
            ulong field = ((v >> sign_shift) << kept) | ((v & low_mask) >> z);
            // filled < 8 and r <= 53: the field fits.
            acc |= field << filled;
            filled += r;
            while (filled >= 8) {
                pk[at++] = (uchar)acc;
                acc >>= 8;
                filled -= 8;
            }
        }
        if (filled > 0) {
            pk[at] = (uchar)acc;
        }
    }
}

// One work-item per lane of every block (LANES consecutive work-items per block, so that a
// work-group codes several blocks and every work-item has a lane): codes the lane's
// symbols last to first with the block's encoder table from the host, as the CPU does.
// A lane's steps never depend on another lane's, only the order of the words does: each
// step leaves its word and whether it was emitted in `emits` (bit 16), for
// tensor_compact, and the lane's final state in `states`.
__kernel void tensor_encode_lanes(__global const uchar *raw, uint values, uint block_values,
                                  uint width, uint symbol_bits, uint low_bits,
                                  __global const uint *enc, __global uint *emits,
                                  __global uint *states) {
    uint id = get_global_id(0);
    uint block = id / LANES;
    uint lane = id % LANES;
    uint first = block * block_values;
    // The host rounds the work-items up to whole work-groups; no barrier follows.
    if (first >= values) {
        return;
    }
    uint n = min(block_values, values - first);
    uint alphabet = 1u << symbol_bits;
    __global const uint *table = enc + (size_t)block * alphabet * ENC_WORDS;
    uint x = STATE_LOW;
    uint steps = n > lane ? (n - lane + LANES - 1) / LANES : 0;
    for (uint c = steps; c > 0; c--) {
        uint i = (c - 1) * LANES + lane;
        ulong v = load_value(raw, first + i, width);
        __global const uint *e = table + ((uint)(v >> low_bits) & (alphabet - 1)) * ENC_WORDS;
        uint emit = x >= e[ENC_X_MAX] ? 1 : 0;
        emits[first + i] = (x & 0xFFFF) | (emit << 16);
        x >>= 16 * emit;
        uint q = (uint)(((ulong)x * e[ENC_RCP_FREQ]) >> e[ENC_RCP_SHIFT]);
        x += e[ENC_BIAS] + q * e[ENC_CMPL_FREQ];
    }
    states[block * LANES + lane] = x;
}

// Per block: the emitted words in stored order, which is ascending symbol index
// (FORMAT.md §7.2: the CPU emits rows last to first and lanes last to first, then
// reverses the list). Each work-item takes a run of the block's steps; a prefix sum of
// the runs' counts says where its words go.
__kernel __attribute__((reqd_work_group_size(COMPACT_WG, 1, 1))) void
tensor_compact(uint values, uint block_values, __global const uint *emits,
               __global ushort *words, __global uint *word_counts) {
    __local uint counts[COMPACT_WG];
    uint block = get_group_id(0);
    uint lid = get_local_id(0);
    uint first = block * block_values;
    uint n = min(block_values, values - first);
    uint per = (n + COMPACT_WG - 1) / COMPACT_WG;
    uint lo = min(n, lid * per);
    uint hi = min(n, lo + per);
    uint count = 0;
    for (uint i = lo; i < hi; i++) {
        count += emits[first + i] >> 16;
    }
#ifdef MMH_CUDA
    // A scan within each warp by shuffles, then the warps' totals before it.
    uint lane = lid & 31;
    uint scan = count;
    for (uint d = 1; d < 32; d <<= 1) {
        uint below = __shfl_up_sync(0xFFFFFFFFu, scan, d);
        scan += lane >= d ? below : 0;
    }
    counts[lid] = scan;
    barrier(CLK_LOCAL_MEM_FENCE);
    uint at = scan - count;
    for (uint w = 32; w <= lid; w += 32) {
        at += counts[w - 1];
    }
#else
    counts[lid] = count;
    barrier(CLK_LOCAL_MEM_FENCE);
    uint at = 0;
    for (uint l = 0; l < lid; l++) {
        at += counts[l];
    }
#endif
    __global ushort *w = words + first;
    for (uint i = lo; i < hi; i++) {
        uint e = emits[first + i];
        if (e >> 16) {
            w[at++] = (ushort)e;
        }
    }
    if (lid == COMPACT_WG - 1) {
        word_counts[block] = at;
    }
}

// Per block: decodes the symbols, one work-item per lane. The slot table is built in
// local memory from the block's (cumulative << 16 | frequency) per symbol, one word a
// slot (16 KiB, so that more blocks fit a GPU's local memory at once than with separate
// symbol and step tables): when the host found the block packable (its symbols span fewer
// than 512 and none passes 2048, mmh_codecs::gpu::packable), a slot holds the symbol less
// the first one (9 bits), its frequency (12) and the slot's offset in it (11), as the CPU's
// SIMD decoder packs them; otherwise the symbol and the offset (12 bits each), and the
// frequency comes from the block's table. In each row of LANES symbols, the lanes that
// refill take the next words in lane order: each finds its word with a prefix count of
// the refilling lanes before it. Word reads are checked against the block's word count
// (the host has checked that those words lie in the stored bytes), and the status says
// how the block ended, as the CPU would report it.
__kernel __attribute__((reqd_work_group_size(LANES, 1, 1))) void
tensor_decode_lanes(__global const uchar *stored, __global const uint *params,
                    __global const uint *tables, uint alphabet, __global ushort *symbols,
                    __global uint *status) {
    __local uint slots[PROB_SCALE];
#ifndef MMH_CUDA
    // Two rows' refill flags, so that one barrier a row suffices: a lane writes row r + 1's
    // flags while another may still read row r's.
    __local uint need[2][LANES];
#endif
    __local uint ends[LANES];
    uint block = get_group_id(0);
    uint j = get_local_id(0);
    __global const uint *p = params + (size_t)block * P_WORDS;
    uint n = p[P_VALUES];
    uint first = p[P_FIRST];
    uint words_at = p[P_WORDS_AT];
    uint count = p[P_WORD_COUNT];
    uint packed_first = p[P_PACKED_FIRST];
    uint packed = packed_first != NOT_PACKED;

    __global const uint *t = tables + (size_t)block * alphabet;
    for (uint s = j; s < alphabet; s += LANES) {
        uint e = t[s];
        uint f = e & 0xFFFF;
        uint c = e >> 16;
        uint entry = packed ? ((s - packed_first) << 23) | (f << 11) : s << 12;
        for (uint k = 0; k < f; k++) {
            slots[c + k] = entry | k;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    uint x = p[P_STATES + j];
    uint next = 0;
    uint over = 0;
    uint rows = (n + LANES - 1) / LANES;
    for (uint row = 0; row < rows; row++) {
        uint i = row * LANES + j;
        uint slot = x & (PROB_SCALE - 1);
        uint e = slots[slot];
        uint s, f, k;
        if (packed) {
            s = (e >> 23) + packed_first;
            f = (e >> 11) & 0xFFF;
            k = e & 0x7FF;
        } else {
            s = e >> 12;
            f = t[s] & 0xFFFF;
            k = e & 0xFFF;
        }
        uint y = f * (x >> PROB_BITS) + k;
        uint refill = (i < n && y < STATE_LOW) ? 1 : 0;
#ifdef MMH_CUDA
        // The block's lanes are one warp: a ballot gives every lane the refill flags of
        // the row at once, without local memory or a barrier.
        uint refills = __ballot_sync(0xFFu, refill);
        uint before = __popc(refills & ((1u << j) - 1));
        uint total = __popc(refills);
#else
        need[row & 1][j] = refill;
        barrier(CLK_LOCAL_MEM_FENCE);
        uint before = 0;
        uint total = 0;
        for (uint l = 0; l < LANES; l++) {
            uint b = need[row & 1][l];
            total += b;
            before += l < j ? b : 0;
        }
#endif
        if (i < n) {
            uint w = 0;
            uint at = next + before;
            if (refill) {
                if (at < count) {
                    uint byte = words_at + 2 * at;
                    w = (uint)stored[byte] | (uint)stored[byte + 1] << 8;
                } else {
                    over = 1;
                }
            }
            x = refill ? (y << 16) | w : y;
            symbols[first + i] = (ushort)s;
        }
        next += total;
    }

    ends[j] = over | (x != STATE_LOW ? 2 : 0);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (j == 0) {
        uint any = 0;
        for (uint l = 0; l < LANES; l++) {
            any |= ends[l];
        }
        uint code = OK;
        if (any & 1) {
            code = RUN_OUT;
        } else if (next < count) {
            code = WORDS_LEFT;
        } else if (any & 2) {
            code = BAD_END;
        }
        status[2 * block] = code;
        status[2 * block + 1] = count - min(next, count);
    }
}

// Per block: each value from its symbol and its raw field. A work-item takes 8 values at
// a time, whose fields lie in R bytes of their own, and reads only the bytes they need:
// the host has checked that the block's raw bits are exactly ⌈n·R / 8⌉ bytes.
__kernel __attribute__((reqd_work_group_size(ASSEMBLE_WG, 1, 1))) void
tensor_assemble(__global const uchar *stored, __global const uint *params,
                __global const ushort *symbols, uint width, uint low_bits, __global uchar *out) {
    uint block = get_group_id(0);
    uint lid = get_local_id(0);
    __global const uint *p = params + (size_t)block * P_WORDS;
    uint n = p[P_VALUES];
    uint first = p[P_FIRST];
    uint z = p[P_ZERO_BITS];
    uint raw_at = p[P_RAW_AT];
    uint kept = low_bits - z;
    uint r = 1 + kept;
    ulong field_mask = ((ulong)1 << r) - 1;
    ulong kept_mask = ((ulong)1 << kept) - 1;
    uint sign_shift = 8 * width - 1;
    uint groups = (n + 7) / 8;
    for (uint g = lid; g < groups; g += ASSEMBLE_WG) {
        uint at = raw_at + g * r;
        ulong acc = 0;
        uint filled = 0;
        uint end = min(n, 8 * g + 8);
        for (uint i = 8 * g; i < end; i++) {
            while (filled < r) {
                acc |= (ulong)stored[at++] << filled;
                filled += 8;
            }
            ulong field = acc & field_mask;
            acc >>= r;
            filled -= r;
            ulong v = ((field >> kept) << sign_shift) | ((ulong)symbols[first + i] << low_bits) |
                      ((field & kept_mask) << z);
            store_value(out, first + i, width, v);
        }
    }
}
