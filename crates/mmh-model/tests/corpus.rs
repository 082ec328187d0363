//! The other formats against the development corpus (`bash /work/shared/corpus/build.sh`
//! builds it under /tmp/mmh-dev-corpus): the same state dict as PyTorch zip, GGUF, npy and
//! npz, and a voice's ONNX export, compared with its safetensors version. Each test skips,
//! saying why, when the corpus is absent.

use std::fs::File;
use std::path::{Path, PathBuf};

use mmh_model::{DType, Layout, ModelFormat, Tensor, layout};

const CORPUS: &str = "/tmp/mmh-dev-corpus";

/// The corpus files, or `None` (with the reason printed) when one is absent.
fn corpus(names: &[&str]) -> Option<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = names.iter().map(|n| Path::new(CORPUS).join(n)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        eprintln!(
            "skipped: {} is absent (build the corpus with `bash /work/shared/corpus/build.sh`)",
            missing.display()
        );
        return None;
    }
    Some(paths)
}

fn layout_of(path: &Path) -> Layout {
    let file = File::open(path).unwrap();
    let found = layout(&file).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    found.unwrap_or_else(|| panic!("{}: not a model", path.display()))
}

/// Sorted by name, with each tensor's bytes.
fn by_name<'t>(layout: &'t Layout, file: &[u8]) -> Vec<(&'t Tensor, Vec<u8>)> {
    let mut tensors: Vec<_> = layout
        .tensors
        .iter()
        .chain(&layout.shared)
        .map(|t| {
            (
                t,
                file[t.range.start as usize..t.range.end as usize].to_vec(),
            )
        })
        .collect();
    tensors.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    tensors
}

/// The [`Layout`] invariant.
fn check_invariant(layout: &Layout, file_len: u64) {
    let mut end = layout.header_len;
    for t in &layout.tensors {
        assert!(end <= t.range.start, "{t:?} starts before {end}");
        assert!(
            t.range.start <= t.range.end && t.range.end <= file_len,
            "{t:?}"
        );
        end = t.range.end;
    }
    for s in &layout.shared {
        assert!(
            layout
                .tensors
                .iter()
                .any(|t| t.range.start <= s.range.start && s.range.end <= t.range.end),
            "{s:?} lies inside no tensor"
        );
    }
}

#[test]
fn pytorch_checkpoint_holds_the_safetensors_state_dict() {
    let Some(paths) = corpus(&["khmer-fp32.pth", "khmer-fp32.safetensors"]) else {
        return;
    };
    let (pth, st) = (
        std::fs::read(&paths[0]).unwrap(),
        std::fs::read(&paths[1]).unwrap(),
    );
    let (pth_layout, st_layout) = (layout_of(&paths[0]), layout_of(&paths[1]));
    assert_eq!(pth_layout.format, ModelFormat::PyTorch);
    check_invariant(&pth_layout, pth.len() as u64);
    // The LSTM's weights are views of one flattened storage, side by side: none shared.
    assert!(pth_layout.shared.is_empty());
    let (a, b) = (by_name(&pth_layout, &pth), by_name(&st_layout, &st));
    assert_eq!(a.len(), 67);
    assert_eq!(a.len(), b.len());
    for ((t, bytes), (u, expected)) in a.iter().zip(&b) {
        assert_eq!(
            (&t.name, &t.dtype, &t.shape),
            (&u.name, &u.dtype, &u.shape),
            "{}",
            t.name
        );
        assert!(bytes == expected, "{}: bytes differ", t.name);
    }
}

