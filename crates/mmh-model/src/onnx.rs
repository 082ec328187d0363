//! ONNX: one serialized protobuf `ModelProto`, whose `graph` (field 7, a `GraphProto`)
//! holds the weights as `initializer`s (field 5, repeated `TensorProto`). In a
//! `TensorProto`: `dims` (field 1, int64, packed or not, outermost first), `data_type`
//! (field 2), `name` (field 8), `raw_data` (field 9: the little-endian tensor bytes, whose
//! range in the file is what is placed here) and `data_location` (field 14; 1 = EXTERNAL).
//! Format: <https://github.com/onnx/onnx/blob/main/onnx/onnx.proto>; protobuf wire format:
//! <https://protobuf.dev/programming-guides/encoding/>.
//!
//! The walk reads field headers and the small fields (dims, name) only, and steps over
//! `raw_data`, nodes and every other length-delimited field without reading it, so a model
//! costs reads in proportion to its number of fields, not its size: where the next field
//! is not in the bytes last read, one read of [`READ_AHEAD`] bytes (which usually holds
//! the fields after it too). It walks at most [`MAX_FIELDS`] fields and three levels
//! (model, graph, tensor).
//!
//! Left out (their bytes stay plain bytes): initializers whose data is in typed repeated
//! fields (`float_data`, `int64_data`, …) rather than `raw_data`, initializers stored in an
//! external file (`data_location` EXTERNAL), segmented initializers (`segment`), sparse
//! initializers, and initializers of subgraphs (the bodies of `If` and `Loop` nodes, inside
//! the node attributes, which are not walked).
//!
//! There is no magic number: a file is ONNX when it opens with `ir_version` (field 1, a
//! varint of at most [`MAX_IR_VERSION`], which protobuf writers put first), its top level
//! reads as protobuf fields to exactly the end of the file, and it has a `graph`. Anything
//! else, a truncated ONNX file included, is not a model; a file that passes but whose graph
//! or initializers break the rules is an error. An initializer whose `raw_data` length is
//! not its shape's element count times the element size is an error too: ONNX runtimes
//! reject such a model.

use std::ops::Range;

use crate::source::Budgeted;
use crate::{DType, Error, Layout, ModelFormat, Result, Tensor, byte_len, sorted_disjoint};

const FORMAT: ModelFormat = ModelFormat::Onnx;
/// The most protobuf fields one file's walk reads, over all levels.
const MAX_FIELDS: u64 = 1_000_000;
/// The largest `ir_version` taken for ONNX (IR version 11 is current in 2025).
const MAX_IR_VERSION: u64 = 64;
/// The most dimensions an initializer may have.
const MAX_DIMS: usize = 64;
/// The longest packed `dims` field: [`MAX_DIMS`] varints of at most 10 bytes.
const MAX_DIMS_BYTES: u64 = 10 * MAX_DIMS as u64;
/// The longest initializer name.
const MAX_NAME: u64 = 64 << 10;
/// A field key and a varint value (or a length) take at most this many bytes.
const MAX_FIELD_HEAD: u64 = 20;
/// Bytes read at once when a field is not in the bytes last read: a graph's nodes and an
/// initializer's small fields lie side by side, so one read serves many fields.
const READ_AHEAD: u64 = 4 << 10;

/// `ModelProto.ir_version`, `ModelProto.graph`, `GraphProto.initializer`.
const IR_VERSION: u64 = 1;
const GRAPH: u64 = 7;
const INITIALIZER: u64 = 5;
/// `TensorProto` fields.
const DIMS: u64 = 1;
const DATA_TYPE: u64 = 2;
const SEGMENT: u64 = 3;
const NAME: u64 = 8;
const RAW_DATA: u64 = 9;
const DATA_LOCATION: u64 = 14;
/// `float_data`, `int32_data`, `string_data`, `int64_data`, `double_data`, `uint64_data`.
const TYPED_DATA: [u64; 6] = [4, 5, 6, 7, 10, 11];
/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: u64 = 1;

