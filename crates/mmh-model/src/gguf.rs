//! GGUF, versions 2 and 3: the magic `GGUF`, a `u32` version, a `u64` tensor count and a
//! `u64` metadata count, the metadata (key string, `u32` value type, value; strings are a
//! `u64` length and UTF-8 bytes; arrays a `u32` element type, a `u64` count and the
//! elements), then per tensor its name, a `u32` dimension count, the `u64` dimensions
//! (innermost first), a `u32` ggml type and a `u64` offset from the start of the data,
//! which begins at the next multiple of `general.alignment` (default 32). Little-endian
//! throughout. Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.
//!
//! Quantized types are [`DType::Other`] with their ggml name (`"Q8_0"`); their byte length
//! comes from the ggml block table, so their ranges are exact too.

use crate::{
    DType, Error, Layout, MAX_HEADER_LEN, ModelFormat, Result, Sniff, Tensor, elements_times,
    sorted_disjoint,
};

const MAGIC: &[u8; 4] = b"GGUF";
const FORMAT: ModelFormat = ModelFormat::Gguf;
/// Magic, version and the two counts.
const FIXED: u64 = 24;
const DEFAULT_ALIGNMENT: u64 = 32;
const ALIGNMENT_KEY: &[u8] = b"general.alignment";
/// Arrays of arrays nest at most this deep (each level is recursion).
const MAX_NESTING: u32 = 8;
/// More dimensions than ggml has (4), with room; a claim beyond is an error.
const MAX_DIMS: u32 = 8;

/// The metadata value types.
const T_UINT8: u32 = 0;
const T_INT8: u32 = 1;
const T_UINT16: u32 = 2;
const T_INT16: u32 = 3;
const T_UINT32: u32 = 4;
const T_INT32: u32 = 5;
const T_FLOAT32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_UINT64: u32 = 10;
const T_INT64: u32 = 11;
const T_FLOAT64: u32 = 12;

