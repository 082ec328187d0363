//! Model formats beyond safetensors through the fold: a PyTorch checkpoint read from disk
//! is cut on its tensors (its layout needs the zip directory at the end of the file) and
//! paired with a base's tensors, while through a pipe it is cut by content; the listing finds
//! its tensors in the archive; GGUF is cut on its tensors even through a pipe; an ONNX model
//! read from disk is cut on its initializers.

mod common;

use std::path::Path;

use common::{fold_on_disk, model_options, model_tensors, nudge};
use mmh_dir::{BaseMode, Chain, FoldBase, Quiet, file_tensor_layout, open_chain, tensor_layout};
use mmh_model::{DType, Layout, ModelFormat};

const TENSORS: usize = 20;
/// F32 values per tensor: 32 KiB, two tensor pieces.
const VALUES: usize = 8192;
const CHANGED: [usize; 2] = [3, 11];

/// A pickle string.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A stored zip of `records`, each record's data aligned to 64 bytes by an extra field, as
/// torch.save writes it.
fn zip(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in records {
        let offset = out.len() as u32;
        let base = out.len() + 30 + name.len() + 4;
        let pad = base.next_multiple_of(64) - base;
        let mut fixed = vec![20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        fixed.extend_from_slice(&(data.len() as u32).to_le_bytes());
        fixed.extend_from_slice(&(data.len() as u32).to_le_bytes());
        fixed.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&fixed);
        out.extend_from_slice(&(pad as u16 + 4).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&[0x46, 0x42]);
        out.extend_from_slice(&(pad as u16).to_le_bytes());
        out.extend(std::iter::repeat_n(b'Z', pad));
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0]);
        central.extend_from_slice(&fixed);
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let dir_start = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&dir_start.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out
}

/// `torch.save({'model_state_dict': tensors, 'epoch': 1})`, one F32 storage per tensor.
fn pytorch(tensors: &[(String, Vec<f32>)]) -> Vec<u8> {
    let mut pkl = b"\x80\x02}(".to_vec();
    string(&mut pkl, "model_state_dict");
    pkl.extend_from_slice(b"ccollections\nOrderedDict\n)R(");
    for (key, (name, values)) in tensors.iter().enumerate() {
        string(&mut pkl, name);
        pkl.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        string(&mut pkl, "storage");
        pkl.extend_from_slice(b"ctorch\nFloatStorage\n");
        string(&mut pkl, &key.to_string());
        string(&mut pkl, "cpu");
        pkl.push(b'J');
        pkl.extend_from_slice(&(values.len() as i32).to_le_bytes());
        pkl.extend_from_slice(b"tQK\x00(J");
        pkl.extend_from_slice(&(values.len() as i32).to_le_bytes());
        pkl.extend_from_slice(b"t(K\x01t\x89ccollections\nOrderedDict\n)RtR");
    }
    pkl.push(b'u');
    string(&mut pkl, "epoch");
    pkl.extend_from_slice(b"K\x01u.");
    let mut records = vec![
        ("ckpt/data.pkl".to_owned(), pkl),
        ("ckpt/byteorder".to_owned(), b"little".to_vec()),
    ];
    for (key, (_, values)) in tensors.iter().enumerate() {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        records.push((format!("ckpt/data/{key}"), bytes));
    }
    records.push(("ckpt/version".to_owned(), b"3\n".to_vec()));
    zip(&records)
}

/// A protobuf varint.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited protobuf field.
fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// An ONNX `ModelProto` whose graph holds one F32 initializer per tensor, after a node.
fn onnx(tensors: &[(String, Vec<f32>)]) -> Vec<u8> {
    let mut graph = Vec::new();
    field(&mut graph, 1, b"\x0a\x01x\x12\x01y\x22\x04Relu");
    for (name, values) in tensors {
        let mut tensor = vec![0x08];
        varint(&mut tensor, values.len() as u64);
        tensor.extend_from_slice(&[0x10, 1]);
        field(&mut tensor, 8, name.as_bytes());
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        field(&mut tensor, 9, &bytes);
        field(&mut graph, 5, &tensor);
    }
    let mut model = vec![0x08, 8];
    field(&mut model, 2, b"pytorch");
    field(&mut model, 7, &graph);
    field(&mut model, 8, b"\x08\x11");
    model
}

/// Checks that `layout` (read from the archive `chain` of `dir/v1/file`) places every
/// one of `tensors` on its bytes in `content`, that the file on disk has the same
/// layout, and that the archive unfolds to `content`.
fn check_folded_model(
    dir: &Path,
    file: &str,
    chain: &Chain<std::fs::File>,
    layout: Layout,
    tensors: &[(String, Vec<f32>)],
    content: &[u8],
) {
    for (tensor, (name, values)) in layout.tensors.iter().zip(tensors) {
        assert_eq!(
            (&tensor.name, &tensor.dtype, &tensor.shape[..]),
            (name, &DType::F32, &[VALUES as u64][..])
        );
        let bytes = &content[tensor.range.start as usize..tensor.range.end as usize];
        let expected: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(bytes, &expected[..]);
    }
    let on_disk = file_tensor_layout(&dir.join("v1").join(file)).unwrap();
    assert_eq!(on_disk, Some(layout));
    let mut unfolded = Vec::new();
    let entry = mmh_dir::single_file(chain.index()).unwrap();
    mmh_dir::unfold_entry(chain, entry, &mut unfolded, &Quiet).unwrap();
    assert!(unfolded == content);
}

