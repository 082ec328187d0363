//! Float tensors: the bits of every value regrouped into planes, each plane coded alone.
//!
//! Trained weights barely compress as bytes (zstd -3 keeps 79% of a bf16 model), but a
//! handful of exponent values carry almost all of them. Gathering the exponent bits of
//! every value into one plane, and the sign and mantissa bits into others, leaves the
//! exponent plane at about 3 bits a value and the rest near 8; each plane is then coded
//! with zstd (whose Huffman stage is the entropy coder here) or stored, whichever is
//! smaller. This is the first step of the tensor codec (FORMAT.md §7): a hand-written,
//! GPU-decodable entropy coder is to replace zstd per plane.

use crate::Error;
use crate::codec::CodecId;

/// The float formats with a plane layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloatKind {
    /// bfloat16: sign, 8 exponent bits, 7 mantissa bits.
    Bf16,
    /// IEEE half: sign, 5 exponent bits, 10 mantissa bits.
    F16,
    /// IEEE single: sign, 8 exponent bits, 23 mantissa bits.
    F32,
}

impl FloatKind {
    /// Bytes per value.
    pub const fn width(self) -> usize {
        match self {
            FloatKind::Bf16 | FloatKind::F16 => 2,
            FloatKind::F32 => 4,
        }
    }

    /// The codec that stores values of this kind as planes.
    pub const fn codec(self) -> CodecId {
        match self {
            FloatKind::Bf16 => CodecId::Bf16Planes,
            FloatKind::F16 => CodecId::F16Planes,
            FloatKind::F32 => CodecId::F32Planes,
        }
    }

    /// The kind a planes codec stores, if it is one.
    pub(crate) const fn of(codec: CodecId) -> Option<FloatKind> {
        match codec {
            CodecId::Bf16Planes => Some(FloatKind::Bf16),
            CodecId::F16Planes => Some(FloatKind::F16),
            CodecId::F32Planes => Some(FloatKind::F32),
            _ => None,
        }
    }
}

/// Splits little-endian values into planes of one byte per value each (the tail bytes of
/// an incomplete last value are not included). bf16 and f32 put the 8 exponent bits in
/// plane 0 and the sign with the top mantissa bits in plane 1; f16, whose exponent has 5
/// bits, keeps its two bytes as they are (the high one holds sign and exponent).
fn split(raw: &[u8], kind: FloatKind) -> Vec<Vec<u8>> {
    let width = kind.width();
    let values = raw.len() / width;
    let mut planes = vec![Vec::with_capacity(values); width];
    for value in raw.chunks_exact(width) {
        match kind {
            FloatKind::Bf16 => {
                let x = u16::from_le_bytes([value[0], value[1]]);
                planes[0].push((x >> 7) as u8);
                planes[1].push(((x >> 8) as u8 & 0x80) | (x as u8 & 0x7F));
            }
            FloatKind::F16 => {
                planes[0].push(value[1]);
                planes[1].push(value[0]);
            }
            FloatKind::F32 => {
                let x = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
                planes[0].push((x >> 23) as u8);
                planes[1].push(((x >> 24) as u8 & 0x80) | ((x >> 16) as u8 & 0x7F));
                planes[2].push((x >> 8) as u8);
                planes[3].push(x as u8);
            }
        }
    }
    planes
}