/// ggml types: id, name, elements per block, bytes per block (ggml's `type_traits`, as the
/// `gguf` Python package 0.19 lists them; ids missing here were removed from ggml).
const GGML_TYPES: [(u32, &str, u64, u64); 34] = [
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

/// Why parsing stopped early: the head is too short, or the file is broken.
enum Stop {
    NeedHead(u64),
    Broken(Error),
}

impl From<Error> for Stop {
    fn from(err: Error) -> Self {
        Stop::Broken(err)
    }
}

type Step<T> = std::result::Result<T, Stop>;

/// See [`crate::sniff`]; `head.len() <= file_len` has been checked.
pub(crate) fn sniff(head: &[u8], file_len: u64) -> Result<Sniff> {
    let opening = &head[..head.len().min(MAGIC.len())];
    if file_len < MAGIC.len() as u64 || !MAGIC.starts_with(opening) {
        return Ok(Sniff::NotAModel);
    }
    if head.len() < MAGIC.len() {
        return Ok(Sniff::NeedHead(FIXED.min(file_len)));
    }
    let mut cursor = Cursor {
        head,
        pos: MAGIC.len() as u64,
        file_len,
    };
    match parse(&mut cursor) {
        Ok(layout) => Ok(Sniff::Model(layout)),
        Err(Stop::NeedHead(n)) => Ok(Sniff::NeedHead(n)),
        Err(Stop::Broken(err)) => Err(err),
    }
}

fn parse(c: &mut Cursor<'_>) -> Step<Layout> {
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(c.malformed(4, format!("unsupported version {version}")));
    }
    let tensor_count = c.u64()?;
    let kv_count = c.u64()?;
    let mut alignment = DEFAULT_ALIGNMENT;
    // No capacity from the counts: each pass consumes bytes of a capped header.
    for _ in 0..kv_count {
        let key = c.string()?;
        let key_at = c.pos;
        let value_type = c.u32()?;
        if key == ALIGNMENT_KEY {
            alignment = c
                .unsigned(value_type)?
                .filter(|a| a.is_power_of_two())
                .ok_or_else(|| {
                    c.malformed(key_at, "general.alignment is not a power of two".into())
                })?;
        } else {
            c.skip_value(value_type, 0)?;
        }
    }
    let mut infos = Vec::new();
    for _ in 0..tensor_count {
        let name_at = c.pos;
        let name = String::from_utf8(c.string()?.to_vec())
            .map_err(|_| c.malformed(name_at, "a tensor name that is not UTF-8".into()))?;
        let dims_at = c.pos;
        let n_dims = c.u32()?;
        if n_dims > MAX_DIMS {
            return Err(c.malformed(dims_at, format!("tensor {name:?} has {n_dims} dimensions")));
        }
        let mut shape = (0..n_dims).map(|_| c.u64()).collect::<Step<Vec<u64>>>()?;
        shape.reverse();
        let type_at = c.pos;
        let ggml_type = c.u32()?;
        let offset = c.u64()?;
        infos.push((name, shape, ggml_type, type_at, offset));
    }
    let file_len = c.file_len;
    let data_start = c.pos.next_multiple_of(alignment);
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, shape, ggml_type, type_at, offset) in infos {
        let Some(&(_, type_name, block, block_bytes)) =
            GGML_TYPES.iter().find(|(id, ..)| *id == ggml_type)
        else {
            return Err(c.malformed(
                type_at,
                format!("tensor {name:?} has unknown ggml type {ggml_type}"),
            ));
        };
        let dtype = match type_name {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "F64" => DType::F64,
            "I8" => DType::I8,
            "I16" => DType::I16,
            "I32" => DType::I32,
            "I64" => DType::I64,
            quantized => DType::Other(quantized.to_owned()),
        };
        // Blocks run along the innermost dimension, which must hold whole blocks.
        let innermost = shape.last().copied().unwrap_or(1);
        if !innermost.is_multiple_of(block) {
            return Err(c.malformed(
                type_at,
                format!("tensor {name:?}: {innermost} elements per row are not whole {type_name} blocks of {block}"),
            ));
        }
        let mut blocks_shape = shape.clone();
        if let Some(last) = blocks_shape.last_mut() {
            *last /= block;
        }
        let len = elements_times(FORMAT, &name, &dtype, &blocks_shape, block_bytes)?;
        let start = data_start.checked_add(offset);
        let end = start.and_then(|start| start.checked_add(len));
        let (Some(start), Some(end)) = (start, end.filter(|&end| end <= file_len)) else {
            return Err(Error::Truncated {
                format: FORMAT,
                what: "a tensor's data",
                end: end.unwrap_or(u64::MAX),
                file_len,
            }
            .into());
        };
        tensors.push(Tensor {
            name,
            dtype,
            shape,
            range: start..end,
        });
    }
    Ok(Layout {
        format: FORMAT,
        header_len: data_start.min(file_len),
        tensors: sorted_disjoint(FORMAT, tensors)?,
        shared: Vec::new(),
    })
}

/// Reads the header from the head, asking for more when it runs out.
struct Cursor<'h> {
    head: &'h [u8],
    pos: u64,
    file_len: u64,
}

impl<'h> Cursor<'h> {
    fn malformed(&self, offset: u64, reason: String) -> Stop {
        Stop::Broken(Error::Malformed {
            format: FORMAT,
            offset,
            reason,
        })
    }