fn base(path: &Path) -> Option<FoldBase> {
    Some(FoldBase::open(path, BaseMode::Reference, &[]).unwrap())
}

#[test]
fn a_checkpoint_on_disk_has_its_tensors_in_the_archive_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = model_tensors(TENSORS, VALUES, 1);
    let content = pytorch(&tensors);
    fold_on_disk(
        dir.path(),
        "v1",
        "model.pth",
        &content,
        &model_options(None),
    );
    let chain = open_chain(&dir.path().join("v1.mmh"), &[]).unwrap();
    let layout = tensor_layout(&chain, "model.pth").unwrap().unwrap();
    assert_eq!(layout.format, ModelFormat::PyTorch);
    assert_eq!(layout.tensors.len(), TENSORS);
    check_folded_model(dir.path(), "model.pth", &chain, layout, &tensors, &content);
}

#[test]
fn an_onnx_model_on_disk_has_its_initializers_in_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = model_tensors(TENSORS, VALUES, 2);
    let content = onnx(&tensors);
    fold_on_disk(
        dir.path(),
        "v1",
        "model.onnx",
        &content,
        &model_options(None),
    );
    let chain = open_chain(&dir.path().join("v1.mmh"), &[]).unwrap();
    let layout = tensor_layout(&chain, "model.onnx").unwrap().unwrap();
    assert_eq!(layout.format, ModelFormat::Onnx);
    assert_eq!(layout.tensors.len(), TENSORS);
    // Cut on the initializers: every tensor starts and ends on a chunk boundary.
    let cuts: Vec<u64> = common::chunk_lens(chain.index(), "model.onnx")
        .iter()
        .scan(0, |end, &len| {
            *end += u64::from(len);
            Some(*end)
        })
        .collect();
    for tensor in &layout.tensors {
        assert!(cuts.contains(&tensor.range.start) && cuts.contains(&tensor.range.end));
    }
    check_folded_model(dir.path(), "model.onnx", &chain, layout, &tensors, &content);
}

#[test]
fn a_fine_tuned_checkpoint_on_disk_stores_its_changed_tensors_as_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = model_tensors(TENSORS, VALUES, 1);
    let (v1, v2) = (pytorch(&tensors), pytorch(&nudge(&tensors, &CHANGED)));
    assert_eq!(v1.len(), v2.len());
    fold_on_disk(dir.path(), "v1", "model.pth", &v1, &model_options(None));
    let summary = fold_on_disk(
        dir.path(),
        "v2",
        "model.pth",
        &v2,
        &model_options(base(&dir.path().join("v1.mmh"))),
    );
    let changed_bytes = (CHANGED.len() * VALUES * 4) as u64;
    assert_eq!(summary.delta_bytes, changed_bytes, "{summary:?}");
    assert_eq!(
        summary.base_bytes,
        v2.len() as u64 - changed_bytes,
        "{summary:?}"
    );
}

#[test]
fn a_checkpoint_through_a_pipe_is_cut_by_content() {
    let content = pytorch(&model_tensors(TENSORS, VALUES, 1));
    let (archive, _) = common::fold_bytes(&content, "model.pth", &model_options(None));
    let chain = common::chain(&archive);
    // Without the directory at the end of the file no tensor is known: content-defined
    // chunks throughout, as for any other stream.
    assert_eq!(
        common::chunk_lens(chain.index(), "model.pth"),
        common::cdc_lens(&content, &model_options(None).cdc)
    );
    // The listing reads the archived file anywhere, and finds the tensors.
    let layout = tensor_layout(&chain, "model.pth").unwrap().unwrap();
    assert_eq!(layout.tensors.len(), TENSORS);
}

#[test]
fn gguf_through_a_pipe_is_cut_on_its_tensors() {
    // GGUF v3: no metadata, one F16 tensor of 16384 elements (32 KiB) and one F32 tensor.
    let mut file = b"GGUF\x03\0\0\0".to_vec();
    file.extend_from_slice(&2u64.to_le_bytes());
    file.extend_from_slice(&0u64.to_le_bytes());
    for (name, dims, ggml_type, offset) in [("a", 16384u64, 1u32, 0u64), ("b", 4, 0, 32768)] {
        file.extend_from_slice(&(name.len() as u64).to_le_bytes());
        file.extend_from_slice(name.as_bytes());
        file.extend_from_slice(&1u32.to_le_bytes());
        file.extend_from_slice(&dims.to_le_bytes());
        file.extend_from_slice(&ggml_type.to_le_bytes());
        file.extend_from_slice(&offset.to_le_bytes());
    }
    file.resize(file.len().next_multiple_of(32), 0);
    let data_start = file.len();
    file.extend(common::noise(32768 + 16, 5));
    let (archive, _) = common::fold_bytes(&file, "m.gguf", &model_options(None));
    let chain = common::chain(&archive);
    // The header, then the F16 tensor in two pieces of 16 KiB, then the F32 tensor.
    let lens = common::chunk_lens(chain.index(), "m.gguf");
    assert_eq!(lens, [data_start as u32, 16384, 16384, 16]);
    let layout = tensor_layout(&chain, "m.gguf").unwrap().unwrap();
    assert_eq!(layout.format, ModelFormat::Gguf);
    assert_eq!(layout.tensors[0].dtype, DType::F16);
}
