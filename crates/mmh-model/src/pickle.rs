//! A pickle reader that executes nothing: it replays the opcodes of the binary protocols
//! (2 to 5, as `torch.save` writes them) on a stack of plain values, so that the tensors of
//! a checkpoint can be found by their keys. A global (`GLOBAL`, `STACK_GLOBAL`) is only the
//! (module, name) pair it names; `REDUCE` of a few known torch and `collections` callables
//! builds a tensor, a dict or passes a parameter's tensor through, and of anything else an
//! opaque value. Persistent ids of the form `('storage', torch.<X>Storage, key, location,
//! numel)` become storages. Format: `Lib/pickletools.py` in CPython.
//!
//! Every value lives in one arena and the stack and memo hold indices into it, so copying
//! a value (`BINGET`, `DUP`) costs nothing whatever its size, and self-referencing
//! containers cannot loop. The stack and memo are bounded; the arena grows by at most one
//! object per opcode.

use std::collections::HashMap;

use crate::{Error, ModelFormat, Result};

const FORMAT: ModelFormat = ModelFormat::PyTorch;
/// The deepest stack (values and marks) a pickle may build.
const MAX_STACK: usize = 1 << 20;
/// The most memo entries a pickle may store.
const MAX_MEMO: usize = 1 << 22;
/// The newest protocol this reader knows.
const MAX_PROTOCOL: u8 = 5;

/// A value on the stack, in the memo or in a container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An object in [`Pickle::objects`].
    Obj(usize),
    /// Anything this reader does not model (floats, bytes, instances of other classes).
    Opaque,
}

/// What a [`Value::Obj`] refers to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Object {
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Entries in insertion order; a repeated key appears twice, the later one counting.
    Dict(Vec<(Value, Value)>),
    Global {
        module: String,
        name: String,
    },
    Storage(Storage),
    Tensor(TensorRef),
}

/// A storage named by a persistent id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Storage {
    /// The storage class's name in `torch` (`"FloatStorage"`).
    pub class: String,
    /// The record key: its bytes are the zip record `<prefix>/data/<key>`.
    pub key: String,
    /// Elements in the storage.
    pub numel: u64,
}

/// A tensor rebuilt by `torch._utils._rebuild_tensor_v2`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    /// The storage, as an index into [`Pickle::objects`] of an [`Object::Storage`].
    pub storage: usize,
    /// In elements from the storage's start.
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

/// A replayed pickle.
#[derive(Debug)]
pub(crate) struct Pickle {
    pub objects: Vec<Object>,
    pub root: Value,
}

impl Pickle {
    pub(crate) fn object(&self, value: Value) -> Option<&Object> {
        match value {
            Value::Obj(index) => self.objects.get(index),
            _ => None,
        }
    }