    /// The next `n` bytes.
    fn take(&mut self, n: u64) -> Step<&'h [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.file_len);
        let Some(end) = end else {
            return Err(Error::Truncated {
                format: FORMAT,
                what: "the header",
                end: self.pos.saturating_add(n),
                file_len: self.file_len,
            }
            .into());
        };
        if end > MAX_HEADER_LEN {
            return Err(Error::TooLarge {
                format: FORMAT,
                what: "the header",
                claimed: end,
                max: MAX_HEADER_LEN,
            }
            .into());
        }
        // end <= MAX_HEADER_LEN fits in usize; `get` is None while the head is short.
        match self.head.get(self.pos as usize..end as usize) {
            Some(bytes) => {
                self.pos = end;
                Ok(bytes)
            }
            // Doubling the head each time keeps a long header linear to parse again.
            None => Err(Stop::NeedHead(
                end.max(2 * self.head.len() as u64)
                    .min(self.file_len)
                    .min(MAX_HEADER_LEN),
            )),
        }
    }

    fn array<const N: usize>(&mut self) -> Step<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn u32(&mut self) -> Step<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Step<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> Step<&'h [u8]> {
        let len = self.u64()?;
        self.take(len)
    }

    /// A value of an integer type as an unsigned number; `None` for a negative one or
    /// another type.
    fn unsigned(&mut self, value_type: u32) -> Step<Option<u64>> {
        Ok(match value_type {
            T_UINT8 => Some(u64::from(self.array::<1>()?[0])),
            T_UINT16 => Some(u64::from(u16::from_le_bytes(self.array()?))),
            T_UINT32 => Some(u64::from(self.u32()?)),
            T_UINT64 => Some(self.u64()?),
            T_INT8 => u64::try_from(i8::from_le_bytes(self.array()?)).ok(),
            T_INT16 => u64::try_from(i16::from_le_bytes(self.array()?)).ok(),
            T_INT32 => u64::try_from(i32::from_le_bytes(self.array()?)).ok(),
            T_INT64 => u64::try_from(i64::from_le_bytes(self.array()?)).ok(),
            other => {
                self.skip_value(other, 0)?;
                None
            }
        })
    }

    /// Skips one value of `value_type`, inside `depth` enclosing arrays.
    fn skip_value(&mut self, value_type: u32, depth: u32) -> Step<()> {
        let type_at = self.pos.saturating_sub(4);
        if let Some(size) = fixed_size(value_type) {
            return self.take(size).map(drop);
        }
        match value_type {
            T_STRING => self.string().map(drop),
            T_ARRAY => {
                if depth >= MAX_NESTING {
                    return Err(
                        self.malformed(type_at, format!("arrays nested deeper than {MAX_NESTING}"))
                    );
                }
                let element_type = self.u32()?;
                let count = self.u64()?;
                if let Some(size) = fixed_size(element_type) {
                    // A count too large to multiply cannot fit in the file either.
                    return self.take(count.saturating_mul(size)).map(drop);
                }
                // Each element takes at least 8 bytes, so the loop ends with the header.
                for _ in 0..count {
                    self.skip_value(element_type, depth + 1)?;
                }
                Ok(())
            }
            other => Err(self.malformed(type_at, format!("unknown metadata value type {other}"))),
        }
    }
}

