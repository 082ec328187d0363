// SHA-256 (FIPS 180-4) of many messages at once, one work-item per piece.
//
// A piece is a run of one message: the whole message, or, for a message larger than one
// upload, a part of it whose length is a multiple of 64 bytes, continued from the state
// that the previous piece left. The host places every piece at a 64-byte-aligned offset
// of `data` and reserves the rest of its last block, so the last block can be read as 16
// whole words and the message padding is built here, not uploaded.
//
// One work-item per piece, because SHA-256 of one message is a chain of compressions with
// no parallelism inside; the batch gives the parallelism.

__constant uint K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u,
    0x923f82a4u, 0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u,
    0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u,
    0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u,
    0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u,
    0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au,
    0x5b9cca4fu, 0x682e6ff3u, 0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

// OpenCL's rotate() turns left; SHA-256 rotates right.
#define ROTR(x, n) rotate((x), (uint)(32 - (n)))

static void compress(uint state[8], uint w[16]) {
    uint a = state[0], b = state[1], c = state[2], d = state[3];
    uint e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint word;
        if (i < 16) {
            word = w[i];
        } else {
            // The schedule kept as a ring of 16 words, to stay in registers.
            uint w15 = w[(i - 15) & 15], w2 = w[(i - 2) & 15];
            uint s0 = ROTR(w15, 7) ^ ROTR(w15, 18) ^ (w15 >> 3);
            uint s1 = ROTR(w2, 17) ^ ROTR(w2, 19) ^ (w2 >> 10);
            word = w[i & 15] + s0 + w[(i - 7) & 15] + s1;
            w[i & 15] = word;
        }
        uint t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + bitselect(g, f, e) + K[i] + word;
        uint t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + bitselect(b, a, c ^ b);
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

// Big-endian words from bytes, whatever the device's own byte order.
static uint load_be(__global const uchar *p) {
    uchar4 b = vload4(0, p);
    return ((uint)b.x << 24) | ((uint)b.y << 16) | ((uint)b.z << 8) | (uint)b.w;
}

// pieces: n pieces; for each, `offset` (bytes into data, a multiple of 64), `len`
// (bytes of this piece), `total` (the whole message's length when this piece ends it,
// else ULONG_MAX: then `len` is a multiple of 64 and no padding is added).
// states: 8 words per piece, the state to continue from, replaced by the state after the
// piece (the digest, as big-endian words, for a final piece).
__kernel void sha256_pieces(__global const uchar *data, __global const ulong *offset,
                            __global const uint *len, __global const ulong *total,
                            __global uint *states, uint n) {
    uint piece = get_global_id(0);
    if (piece >= n) {
        return;
    }
    __global const uchar *p = data + offset[piece];
    uint length = len[piece];
    uint state[8];
    for (int i = 0; i < 8; i++) {
        state[i] = states[8 * piece + i];
    }
    uint w[16];
    uint full = length / 64;
    for (uint block = 0; block < full; block++) {
        for (int i = 0; i < 16; i++) {
            w[i] = load_be(p + 64 * block + 4 * i);
        }
        compress(state, w);
    }
    ulong message = total[piece];
    if (message != ULONG_MAX) {
        uint rest = length % 64;
        __global const uchar *tail = p + 64 * full;
        for (uint i = 0; i < 16; i++) {
            // Bytes past the message are reserved by the host, so reading whole words is
            // in bounds; they are masked off here.
            uint word = 4 * i < rest ? load_be(tail + 4 * i) : 0;
            for (uint byte = 0; byte < 4; byte++) {
                uint at = 4 * i + byte;
                uint shift = 24 - 8 * byte;
                if (at == rest) {
                    word = (word & ~(0xffu << shift)) | (0x80u << shift);
                } else if (at > rest) {
                    word &= ~(0xffu << shift);
                }
            }
            w[i] = word;
        }
        ulong bits = message * 8;
        if (rest >= 56) {
            compress(state, w);
            for (int i = 0; i < 14; i++) {
                w[i] = 0;
            }
        }
        w[14] = (uint)(bits >> 32);
        w[15] = (uint)bits;
        compress(state, w);
    }
    for (int i = 0; i < 8; i++) {
        states[8 * piece + i] = state[i];
    }
}
