//! Benchmarks of MMH-RS, and the deterministic test data they run on.
//!
//! The Criterion benchmarks are in `benches/` (`cargo bench -p mmh-benches`); the
//! side-by-side comparison with plain zstd and lz4 is `cargo xtask bench`, which uses
//! [`MixedData`] from this crate so that both measure the same kind of bytes.
//!
//! [`MixedData`] is a [`Read`] that generates any amount of model-like data from a seed,
//! in constant memory (one block of at most [`BLOCK_LEN`] bytes), so a 1 TiB input never
//! exists anywhere but in the pipeline that consumes it:
//!
//! ```
//! use std::io::Read;
//! use mmh_benches::MixedData;
//!
//! let mut a = Vec::new();
//! MixedData::new(7, 1 << 20).read_to_end(&mut a)?;
//! let mut b = Vec::new();
//! MixedData::new(7, 1 << 20).read_to_end(&mut b)?;
//! assert_eq!(a.len(), 1 << 20);
//! assert_eq!(a, b); // same seed, same bytes, whatever the read sizes
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! This crate has no Cargo features.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::{self, Read};

/// The largest block [`MixedData`] generates at once (and so the memory it holds).
pub const BLOCK_LEN: usize = 1 << 20;

/// One kind of bytes found in model files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// bf16 weights: Gaussian-ish values (σ 0.005 to 0.08), little-endian. The sign and
    /// exponent byte has little entropy, the mantissa byte a lot, as in real checkpoints.
    Bf16,
    /// fp32 weights from the same source: the low mantissa bytes are noise.
    Fp32,
    /// Text: JSON-ish configuration and tokenizer vocabulary, words drawn from a small
    /// vocabulary with a skew towards the first ones.
    Text,
    /// Zero runs: padding, alignment, zero-initialised tensors.
    Zeros,
    /// Uniform random bytes: quantised or already compressed blobs.
    Random,
}

/// The mix [`MixedData`] draws segments from: (kind, weight in percent of segments).
/// Segments of every kind have the same length distribution (16 KiB to 16 MiB, log-uniform,
/// as tensors range from biases to large matrices), so these are also the byte shares.
pub const MIX: [(Kind, u32); 5] = [
    (Kind::Bf16, 40),
    (Kind::Fp32, 20),
    (Kind::Text, 15),
    (Kind::Zeros, 10),
    (Kind::Random, 15),
];

/// SplitMix64: tiny, fast, and good enough for test data (not for anything else).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; slightly biased, which test data does not mind).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A Gaussian-ish value with standard deviation 1: the Irwin–Hall sum of four 16-bit
    /// uniforms, centred and scaled (tails stop at ±3.46σ, which weights hardly exceed).
    pub fn gaussish(&mut self) -> f32 {
        let r = self.next_u64();
        let sum = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
        // Mean 4 · 65535/2, standard deviation sqrt(4/12) · 65536.
        (sum as f32 - 131_070.0) * (1.0 / 37_837.2)
    }
}

const WORDS: [&str; 64] = [
    "the",
    "model",
    "layer",
    "weight",
    "bias",
    "attention",
    "head",
    "token",
    "\"type\"",
    "\"name\"",
    "\"shape\"",
    "\"dtype\"",
    "bf16",
    "float32",
    "null",
    "true",
    "false",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "with",
    "on",
    "embed",
    "norm",
    "mlp",
    "proj",
    "q",
    "k",
    "v",
    "o",
    "gate",
    "up",
    "down",
    "rope",
    "theta",
    "vocab",
    "size",
    "hidden",
    "dim",
    "config",
    "version",
    "transformer",
    "decoder",
    "encoder",
    "input",
    "output",
    "ids",
    "mask",
    "position",
    "lm_head",
    "self_attn",
    "post",
    "pre",
    "rms",
    "eps",
    "scale",
    "0",
    "1",
    "32",
    "4096",
    "1e-05",
];
const SEPARATORS: [&[u8]; 8] = [b" ", b" ", b" ", b", ", b": ", b".", b"\n", b"_"];