/// A field's value, as the wire gives it.
#[derive(Debug)]
enum Value {
    /// Wire type 0.
    Varint(u64),
    /// Wire types 1 and 5 (64 and 32 bits), never needed here.
    Fixed,
    /// Wire type 2: the absolute range of the bytes, not read.
    Bytes(Range<u64>),
}

/// One field of a message.
#[derive(Debug)]
struct Field {
    number: u64,
    /// Where the field's key is.
    at: u64,
    value: Value,
}

/// The file, read within the [`Budgeted`] source's budget and [`MAX_FIELDS`].
struct Wire<'a, 's> {
    source: &'a Budgeted<'s>,
    /// The leading bytes already read, served without reading them again.
    head: &'a [u8],
    /// The last bytes read from the source, and where they start.
    block: Vec<u8>,
    block_at: u64,
    fields_left: u64,
}

/// The bytes `range` of `bytes`, which start at byte `at` of the file, if they hold them.
fn within(bytes: &[u8], at: u64, range: &Range<u64>) -> Option<Vec<u8>> {
    let start = usize::try_from(range.start.checked_sub(at)?).ok()?;
    let end = usize::try_from(range.end.checked_sub(at)?).ok()?;
    bytes.get(start..end).map(<[u8]>::to_vec)
}

impl Wire<'_, '_> {
    /// The bytes `range` (inside the file), from the head, the last block, or a new block
    /// of at least [`READ_AHEAD`] bytes: the fields that follow are usually in it.
    fn read(&mut self, range: Range<u64>) -> Result<Vec<u8>> {
        if let Some(bytes) =
            within(self.head, 0, &range).or_else(|| within(&self.block, self.block_at, &range))
        {
            return Ok(bytes);
        }
        let ahead = range
            .start
            .saturating_add(READ_AHEAD)
            .min(self.source.size());
        let block_end = range.end.max(ahead);
        self.block = self.source.read(range.start..block_end)?;
        self.block_at = range.start;
        within(&self.block, self.block_at, &range).ok_or_else(|| Error::Read {
            range,
            source: std::io::ErrorKind::UnexpectedEof.into(),
        })
    }

    /// The bytes of a small length-delimited field, at most `max` of them.
    fn small(&mut self, range: Range<u64>, max: u64, what: &'static str) -> Result<Vec<u8>> {
        let claimed = range.end - range.start;
        if claimed > max {
            return Err(Error::TooLarge {
                format: FORMAT,
                what,
                claimed,
                max,
            });
        }
        self.read(range)
    }

    /// The next field of the message that ends at `end`, read from `*at`, which moves past
    /// it; `None` at the end of the message.
    fn next(&mut self, at: &mut u64, end: u64) -> Result<Option<Field>> {
        if *at >= end {
            return Ok(None);
        }
        if self.fields_left == 0 {
            return Err(Error::TooLarge {
                format: FORMAT,
                what: "the number of protobuf fields",
                claimed: MAX_FIELDS + 1,
                max: MAX_FIELDS,
            });
        }
        self.fields_left -= 1;
        let start = *at;
        let window = self.read(start..end.min(start.saturating_add(MAX_FIELD_HEAD)))?;
        let past_end = |what: &str, field_end: Option<u64>| {
            let size = self.source.size();
            match field_end {
                Some(field_end) if end == size => Error::Truncated {
                    format: FORMAT,
                    what: "a protobuf field",
                    end: field_end,
                    file_len: size,
                },
                _ => malformed(
                    start,
                    format!("{what} would run past the end of its message at byte {end}"),
                ),
            }
        };
        // A varint that does not end in `bytes`: cut by the message's end, or too long.
        let broken = |what: &str, bytes: &[u8]| {
            if bytes.len() < 10 {
                past_end(what, None)
            } else {
                malformed(start, format!("{what} is not a varint of at most 10 bytes"))
            }
        };
        let (key, key_len) = varint(&window).ok_or_else(|| broken("a field key", &window))?;
        let (number, wire_type) = (key >> 3, key & 7);
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(malformed(start, format!("field number {number}")));
        }
        let rest = &window[key_len..];
        let fixed = |len: u64| match start.checked_add(key_len as u64 + len) {
            Some(field_end) if field_end <= end => Ok((Value::Fixed, field_end)),
            field_end => Err(past_end("a fixed-size field", field_end)),
        };
        let (value, field_end) = match wire_type {
            0 => {
                let (value, len) = varint(rest).ok_or_else(|| broken("a field value", rest))?;
                (Value::Varint(value), start + (key_len + len) as u64)
            }
            1 => fixed(8)?,
            5 => fixed(4)?,
            2 => {
                let (len, len_len) = varint(rest).ok_or_else(|| broken("a length", rest))?;
                let data = start + (key_len + len_len) as u64;
                let data_end = data.checked_add(len).filter(|&e| e <= end);
                let Some(data_end) = data_end else {
                    return Err(past_end(
                        &format!("field {number}'s {len} bytes"),
                        data.checked_add(len),
                    ));
                };
                (Value::Bytes(data..data_end), data_end)
            }
            other => {
                return Err(malformed(
                    start,
                    format!(
                        "field {number} has wire type {other} (a group, or no wire type at all)"
                    ),
                ));
            }
        };
        *at = field_end;
        Ok(Some(Field {
            number,
            at: start,
            value,
        }))
    }
}

