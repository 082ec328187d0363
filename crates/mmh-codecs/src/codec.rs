//! Codec ids, the encode parameters, and the encode/decode dispatch with the `auto` choice.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter, ResetDirective};

use crate::tensor::{self, FloatKind};
use crate::{Accelerator, Error, pattern, rans};

/// How a chunk is stored. The discriminant is the byte written to disk.
///
/// New codecs (tensor-aware ones, for instance) are new variants with new ids; the
/// container stores the id as an opaque byte and hands it back here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum CodecId {
    /// The bytes as they are.
    Store = 0,
    /// One zstd frame with its content size recorded.
    Zstd = 1,
    /// One raw LZ4 block, without a size prefix (the container records the raw length).
    Lz4 = 2,
    /// A short period repeated; see [`MAX_PATTERN_PERIOD`](crate::MAX_PATTERN_PERIOD).
    Pattern = 3,
    // Ids 4 to 6 were the bit planes of development builds; they are not read.
    /// bfloat16 values by the tensor codec (see [`FloatKind`](crate::FloatKind)).
    Bf16 = 7,
    /// IEEE half values by the tensor codec.
    F16 = 8,
    /// IEEE single values by the tensor codec.
    F32 = 9,
    /// IEEE double values by the tensor codec.
    F64 = 10,
    /// OCP FP8 E4M3 values by the tensor codec.
    F8E4M3 = 11,
    /// OCP FP8 E5M2 values by the tensor codec.
    F8E5M2 = 12,
    /// Bytes coded order-0 with rANS, in independent blocks.
    Rans = 13,
}

impl CodecId {
    /// Every codec, in id order.
    pub const ALL: [CodecId; 11] = [
        CodecId::Store,
        CodecId::Zstd,
        CodecId::Lz4,
        CodecId::Pattern,
        CodecId::Bf16,
        CodecId::F16,
        CodecId::F32,
        CodecId::F64,
        CodecId::F8E4M3,
        CodecId::F8E5M2,
        CodecId::Rans,
    ];

    /// The name used in messages and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            CodecId::Store => "store",
            CodecId::Zstd => "zstd",
            CodecId::Lz4 => "lz4",
            CodecId::Pattern => "pattern",
            CodecId::Bf16 => "bf16",
            CodecId::F16 => "f16",
            CodecId::F32 => "f32",
            CodecId::F64 => "f64",
            CodecId::F8E4M3 => "f8-e4m3",
            CodecId::F8E5M2 => "f8-e5m2",
            CodecId::Rans => "rans",
        }
    }
}

impl TryFrom<u8> for CodecId {
    type Error = Error;

    fn try_from(id: u8) -> Result<Self, Error> {
        CodecId::ALL
            .into_iter()
            .find(|&codec| codec as u8 == id)
            .ok_or(Error::UnknownCodec { id })
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CodecId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        CodecId::ALL
            .into_iter()
            .find(|codec| codec.name() == s)
            .ok_or_else(|| Error::UnknownCodecName {
                name: s.to_owned(),
                expected: "store, zstd, lz4, pattern, bf16, f16, f32, f64, f8-e4m3, f8-e5m2, rans",
            })
    }
}

/// Which codec [`encode`] should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodecChoice {
    /// Pick per chunk: pattern if periodic, else whichever of store, lz4 and zstd a probe of
    /// the chunk favours.
    #[default]
    Auto,
    /// Always try this codec, falling back to store where it would not shrink the chunk.
    Only(CodecId),
}

impl fmt::Display for CodecChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecChoice::Auto => f.write_str("auto"),
            CodecChoice::Only(codec) => codec.fmt(f),
        }
    }
}

impl FromStr for CodecChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s == "auto" {
            return Ok(CodecChoice::Auto);
        }
        s.parse()
            .map(CodecChoice::Only)
            .map_err(|_| Error::UnknownCodecName {
                name: s.to_owned(),
                expected: "auto, store, zstd, lz4, pattern, bf16, f16, f32, f64, f8-e4m3, f8-e5m2, rans",
            })
    }
}

/// Parameters of [`encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeParams {
    /// Which codec to use.
    pub choice: CodecChoice,
    /// zstd level, `1..=22`.
    pub zstd_level: i32,
    /// zstd long-distance matching, with a window as large as the chunk (up to 128 MiB).
    pub zstd_long: bool,
}

impl Default for EncodeParams {
    fn default() -> Self {
        EncodeParams {
            choice: CodecChoice::Auto,
            zstd_level: 3,
            zstd_long: false,
        }
    }
}

