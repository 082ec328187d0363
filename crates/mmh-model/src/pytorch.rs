//! PyTorch zip checkpoints, as `torch.save` writes them: a zip of stored records,
//! `<prefix>/data.pkl` first (the pickled object, whose tensors name their storages by
//! persistent ids), `<prefix>/byteorder` (`little` or `big`; absent in old files, which are
//! little-endian), and one record `<prefix>/data/<key>` per storage holding its raw bytes.
//! Format: `torch/serialization.py` (`_save`, `_load`) in PyTorch.
//!
//! A tensor is named by the keys from the pickle's root to it, joined with `.` (list and
//! tuple items by their index); when every tensor lies under one top-level dict key (a
//! checkpoint `{'model_state_dict': {...}, 'epoch': 3}`), that key is dropped, so the names
//! are the state dict's keys. A tensor is placed at `record start + storage_offset ×
//! element size`, for `numel × element size` bytes, when its strides are the contiguous
//! ones. Left out of the layout: tensors with other strides (their bytes are not one
//! range), tensors in compressed records, tensors of an unknown storage type whose
//! element size the record does not tell, and tensors that overlap another without lying
//! inside it. Tensors inside another one's bytes (views, tied weights) go to
//! [`Layout::shared`](crate::Layout::shared).

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::pickle::{self, Object, Pickle, TensorRef, Value};
use crate::source::Budgeted;
use crate::zip::{Entry, STORED, Zip};
use crate::{DType, Error, Layout, MAX_HEADER_LEN, ModelFormat, Result, Tensor, sort_tensors};

const FORMAT: ModelFormat = ModelFormat::PyTorch;
/// Containers nested deeper than this are not searched for tensors.
const MAX_DEPTH: usize = 64;