fn malformed(offset: u64, reason: String) -> Error {
    Error::Malformed {
        format: FORMAT,
        offset,
        reason,
    }
}

/// A protobuf varint at the start of `bytes` and its length; `None` when it does not end
/// within `bytes` or within 10 bytes, or does not fit in 64 bits.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().take(10).enumerate() {
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The layout of an ONNX model; `None` for any other file. `head` is the file's first
/// bytes, already read.
pub(crate) fn layout(head: &[u8], source: &Budgeted<'_>) -> Result<Option<Layout>> {
    let mut wire = Wire {
        source,
        head,
        block: Vec::new(),
        block_at: 0,
        fields_left: MAX_FIELDS,
    };
    let Some(graphs) = graphs(&mut wire)? else {
        return Ok(None);
    };
    let mut tensors = Vec::new();
    for graph in graphs {
        let mut at = graph.start;
        while let Some(field) = wire.next(&mut at, graph.end)? {
            if field.number != INITIALIZER {
                continue;
            }
            let Value::Bytes(message) = field.value else {
                return Err(malformed(
                    field.at,
                    "an initializer that is not a message".into(),
                ));
            };
            if let Some(tensor) = initializer(&mut wire, message)? {
                tensors.push(tensor);
            }
        }
    }
    let tensors = sorted_disjoint(FORMAT, tensors)?;
    let header_len = tensors.first().map_or(source.size(), |t| t.range.start);
    Ok(Some(Layout {
        format: FORMAT,
        header_len,
        tensors,
        shared: Vec::new(),
    }))
}