impl EncodeParams {
    /// Checks that the zstd level is in `1..=22`.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=22).contains(&self.zstd_level) {
            return Err(Error::InvalidLevel {
                level: self.zstd_level,
            });
        }
        Ok(())
    }
}

/// The largest zstd window, as a log2. The decoder refuses frames that need more, and the
/// encoder never asks for more, so a chunk never needs more than 128 MiB of window
/// (chunks are at most 64 MiB anyway).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Below this, `auto` stores a chunk (unless it is a pattern): the LZ4 and zstd framing
/// would eat most of any saving, and probing would cost more than it could win.
const AUTO_MIN_LEN: usize = 64;

/// How much of a chunk `auto` compresses to decide, taken in [`AUTO_SAMPLE_PIECES`]
/// pieces spread over it: a frame packs unlike things (small files, tensor pieces, delta
/// planes), and one sample from the middle once chose LZ4 for a frame of delta planes that
/// zstd coded 6% smaller overall. Pieces start away from the edges (a tensor file's start
/// is more often a header or padding than typical content).
const AUTO_SAMPLE_LEN: usize = 64 * 1024;

/// Into how many pieces the sample is cut.
const AUTO_SAMPLE_PIECES: usize = 4;

/// `auto` stores a chunk whose sample neither LZ4 nor zstd level 1 brings below 98% of
/// its size: a 2% saving is within what the sample misjudges for the whole chunk, and not
/// worth a decompression pass on every read. Typical hits are already-compressed payloads
/// and random-looking quantized weights.
const AUTO_STORE_RATIO: f64 = 0.98;

/// `auto` prefers LZ4 when its sample ratio is at most this much worse than zstd level 1:
/// LZ4 decodes several times faster, and a 1% size difference rarely matters next to
/// that. A larger gap means zstd's entropy coding finds something (float exponents, text)
/// that the configured, usually higher, level will only improve on.
const AUTO_LZ4_MARGIN: f64 = 0.01;

/// `auto` prefers the rANS byte codec when its sample ratio beats both LZ4's and zstd
/// level 1's by more than this: then the data is skewed bytes without matches (XORed
/// planes of a changed tensor), where exact order-0 coding beats zstd's Huffman stage
/// and no zstd level does better; a smaller edge could be what a higher level recovers.
const AUTO_RANS_MARGIN: f64 = 0.02;

/// Per-thread zstd encoder state.
///
/// A fresh context per chunk allocates and initialises its tables every time: measured on
/// 64 KiB chunks at level 3, reusing one is 1.2–1.5× faster to encode (1.15–1.2× to
/// decode), so each thread keeps one of each.
struct ZstdEncoder {
    cctx: CCtx<'static>,
    /// The `auto` probe's own context: switching one context between the probe's level 1
    /// on 64 KiB and the configured level on whole chunks re-sizes its tables each time.
    probe_cctx: CCtx<'static>,
    /// Output of the `auto` probe, kept to avoid an allocation per chunk.
    probe: Vec<u8>,
}

thread_local! {
    static ZSTD_ENCODER: RefCell<Option<ZstdEncoder>> = const { RefCell::new(None) };
    static ZSTD_DECODER: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

fn with_zstd_encoder<R>(f: impl FnOnce(&mut ZstdEncoder) -> Result<R, Error>) -> Result<R, Error> {
    ZSTD_ENCODER.with_borrow_mut(|slot| {
        let encoder = match slot {
            Some(encoder) => encoder,
            None => slot.insert(ZstdEncoder {
                cctx: new_cctx()?,
                probe_cctx: new_cctx()?,
                probe: Vec::new(),
            }),
        };
        f(encoder)
    })
}

fn new_cctx() -> Result<CCtx<'static>, Error> {
    CCtx::try_create().ok_or_else(|| Error::Library {
        codec: CodecId::Zstd,
        reason: "could not allocate a compression context".into(),
    })
}

