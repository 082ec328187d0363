//! NumPy `.npy`: the magic `\x93NUMPY`, a major and a minor version byte, the header length
//! (2 bytes little-endian in version 1, 4 bytes in versions 2 and 3), then the header, a
//! Python dict literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`
//! padded with spaces and a newline, then the array's bytes in C order.
//! Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.
//!
//! The one array is a tensor with an empty name. Little-endian and single-byte numeric
//! types map to [`DType`]; any other `descr` whose element size is known (big-endian, native
//! `=`, complex, strings, datetimes) becomes [`DType::Other`] with the `descr` as its name,
//! so that a reader never takes big-endian bytes for little-endian ones. Arrays in Fortran
//! order and arrays whose element size cannot be told from the header (object arrays,
//! structured dtypes) are left out: the layout then has no tensors.

use crate::source::Budgeted;
use crate::zip::{STORED, Zip};
use crate::{
    DType, Error, Layout, MAX_HEADER_LEN, ModelFormat, Result, Sniff, Tensor, elements_times,
    sorted_disjoint,
};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
const FORMAT: ModelFormat = ModelFormat::Npy;

/// See [`crate::sniff`]; `head.len() <= file_len` has been checked.
pub(crate) fn sniff(head: &[u8], file_len: u64) -> Result<Sniff> {
    // Magic, version and the shorter length field.
    const FIXED: u64 = 10;
    let opening = &head[..head.len().min(MAGIC.len())];
    if file_len < FIXED || !MAGIC.starts_with(opening) {
        return Ok(Sniff::NotAModel);
    }
    let Some(fixed) = head.first_chunk::<10>() else {
        return Ok(Sniff::NeedHead(FIXED));
    };
    let (header_start, header_len) = match fixed[6] {
        1 => (FIXED, u64::from(u16::from_le_bytes([fixed[8], fixed[9]]))),
        2 | 3 => {
            let Some(field) = head.get(8..12) else {
                return Ok(Sniff::NeedHead(12.min(file_len)));
            };
            let mut len = [0; 4];
            len.copy_from_slice(field);
            (12, u64::from(u32::from_le_bytes(len)))
        }
        major => {
            return Err(Error::Malformed {
                format: FORMAT,
                offset: 6,
                reason: format!("unsupported version {major}.{}", fixed[7]),
            });
        }
    };
    if header_len > MAX_HEADER_LEN {
        return Err(Error::TooLarge {
            format: FORMAT,
            what: "the header length",
            claimed: header_len,
            max: MAX_HEADER_LEN,
        });
    }
    let data_start = header_start + header_len;
    if data_start > file_len {
        return Err(Error::Truncated {
            format: FORMAT,
            what: "the header",
            end: data_start,
            file_len,
        });
    }
    // data_start <= 12 + MAX_HEADER_LEN fits in usize.
    let Some(header) = head.get(header_start as usize..data_start as usize) else {
        return Ok(Sniff::NeedHead(data_start));
    };
    let header = Header::parse(header, header_start)?;
    let mut tensors = Vec::new();
    if let (false, Some((dtype, size))) = (header.fortran_order, header.dtype()) {
        let len = elements_times(FORMAT, "", &dtype, &header.shape, size)?;
        let end = data_start.checked_add(len).filter(|&end| end <= file_len);
        let Some(end) = end else {
            return Err(Error::Truncated {
                format: FORMAT,
                what: "the array",
                end: data_start.saturating_add(len),
                file_len,
            });
        };
        tensors.push(Tensor {
            name: String::new(),
            dtype,
            shape: header.shape,
            range: data_start..end,
        });
    }
    Ok(Sniff::Model(Layout {
        format: FORMAT,
        header_len: data_start,
        tensors,
        shared: Vec::new(),
    }))
}