/// The layout of the PyTorch zip `zip`, whose first record is its pickle.
pub(crate) fn layout(zip: &Zip, source: &Budgeted<'_>) -> Result<Layout> {
    let pkl = zip
        .entries
        .iter()
        .find(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
        .ok_or_else(|| zip.error(0, "no data.pkl in the central directory".into()))?;
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    let by_name: HashMap<&str, &Entry> = zip.entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let big_endian = match by_name.get(format!("{prefix}byteorder").as_str()) {
        Some(entry) => {
            let (order, range) = zip.read_record(source, entry)?;
            match order.as_slice() {
                b"little" => false,
                b"big" => true,
                _ => {
                    return Err(zip.error(
                        range.start,
                        "byteorder is neither \"little\" nor \"big\"".into(),
                    ));
                }
            }
        }
        None => false,
    };
    let (data, pkl_range) = zip.read_record(source, pkl)?;
    let pickle = pickle::load(&data, pkl_range.start)?;
    let found = named_tensors(&pickle)?;
    let mut records: HashMap<&str, Range<u64>> = HashMap::new();
    let mut placed = Vec::new();
    for (name, tensor) in found {
        let Some(Object::Storage(storage)) = pickle.objects.get(tensor.storage) else {
            continue;
        };
        let record_name = format!("{prefix}data/{}", storage.key);
        let Some(entry) = by_name.get(record_name.as_str()) else {
            return Err(zip.error(
                pkl_range.start,
                format!("tensor {name:?}: no record {record_name:?}"),
            ));
        };
        if entry.method != STORED || entry.encrypted {
            continue;
        }
        let record = match records.get(entry.name.as_str()) {
            Some(range) => range.clone(),
            None => {
                let range = zip.data_range(source, entry)?;
                records.insert(&entry.name, range.clone());
                range
            }
        };
        let record_len = record.end - record.start;
        let (dtype, size) = match dtype_of(&storage.class) {
            Some(dtype) => {
                let size = dtype.size_bytes().unwrap_or(1);
                (dtype, size)
            }
            // The record holds exactly the storage: its length tells the element size.
            None => match record_len.checked_div(storage.numel) {
                Some(size) if size > 0 && size * storage.numel == record_len => (
                    DType::Other(storage.class.trim_end_matches("Storage").to_owned()),
                    size,
                ),
                _ => continue,
            },
        };
        let storage_len = storage
            .numel
            .checked_mul(size)
            .filter(|&len| len <= record_len);
        let Some(storage_len) = storage_len else {
            return Err(zip.error(record.start, format!("record {record_name:?} holds {record_len} bytes, less than {} elements of {size}", storage.numel)));
        };
        if !contiguous(&tensor.size, &tensor.stride) {
            continue;
        }
        let bytes = tensor
            .size
            .iter()
            .try_fold(size, |n, &d| n.checked_mul(d))
            .map(|n| if tensor.size.contains(&0) { 0 } else { n });
        let start = tensor.offset.checked_mul(size);
        let end = start.zip(bytes).and_then(|(s, n)| s.checked_add(n));
        let (Some(start), Some(end)) = (start, end.filter(|&end| end <= storage_len)) else {
            return Err(zip.error(
                pkl_range.start,
                format!(
                    "tensor {name:?} runs past the end of its storage {:?}",
                    storage.key
                ),
            ));
        };
        let dtype = if big_endian {
            DType::Other(format!("{dtype} big-endian"))
        } else {
            dtype
        };
        placed.push(Tensor {
            name,
            dtype,
            shape: tensor.size.clone(),
            range: record.start + start..record.start + end,
        });
    }
    let (tensors, shared) = split_shared(placed);
    let header_len = tensors
        .first()
        .map_or(pkl_range.end, |t| t.range.start.min(pkl_range.end));
    Ok(Layout {
        format: FORMAT,
        header_len,
        tensors,
        shared,
    })
}

/// The storage classes torch writes, by element type.
fn dtype_of(class: &str) -> Option<DType> {
    Some(match class {
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "DoubleStorage" => DType::F64,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        "Float8_e4m3fnStorage" => DType::F8E4M3,
        "Float8_e5m2Storage" => DType::F8E5M2,
        _ => return None,
    })
}

/// Whether `stride` is the C-order stride of `size`, as torch's `is_contiguous` decides
/// (dimensions of one element may have any stride; a tensor without elements is).
fn contiguous(size: &[u64], stride: &[u64]) -> bool {
    if size.len() != stride.len() {
        return false;
    }
    if size.contains(&0) {
        return true;
    }
    let mut expected = 1u64;
    for (&dim, &step) in size.iter().zip(stride).rev() {
        if dim != 1 && step != expected {
            return false;
        }
        let Some(next) = expected.checked_mul(dim) else {
            return false;
        };
        expected = next;
    }
    true
}

/// Sorts tensors into disjoint ones and those inside one of them; a tensor that overlaps
/// another without lying inside it is left out.
fn split_shared(mut all: Vec<Tensor>) -> (Vec<Tensor>, Vec<Tensor>) {
    // Longest first at each start, so that a view comes after the tensor holding it.
    all.sort_unstable_by(|a, b| {
        (a.range.start, std::cmp::Reverse(a.range.end), &a.name).cmp(&(
            b.range.start,
            std::cmp::Reverse(b.range.end),
            &b.name,
        ))
    });
    let mut tensors: Vec<Tensor> = Vec::new();
    let mut shared = Vec::new();
    for tensor in all {
        match tensors.last() {
            Some(last) if tensor.range.start < last.range.end => {
                if tensor.range.end <= last.range.end {
                    shared.push(tensor);
                }
            }
            _ => tensors.push(tensor),
        }
    }
    sort_tensors(&mut tensors);
    sort_tensors(&mut shared);
    (tensors, shared)
}

/// Every tensor reachable from the pickle's root with its dotted name, the one wrapper key
/// over all of them dropped. Containers are searched once each, however often they are
/// referenced.
fn named_tensors(pickle: &Pickle) -> Result<Vec<(String, &TensorRef)>> {
    let mut found: Vec<(Vec<String>, &TensorRef)> = Vec::new();
    let mut seen = HashSet::new();
    let mut name_bytes = 0u64;
    let mut work = vec![(pickle.root, Vec::new())];
    while let Some((value, path)) = work.pop() {
        let Value::Obj(index) = value else {
            continue;
        };
        let children: Vec<(String, Value)> = match &pickle.objects[index] {
            Object::Tensor(tensor) => {
                name_bytes += path
                    .iter()
                    .map(|p: &String| p.len() as u64 + 1)
                    .sum::<u64>();
                if name_bytes > MAX_HEADER_LEN {
                    return Err(Error::TooLarge {
                        format: FORMAT,
                        what: "the tensor names",
                        claimed: name_bytes,
                        max: MAX_HEADER_LEN,
                    });
                }
                found.push((path, tensor));
                continue;
            }
            _ if path.len() >= MAX_DEPTH || !seen.insert(index) => continue,
            Object::Dict(entries) => {
                // A repeated key: the last one counts, as in Python.
                let mut keys = HashSet::new();
                let mut children = Vec::new();
                for &(key, child) in entries.iter().rev() {
                    let key = match key {
                        Value::Int(i) => i.to_string(),
                        key => match pickle.str(key) {
                            Some(s) => s.to_owned(),
                            None => continue,
                        },
                    };
                    if keys.insert(key.clone()) {
                        children.push((key, child));
                    }
                }
                children
            }
            Object::List(items) | Object::Tuple(items) => items
                .iter()
                .enumerate()
                .rev()
                .map(|(i, &v)| (i.to_string(), v))
                .collect(),
            _ => continue,
        };
        // Pushed in reverse, popped in order.
        for (key, child) in children {
            let mut child_path = path.clone();
            child_path.push(key);
            work.push((child, child_path));
        }
    }
    let root_is_dict = matches!(pickle.object(pickle.root), Some(Object::Dict(_)));
    let wrapper = match found.first() {
        Some((first, _)) if root_is_dict && first.len() >= 2 => {
            let key = &first[0];
            found
                .iter()
                .all(|(path, _)| path.len() >= 2 && &path[0] == key)
        }
        _ => false,
    };
    Ok(found
        .into_iter()
        .map(|(path, tensor)| (path[usize::from(wrapper)..].join("."), tensor))
        .collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::layout as place;
    use crate::zip::writer::zip;

    /// Builds protocol-2 pickles of nested dicts of tensors.
    struct PickleWriter {
        out: Vec<u8>,
    }

    enum Item<'a> {
        /// (storage class, key, numel, offset, size, stride)
        Tensor(&'a str, &'a str, u64, u64, &'a [u64], &'a [u64]),
        Dict(Vec<(&'a str, Item<'a>)>),
        Int(u8),
    }

    impl PickleWriter {
        fn str(&mut self, s: &str) {
            self.out.push(b'X');
            self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            self.out.extend_from_slice(s.as_bytes());
        }

        fn ints(&mut self, values: &[u64]) {
            self.out.push(b'(');
            for &v in values {
                self.out.push(b'J');
                self.out.extend_from_slice(&(v as i32).to_le_bytes());
            }
            self.out.push(b't');
        }

        fn item(&mut self, item: &Item<'_>) {
            match item {
                Item::Int(v) => self.out.extend_from_slice(&[b'K', *v]),
                Item::Dict(entries) => {
                    self.out
                        .extend_from_slice(b"ccollections\nOrderedDict\n)R(");
                    for (key, value) in entries {
                        self.str(key);
                        self.item(value);
                    }
                    self.out.push(b'u');
                }
                Item::Tensor(class, key, numel, offset, size, stride) => {
                    self.out
                        .extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
                    self.str("storage");
                    self.out
                        .extend_from_slice(format!("ctorch\n{class}\n").as_bytes());
                    self.str(key);
                    self.str("cpu");
                    self.out.push(b'J');
                    self.out.extend_from_slice(&(*numel as i32).to_le_bytes());
                    self.out.extend_from_slice(b"tQ");
                    self.out.push(b'J');
                    self.out.extend_from_slice(&(*offset as i32).to_le_bytes());
                    self.ints(size);
                    self.ints(stride);
                    self.out.extend_from_slice(b"\x89)tR");
                }
            }
        }
    }

    fn pickle_of(root: &Item<'_>) -> Vec<u8> {
        let mut w = PickleWriter { out: vec![0x80, 2] };
        w.item(root);
        w.out.push(b'.');
        w.out
    }

    fn checkpoint(root: &Item<'_>, storages: &[(&str, &[u8])]) -> Vec<u8> {
        let pkl = pickle_of(root);
        let mut records: Vec<(String, &[u8])> = vec![("archive/data.pkl".into(), &pkl)];
        records.push(("archive/byteorder".into(), b"little"));
        for (key, bytes) in storages {
            records.push((format!("archive/data/{key}"), bytes));
        }
        let named: Vec<(&str, &[u8])> = records.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        zip(&named, 64, false)
    }

    fn names(tensors: &[Tensor]) -> Vec<&str> {
        tensors.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn a_wrapped_state_dict_names_tensors_by_its_keys() {
        let root = Item::Dict(vec![
            (
                "model_state_dict",
                Item::Dict(vec![
                    (
                        "w",
                        Item::Tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1]),
                    ),
                    ("b.x", Item::Tensor("HalfStorage", "1", 4, 1, &[3], &[1])),
                    ("n", Item::Tensor("LongStorage", "2", 1, 0, &[], &[])),
                ]),
            ),
            ("epoch", Item::Int(3)),
        ]);
        let file = checkpoint(&root, &[("0", &[1; 24]), ("1", &[2; 8]), ("2", &[3; 8])]);
        let layout = place(&file).unwrap().unwrap();
        assert_eq!(layout.format, ModelFormat::PyTorch);
        assert_eq!(names(&layout.tensors), ["w", "b.x", "n"]);
        let w = &layout.tensors[0];
        assert_eq!((&w.dtype, &w.shape[..]), (&DType::F32, &[2, 3][..]));
        assert_eq!(w.range.start % 64, 0);
        assert!(
            file[w.range.start as usize..w.range.end as usize]
                .iter()
                .all(|&b| b == 1)
        );
        let b = &layout.tensors[1];
        assert_eq!(b.range.end - b.range.start, 6);
        assert_eq!(
            file[b.range.start as usize - 2],
            2,
            "offset of one F16 element"
        );
        assert_eq!(layout.tensors[2].dtype, DType::I64);
        assert!(layout.header_len <= w.range.start);
        assert!(layout.shared.is_empty());
    }

    #[test]
    fn views_and_tied_weights_are_shared_and_strided_views_left_out() {
        let root = Item::Dict(vec![
            ("whole", Item::Tensor("FloatStorage", "0", 8, 0, &[8], &[1])),
            ("tied", Item::Tensor("FloatStorage", "0", 8, 0, &[8], &[1])),
            ("half", Item::Tensor("FloatStorage", "0", 8, 4, &[4], &[1])),
            (
                "transposed",
                Item::Tensor("FloatStorage", "0", 8, 0, &[2, 4], &[1, 2]),
            ),
            (
                "nested",
                Item::Dict(vec![(
                    "x",
                    Item::Tensor("ByteStorage", "1", 3, 0, &[3], &[1]),
                )]),
            ),
        ]);
        let file = checkpoint(&root, &[("0", &[0; 32]), ("1", &[0; 3])]);
        let layout = place(&file).unwrap().unwrap();
        assert_eq!(names(&layout.tensors), ["tied", "nested.x"]);
        assert_eq!(names(&layout.shared), ["whole", "half"]);
        let outer = &layout.tensors[0].range;
        assert!(
            layout
                .shared
                .iter()
                .all(|t| outer.start <= t.range.start && t.range.end <= outer.end)
        );
    }

    #[test]
    fn unknown_storages_take_their_size_from_the_record() {
        let root = Item::Dict(vec![(
            "c",
            Item::Tensor("ComplexFloatStorage", "0", 2, 0, &[2], &[1]),
        )]);
        let file = checkpoint(&root, &[("0", &[0; 16])]);
        let tensor = &place(&file).unwrap().unwrap().tensors[0];
        assert_eq!(tensor.dtype, DType::Other("ComplexFloat".into()));
        assert_eq!(tensor.range.end - tensor.range.start, 16);
    }

    #[test]
    fn zip64_directories_are_read() {
        let pkl = pickle_of(&Item::Dict(vec![(
            "w",
            Item::Tensor("FloatStorage", "0", 2, 0, &[2], &[1]),
        )]));
        let file = zip(&[("a/data.pkl", &pkl), ("a/data/0", &[5; 8])], 1, true);
        let layout = place(&file).unwrap().unwrap();
        let range = &layout.tensors[0].range;
        assert_eq!(&file[range.start as usize..range.end as usize], &[5; 8]);
    }

    #[test]
    fn broken_checkpoints_are_errors_that_say_where() {
        let root = Item::Dict(vec![(
            "w",
            Item::Tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1]),
        )]);
        let missing = checkpoint(&root, &[]);
        let err = place(&missing).unwrap_err();
        assert!(
            err.to_string().contains("no record \"archive/data/0\""),
            "{err}"
        );
        let short = checkpoint(&root, &[("0", &[0; 20])]);
        let err = place(&short).unwrap_err();
        assert!(err.to_string().contains("less than 6 elements"), "{err}");
        let past = Item::Dict(vec![(
            "w",
            Item::Tensor("FloatStorage", "0", 6, 5, &[2], &[1]),
        )]);
        let err = place(&checkpoint(&past, &[("0", &[0; 24])])).unwrap_err();
        assert!(
            err.to_string().contains("past the end of its storage"),
            "{err}"
        );
        let good = checkpoint(&root, &[("0", &[0; 24])]);
        let truncated = &good[..good.len() - 1];
        let err = place(&truncated).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Malformed {
                    format: ModelFormat::PyTorch,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("end-of-central-directory"),
            "{err}"
        );
    }

    #[test]
    fn a_stream_sees_no_model_and_other_zips_are_not_models() {
        let root = Item::Dict(vec![(
            "w",
            Item::Tensor("FloatStorage", "0", 1, 0, &[1], &[1]),
        )]);
        let file = checkpoint(&root, &[("0", &[0; 4])]);
        assert_eq!(
            crate::sniff(&file, file.len() as u64).unwrap(),
            crate::Sniff::NotAModel
        );
        let docx = zip(&[("word/document.xml", b"<w/>")], 1, false);
        assert_eq!(place(&docx).unwrap(), None);
    }

    #[test]
    fn contiguity_follows_torch() {
        assert!(contiguous(&[2, 3], &[3, 1]));
        assert!(contiguous(&[2, 1, 3], &[3, 99, 1]));
        assert!(contiguous(&[0, 3], &[7, 7]));
        assert!(contiguous(&[], &[]));
        assert!(!contiguous(&[2, 3], &[1, 2]));
        assert!(!contiguous(&[2], &[]));
    }

    proptest! {
        #[test]
        fn damaged_checkpoints_never_panic(
            cut in 0usize..2000,
            flips in proptest::collection::vec((0usize..2000, any::<u8>()), 0..4),
        ) {
            let root = Item::Dict(vec![
                ("m", Item::Dict(vec![
                    ("a", Item::Tensor("FloatStorage", "0", 4, 0, &[4], &[1])),
                    ("b", Item::Tensor("FloatStorage", "0", 4, 2, &[2], &[1])),
                ])),
                ("e", Item::Int(1)),
            ]);
            let mut file = checkpoint(&root, &[("0", &[9; 16])]);
            for (at, byte) in flips {
                let at = at % file.len();
                file[at] ^= byte;
            }
            file.truncate(cut.min(file.len()));
            let len = file.len() as u64;
            if let Ok(Some(layout)) = place(&file) {
                let mut end = layout.header_len;
                for t in &layout.tensors {
                    prop_assert!(end <= t.range.start && t.range.start <= t.range.end && t.range.end <= len);
                    end = t.range.end;
                }
                for s in &layout.shared {
                    prop_assert!(layout.tensors.iter().any(|t| t.range.start <= s.range.start && s.range.end <= t.range.end));
                }
            }
        }
    }
}
