// Candidate cut points of FastCDC v2020: the gear hash at every position of a window and
// whether it passes the strict and the relaxed mask.
//
// The gear hash after byte p is h = (h << 1) + GEAR[byte], so it depends only on the last
// 64 bytes: h_p = sum over j < 64 of GEAR[b(p - j)] << j. Each work-item takes 64
// consecutive positions: it warms its hash up on the 63 bytes before them (about 2 table
// lookups per position in all, instead of 64 for a hash computed from scratch at every
// position), then rolls it, and writes one bit word per mask. Which positions are cut
// points is decided on the host, which knows where the chunk starts (see cdc.rs).
//
// A work-group first copies its 4 KiB tile of the window (and the 64 bytes before it)
// into local memory with coalesced 4-byte reads, then each work-item reads its own
// bytes from there. Work-item t reads byte 64 t + c, all at the same c together: the tile
// is stored with 4 bytes of padding after every 64 so that those reads fall in different
// banks (a stride of 17 words instead of 16). The gear table is in local memory too,
// since its lookups are random and __constant memory serialises divergent reads.

#define GROUP 64
#define TILE (GROUP * 64)
#define PADDED(i) ((i) + ((i) / 64) * 4)

// window: 64 bytes of history, then the bytes whose positions are tested, up to a whole
// number of tiles; the host ignores the bits of positions past the data it wrote.
// bits: `words` strict-mask words, then `words` relaxed-mask words, one of each per
// work-item; bit k of word w is position 64 w + k of the window.
__kernel __attribute__((reqd_work_group_size(GROUP, 1, 1))) void
gear_candidates(__global const uchar *window, __global const ulong *gear, ulong mask_s,
                ulong mask_l, __global ulong *bits, ulong words) {
    __local uchar tile[PADDED(64 + TILE)];
    __local ulong table[256];
    uint t = get_local_id(0);
    ulong first = (ulong)get_group_id(0) * TILE;
    __global const uchar *from = window + first;
    for (uint i = 4 * t; i < 64 + TILE; i += 4 * GROUP) {
        vstore4(vload4(0, from + i), 0, tile + PADDED(i));
    }
    for (uint i = t; i < 256; i += GROUP) {
        table[i] = gear[i];
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    ulong hash = 0;
    for (uint j = 1; j < 64; j++) {
        hash = (hash << 1) + table[tile[PADDED(64 * t + j)]];
    }
    ulong strict = 0, relaxed = 0;
    for (uint k = 0; k < 64; k++) {
        hash = (hash << 1) + table[tile[PADDED(64 * t + 64 + k)]];
        strict |= (ulong)((hash & mask_s) == 0) << k;
        relaxed |= (ulong)((hash & mask_l) == 0) << k;
    }
    ulong word = get_global_id(0);
    bits[word] = strict;
    bits[words + word] = relaxed;
}