/// The layout of an npz: each stored `.npy` member's array, named by the member's name
/// without `.npy`, placed where its bytes lie in the zip. Compressed members (`savez_compressed`)
/// are left out: their bytes are not the array's.
pub(crate) fn npz_layout(zip: &Zip, source: &Budgeted<'_>) -> Result<Layout> {
    const FIRST_HEAD: u64 = 4 << 10;
    let mut tensors = Vec::new();
    let mut header_len = None;
    for entry in &zip.entries {
        let Some(name) = entry.name.strip_suffix(".npy") else {
            continue;
        };
        if entry.method != STORED || entry.encrypted {
            continue;
        }
        let range = zip.data_range(source, entry)?;
        let len = range.end - range.start;
        let member_error =
            |reason: String| zip.error(range.start, format!("member {:?}: {reason}", entry.name));
        let mut head = source.read(range.start..range.start + FIRST_HEAD.min(len))?;
        let layout = loop {
            match sniff(&head, len).map_err(|err| member_error(err.to_string()))? {
                Sniff::Model(layout) => break layout,
                Sniff::NeedHead(n) if n > head.len() as u64 && n <= len => {
                    let have = range.start + head.len() as u64;
                    head.extend_from_slice(&source.read(have..range.start + n)?);
                }
                _ => return Err(member_error("not an npy array".into())),
            }
        };
        let data_start = range.start + layout.header_len;
        header_len = Some(header_len.map_or(data_start, |h: u64| h.min(data_start)));
        tensors.extend(layout.tensors.into_iter().map(|t| Tensor {
            name: name.to_owned(),
            range: range.start + t.range.start..range.start + t.range.end,
            ..t
        }));
    }
    Ok(Layout {
        format: ModelFormat::Npz,
        header_len: header_len.unwrap_or(0),
        tensors: sorted_disjoint(ModelFormat::Npz, tensors)?,
        shared: Vec::new(),
    })
}

/// The three keys of the header dict.
struct Header {
    /// `None` for a structured dtype (a list).
    descr: Option<String>,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// A Python literal as the header writes them.
enum Literal {
    Str(String),
    Bool(bool),
    Ints(Vec<u64>),
    /// A list (a structured dtype), skipped.
    List,
}

impl Header {
    /// Parses the dict literal `text`, which starts at byte `at` of the file.
    fn parse(text: &[u8], at: u64) -> Result<Header> {
        let mut p = LiteralParser { text, pos: 0, at };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        p.expect(b'{')?;
        loop {
            p.skip_space();
            if p.eat(b'}') {
                break;
            }
            let key_at = p.pos;
            let Literal::Str(key) = p.literal()? else {
                return Err(p.error(key_at, "a dict key that is not a string".into()));
            };
            p.skip_space();
            p.expect(b':')?;
            p.skip_space();
            let value_at = p.pos;
            let value = p.literal()?;
            match (key.as_str(), value) {
                ("descr", Literal::Str(s)) => descr = Some(Some(s)),
                ("descr", Literal::List) => descr = Some(None),
                ("fortran_order", Literal::Bool(b)) => fortran_order = Some(b),
                ("shape", Literal::Ints(dims)) => shape = Some(dims),
                ("descr" | "fortran_order" | "shape", _) => {
                    return Err(p.error(value_at, format!("{key:?} has a value of the wrong type")));
                }
                _ => {}
            }
            p.skip_space();
            if !p.eat(b',') {
                p.skip_space();
                p.expect(b'}')?;
                break;
            }
        }
        match (descr, fortran_order, shape) {
            (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header {
                descr,
                fortran_order,
                shape,
            }),
            _ => Err(p.error(
                0,
                "the header lacks 'descr', 'fortran_order' or 'shape'".into(),
            )),
        }
    }

    /// The element type and size in bytes, when the header tells them.
    fn dtype(&self) -> Option<(DType, u64)> {
        let descr = self.descr.as_deref()?;
        let mut chars = descr.chars();
        let order = chars.next()?;
        let kind = chars.next()?;
        let rest = chars.as_str();
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, unit) = rest.split_at(digits_end);
        let n: u64 = digits.parse().ok()?;
        let size = match (kind, unit) {
            ('b' | 'i' | 'u' | 'f' | 'c' | 'S' | 'a' | 'V', "") => n,
            ('U', "") => n.checked_mul(4)?,
            ('M' | 'm', _) if n == 8 && (unit.is_empty() || unit.starts_with('[')) => 8,
            _ => return None,
        };
        let known = match (kind, n) {
            ('b', 1) => Some(DType::Bool),
            ('u', 1) => Some(DType::U8),
            ('i', 1) => Some(DType::I8),
            ('i', 2) => Some(DType::I16),
            ('u', 2) => Some(DType::U16),
            ('i', 4) => Some(DType::I32),
            ('u', 4) => Some(DType::U32),
            ('i', 8) => Some(DType::I64),
            ('u', 8) => Some(DType::U64),
            ('f', 2) => Some(DType::F16),
            ('f', 4) => Some(DType::F32),
            ('f', 8) => Some(DType::F64),
            _ => None,
        };
        let little = order == '<' || (order == '|' && size == 1);
        let dtype = match known {
            Some(dtype) if little && unit.is_empty() => dtype,
            _ => DType::Other(descr.to_owned()),
        };
        Some((dtype, size))
    }
}