    pub(crate) fn str(&self, value: Value) -> Option<&str> {
        match self.object(value)? {
            Object::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Replays the pickle `data`, which starts at byte `at` of the file.
pub(crate) fn load(data: &[u8], at: u64) -> Result<Pickle> {
    let mut machine = Machine {
        data,
        pos: 0,
        at,
        op_at: 0,
        objects: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = machine.run()?;
    Ok(Pickle {
        objects: machine.objects,
        root,
    })
}

struct Machine<'d> {
    data: &'d [u8],
    pos: usize,
    at: u64,
    /// Where the opcode being replayed starts.
    op_at: usize,
    objects: Vec<Object>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl<'d> Machine<'d> {
    fn error(&self, reason: String) -> Error {
        Error::Malformed {
            format: FORMAT,
            offset: self.at + self.op_at as u64,
            reason: format!("pickle: {reason}"),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'d [u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| {
                self.error(format!(
                    "an opcode's {n} bytes of argument run past the end"
                ))
            })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn push(&mut self, value: Value) -> Result<()> {
        if self.stack.len() + self.marks.len() >= MAX_STACK {
            return Err(self.error(format!("the stack grows past {MAX_STACK} entries")));
        }
        self.stack.push(value);
        Ok(())
    }

    fn push_obj(&mut self, object: Object) -> Result<()> {
        self.objects.push(object);
        self.push(Value::Obj(self.objects.len() - 1))
    }

    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.error("pops an empty stack".into()));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.error("pops an empty stack".into()))
    }

    fn top(&self) -> Result<Value> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.error("reads an empty stack".into()))
    }

    /// The values pushed since the last mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.error("no mark to pop to".into()))?;
        Ok(self.stack.split_off(mark))
    }

    fn string(&mut self, n: u64) -> Result<()> {
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.push_obj(Object::Str(s))
    }

    fn int(&mut self, bytes_len: u64) -> Result<()> {
        let bytes = self.take(bytes_len)?;
        let value = match bytes.len() {
            0 => Value::Int(0),
            1..=8 => {
                // Two's complement, little-endian, sign-extended from the last byte.
                let fill = if bytes[bytes.len() - 1] & 0x80 != 0 {
                    0xff
                } else {
                    0
                };
                let mut full = [fill; 8];
                full[..bytes.len()].copy_from_slice(bytes);
                Value::Int(i64::from_le_bytes(full))
            }
            _ => Value::Opaque,
        };
        self.push(value)
    }

    /// A line of `GLOBAL`'s text argument.
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.error("GLOBAL without its newline".into()))?;
        self.pos += len + 1;
        Ok(String::from_utf8_lossy(&rest[..len]).into_owned())
    }

    fn memoize(&mut self, index: u32) -> Result<()> {
        let value = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            return Err(self.error(format!("the memo grows past {MAX_MEMO} entries")));
        }
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<()> {
        let value = *self
            .memo
            .get(&index)
            .ok_or_else(|| self.error(format!("memo entry {index} was never stored")))?;
        self.push(value)
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_at = self.pos;
            let op = self
                .u8()
                .map_err(|_| self.error("ends without STOP".into()))?;
            match op {
                0x80 => {
                    let protocol = self.u8()?;
                    if protocol > MAX_PROTOCOL {
                        return Err(self.error(format!("unsupported protocol {protocol}")));
                    }
                }
                // FRAME: a length hint for buffered readers.
                0x95 => drop(self.u64()?),
                b'.' => return self.pop(),
                b'(' => {
                    if self.stack.len() + self.marks.len() >= MAX_STACK {
                        return Err(self.error(format!("the stack grows past {MAX_STACK} entries")));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => drop(self.pop()?),
                b'1' => drop(self.pop_mark()?),
                b'2' => self.push(self.top()?)?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => self.int(4)?,
                b'K' => self.int(1).and_then(|()| self.unsigned_top())?,
                b'M' => self.int(2).and_then(|()| self.unsigned_top())?,
                0x8a => {
                    let n = self.u8()?;
                    self.int(u64::from(n))?;
                }
                0x8b => {
                    let n = self.u32()?;
                    self.int(u64::from(n))?;
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Opaque)?;
                }
                b'X' => {
                    let n = self.u32()?;
                    self.string(u64::from(n))?;
                }
                0x8c | b'U' => {
                    let n = self.u8()?;
                    self.string(u64::from(n))?;
                }
                0x8d => {
                    let n = self.u64()?;
                    self.string(n)?;
                }
                b'T' => {
                    let n = self.u32()?;
                    self.string(u64::from(n))?;
                }
                // SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8.
                b'C' => {
                    let n = self.u8()?;
                    self.take(u64::from(n))?;
                    self.push(Value::Opaque)?;
                }
                b'B' => {
                    let n = self.u32()?;
                    self.take(u64::from(n))?;
                    self.push(Value::Opaque)?;
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    self.take(n)?;
                    self.push(Value::Opaque)?;
                }
                b')' => self.push_obj(Object::Tuple(Vec::new()))?,
                b']' => self.push_obj(Object::List(Vec::new()))?,
                b'}' => self.push_obj(Object::Dict(Vec::new()))?,
                0x8f => self.push(Value::Opaque)?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_obj(Object::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>>>()?;
                    items.reverse();
                    self.push_obj(Object::Tuple(items))?;
                }
                // FROZENSET.
                0x91 => {
                    self.pop_mark()?;
                    self.push(Value::Opaque)?;
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.extend_dict(vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.extend_dict(items)?;
                }
                // ADDITEMS: to a set, which is opaque.
                0x90 => drop(self.pop_mark()?),
                b'q' => {
                    let index = self.u8()?;
                    self.memoize(u32::from(index))?;
                }
                b'r' => {
                    let index = self.u32()?;
                    self.memoize(index)?;
                }
                0x94 => {
                    let index = u32::try_from(self.memo.len())
                        .map_err(|_| self.error("the memo is full".into()))?;
                    self.memoize(index)?;
                }
                b'h' => {
                    let index = self.u8()?;
                    self.memo_get(u32::from(index))?;
                }
                b'j' => {
                    let index = self.u32()?;
                    self.memo_get(index)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push_obj(Object::Global { module, name })?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let global = match (self.str_of(module), self.str_of(name)) {
                        (Some(module), Some(name)) => Object::Global { module, name },
                        _ => {
                            return Err(
                                self.error("STACK_GLOBAL of values that are not strings".into())
                            );
                        }
                    };
                    self.push_obj(global)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.reduce(callable, args);
                    match value {
                        Reduced::Value(value) => self.push(value)?,
                        Reduced::Object(object) => self.push_obj(object)?,
                    }
                }
                // NEWOBJ and NEWOBJ_EX build instances of classes: opaque.
                0x81 => {
                    self.pop()?;
                    self.pop()?;
                    self.push(Value::Opaque)?;
                }
                0x92 => {
                    self.pop()?;
                    self.pop()?;
                    self.pop()?;
                    self.push(Value::Opaque)?;
                }
                // BUILD sets an object's state (an OrderedDict's `_metadata`): not needed.
                b'b' => drop(self.pop()?),
                b'Q' => {
                    let pid = self.pop()?;
                    match self.storage(pid) {
                        Some(storage) => self.push_obj(Object::Storage(storage))?,
                        None => self.push(Value::Opaque)?,
                    }
                }
                other => {
                    return Err(self.error(format!(
                        "unsupported opcode 0x{other:02x} ({:?})",
                        char::from(other)
                    )));
                }
            }
        }
    }

    /// BININT1 and BININT2 are unsigned.
    fn unsigned_top(&mut self) -> Result<()> {
        if let Some(Value::Int(v)) = self.stack.last_mut() {
            let width = self.data[self.op_at] == b'K';
            *v = if width { *v & 0xff } else { *v & 0xffff };
        }
        Ok(())
    }

    fn str_of(&self, value: Value) -> Option<String> {
        match value {
            Value::Obj(i) => match self.objects.get(i)? {
                Object::Str(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<()> {
        // Appending to anything but a list (an opaque instance) changes nothing we model.
        if let Value::Obj(i) = self.top()?
            && let Some(Object::List(list)) = self.objects.get_mut(i)
        {
            list.extend(items);
        }
        Ok(())
    }

    fn extend_dict(&mut self, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("SETITEMS with an odd number of values".into()));
        }
        if let Value::Obj(i) = self.top()?
            && let Some(Object::Dict(dict)) = self.objects.get_mut(i)
        {
            dict.extend(items.chunks_exact(2).map(|pair| (pair[0], pair[1])));
        }
        Ok(())
    }

    fn global(&self, value: Value) -> Option<(&str, &str)> {
        match self.objects.get(match value {
            Value::Obj(i) => i,
            _ => return None,
        })? {
            Object::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    fn tuple(&self, value: Value) -> Option<&[Value]> {
        match self.objects.get(match value {
            Value::Obj(i) => i,
            _ => return None,
        })? {
            Object::Tuple(items) => Some(items),
            _ => None,
        }
    }

    fn uints(&self, value: Value) -> Option<Vec<u64>> {
        self.tuple(value)?
            .iter()
            .map(|v| match v {
                Value::Int(i) => u64::try_from(*i).ok(),
                _ => None,
            })
            .collect()
    }

    fn reduce(&self, callable: Value, args: Value) -> Reduced {
        let Some(global) = self.global(callable) else {
            return Reduced::Value(Value::Opaque);
        };
        let args = self.tuple(args).unwrap_or_default();
        match global {
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                let tensor = match args {
                    [Value::Obj(storage), Value::Int(offset), size, stride, ..]
                        if matches!(self.objects.get(*storage), Some(Object::Storage(_))) =>
                    {
                        u64::try_from(*offset)
                            .ok()
                            .zip(self.uints(*size))
                            .zip(self.uints(*stride))
                            .map(|((offset, size), stride)| TensorRef {
                                storage: *storage,
                                offset,
                                size,
                                stride,
                            })
                    }
                    _ => None,
                };
                tensor.map_or(Reduced::Value(Value::Opaque), |t| {
                    Reduced::Object(Object::Tensor(t))
                })
            }
            // An nn.Parameter pickles as its tensor and flags.
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                Reduced::Value(args.first().copied().unwrap_or(Value::Opaque))
            }
            ("collections", "OrderedDict") => Reduced::Object(Object::Dict(Vec::new())),
            _ => Reduced::Value(Value::Opaque),
        }
    }

    /// The storage a persistent id names.
    fn storage(&self, pid: Value) -> Option<Storage> {
        let [tag, class, key, _location, Value::Int(numel), ..] = self.tuple(pid)? else {
            return None;
        };
        if self.str_of(*tag)? != "storage" {
            return None;
        }
        let ("torch", class) = self.global(*class)? else {
            return None;
        };
        Some(Storage {
            class: class.to_owned(),
            key: self.str_of(*key)?,
            numel: u64::try_from(*numel).ok()?,
        })
    }
}

/// What a `REDUCE` leaves on the stack.
enum Reduced {
    Value(Value),
    Object(Object),
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `{'a': tensor(FloatStorage '0', offset 2, size (2, 3), stride (3, 1)), 'n': 7}` as
    /// protocol 2 writes it, with memo reuse.
    fn sample() -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
        p.extend(b"X\x01\0\0\0a");
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\nq\x01");
        p.extend(b"((X\x07\0\0\0storageq\x02ctorch\nFloatStorage\nq\x03");
        p.extend(b"X\x01\0\0\x000X\x03\0\0\0cpuK\x10tQ");
        p.extend(b"K\x02(K\x02K\x03tq\x04(K\x03K\x01t\x89ccollections\nOrderedDict\n)Rtq\x05R");
        p.extend(b"X\x01\0\0\0nK\x07");
        p.extend(b"u.");
        p
    }

    #[test]
    fn replays_a_state_dict() {
        let pickle = load(&sample(), 0).unwrap();
        let Some(Object::Dict(entries)) = pickle.object(pickle.root) else {
            panic!("root is {:?}", pickle.root);
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(pickle.str(entries[0].0), Some("a"));
        let Some(Object::Tensor(tensor)) = pickle.object(entries[0].1) else {
            panic!("not a tensor: {:?}", entries[0].1);
        };
        assert_eq!(
            (tensor.offset, &tensor.size[..], &tensor.stride[..]),
            (2, &[2, 3][..], &[3, 1][..])
        );
        assert_eq!(
            pickle.objects[tensor.storage],
            Object::Storage(Storage {
                class: "FloatStorage".into(),
                key: "0".into(),
                numel: 16
            })
        );
        assert_eq!(entries[1].1, Value::Int(7));
    }

    #[test]
    fn integers_decode_with_their_signs() {
        for (ops, expected) in [
            (&b"J\xfe\xff\xff\xff."[..], -2),
            (b"K\xff.", 255),
            (b"M\xff\xff.", 65535),
            (b"\x8a\x02\xff\x7f.", 32767),
            (b"\x8a\x01\xff.", -1),
            (b"\x8a\x00.", 0),
        ] {
            assert_eq!(load(ops, 0).unwrap().root, Value::Int(expected), "{ops:?}");
        }
        assert_eq!(
            load(b"\x8a\x09\0\0\0\0\0\0\0\0\x01.", 0).unwrap().root,
            Value::Opaque
        );
    }

    #[test]
    fn code_is_never_run_and_unknown_callables_are_opaque() {
        let evil = b"\x80\x02cos\nsystem\nX\x02\0\0\0lsq\0\x85R.";
        assert_eq!(load(evil, 0).unwrap().root, Value::Opaque);
        let stack_global = b"\x8c\x0bcollections\x8c\x0bOrderedDict\x93)R.";
        let pickle = load(stack_global, 0).unwrap();
        assert_eq!(pickle.object(pickle.root), Some(&Object::Dict(Vec::new())));
    }

    #[test]
    fn broken_pickles_are_errors_that_say_where() {
        for (ops, offset, what) in [
            (&b"\x80\x02}"[..], 3, "without STOP"),
            (b"\x80\x06.", 0, "protocol 6"),
            (b"X\xff\0\0\0ab.", 0, "run past the end"),
            (b"h\x05.", 0, "memo entry 5"),
            (b"0.", 0, "empty stack"),
            (b"K\x01(\x85.", 3, "empty stack"),
            (b"}K\x01u.", 3, "no mark"),
            (b"I1\n.", 0, "opcode 0x49"),
            (b"cos\nsystem", 0, "newline"),
        ] {
            let err = load(ops, 100).unwrap_err();
            assert!(
                matches!(&err, Error::Malformed { offset: o, .. } if *o == 100 + offset),
                "{ops:?}: {err}"
            );
            assert!(err.to_string().contains(what), "{ops:?}: {err}");
        }
    }

    #[test]
    fn the_stack_is_bounded() {
        let deep = vec![b'('; MAX_STACK + 1];
        let err = load(&deep, 0).unwrap_err();
        assert!(err.to_string().contains("stack grows"), "{err}");
    }

    proptest! {
        #[test]
        fn damaged_pickles_never_panic(
            cut in 0usize..400,
            flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..6),
        ) {
            let mut data = sample();
            for (at, byte) in flips {
                let at = at % data.len();
                data[at] ^= byte;
            }
            data.truncate(cut);
            if let Ok(pickle) = load(&data, 0)
                && let Value::Obj(i) = pickle.root
            {
                prop_assert!(i < pickle.objects.len());
            }
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(pickle) = load(&data, 0)
                && let Value::Obj(i) = pickle.root
            {
                prop_assert!(i < pickle.objects.len());
            }
        }
    }
}