fn with_zstd_decoder<R>(
    f: impl FnOnce(&mut DCtx<'static>) -> Result<R, Error>,
) -> Result<R, Error> {
    ZSTD_DECODER.with_borrow_mut(|slot| {
        let dctx = match slot {
            Some(dctx) => dctx,
            None => {
                let mut dctx = DCtx::try_create().ok_or_else(|| Error::Library {
                    codec: CodecId::Zstd,
                    reason: "could not allocate a decompression context".into(),
                })?;
                dctx.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
                    .map_err(|code| zstd_error(code, "setting the window limit"))?;
                slot.insert(dctx)
            }
        };
        f(dctx)
    })
}

fn zstd_error(code: zstd_safe::ErrorCode, during: &str) -> Error {
    Error::Library {
        codec: CodecId::Zstd,
        reason: format!("{during}: {}", zstd_safe::get_error_name(code)),
    }
}

/// Compresses `raw` with zstd into `out`. Returns whether the frame is smaller than `raw`;
/// if not, `out` holds nothing useful.
fn zstd_encode(
    cctx: &mut CCtx<'static>,
    raw: &[u8],
    level: i32,
    long: bool,
    out: &mut Vec<u8>,
) -> Result<bool, Error> {
    let window_log = if long {
        // A window covering the whole chunk lets long-distance matching reach anywhere in
        // it; zstd's minimum window is 2^10.
        let needed = raw.len().max(1).next_power_of_two().trailing_zeros();
        needed.clamp(10, ZSTD_WINDOW_LOG_MAX)
    } else {
        // 0 is zstd's "default for the level", undoing an earlier long-mode call.
        0
    };
    // `false` is zstd's "auto", which enables long-distance matching only for the
    // strongest strategies at a 128 MiB window; either way the window stays within
    // ZSTD_WINDOW_LOG_MAX, so every frame decodes.
    for param in [
        CParameter::CompressionLevel(level),
        CParameter::EnableLongDistanceMatching(long),
        CParameter::WindowLog(window_log),
    ] {
        cctx.set_parameter(param)
            .map_err(|code| zstd_error(code, "setting parameters"))?;
    }
    // A destination no larger than the input makes zstd stop with "destination too small"
    // as soon as the frame would not shrink the chunk.
    out.clear();
    out.resize(raw.len(), 0);
    match cctx.compress2(&mut out[..], raw) {
        Ok(n) => {
            out.truncate(n);
            Ok(n < raw.len())
        }
        Err(code) => {
            // A failed compress2 leaves a frame open, and zstd refuses parameter changes
            // mid-frame; the reset cannot fail without worker threads.
            let _ = cctx.reset(ResetDirective::SessionOnly);
            if zstd_safe::is_error_kind(
                code,
                zstd_safe::zstd_sys::ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall,
            ) {
                Ok(false)
            } else {
                Err(zstd_error(code, "compressing"))
            }
        }
    }
}

/// [`zstd_encode`] at the level and long mode `params` ask for.
fn zstd_as_asked(
    cctx: &mut CCtx<'static>,
    raw: &[u8],
    params: &EncodeParams,
    out: &mut Vec<u8>,
) -> Result<bool, Error> {
    zstd_encode(cctx, raw, params.zstd_level, params.zstd_long, out)
}

/// Compresses `raw` into one LZ4 block in `out`. Returns whether it is smaller than `raw`.
fn lz4_encode(raw: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
    out.clear();
    out.resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
    let n = lz4_flex::block::compress_into(raw, out).map_err(|e| Error::Library {
        codec: CodecId::Lz4,
        reason: e.to_string(),
    })?;
    out.truncate(n);
    Ok(n < raw.len())
}

/// Encodes one chunk.
///
/// Clears `out` and writes the stored bytes there; returns the codec actually used.
/// `out.len() <= raw.len()` always: when the chosen codec would not shrink the chunk
/// (also for `Only(x)`, and `Only(Pattern)` on data that is not periodic), the chunk is
/// stored as it is.
///
/// zstd contexts are kept per thread, so encoding many chunks from a thread pool reuses
/// them.
pub fn encode(raw: &[u8], params: &EncodeParams, out: &mut Vec<u8>) -> Result<CodecId, Error> {
    params.validate()?;
    out.clear();
    let shrank = match params.choice {
        CodecChoice::Auto => auto(raw, params, out)?,
        CodecChoice::Only(CodecId::Store) => None,
        CodecChoice::Only(CodecId::Pattern) => {
            pattern::encode(raw, out).then_some(CodecId::Pattern)
        }
        CodecChoice::Only(CodecId::Lz4) => lz4_encode(raw, out)?.then_some(CodecId::Lz4),
        CodecChoice::Only(CodecId::Rans) => rans::encode_bytes(raw, out).then_some(CodecId::Rans),
        CodecChoice::Only(CodecId::Zstd) => {
            with_zstd_encoder(|enc| zstd_as_asked(&mut enc.cctx, raw, params, out))?
                .then_some(CodecId::Zstd)
        }
        CodecChoice::Only(codec) => {
            let kind = FloatKind::of(codec).expect("every other codec is matched above");
            tensor::encode(raw, kind, out).then_some(codec)
        }
    };
    match shrank {
        Some(codec) => {
            debug_assert!(out.len() < raw.len(), "{codec} grew a chunk");
            Ok(codec)
        }
        None => {
            out.clear();
            out.extend_from_slice(raw);
            Ok(CodecId::Store)
        }
    }
}

/// Encodes a chunk of float values of `kind` (a tensor's bytes): with the tensor codec
/// ([`FloatKind::codec`]) under [`CodecChoice::Auto`], since a probe of the bytes cannot
/// see what it gains; as [`encode`] does under any other choice.
pub fn encode_tensor(
    raw: &[u8],
    kind: FloatKind,
    params: &EncodeParams,
    accelerator: &dyn Accelerator,
    out: &mut Vec<u8>,
) -> Result<CodecId, Error> {
    if params.choice != CodecChoice::Auto {
        return encode(raw, params, out);
    }
    params.validate()?;
    if pattern::encode(raw, out) {
        return Ok(CodecId::Pattern);
    }
    if accelerator.encode_tensor(raw, kind, out)? {
        return Ok(kind.codec());
    }
    out.clear();
    out.extend_from_slice(raw);
    Ok(CodecId::Store)
}

/// The `auto` choice. Returns the codec whose output is in `out`, or `None` for store.
fn auto(raw: &[u8], params: &EncodeParams, out: &mut Vec<u8>) -> Result<Option<CodecId>, Error> {
    // Cheap, and the best any codec can do on such data.
    if pattern::encode(raw, out) {
        return Ok(Some(CodecId::Pattern));
    }
    if raw.len() < AUTO_MIN_LEN {
        return Ok(None);
    }
    let whole = raw.len() <= AUTO_SAMPLE_LEN;
    let spread;
    let sample = if whole {
        raw
    } else {
        let piece = AUTO_SAMPLE_LEN / AUTO_SAMPLE_PIECES;
        let stride = raw.len() / AUTO_SAMPLE_PIECES;
        spread = (0..AUTO_SAMPLE_PIECES)
            .flat_map(|i| {
                let start = i * stride + (stride - piece) / 2;
                &raw[start..start + piece]
            })
            .copied()
            .collect::<Vec<u8>>();
        &spread[..]
    };
    let sample_len = sample.len();
    with_zstd_encoder(|enc| {
        // The LZ4 probe goes to `out`, so that on a chunk no larger than the sample it is
        // already the result.
        let lz4_shrank = lz4_encode(sample, out)?;
        let lz4_len = if lz4_shrank { out.len() } else { sample_len };
        let zstd1_shrank = zstd_encode(&mut enc.probe_cctx, sample, 1, false, &mut enc.probe)?;
        let zstd1_len = if zstd1_shrank {
            enc.probe.len()
        } else {
            sample_len
        };
        let mut rans_probe = Vec::new();
        let rans_len = if rans::encode_bytes(sample, &mut rans_probe) {
            rans_probe.len()
        } else {
            sample_len
        };
        let lz4_ratio = lz4_len as f64 / sample_len as f64;
        let zstd1_ratio = zstd1_len as f64 / sample_len as f64;
        let rans_ratio = rans_len as f64 / sample_len as f64;

        if rans_ratio < lz4_ratio.min(zstd1_ratio) - AUTO_RANS_MARGIN
            && rans_ratio < AUTO_STORE_RATIO
        {
            let shrank = if whole {
                *out = rans_probe;
                true
            } else {
                rans::encode_bytes(raw, out)
            };
            return Ok(shrank.then_some(CodecId::Rans));
        }
        if lz4_ratio.min(zstd1_ratio) >= AUTO_STORE_RATIO {
            return Ok(None);
        }
        if lz4_ratio - zstd1_ratio <= AUTO_LZ4_MARGIN {
            let shrank = if whole {
                lz4_shrank
            } else {
                lz4_encode(raw, out)?
            };
            return Ok(shrank.then_some(CodecId::Lz4));
        }
        let shrank = if whole && params.zstd_level == 1 && !params.zstd_long {
            out.clear();
            out.extend_from_slice(&enc.probe);
            zstd1_shrank
        } else {
            zstd_as_asked(&mut enc.cctx, raw, params, out)?
        };
        Ok(shrank.then_some(CodecId::Zstd))
    })
}

/// Decodes one chunk whose raw length is known.
///
/// Clears `out` and leaves exactly `raw_len` bytes there, or returns an error (with
/// `out` empty): [`Error::Corrupt`] for bad input. Whatever `stored` contains, this does not panic and does not
/// allocate more than `raw_len` bytes plus a small constant (callers bound `raw_len`;
/// the container caps it at 64 MiB). A zstd frame that records no content size decodes
/// into `out`'s existing capacity at most, and fails unless it yields `raw_len` bytes.
pub fn decode(
    codec: CodecId,
    stored: &[u8],
    raw_len: usize,
    accelerator: &dyn Accelerator,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    out.clear();
    decode_into(codec, stored, raw_len, accelerator, out).inspect_err(|_| out.clear())
}

fn decode_into(
    codec: CodecId,
    stored: &[u8],
    raw_len: usize,
    accelerator: &dyn Accelerator,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let corrupt = |reason: String| Error::Corrupt { codec, reason };
    match codec {
        CodecId::Store => {
            if stored.len() != raw_len {
                return Err(corrupt(format!(
                    "stored {} bytes, chunk records {raw_len}",
                    stored.len()
                )));
            }
            out.extend_from_slice(stored);
        }
        CodecId::Pattern => pattern::decode(stored, raw_len, out)?,
        CodecId::Lz4 => {
            out.resize(raw_len, 0);
            let n = lz4_flex::block::decompress_into(stored, out)
                .map_err(|e| corrupt(format!("LZ4 block: {e}")))?;
            if n != raw_len {
                return Err(corrupt(format!(
                    "LZ4 block decodes to {n} bytes, chunk records {raw_len}"
                )));
            }
        }
        CodecId::Zstd => zstd_decode(stored, raw_len, out)?,
        CodecId::Rans => rans::decode_bytes(stored, raw_len, out).map_err(corrupt)?,
        CodecId::Bf16
        | CodecId::F16
        | CodecId::F32
        | CodecId::F64
        | CodecId::F8E4M3
        | CodecId::F8E5M2 => {
            let kind = FloatKind::of(codec).expect("a tensor codec");
            accelerator.decode_tensor(stored, raw_len, kind, out)?;
        }
    }
    Ok(())
}

/// Decodes one zstd frame of exactly `raw_len` bytes into `out`, which must be empty
/// (zstd writes from the start of the buffer).
fn zstd_decode(stored: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    let corrupt = |reason: String| Error::Corrupt {
        codec: CodecId::Zstd,
        reason,
    };
    // Checked before decoding so that a frame declaring another size costs nothing.
    match zstd_safe::get_frame_content_size(stored) {
        Ok(Some(declared)) if declared != raw_len as u64 => {
            return Err(corrupt(format!(
                "frame declares {declared} bytes, chunk records {raw_len}"
            )));
        }
        Ok(_) => {}
        Err(_) => return Err(corrupt("no valid zstd frame header".into())),
    }
    debug_assert!(out.is_empty());
    out.reserve_exact(raw_len);
    let n = with_zstd_decoder(|dctx| {
        dctx.decompress(out, stored)
            .map_err(|code| corrupt(zstd_safe::get_error_name(code).to_owned()))
    })?;
    if n != raw_len {
        return Err(corrupt(format!(
            "frame decodes to {n} bytes, chunk records {raw_len}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuAccelerator;

    fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn english_like(len: usize) -> Vec<u8> {
        const WORDS: [&str; 16] = [
            "the", "model", "weights", "are", "stored", "in", "chunks", "of", "tensor", "data",
            "and", "each", "layer", "has", "a", "name",
        ];
        let picks = xorshift_bytes(7, len);
        let mut text = Vec::with_capacity(len + 16);
        for pick in picks {
            if text.len() >= len {
                break;
            }
            text.extend_from_slice(WORDS[usize::from(pick) % WORDS.len()].as_bytes());
            text.push(if pick % 11 == 0 { b'.' } else { b' ' });
        }
        text.truncate(len);
        text
    }

    fn roundtrip(raw: &[u8], params: &EncodeParams) -> CodecId {
        let mut stored = Vec::new();
        let codec = encode(raw, params, &mut stored).unwrap();
        assert!(stored.len() <= raw.len());
        let mut back = Vec::new();
        decode(codec, &stored, raw.len(), &CpuAccelerator, &mut back).unwrap();
        assert_eq!(back, raw, "{codec} roundtrip");
        codec
    }

    #[test]
    fn auto_stores_zeros_as_a_pattern() {
        let mut stored = Vec::new();
        let codec = encode(&[0; 100_000], &EncodeParams::default(), &mut stored).unwrap();
        assert_eq!((codec, stored.as_slice()), (CodecId::Pattern, &[1, 0][..]));
    }

    #[test]
    fn auto_stores_random_bytes_as_they_are() {
        for len in [64, 1000, 64 * 1024, 300_000] {
            let raw = xorshift_bytes(42, len);
            assert_eq!(
                roundtrip(&raw, &EncodeParams::default()),
                CodecId::Store,
                "{len}"
            );
        }
    }

    #[test]
    fn auto_compresses_text() {
        for len in [100, 5000, 64 * 1024, 200_000] {
            let raw = english_like(len);
            let mut stored = Vec::new();
            let codec = encode(&raw, &EncodeParams::default(), &mut stored).unwrap();
            assert!(
                matches!(codec, CodecId::Zstd | CodecId::Lz4),
                "{len}: {codec}"
            );
            // Framing overhead dominates short chunks; long ones must shrink a lot.
            let bound = if len < 1000 { len } else { len * 3 / 4 };
            assert!(stored.len() < bound, "{len}: {}", stored.len());
            roundtrip(&raw, &EncodeParams::default());
        }
    }

    #[test]
    fn auto_stores_short_chunks_unless_periodic() {
        assert_eq!(
            roundtrip(b"short but not periodic", &EncodeParams::default()),
            CodecId::Store
        );
        assert_eq!(
            roundtrip(b"abababab", &EncodeParams::default()),
            CodecId::Pattern
        );
    }

    #[test]
    fn auto_honours_level_and_long_mode_on_large_chunks() {
        // Two copies of a random block 1 MiB apart: only long-distance matching reaches
        // back that far at level 1.
        let block = xorshift_bytes(3, 3 << 20);
        let mut raw = block.clone();
        raw.extend_from_slice(&block);
        for zstd_long in [false, true] {
            let params = EncodeParams {
                choice: CodecChoice::Only(CodecId::Zstd),
                zstd_level: 1,
                zstd_long,
            };
            let codec = roundtrip(&raw, &params);
            assert_eq!(
                codec,
                if zstd_long {
                    CodecId::Zstd
                } else {
                    CodecId::Store
                }
            );
        }
        let text = english_like(300_000);
        for zstd_level in [1, 19] {
            let params = EncodeParams {
                zstd_level,
                ..EncodeParams::default()
            };
            roundtrip(&text, &params);
        }
    }

    #[test]
    fn level_is_validated() {
        for level in [0, 23, -5] {
            let params = EncodeParams {
                zstd_level: level,
                ..EncodeParams::default()
            };
            assert!(
                matches!(params.validate(), Err(Error::InvalidLevel { level: l }) if l == level)
            );
            assert!(encode(b"x", &params, &mut Vec::new()).is_err());
        }
        for level in [1, 22] {
            let params = EncodeParams {
                zstd_level: level,
                ..EncodeParams::default()
            };
            params.validate().unwrap();
        }
    }

    #[test]
    fn names_roundtrip() {
        for codec in CodecId::ALL {
            assert_eq!(codec.to_string().parse::<CodecId>().unwrap(), codec);
            assert_eq!(CodecId::try_from(codec as u8).unwrap(), codec);
            let choice = CodecChoice::Only(codec);
            assert_eq!(choice.to_string().parse::<CodecChoice>().unwrap(), choice);
        }
        assert_eq!("auto".parse::<CodecChoice>().unwrap(), CodecChoice::Auto);
        assert_eq!(CodecChoice::Auto.to_string(), "auto");
        assert!("auto".parse::<CodecId>().is_err());
        assert!("Zstd".parse::<CodecChoice>().is_err());
        let err = "brotli".parse::<CodecChoice>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown codec name "brotli" (expected one of: auto, store, zstd, lz4, pattern, bf16, f16, f32, f64, f8-e4m3, f8-e5m2, rans)"#
        );
    }

    #[test]
    fn unknown_codec_id_says_which() {
        // 4 to 6 were the bit planes of development builds.
        let err = CodecId::try_from(4).unwrap_err();
        assert!(matches!(err, Error::UnknownCodec { id: 4 }));
        assert_eq!(
            err.to_string(),
            "unknown codec id 4 (this version knows 0 store, 1 zstd, 2 lz4, 3 pattern, 7 bf16, 8 f16, 9 f32, 10 f64, 11 f8-e4m3, 12 f8-e5m2, 13 rans)"
        );
        assert!(CodecId::try_from(255).is_err());
    }
}