/// Appends `len` bytes of `kind` drawn from `rng` to `out`.
pub fn fill(kind: Kind, rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    let end = out.len() + len;
    out.reserve(len);
    match kind {
        Kind::Zeros => out.resize(end, 0),
        Kind::Random => {
            let start = out.len();
            out.resize(end, 0);
            let mut words = out[start..].chunks_exact_mut(8);
            for word in &mut words {
                word.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            let tail = words.into_remainder();
            let n = tail.len();
            tail.copy_from_slice(&rng.next_u64().to_le_bytes()[..n]);
        }
        Kind::Bf16 | Kind::Fp32 => {
            // One scale per call, as one tensor has one initialisation scale.
            let sigma = 0.005 + 0.075 * (rng.below(1024) as f32 / 1024.0);
            // bf16 is the high half of the f32 (truncated, not rounded: test data).
            let (width, skip) = if kind == Kind::Bf16 { (2, 2) } else { (4, 0) };
            let start = out.len();
            out.resize(end, 0);
            let mut values = out[start..].chunks_exact_mut(width);
            for value in &mut values {
                let bytes = (rng.gaussish() * sigma).to_bits().to_le_bytes();
                value.copy_from_slice(&bytes[skip..]);
            }
            let tail = values.into_remainder();
            let n = tail.len();
            let bytes = (rng.gaussish() * sigma).to_bits().to_le_bytes();
            tail.copy_from_slice(&bytes[skip..skip + n]);
        }
        Kind::Text => {
            while out.len() < end {
                let r = rng.next_u64();
                // Four words per draw; the product of two uniforms skews towards the
                // first words, like word frequencies do.
                for i in 0..4 {
                    let bits = r >> (i * 16);
                    let (a, b) = ((bits & 0x3F) as usize, ((bits >> 6) & 0x3F) as usize);
                    let word = WORDS[a * b / 63].as_bytes();
                    let sep = SEPARATORS[((bits >> 12) & 7) as usize];
                    for piece in [word, sep] {
                        let take = piece.len().min(end - out.len());
                        out.extend_from_slice(&piece[..take]);
                    }
                }
            }
        }
    }
}

/// `len` bytes of `kind` from `seed`, for benchmarks that want one kind alone.
pub fn sample(kind: Kind, len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    fill(kind, &mut Rng::new(seed), len, &mut out);
    out
}

/// An endless-looking stream of model-like data: a text header, then segments of 16 KiB to
/// 16 MiB (capped at a quarter of the bytes so far), each of one [`Kind`] drawn from
/// [`MIX`], generated a block at a time. Deterministic for a seed
/// whatever the read sizes; the first `n` bytes do not depend on the total length.
#[derive(Debug, Clone)]
pub struct MixedData {
    rng: Rng,
    remaining: u64,
    segment: (Kind, u64),
    produced: u64,
    block: Vec<u8>,
    pos: usize,
}

impl MixedData {
    /// `len` bytes of mixed data from `seed`.
    pub fn new(seed: u64, len: u64) -> Self {
        MixedData {
            rng: Rng::new(seed),
            remaining: len,
            // A model file opens with its header: JSON-ish text of 16 to 64 KiB.
            segment: (
                Kind::Text,
                (16 << 10) + Rng::new(seed ^ 0x4845_4144).below(48 << 10),
            ),
            produced: 0,
            block: Vec::with_capacity(BLOCK_LEN),
            pos: 0,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining + (self.block.len() - self.pos) as u64
    }

    fn refill(&mut self) {
        if self.segment.1 == 0 {
            let mut pick = self.rng.below(100) as u32;
            let kind = MIX
                .iter()
                .find(|&&(_, weight)| {
                    let hit = pick < weight;
                    pick = pick.saturating_sub(weight);
                    hit
                })
                .map_or(Kind::Random, |&(kind, _)| kind);
            // Log-uniform between 16 KiB and 16 MiB, capped at a quarter of the bytes so
            // far (at least 256 KiB): small tiers mix kinds too, large ones get big tensors.
            let len = (16u64 << 10) << self.rng.below(10);
            let cap = (self.produced / 4).max(256 << 10);
            self.segment = (kind, (len + self.rng.below(len)).min(cap));
        }
        let len = (BLOCK_LEN as u64).min(self.segment.1).min(self.remaining);
        self.block.clear();
        fill(self.segment.0, &mut self.rng, len as usize, &mut self.block);
        self.segment.1 -= len;
        self.remaining -= len;
        self.produced += len;
        self.pos = 0;
    }
}

impl Read for MixedData {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.block.len() {
            if self.remaining == 0 {
                return Ok(0);
            }
            self.refill();
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Parses a size such as `4096`, `64K`, `64M`, `1G`, `1T` (binary units; `KiB`, `MB`
/// and lower case are accepted and mean the same).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 64M, 1G)"))?;
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?} has an unknown unit (use K, M, G or T)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A size for people: `64 MiB`, `1.5 GiB`, `512 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_data_is_deterministic_whatever_the_read_sizes() {
        let mut whole = Vec::new();
        MixedData::new(1, 3 << 20).read_to_end(&mut whole).unwrap();
        let mut pieces = Vec::new();
        let mut data = MixedData::new(1, 3 << 20);
        let mut buf = [0u8; 4093];
        loop {
            let n = data.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            pieces.extend_from_slice(&buf[..n]);
        }
        assert_eq!(whole.len(), 3 << 20);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn shorter_streams_are_prefixes() {
        let mut short = Vec::new();
        MixedData::new(9, 1_000_003)
            .read_to_end(&mut short)
            .unwrap();
        let mut long = Vec::new();
        MixedData::new(9, 5 << 20).read_to_end(&mut long).unwrap();
        assert_eq!(short[..], long[..short.len()]);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("2MB"), Ok(2 << 20));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("M").is_err());
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(1536), "1.5 KiB");
    }
}