/// A cursor over the header text.
struct LiteralParser<'t> {
    text: &'t [u8],
    pos: usize,
    /// Where the text starts in the file.
    at: u64,
}

impl LiteralParser<'_> {
    fn error(&self, pos: usize, reason: String) -> Error {
        Error::Malformed {
            format: FORMAT,
            offset: self.at + pos as u64,
            reason: format!("header: {reason}"),
        }
    }

    fn skip_space(&mut self) {
        while self.text.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.text.get(self.pos) == Some(&byte);
        self.pos += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(self.pos, format!("expected {:?}", char::from(byte))))
        }
    }

    fn literal(&mut self) -> Result<Literal> {
        let start = self.pos;
        match self.text.get(self.pos) {
            Some(&quote @ (b'\'' | b'"')) => {
                self.pos += 1;
                let len = self.text[self.pos..]
                    .iter()
                    .position(|&b| b == quote || b == b'\\')
                    .filter(|&len| self.text[self.pos + len] == quote)
                    .ok_or_else(|| self.error(start, "an unterminated or escaped string".into()))?;
                let s = String::from_utf8_lossy(&self.text[self.pos..self.pos + len]).into_owned();
                self.pos += len + 1;
                Ok(Literal::Str(s))
            }
            Some(b'(') => {
                self.pos += 1;
                let mut dims = Vec::new();
                loop {
                    self.skip_space();
                    if self.eat(b')') {
                        return Ok(Literal::Ints(dims));
                    }
                    dims.push(self.int()?);
                    self.skip_space();
                    if !self.eat(b',') {
                        self.expect(b')')?;
                        return Ok(Literal::Ints(dims));
                    }
                }
            }
            Some(b'[') => self.skip_list().map(|()| Literal::List),
            _ if self.text[self.pos..].starts_with(b"True") => {
                self.pos += 4;
                Ok(Literal::Bool(true))
            }
            _ if self.text[self.pos..].starts_with(b"False") => {
                self.pos += 5;
                Ok(Literal::Bool(false))
            }
            _ => Err(self.error(
                start,
                "a value that is not a string, tuple, list or bool".into(),
            )),
        }
    }

    /// A non-negative integer, with the `L` suffix of Python 2 allowed.
    fn int(&mut self) -> Result<u64> {
        let start = self.pos;
        let digits = self.text[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let value = std::str::from_utf8(&self.text[start..start + digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.error(start, "a dimension that is not a 64-bit integer".into()))?;
        self.pos += digits;
        self.eat(b'L');
        Ok(value)
    }

    /// Skips a bracketed list, strings inside it included.
    fn skip_list(&mut self) -> Result<()> {
        let start = self.pos;
        let mut depth = 0usize;
        let mut quote = None;
        while let Some(&b) = self.text.get(self.pos) {
            self.pos += 1;
            match (quote, b) {
                (Some(q), _) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'\'' | b'"') => quote = Some(b),
                (None, b'[' | b'(') => depth += 1,
                (None, b']' | b')') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (None, _) => {}
            }
        }
        Err(self.error(start, "an unterminated list".into()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A version-1 file with `dict` as its header and `data` after it.
    fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.as_bytes().to_vec();
        // Padded as numpy pads: to a multiple of 64 with spaces, then a newline.
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&[1, 0]);
        file.extend_from_slice(&(header.len() as u16).to_le_bytes());
        file.extend_from_slice(&header);
        file.extend_from_slice(data);
        file
    }

    fn layout(file: &[u8]) -> Layout {
        match sniff(file, file.len() as u64) {
            Ok(Sniff::Model(layout)) => layout,
            other => panic!("expected a model, got {other:?}"),
        }
    }

    #[test]
    fn one_array_is_one_unnamed_tensor() {
        let file = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &[0; 24],
        );
        let layout = layout(&file);
        assert_eq!(layout.header_len, 128);
        assert_eq!(
            layout.tensors,
            [Tensor {
                name: String::new(),
                dtype: DType::F32,
                shape: vec![2, 3],
                range: 128..152,
            }]
        );
    }

    #[test]
    fn descrs_map_to_dtypes_or_to_other_with_their_size() {
        for (descr, dtype, size) in [
            ("|u1", DType::U8, 1),
            ("|b1", DType::Bool, 1),
            ("|i1", DType::I8, 1),
            ("<f2", DType::F16, 2),
            ("<f8", DType::F64, 8),
            ("<i8", DType::I64, 8),
            ("<u4", DType::U32, 4),
            (">f4", DType::Other(">f4".into()), 4),
            ("<c8", DType::Other("<c8".into()), 8),
            ("<U3", DType::Other("<U3".into()), 12),
            ("<M8[ns]", DType::Other("<M8[ns]".into()), 8),
        ] {
            let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (3,), }}");
            let file = npy(&dict, &vec![0; 3 * size]);
            let tensor = &layout(&file).tensors[0];
            assert_eq!(tensor.dtype, dtype, "{descr}");
            assert_eq!(
                tensor.range.end - tensor.range.start,
                3 * size as u64,
                "{descr}"
            );
        }
    }

    #[test]
    fn scalars_versions_2_and_3_and_python_2_longs() {
        let file = npy(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
            &[0; 8],
        );
        assert_eq!(layout(&file).tensors[0].shape, Vec::<u64>::new());
        let file = npy(
            "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 1L)}",
            &[0; 8],
        );
        assert_eq!(layout(&file).tensors[0].shape, [2, 1]);
        for major in [2, 3] {
            let dict = b"{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }\n";
            let mut file = MAGIC.to_vec();
            file.extend_from_slice(&[major, 0]);
            file.extend_from_slice(&(dict.len() as u32).to_le_bytes());
            file.extend_from_slice(dict);
            file.extend_from_slice(&[9; 4]);
            let start = 12 + dict.len() as u64;
            assert_eq!(layout(&file).tensors[0].range, start..start + 4);
        }
    }

    #[test]
    fn fortran_order_object_and_structured_arrays_are_left_out() {
        for dict in [
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
            "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
            "{'descr': [('a', '<f4'), ('b', '<i2')], 'fortran_order': False, 'shape': (2,), }",
        ] {
            let layout = layout(&npy(dict, &[0; 24]));
            assert!(layout.tensors.is_empty(), "{dict}");
            assert_eq!(layout.header_len % 64, 0);
        }
    }

    #[test]
    fn short_heads_ask_for_the_header() {
        let file = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &[0; 8],
        );
        let len = file.len() as u64;
        assert_eq!(sniff(&file[..3], len).unwrap(), Sniff::NeedHead(10));
        assert_eq!(sniff(&file[..10], len).unwrap(), Sniff::NeedHead(128));
        assert_eq!(
            sniff(&file[..128], len).unwrap(),
            Sniff::Model(layout(&file))
        );
        assert_eq!(sniff(b"\x93NUMPZ\x01\x00ab", 10).unwrap(), Sniff::NotAModel);
    }

    #[test]
    fn broken_files_are_errors_that_say_where() {
        let full = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &[0; 24],
        );
        let short = &full[..full.len() - 1];
        let err = sniff(short, short.len() as u64).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated {
                    end: 152,
                    file_len: 151,
                    ..
                }
            ),
            "{err}"
        );
        for (dict, offset) in [
            ("{'descr': '<f4', 'shape': (2, 3), }", 10),
            ("{'descr': 4, 'fortran_order': False, 'shape': (2,), }", 20),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
                61,
            ),
            ("{'descr': '<f4 ", 20),
        ] {
            let file = npy(dict, &[0; 8]);
            let err = sniff(&file, file.len() as u64).unwrap_err();
            assert!(
                matches!(err, Error::Malformed { offset: o, .. } if o == offset),
                "{dict}: {err}"
            );
        }
        let mut version_9 = full.clone();
        version_9[6] = 9;
        let err = sniff(&version_9, full.len() as u64).unwrap_err();
        assert!(err.to_string().contains("version 9.0"), "{err}");
        let overflow = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
            b"",
        );
        let err = sniff(&overflow, overflow.len() as u64).unwrap_err();
        assert!(matches!(err, Error::ShapeOverflow { .. }), "{err}");
    }

    proptest! {
        #[test]
        fn damaged_files_never_panic(
            cut in 0usize..200,
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..4),
        ) {
            let mut file = npy("{'descr': '<f2', 'fortran_order': False, 'shape': (3, 4), }", &[1; 24]);
            for (at, byte) in flips {
                let at = at % file.len();
                file[at] ^= byte;
            }
            file.truncate(cut.min(file.len()));
            let len = file.len() as u64;
            if let Ok(Sniff::Model(layout)) = sniff(&file, len) {
                for tensor in &layout.tensors {
                    prop_assert!(layout.header_len <= tensor.range.start);
                    prop_assert!(tensor.range.start <= tensor.range.end && tensor.range.end <= len);
                }
            }
        }
    }
}