/// Bytes of a value of a fixed-size type.
fn fixed_size(value_type: u32) -> Option<u64> {
    match value_type {
        T_UINT8 | T_INT8 | T_BOOL => Some(1),
        T_UINT16 | T_INT16 => Some(2),
        T_UINT32 | T_INT32 | T_FLOAT32 => Some(4),
        T_UINT64 | T_INT64 | T_FLOAT64 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Builds GGUF files.
    #[derive(Default)]
    struct Writer {
        kv: Vec<u8>,
        kv_count: u64,
        infos: Vec<u8>,
        tensor_count: u64,
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    impl Writer {
        fn kv(mut self, key: &str, value_type: u32, value: &[u8]) -> Self {
            string(&mut self.kv, key);
            self.kv.extend_from_slice(&value_type.to_le_bytes());
            self.kv.extend_from_slice(value);
            self.kv_count += 1;
            self
        }

        fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> Self {
            string(&mut self.infos, name);
            self.infos
                .extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for dim in dims {
                self.infos.extend_from_slice(&dim.to_le_bytes());
            }
            self.infos.extend_from_slice(&ggml_type.to_le_bytes());
            self.infos.extend_from_slice(&offset.to_le_bytes());
            self.tensor_count += 1;
            self
        }

        /// The file, its data start (aligned to `alignment`) and `data` after it.
        fn build(&self, alignment: usize, data: &[u8]) -> (Vec<u8>, u64) {
            let mut file = b"GGUF".to_vec();
            file.extend_from_slice(&3u32.to_le_bytes());
            file.extend_from_slice(&self.tensor_count.to_le_bytes());
            file.extend_from_slice(&self.kv_count.to_le_bytes());
            file.extend_from_slice(&self.kv);
            file.extend_from_slice(&self.infos);
            file.resize(file.len().next_multiple_of(alignment), 0);
            let start = file.len() as u64;
            file.extend_from_slice(data);
            (file, start)
        }
    }

    fn layout(file: &[u8]) -> Layout {
        match sniff(file, file.len() as u64) {
            Ok(Sniff::Model(layout)) => layout,
            other => panic!("expected a model, got {other:?}"),
        }
    }

    fn sample() -> Writer {
        let mut vocab = T_STRING.to_le_bytes().to_vec();
        vocab.extend_from_slice(&2u64.to_le_bytes());
        string(&mut vocab, "a");
        string(&mut vocab, "bc");
        let mut nested = T_ARRAY.to_le_bytes().to_vec();
        nested.extend_from_slice(&1u64.to_le_bytes());
        nested.extend_from_slice(&T_UINT16.to_le_bytes());
        nested.extend_from_slice(&3u64.to_le_bytes());
        nested.extend_from_slice(&[0; 6]);
        let mut name = Vec::new();
        string(&mut name, "tiny");
        Writer::default()
            .kv("general.name", T_STRING, &name)
            .kv("vocab", T_ARRAY, &vocab)
            .kv("nested", T_ARRAY, &nested)
            .kv("f", T_FLOAT64, &1.5f64.to_le_bytes())
            .kv("b", T_BOOL, &[1])
            .tensor("w", &[64, 2], 8, 0)
            .tensor("h", &[3, 2], 1, 160)
            .tensor("n", &[1], 27, 192)
    }

    #[test]
    fn tensors_are_placed_after_the_aligned_metadata() {
        let (file, start) = sample().build(32, &[0; 200]);
        let layout = layout(&file);
        assert_eq!(layout.header_len, start);
        let got: Vec<_> = layout
            .tensors
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.dtype.clone(),
                    t.shape.clone(),
                    t.range.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                // Two rows of 64 Q8_0 elements: 2 blocks of 34 bytes each.
                (
                    "w",
                    DType::Other("Q8_0".into()),
                    vec![2, 64],
                    start..start + 136
                ),
                ("h", DType::F16, vec![2, 3], start + 160..start + 172),
                ("n", DType::I64, vec![1], start + 192..start + 200),
            ]
        );
    }

    #[test]
    fn alignment_comes_from_the_metadata() {
        let writer = Writer::default()
            .kv("general.alignment", T_UINT32, &64u32.to_le_bytes())
            .tensor("t", &[4], 0, 64);
        let (file, start) = writer.build(64, &[0; 80]);
        assert_eq!(start % 64, 0);
        assert_eq!(layout(&file).tensors[0].range, start + 64..start + 80);
        let bad = Writer::default().kv("general.alignment", T_UINT32, &24u32.to_le_bytes());
        let (file, _) = bad.build(8, b"");
        let err = sniff(&file, file.len() as u64).unwrap_err();
        assert!(err.to_string().contains("power of two"), "{err}");
    }

    #[test]
    fn short_heads_ask_for_more_and_get_the_same_layout() {
        let (file, _) = sample().build(32, &[0; 200]);
        let len = file.len() as u64;
        let whole = layout(&file);
        let mut head = 0;
        let mut asks = 0;
        loop {
            match sniff(&file[..head], len).unwrap() {
                Sniff::NeedHead(n) => {
                    assert!(n > head as u64 && n <= len, "{n} after {head}");
                    head = n as usize;
                    asks += 1;
                }
                Sniff::Model(layout) => break assert_eq!(layout, whole),
                Sniff::NotAModel => panic!("not a model with {head} bytes"),
            }
        }
        assert!(asks >= 2, "{asks}");
        assert_eq!(sniff(b"GGU", 100).unwrap(), Sniff::NeedHead(24));
        assert_eq!(sniff(b"GGML", 100).unwrap(), Sniff::NotAModel);
    }

    #[test]
    fn broken_files_are_errors_that_say_where() {
        let (file, start) = sample().build(32, &[0; 200]);
        let cut = &file[..file.len() - 1];
        assert!(matches!(
            sniff(cut, cut.len() as u64),
            Err(Error::Truncated { .. })
        ));
        let mut v1 = file.clone();
        v1[4] = 1;
        let err = sniff(&v1, v1.len() as u64).unwrap_err();
        assert!(matches!(err, Error::Malformed { offset: 4, .. }), "{err}");
        let unknown = Writer::default()
            .tensor("q", &[32], 4, 0)
            .build(32, &[0; 32])
            .0;
        let err = sniff(&unknown, unknown.len() as u64).unwrap_err();
        assert!(err.to_string().contains("unknown ggml type 4"), "{err}");
        let ragged = Writer::default()
            .tensor("q", &[33], 8, 0)
            .build(32, &[0; 68])
            .0;
        let err = sniff(&ragged, ragged.len() as u64).unwrap_err();
        assert!(err.to_string().contains("whole Q8_0 blocks"), "{err}");
        let overlap = Writer::default()
            .tensor("a", &[8], 0, 0)
            .tensor("b", &[8], 0, 16)
            .build(32, &[0; 64])
            .0;
        let err = sniff(&overlap, overlap.len() as u64).unwrap_err();
        assert!(
            matches!(&err, Error::Overlap { first, second, .. } if first == "a" && second == "b"),
            "{err}"
        );
        assert!(err.to_string().starts_with("GGUF tensors"), "{err}");
        let huge = Writer::default()
            .kv("k", T_STRING, &u64::MAX.to_le_bytes())
            .build(8, b"")
            .0;
        assert!(matches!(
            sniff(&huge, huge.len() as u64),
            Err(Error::Truncated { .. })
        ));
        let far = Writer::default()
            .tensor("a", &[1], 0, u64::MAX - 2)
            .build(32, b"")
            .0;
        assert!(matches!(
            sniff(&far, far.len() as u64),
            Err(Error::Truncated { end: u64::MAX, .. })
        ));
        assert_eq!(start % 32, 0);
    }

    #[test]
    fn every_type_in_the_table_has_exact_sizes() {
        for (id, name, block, bytes) in GGML_TYPES {
            let (file, start) = Writer::default()
                .tensor("t", &[block * 2, 3], id, 0)
                .build(32, &vec![0; (bytes * 6) as usize]);
            let tensor = &layout(&file).tensors[0];
            assert_eq!(tensor.range, start..start + bytes * 6, "{name}");
            assert_eq!(tensor.dtype.to_string(), name, "{name}");
        }
    }

    proptest! {
        #[test]
        fn damaged_files_never_panic(
            cut in 0usize..400,
            flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..4),
        ) {
            let (mut file, _) = sample().build(32, &[0; 200]);
            for (at, byte) in flips {
                let at = at % file.len();
                file[at] ^= byte;
            }
            file.truncate(cut.min(file.len()));
            let len = file.len() as u64;
            match sniff(&file, len) {
                Ok(Sniff::Model(layout)) => {
                    let mut end = layout.header_len;
                    for tensor in &layout.tensors {
                        prop_assert!(end <= tensor.range.start);
                        prop_assert!(tensor.range.start <= tensor.range.end && tensor.range.end <= len);
                        end = tensor.range.end;
                    }
                }
                Ok(Sniff::NeedHead(n)) => prop_assert!(n > len),
                _ => {}
            }
        }
    }
}