#[test]
fn gguf_files_hold_the_state_dict_at_their_types() {
    let Some(paths) = corpus(&[
        "khmer-f16.gguf",
        "khmer-q8_0.gguf",
        "khmer-fp32.safetensors",
    ]) else {
        return;
    };
    let reference = layout_of(&paths[2]);
    for (path, quantized) in [(&paths[0], 0), (&paths[1], 9)] {
        let gguf = layout_of(path);
        let len = std::fs::metadata(path).unwrap().len();
        assert_eq!(gguf.format, ModelFormat::Gguf);
        check_invariant(&gguf, len);
        assert_eq!(gguf.tensors.last().unwrap().range.end, len);
        let mut names: Vec<_> = gguf.tensors.iter().collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(names.len(), reference.tensors.len());
        let mut q8 = 0;
        for (t, r) in names.iter().zip({
            let mut r: Vec<_> = reference.tensors.iter().collect();
            r.sort_by(|a, b| a.name.cmp(&b.name));
            r
        }) {
            assert_eq!(t.name, r.name);
            // GGUF has no scalars: the counters are one-element vectors.
            let shape = if r.shape.is_empty() {
                vec![1]
            } else {
                r.shape.clone()
            };
            assert_eq!(t.shape, shape, "{}", t.name);
            let expected = match (&r.dtype, &t.dtype) {
                (DType::I64, _) => DType::I64,
                (_, DType::Other(q)) if q == "Q8_0" => {
                    q8 += 1;
                    DType::Other("Q8_0".into())
                }
                _ => DType::F16,
            };
            assert_eq!(t.dtype, expected, "{}", t.name);
        }
        assert_eq!(q8, quantized, "{}", path.display());
    }
}

#[test]
fn npy_and_npz_arrays_are_the_safetensors_tensors() {
    let Some(paths) = corpus(&[
        "npy/piper-largest.npy",
        "npy/piper-some.npz",
        "piper-fp32.safetensors",
    ]) else {
        return;
    };
    let st = std::fs::read(&paths[2]).unwrap();
    let reference = layout_of(&paths[2]);
    let find = |name: &str| {
        let t = reference.tensors.iter().find(|t| t.name == name).unwrap();
        (t, &st[t.range.start as usize..t.range.end as usize])
    };
    let npy = std::fs::read(&paths[0]).unwrap();
    let layout = layout_of(&paths[0]);
    assert_eq!(layout.format, ModelFormat::Npy);
    let [array] = &layout.tensors[..] else {
        panic!("{layout:?}")
    };
    let (t, bytes) = find("dec.ups.0.weight");
    assert_eq!((&array.dtype, &array.shape), (&t.dtype, &t.shape));
    assert_eq!(array.range.end, npy.len() as u64);
    assert!(&npy[array.range.start as usize..] == bytes);

    let npz = std::fs::read(&paths[1]).unwrap();
    let layout = layout_of(&paths[1]);
    assert_eq!(layout.format, ModelFormat::Npz);
    check_invariant(&layout, npz.len() as u64);
    assert_eq!(layout.tensors.len(), 5);
    for array in &layout.tensors {
        let (t, bytes) = find(&array.name);
        assert_eq!(
            (&array.dtype, &array.shape),
            (&t.dtype, &t.shape),
            "{}",
            t.name
        );
        assert!(&npz[array.range.start as usize..array.range.end as usize] == bytes);
    }
}

#[test]
fn onnx_initializers_are_the_safetensors_tensors() {
    let Some(paths) = corpus(&["piper-fp32.onnx", "piper-fp32.safetensors"]) else {
        return;
    };
    let (onnx, st) = (
        std::fs::read(&paths[0]).unwrap(),
        std::fs::read(&paths[1]).unwrap(),
    );
    let (onnx_layout, st_layout) = (layout_of(&paths[0]), layout_of(&paths[1]));
    assert_eq!(onnx_layout.format, ModelFormat::Onnx);
    check_invariant(&onnx_layout, onnx.len() as u64);
    // Every initializer has raw_data, and the export kept the state dict's names.
    let (a, b) = (by_name(&onnx_layout, &onnx), by_name(&st_layout, &st));
    assert_eq!(a.len(), 401);
    assert_eq!(a.len(), b.len());
    for ((t, bytes), (u, expected)) in a.iter().zip(&b) {
        assert_eq!(
            (&t.name, &t.dtype, &t.shape),
            (&u.name, &u.dtype, &u.shape),
            "{}",
            t.name
        );
        assert!(bytes == expected, "{}: bytes differ", t.name);
    }
}