/// Inverts [`split`]: appends the values of `planes` (each `values` long) to `out`.
fn join(planes: &[Vec<u8>], values: usize, kind: FloatKind, out: &mut Vec<u8>) {
    let byte = |plane: usize, i: usize| planes[plane][i];
    for i in 0..values {
        match kind {
            FloatKind::Bf16 => {
                let (exponent, rest) = (u16::from(byte(0, i)), u16::from(byte(1, i)));
                let x = ((rest & 0x80) << 8) | (exponent << 7) | (rest & 0x7F);
                out.extend_from_slice(&x.to_le_bytes());
            }
            FloatKind::F16 => out.extend_from_slice(&[byte(1, i), byte(0, i)]),
            FloatKind::F32 => {
                let exponent = u32::from(byte(0, i));
                let high = u32::from(byte(1, i));
                let x = ((high & 0x80) << 24)
                    | (exponent << 23)
                    | ((high & 0x7F) << 16)
                    | (u32::from(byte(2, i)) << 8)
                    | u32::from(byte(3, i));
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}

/// Codes one plane into the buffer; returns whether that is smaller than the plane.
pub(crate) type CodePlane<'a> = dyn FnMut(&[u8], &mut Vec<u8>) -> Result<bool, Error> + 'a;

/// Decodes one zstd-coded plane of known length into the (empty) buffer.
pub(crate) type DecodePlane<'a> = dyn FnMut(&[u8], usize, &mut Vec<u8>) -> Result<(), Error> + 'a;

/// Bytes before each coded plane: its coding (0 stored, 1 zstd) and its stored length.
const PLANE_HEADER_LEN: usize = 5;

/// Encodes `raw` as planes into `out`: for each of the kind's planes, then for the tail
/// bytes, a 1-byte coding, a 4-byte little-endian length and the bytes. Returns whether
/// the result is smaller than `raw`.
pub(crate) fn encode(
    raw: &[u8],
    kind: FloatKind,
    code: &mut CodePlane<'_>,
    out: &mut Vec<u8>,
) -> Result<bool, Error> {
    out.clear();
    let tail = &raw[raw.len() - raw.len() % kind.width()..];
    let mut coded = Vec::new();
    for plane in split(raw, kind).iter().map(Vec::as_slice).chain([tail]) {
        let (coding, bytes) = if code(plane, &mut coded)? {
            (1u8, coded.as_slice())
        } else {
            (0u8, plane)
        };
        out.push(coding);
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
        if out.len() >= raw.len() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Decodes planes written by [`encode`] into `out` (`raw_len` bytes), treating `stored`
/// as hostile: every length is checked against what the plane must hold before anything
/// is allocated.
pub(crate) fn decode(
    stored: &[u8],
    raw_len: usize,
    kind: FloatKind,
    zstd: &mut DecodePlane<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let corrupt = |reason: String| Error::Corrupt {
        codec: kind.codec(),
        reason,
    };
    let values = raw_len / kind.width();
    let plane_lens = std::iter::repeat_n(values, kind.width()).chain([raw_len % kind.width()]);
    let mut rest = stored;
    let mut planes = Vec::with_capacity(kind.width() + 1);
    for (number, len) in plane_lens.enumerate() {
        let Some((header, body)) = rest.split_at_checked(PLANE_HEADER_LEN) else {
            return Err(corrupt(format!("plane {number} is cut short")));
        };
        let stored_len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
        let Some((bytes, after)) = body.split_at_checked(stored_len as usize) else {
            return Err(corrupt(format!(
                "plane {number} declares {stored_len} bytes, {} remain",
                body.len()
            )));
        };
        let mut plane = Vec::new();
        match header[0] {
            0 if bytes.len() == len => plane.extend_from_slice(bytes),
            0 => {
                return Err(corrupt(format!(
                    "stored plane {number} has {} bytes, it must have {len}",
                    bytes.len()
                )));
            }
            1 => zstd(bytes, len, &mut plane)?,
            coding => {
                return Err(corrupt(format!(
                    "plane {number} has unknown coding {coding}"
                )));
            }
        }
        planes.push(plane);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} bytes follow the last plane",
            rest.len()
        )));
    }
    out.reserve_exact(raw_len);
    join(&planes[..kind.width()], values, kind, out);
    out.extend_from_slice(&planes[kind.width()]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KINDS: [FloatKind; 3] = [FloatKind::Bf16, FloatKind::F16, FloatKind::F32];

    #[test]
    fn bf16_exponents_gather_in_plane_zero() {
        // 1.0 = 0x3F80: sign 0, exponent 127, mantissa 0; -2.5 = 0xC020: sign 1,
        // exponent 128, mantissa 0x20.
        let raw = [0x80, 0x3F, 0x20, 0xC0];
        let planes = split(&raw, FloatKind::Bf16);
        assert_eq!(planes, vec![vec![127, 128], vec![0x00, 0x80 | 0x20]]);
        let mut back = Vec::new();
        join(&planes, 2, FloatKind::Bf16, &mut back);
        assert_eq!(back, raw);
    }

    proptest! {
        #[test]
        fn join_inverts_split(raw in proptest::collection::vec(any::<u8>(), 0..400), kind in 0usize..3) {
            let kind = KINDS[kind];
            let whole = raw.len() - raw.len() % kind.width();
            let mut back = Vec::new();
            join(&split(&raw, kind), whole / kind.width(), kind, &mut back);
            prop_assert_eq!(&back[..], &raw[..whole]);
        }
    }
}