/// The ranges of the `graph` fields, when the file is a plausible `ModelProto`; `None`
/// otherwise.
fn graphs(wire: &mut Wire<'_, '_>) -> Result<Option<Vec<Range<u64>>>> {
    let size = wire.source.size();
    let mut at = 0;
    let mut graphs = Vec::new();
    let mut first = true;
    loop {
        let field = match wire.next(&mut at, size) {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(Error::Malformed { .. } | Error::Truncated { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        match (first, field.number, field.value) {
            (true, IR_VERSION, Value::Varint(1..=MAX_IR_VERSION)) => {}
            (true, ..) => return Ok(None),
            (false, GRAPH, Value::Bytes(graph)) => graphs.push(graph),
            (false, GRAPH, _) => return Ok(None),
            _ => {}
        }
        first = false;
    }
    Ok((!graphs.is_empty()).then_some(graphs))
}

/// One initializer, `None` when it is left out (see the module documentation).
fn initializer(wire: &mut Wire<'_, '_>, message: Range<u64>) -> Result<Option<Tensor>> {
    let tensor_at = message.start;
    let wrong_type = |field: &Field, what: &str| {
        malformed(
            field.at,
            format!(
                "initializer field {} ({what}) of the wrong wire type",
                field.number
            ),
        )
    };
    let (mut dims, mut data_type, mut name, mut raw) = (Vec::new(), 0, String::new(), None);
    let mut at = message.start;
    while let Some(field) = wire.next(&mut at, message.end)? {
        match (field.number, &field.value) {
            (DIMS, Value::Varint(dim)) => push_dim(&mut dims, *dim, field.at)?,
            (DIMS, Value::Bytes(packed)) => {
                let bytes = wire.small(packed.clone(), MAX_DIMS_BYTES, "a packed dims field")?;
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let (dim, len) = varint(rest)
                        .ok_or_else(|| malformed(field.at, "a broken packed dims field".into()))?;
                    push_dim(&mut dims, dim, field.at)?;
                    rest = &rest[len..];
                }
            }
            (DIMS, _) => return Err(wrong_type(&field, "dims")),
            (DATA_TYPE, Value::Varint(code)) => data_type = *code,
            (DATA_TYPE, _) => return Err(wrong_type(&field, "data_type")),
            (NAME, Value::Bytes(range)) => {
                let bytes = wire.small(range.clone(), MAX_NAME, "an initializer name")?;
                name = String::from_utf8(bytes).map_err(|_| {
                    malformed(field.at, "an initializer name that is not UTF-8".into())
                })?;
            }
            (NAME, _) => return Err(wrong_type(&field, "name")),
            (RAW_DATA, Value::Bytes(range)) => raw = Some(range.clone()),
            (RAW_DATA, _) => return Err(wrong_type(&field, "raw_data")),
            (DATA_LOCATION, Value::Varint(EXTERNAL)) => return Ok(None),
            (SEGMENT, _) => return Ok(None),
            (number, _) if TYPED_DATA.contains(&number) => return Ok(None),
            _ => {}
        }
    }
    let Some(range) = raw else {
        return Ok(None);
    };
    let dtype = dtype_of(data_type);
    if let Some(expected) = byte_len(FORMAT, &name, &dtype, &dims)? {
        let actual = range.end - range.start;
        if expected != actual {
            return Err(malformed(
                tensor_at,
                format!(
                    "initializer {name:?}: {dtype} {dims:?} needs {expected} bytes, \
                     its raw_data holds {actual}"
                ),
            ));
        }
    }
    Ok(Some(Tensor {
        name,
        dtype,
        shape: dims,
        range,
    }))
}

/// Appends one dimension (an int64 on the wire: negative ones are errors).
fn push_dim(dims: &mut Vec<u64>, dim: u64, at: u64) -> Result<()> {
    if dim > i64::MAX as u64 {
        return Err(malformed(at, format!("negative dimension {}", dim as i64)));
    }
    if dims.len() == MAX_DIMS {
        return Err(Error::TooLarge {
            format: FORMAT,
            what: "an initializer's number of dimensions",
            claimed: MAX_DIMS as u64 + 1,
            max: MAX_DIMS as u64,
        });
    }
    dims.push(dim);
    Ok(())
}

/// `TensorProto.DataType`: the types this crate knows, the others by their ONNX name.
fn dtype_of(code: u64) -> DType {
    let other = |name: &str| DType::Other(name.to_owned());
    match code {
        1 => DType::F32,
        2 => DType::U8,
        3 => DType::I8,
        4 => DType::U16,
        5 => DType::I16,
        6 => DType::I32,
        7 => DType::I64,
        9 => DType::Bool,
        10 => DType::F16,
        11 => DType::F64,
        12 => DType::U32,
        13 => DType::U64,
        16 => DType::BF16,
        17 => DType::F8E4M3,
        19 => DType::F8E5M2,
        0 => other("UNDEFINED"),
        8 => other("STRING"),
        14 => other("COMPLEX64"),
        15 => other("COMPLEX128"),
        18 => other("FLOAT8E4M3FNUZ"),
        20 => other("FLOAT8E5M2FNUZ"),
        21 => other("UINT4"),
        22 => other("INT4"),
        23 => other("FLOAT4E2M1"),
        code => DType::Other(format!("ONNX data_type {code}")),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::io;

    use proptest::prelude::*;

    use super::*;
    use crate::ModelSource;

    fn put_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn varint_field(out: &mut Vec<u8>, number: u64, value: u64) {
        put_varint(out, number << 3);
        put_varint(out, value);
    }

    fn bytes_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        put_varint(out, number << 3 | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    /// A `TensorProto` with packed dims, a name and raw_data.
    fn tensor(name: &str, data_type: u64, dims: &[u64], raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut packed = Vec::new();
        for &dim in dims {
            put_varint(&mut packed, dim);
        }
        bytes_field(&mut out, DIMS, &packed);
        varint_field(&mut out, DATA_TYPE, data_type);
        bytes_field(&mut out, NAME, name.as_bytes());
        bytes_field(&mut out, RAW_DATA, raw);
        out
    }

    /// A `ModelProto` whose graph has a node, a name, `initializers` and an input.
    fn model(initializers: &[Vec<u8>]) -> Vec<u8> {
        let mut graph = Vec::new();
        bytes_field(&mut graph, 1, b"\x0a\x01x\x12\x01y\x22\x04Relu");
        bytes_field(&mut graph, 2, b"main");
        for init in initializers {
            bytes_field(&mut graph, INITIALIZER, init);
        }
        bytes_field(&mut graph, 11, b"\x0a\x01x");
        let mut out = Vec::new();
        varint_field(&mut out, IR_VERSION, 8);
        bytes_field(&mut out, 2, b"pytorch");
        bytes_field(&mut out, GRAPH, &graph);
        bytes_field(&mut out, 8, b"\x08\x11");
        out
    }

    fn place(file: &[u8]) -> Result<Option<Layout>> {
        crate::layout(&file)
    }

    fn bytes<'f>(file: &'f [u8], t: &Tensor) -> &'f [u8] {
        &file[t.range.start as usize..t.range.end as usize]
    }

    #[test]
    fn initializers_are_placed_by_their_raw_data() {
        let w: Vec<u8> = (0..24).collect();
        let mut b = Vec::new();
        varint_field(&mut b, DIMS, 4);
        varint_field(&mut b, DATA_TYPE, 16);
        bytes_field(&mut b, NAME, b"b");
        bytes_field(&mut b, RAW_DATA, &[7; 8]);
        let file = model(&[
            tensor("w", 1, &[2, 3], &w),
            b,
            tensor("step", 7, &[], &[1, 0, 0, 0, 0, 0, 0, 0]),
            tensor("empty", 10, &[0, 5], &[]),
        ]);
        let layout = place(&file).unwrap().unwrap();
        assert_eq!(layout.format, ModelFormat::Onnx);
        assert!(layout.shared.is_empty());
        let found: Vec<_> = layout
            .tensors
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.dtype.clone(),
                    t.shape.clone(),
                    bytes(&file, t),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("w", DType::F32, vec![2, 3], &w[..]),
                ("b", DType::BF16, vec![4], &[7; 8][..]),
                ("step", DType::I64, vec![], &[1, 0, 0, 0, 0, 0, 0, 0][..]),
                ("empty", DType::F16, vec![0, 5], &[][..]),
            ]
        );
        assert_eq!(layout.header_len, layout.tensors[0].range.start);
        assert_eq!(
            crate::sniff(&file, file.len() as u64).unwrap(),
            crate::Sniff::NotAModel
        );
    }

    #[test]
    fn typed_external_segmented_and_dataless_initializers_are_left_out() {
        let mut typed = Vec::new();
        varint_field(&mut typed, DIMS, 2);
        varint_field(&mut typed, DATA_TYPE, 1);
        bytes_field(&mut typed, 4, &[0; 8]);
        bytes_field(&mut typed, NAME, b"typed");
        let mut external = tensor("external", 1, &[1], &[]);
        bytes_field(&mut external, 13, b"\x0a\x08location\x12\x05w.bin");
        varint_field(&mut external, DATA_LOCATION, EXTERNAL);
        let mut segmented = tensor("segmented", 2, &[2], &[1, 2]);
        bytes_field(&mut segmented, SEGMENT, b"\x08\x00\x10\x02");
        let mut dataless = Vec::new();
        bytes_field(&mut dataless, NAME, b"dataless");
        let file = model(&[
            typed,
            external,
            segmented,
            dataless,
            tensor("kept", 3, &[3], &[1, 2, 3]),
        ]);
        let layout = place(&file).unwrap().unwrap();
        let names: Vec<_> = layout.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["kept"]);
        assert_eq!(layout.tensors[0].dtype, DType::I8);
    }

    #[test]
    fn unknown_types_keep_their_onnx_name_and_any_length() {
        let file = model(&[
            tensor("c", 14, &[2], &[0; 3]),
            tensor("future", 99, &[2], &[0; 5]),
        ]);
        let layout = place(&file).unwrap().unwrap();
        let dtypes: Vec<_> = layout.tensors.iter().map(|t| t.dtype.to_string()).collect();
        assert_eq!(dtypes, ["COMPLEX64", "ONNX data_type 99"]);
    }

    #[test]
    fn random_bytes_text_and_other_protobufs_are_not_onnx() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in [1usize, 7, 100, 4096, 70_000] {
            let random: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            assert_eq!(place(&random).unwrap(), None, "{len} random bytes");
            let mut opened = random.clone();
            opened[0] = 0x08;
            assert_eq!(
                place(&opened).unwrap(),
                None,
                "{len} bytes opening with a key"
            );
        }
        let text = "ir_version: 8\ngraph { initializer { name: \"w\" } }\n".repeat(50);
        assert_eq!(place(text.as_bytes()).unwrap(), None);
        assert_eq!(place(b"").unwrap(), None);
        let good = model(&[tensor("w", 1, &[1], &[0; 4])]);
        // No ir_version first, ir_version 0 or implausible, no graph, a truncated file.
        let mut no_version = good.clone();
        no_version.drain(..2);
        let mut zero = good.clone();
        zero[1] = 0;
        let mut huge = good.clone();
        huge[1] = MAX_IR_VERSION as u8 + 1;
        let mut no_graph = Vec::new();
        varint_field(&mut no_graph, IR_VERSION, 8);
        bytes_field(&mut no_graph, 2, b"pytorch");
        for file in [
            no_version,
            zero,
            huge,
            no_graph,
            good[..good.len() - 1].to_vec(),
        ] {
            assert_eq!(place(&file).unwrap(), None, "{file:?}");
        }
    }

    #[test]
    fn broken_graphs_are_errors_that_say_where() {
        let message = |file: &[u8]| place(file).unwrap_err().to_string();
        let short = model(&[tensor("w", 1, &[2, 3], &[0; 20])]);
        assert!(
            message(&short)
                .contains("initializer \"w\": F32 [2, 3] needs 24 bytes, its raw_data holds 20"),
            "{}",
            message(&short)
        );
        let mut negative = Vec::new();
        varint_field(&mut negative, DIMS, -3i64 as u64);
        assert!(message(&model(&[negative])).contains("negative dimension -3"));
        let mut latin1 = Vec::new();
        bytes_field(&mut latin1, NAME, b"caf\xe9");
        assert!(message(&model(&[latin1])).contains("not UTF-8"));
        let mut group = Vec::new();
        put_varint(&mut group, 20 << 3 | 3);
        assert!(message(&model(&[group])).contains("field 20 has wire type 3"));
        let mut long_name = Vec::new();
        bytes_field(&mut long_name, NAME, &vec![b'n'; MAX_NAME as usize + 1]);
        assert!(message(&model(&[long_name])).contains("an initializer name claims 65537"));
        // A fixed64 field with 3 of its 8 bytes in the initializer.
        let mut fixed = Vec::new();
        put_varint(&mut fixed, 20 << 3 | 1);
        fixed.extend_from_slice(&[0; 3]);
        assert!(message(&model(&[fixed])).contains("a fixed-size field would run past"));
        let mut overlong = vec![0x10];
        overlong.extend_from_slice(&[0xff; 12]);
        assert!(
            message(&model(&[overlong])).contains("a field value is not a varint of at most 10")
        );
        // A graph that ends the file, whose initializer claims 16 bytes of its 4.
        let mut cut = Vec::new();
        varint_field(&mut cut, IR_VERSION, 8);
        bytes_field(
            &mut cut,
            GRAPH,
            &[(INITIALIZER << 3 | 2) as u8, 16, 0, 0, 0, 0],
        );
        assert!(
            message(&cut).contains("would end at byte 22, past the end of the 10-byte file"),
            "{}",
            message(&cut)
        );
        // An initializer that claims 16 bytes in a 6-byte graph.
        let mut file = Vec::new();
        varint_field(&mut file, IR_VERSION, 8);
        bytes_field(
            &mut file,
            GRAPH,
            &[(INITIALIZER << 3 | 2) as u8, 16, 0, 0, 0, 0],
        );
        bytes_field(&mut file, 8, b"\x08\x11");
        assert!(
            message(&file).contains(
                "at byte 4: field 5's 16 bytes would run past the end of its message at byte 10"
            ),
            "{}",
            message(&file)
        );
    }

    #[test]
    fn the_walk_stops_after_max_fields() {
        let mut graph = Vec::new();
        for _ in 0..MAX_FIELDS {
            bytes_field(&mut graph, 1, b"");
        }
        let mut file = Vec::new();
        varint_field(&mut file, IR_VERSION, 8);
        bytes_field(&mut file, GRAPH, &graph);
        assert!(matches!(
            place(&file),
            Err(Error::TooLarge { claimed, .. }) if claimed == MAX_FIELDS + 1
        ));
    }

    /// A source that counts the bytes read from it.
    struct Counting {
        file: Vec<u8>,
        read: Cell<u64>,
    }

    impl ModelSource for Counting {
        fn size(&self) -> u64 {
            self.file.size()
        }

        fn read_at(&self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
            self.read.set(self.read.get() + range.end - range.start);
            self.file.read_at(range, buf)
        }
    }

    #[test]
    fn the_walk_reads_field_headers_not_the_data() {
        let big = vec![5u8; 1 << 20];
        let tensors: Vec<_> = (0..8)
            .map(|i| tensor(&format!("layer.{i}"), 1, &[512, 512], &big))
            .collect();
        let source = Counting {
            file: model(&tensors),
            read: Cell::new(0),
        };
        let layout = crate::layout(&source).unwrap().unwrap();
        assert_eq!(layout.tensors.len(), 8);
        // The first 64 KiB, then one block per initializer after the first (whose fields
        // are in the head), and the few bytes after the graph and after the last one.
        let read = source.read.get();
        assert!(read > (64 << 10) + 7 * READ_AHEAD, "{read}");
        assert!(read < (64 << 10) + 8 * READ_AHEAD, "{read}");
    }

    proptest! {
        #[test]
        fn damaged_models_never_panic(
            cut in 0usize..400,
            flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..4),
        ) {
            let mut b = Vec::new();
            varint_field(&mut b, DIMS, 2);
            varint_field(&mut b, DIMS, 2);
            varint_field(&mut b, DATA_TYPE, 10);
            bytes_field(&mut b, NAME, b"b");
            bytes_field(&mut b, RAW_DATA, &[3; 8]);
            let mut file = model(&[
                tensor("w", 1, &[2, 3], &[1; 24]),
                b,
                tensor("i", 6, &[2], &[2; 8]),
            ]);
            for (at, byte) in flips {
                let at = at % file.len();
                file[at] ^= byte;
            }
            file.truncate(cut.min(file.len()));
            let len = file.len() as u64;
            if let Ok(Some(layout)) = place(&file) {
                prop_assert!(layout.shared.is_empty());
                let mut end = layout.header_len;
                for t in &layout.tensors {
                    prop_assert!(end <= t.range.start && t.range.start <= t.range.end && t.range.end <= len);
                    end = t.range.end;
                }
            }
        }
    }
}
