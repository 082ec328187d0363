//! safetensors layouts: valid files, short heads, non-models, hostile headers, properties,
//! and (when present) the real development corpus.

use std::path::Path;

use mmh_model::{DType, Error, Layout, MAX_HEADER_LEN, ModelFormat, Sniff, Tensor, sniff};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A safetensors file: `header` as JSON padded with `pad` spaces, then `data`.
fn build(header: &Value, pad: usize, data: &[u8]) -> Vec<u8> {
    let mut json = serde_json::to_vec(header).unwrap();
    json.resize(json.len() + pad, b' ');
    raw(&json, data)
}

/// A file with the header text given byte for byte.
fn raw(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(data);
    file
}

fn sniff_whole(file: &[u8]) -> Result<Sniff, Error> {
    sniff(file, file.len() as u64)
}

fn layout(file: &[u8]) -> Layout {
    match sniff_whole(file) {
        Ok(Sniff::Model(layout)) => layout,
        other => panic!("expected a model, got {other:?}"),
    }
}

fn error(file: &[u8]) -> Error {
    match sniff_whole(file) {
        Err(err) => err,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The [`Layout`] invariant: ranges within the file, after the header, sorted and disjoint.
fn check_invariant(layout: &Layout, file_len: u64) {
    let mut previous_end = layout.header_len;
    for tensor in &layout.tensors {
        assert!(
            previous_end <= tensor.range.start,
            "{tensor:?} starts before {previous_end}"
        );
        assert!(
            tensor.range.start <= tensor.range.end,
            "{tensor:?} is reversed"
        );
        assert!(
            tensor.range.end <= file_len,
            "{tensor:?} ends past {file_len}"
        );
        previous_end = tensor.range.end;
    }
}

fn tensor(name: &str, dtype: DType, shape: &[u64], range: std::ops::Range<u64>) -> Tensor {
    Tensor {
        name: name.to_owned(),
        dtype,
        shape: shape.to_vec(),
        range,
    }
}

/// A small valid file, its header length and its tensors.
fn valid_file() -> (Vec<u8>, u64) {
    let header = json!({
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "F16", "shape": [2], "data_offsets": [16, 20]},
    });
    let file = build(&header, 5, &[7; 20]);
    let header_len = file.len() as u64 - 20;
    (file, header_len)
}

#[test]
fn valid_file_reports_every_field() {
    // Offsets deliberately not in name order; header padded with spaces as writers do.
    let header = json!({
        "__metadata__": {"format": "pt", "note": "ignored"},
        "layer.0.weight": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [8, 20]},
        "layer.0.fp8": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [20, 24]},
        "step": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
        "empty": {"dtype": "F32", "shape": [0, 5], "data_offsets": [24, 24]},
        "mask": {"dtype": "BOOL", "shape": [3], "data_offsets": [24, 27]},
        "f8b": {"dtype": "F8_E5M2", "shape": [1, 1], "data_offsets": [27, 28]},
        "packed": {"dtype": "F4", "shape": [7], "data_offsets": [28, 32]},
    });
    let data: Vec<u8> = (0..32).collect();
    let file = build(&header, 7, &data);
    let h = file.len() as u64 - 32;
    let expected = Layout {
        format: ModelFormat::Safetensors,
        header_len: h,
        tensors: vec![
            tensor("step", DType::I64, &[], h..h + 8),
            tensor("layer.0.weight", DType::BF16, &[2, 3], h + 8..h + 20),
            tensor("layer.0.fp8", DType::F8E4M3, &[4], h + 20..h + 24),
            tensor("empty", DType::F32, &[0, 5], h + 24..h + 24),
            tensor("mask", DType::Bool, &[3], h + 24..h + 27),
            tensor("f8b", DType::F8E5M2, &[1, 1], h + 27..h + 28),
            // Unknown dtype: kept by name, byte length not checked against the shape.
            tensor("packed", DType::Other("F4".into()), &[7], h + 28..h + 32),
        ],
        shared: vec![],
    };
    assert_eq!(layout(&file), expected);
    assert_eq!(&file[8..9], b"{");
    assert!(file[..h as usize].ends_with(b"       "));
}

#[test]
fn dtype_names_sizes_and_float_flags() {
    let cases = [
        ("BOOL", DType::Bool, 1, false),
        ("U8", DType::U8, 1, false),
        ("I8", DType::I8, 1, false),
        ("I16", DType::I16, 2, false),
        ("U16", DType::U16, 2, false),
        ("I32", DType::I32, 4, false),
        ("U32", DType::U32, 4, false),
        ("I64", DType::I64, 8, false),
        ("U64", DType::U64, 8, false),
        ("F16", DType::F16, 2, true),
        ("BF16", DType::BF16, 2, true),
        ("F32", DType::F32, 4, true),
        ("F64", DType::F64, 8, true),
        ("F8_E4M3", DType::F8E4M3, 1, true),
        ("F8_E5M2", DType::F8E5M2, 1, true),
    ];
    for (name, dtype, size, float) in cases {
        let header = json!({"t": {"dtype": name, "shape": [3], "data_offsets": [0, 3 * size]}});
        let file = build(&header, 0, &vec![0; 3 * size as usize]);
        assert_eq!(layout(&file).tensors[0].dtype, dtype, "{name}");
        assert_eq!(dtype.size_bytes(), Some(size), "{name}");
        assert_eq!(dtype.is_float(), float, "{name}");
        assert_eq!(dtype.to_string(), name);
    }
    let other = DType::Other("C64".into());
    assert_eq!(
        (other.size_bytes(), other.is_float(), other.to_string()),
        (None, false, "C64".into())
    );
}

#[test]
fn short_heads_ask_for_more_then_parse() {
    let (file, header_len) = valid_file();
    let file_len = file.len() as u64;
    for short in [0, 5, 7] {
        assert_eq!(
            sniff(&file[..short], file_len).unwrap(),
            Sniff::NeedHead(8),
            "{short} bytes"
        );
    }
    for short in [8, 9, 10, 20, header_len as usize - 1] {
        let answer = sniff(&file[..short], file_len).unwrap();
        assert_eq!(answer, Sniff::NeedHead(header_len), "{short} bytes");
    }
    // Exactly the header is enough; the data need not be read.
    let from_header = sniff(&file[..header_len as usize], file_len).unwrap();
    assert_eq!(from_header, Sniff::Model(layout(&file)));
    assert_eq!(layout(&file).tensors.len(), 2);
}

#[test]
fn broken_claims_on_short_heads_ask_for_the_opening_bytes() {
    // The length alone cannot tell broken safetensors from another format.
    let huge = 10_000_000_000u64.to_le_bytes();
    assert_eq!(sniff(&huge, 1000).unwrap(), Sniff::NeedHead(10));
    let mut head = huge.to_vec();
    head.push(b'{');
    assert_eq!(sniff(&head, 1000).unwrap(), Sniff::NeedHead(10));
    head.push(b'"');
    assert!(matches!(
        sniff(&head, 1000),
        Err(Error::HeaderTooLarge { .. })
    ));
}

#[test]
fn non_models_are_not_models() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06\0\0\0";
    let zip = b"PK\x03\x04\x14\0\0\0\x08\0\0\0!\0model/data.pkl";
    let text = b"Once upon a time there was a model that was not a model at all.";
    let gguf_123_tensors = b"GGUF\x03\0\0\0{\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0";
    let npy = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
    let json_text = br#"{"not": "safetensors", "but": "plain JSON text"}"#;
    let tiny_header = raw(b"{", b"");
    let brace_then_junk = raw(b"{\x01\x02\x03", b"");
    for (what, bytes) in [
        ("png", &png[..]),
        ("zip", &zip[..]),
        ("text", &text[..]),
        ("json", &json_text[..]),
        ("empty", b""),
        ("9 bytes", b"\x02\0\0\0\0\0\0\0{"),
        ("1-byte header", &tiny_header[..]),
        ("brace then junk", &brace_then_junk[..]),
    ] {
        assert_eq!(sniff_whole(bytes).unwrap(), Sniff::NotAModel, "{what}");
    }
    // Other formats' heads are never taken for safetensors, whole or broken.
    for (what, bytes) in [("gguf", &gguf_123_tensors[..]), ("npy", &npy[..])] {
        let found = sniff_whole(bytes);
        assert!(
            !matches!(&found, Ok(Sniff::Model(l)) if l.format == ModelFormat::Safetensors),
            "{what}: {found:?}"
        );
        assert!(
            !matches!(&found, Err(e) if e.to_string().starts_with("safetensors")),
            "{what}: {found:?}"
        );
    }
    // Not a model even when only the start of a long file is given.
    assert_eq!(sniff(png, 1 << 30).unwrap(), Sniff::NotAModel);
    assert_eq!(sniff(b"", 0).unwrap(), Sniff::NotAModel);
}

#[test]
fn minimal_file_has_no_tensors() {
    let file = raw(b"{}", b"");
    let expected = Layout {
        format: ModelFormat::Safetensors,
        header_len: 10,
        tensors: vec![],
        shared: vec![],
    };
    assert_eq!(layout(&file), expected);
    let metadata_only = build(&json!({"__metadata__": {"a": "b"}}), 0, b"trailing");
    assert!(layout(&metadata_only).tensors.is_empty());
}

#[test]
fn gaps_trailing_data_and_empty_tensors_at_boundaries_are_allowed() {
    let header = json!({
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]},
        "edge": {"dtype": "U8", "shape": [0], "data_offsets": [6, 6]},
        "b": {"dtype": "U8", "shape": [2], "data_offsets": [10, 12]},
        "last": {"dtype": "U8", "shape": [0], "data_offsets": [20, 20]},
    });
    let file = build(&header, 0, &[0; 20]);
    let h = file.len() as u64 - 20;
    let names: Vec<_> = layout(&file)
        .tensors
        .into_iter()
        .map(|t| (t.name, t.range))
        .collect();
    let expected = [
        ("a", h + 2..h + 6),
        ("edge", h + 6..h + 6),
        ("b", h + 10..h + 12),
        ("last", h + 20..h + 20),
    ];
    assert_eq!(names, expected.map(|(n, r)| (n.to_owned(), r)));
}

#[test]
fn duplicate_keys_keep_the_last() {
    let header = br#"{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"t":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#;
    let file = raw(header, &[0; 3]);
    let h = 8 + header.len() as u64;
    assert_eq!(
        layout(&file).tensors,
        vec![tensor("t", DType::U8, &[2], h + 1..h + 3)]
    );
}

#[test]
fn metadata_is_ignored_whatever_it_holds() {
    let file = build(&json!({"__metadata__": [1, {"x": null}]}), 0, b"");
    assert!(layout(&file).tensors.is_empty());
}

#[test]
fn head_longer_than_file_is_an_error() {
    let (file, _) = valid_file();
    let err = sniff(&file, 3).unwrap_err();
    assert!(
        matches!(err, Error::HeadPastEnd { file_len: 3, .. }),
        "{err}"
    );
}

/// Hostile headers: each is an error that names the problem, never a panic.
#[test]
fn header_length_claiming_10_gb_is_an_error() {
    let mut file = 10_000_000_000u64.to_le_bytes().to_vec();
    file.extend_from_slice(br#"{"a": 1}"#);
    let err = error(&file);
    assert!(
        matches!(
            err,
            Error::HeaderTooLarge {
                claimed: 10_000_000_000,
                max: MAX_HEADER_LEN
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("10000000000"), "{err}");
    // Even when the file is that large.
    let err = sniff(&file, 20_000_000_000).unwrap_err();
    assert!(matches!(err, Error::HeaderTooLarge { .. }), "{err}");
}

#[test]
fn header_past_end_of_file_is_an_error() {
    let (mut file, header_len) = valid_file();
    file.truncate(header_len as usize - 1);
    let err = error(&file);
    assert!(
        matches!(err, Error::HeaderPastEnd { header_end, file_len, .. } if header_end == header_len && file_len == header_len - 1),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn offsets_past_the_end_are_an_error() {
    let header = json!({"t": {"dtype": "U8", "shape": [8], "data_offsets": [4, 12]}});
    let err = error(&build(&header, 0, &[0; 10]));
    assert!(
        matches!(&err, Error::TensorPastEnd { name, end: 12, data_len: 10 } if name == "t"),
        "{err}"
    );
    assert!(err.to_string().contains("\"t\""), "{err}");
    // Offsets near u64::MAX must not overflow when made absolute.
    let header = json!({"t": {"dtype": "U8", "shape": [0], "data_offsets": [u64::MAX, u64::MAX]}});
    assert!(matches!(
        error(&build(&header, 0, b"")),
        Error::TensorPastEnd { .. }
    ));
}

#[test]
fn overlapping_tensors_are_an_error() {
    let header = json!({
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [3, 7]},
    });
    let file = build(&header, 0, &[0; 8]);
    let h = file.len() as u64 - 8;
    let err = error(&file);
    assert!(
        matches!(&err, Error::Overlap { first, first_end, second, second_start, .. }
            if first == "a" && second == "b" && *first_end == h + 4 && *second_start == h + 3),
        "{err}"
    );
    // An empty tensor inside another one would put a cut inside it.
    let header = json!({
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "inside": {"dtype": "U8", "shape": [0], "data_offsets": [2, 2]},
    });
    assert!(matches!(
        error(&build(&header, 0, &[0; 4])),
        Error::Overlap { .. }
    ));
    // The same bytes twice under two names.
    let header = json!({
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "alias": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
    });
    assert!(matches!(
        error(&build(&header, 0, &[0; 4])),
        Error::Overlap { .. }
    ));
}

#[test]
fn begin_after_end_is_an_error() {
    let header = json!({"t": {"dtype": "U8", "shape": [2], "data_offsets": [6, 4]}});
    let err = error(&build(&header, 0, &[0; 8]));
    assert!(
        matches!(&err, Error::OffsetsReversed { name, begin: 6, end: 4 } if name == "t"),
        "{err}"
    );
}

#[test]
fn shape_product_overflow_is_an_error() {
    let header =
        json!({"t": {"dtype": "F32", "shape": [1u64 << 32, 1u64 << 31], "data_offsets": [0, 0]}});
    let err = error(&build(&header, 0, b""));
    assert!(
        matches!(&err, Error::ShapeOverflow { name, dtype: DType::F32, .. } if name == "t"),
        "{err}"
    );
    // Overflowing dimensions with a zero among them hold no elements.
    let header =
        json!({"t": {"dtype": "F32", "shape": [u64::MAX, u64::MAX, 0], "data_offsets": [0, 0]}});
    assert_eq!(
        layout(&build(&header, 0, b"")).tensors[0].shape,
        [u64::MAX, u64::MAX, 0]
    );
}

#[test]
fn byte_length_must_match_shape_and_dtype() {
    let header = json!({"t": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 6]}});
    let err = error(&build(&header, 0, &[0; 12]));
    assert!(
        matches!(&err, Error::LengthMismatch { name, dtype: DType::BF16, expected: 12, actual: 6, .. } if name == "t"),
        "{err}"
    );
    assert!(err.to_string().contains("needs 12 bytes"), "{err}");
}

#[test]
fn malformed_json_is_an_error() {
    // JSON that is not an object does not claim to be safetensors at all.
    assert_eq!(
        sniff_whole(&raw(b"[1, 2, 3]", b"")).unwrap(),
        Sniff::NotAModel
    );
    assert_eq!(sniff_whole(&raw(b"\"{}\"", b"")).unwrap(), Sniff::NotAModel);
    for (what, header) in [
        ("object then array", &b"{} [1, 2, 3]"[..]),
        ("unterminated string", b"{\"a\": \"unterminated"),
        ("unclosed object", b"{\"a\": {}"),
        ("trailing junk", b"{} x"),
        ("invalid utf-8 key", b"{\"\xff\xfe\": 1}"),
        (
            "invalid utf-8 value",
            b"{\"__metadata__\": {\"k\": \"\xc3\x28\"}}",
        ),
        ("nul padding", b"{}\0\0"),
    ] {
        let err = error(&raw(header, b""));
        assert!(matches!(err, Error::Json { .. }), "{what}: {err}");
    }
}

#[test]
fn malformed_entries_are_errors_naming_the_tensor() {
    for entry in [
        json!(5),
        json!({"dtype": "F32", "shape": [1]}),
        json!({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}),
        json!({"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}),
        json!({"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}),
        json!({"dtype": 7, "shape": [1], "data_offsets": [0, 4]}),
    ] {
        let err = error(&build(&json!({"bad": entry}), 0, &[0; 8]));
        assert!(
            matches!(&err, Error::Entry { name, .. } if name == "bad"),
            "{entry}: {err}"
        );
    }
}

/// Arbitrary bytes starting with a length and a JSON-ish opening.
fn plausible_prefix() -> impl Strategy<Value = Vec<u8>> {
    (
        2u64..400,
        prop::collection::vec(any::<u8>(), 0..400),
        any::<bool>(),
    )
        .prop_map(|(n, rest, quote)| {
            let mut bytes = n.to_le_bytes().to_vec();
            bytes.extend_from_slice(if quote { b"{\"" } else { b"{}" });
            bytes.extend(rest);
            bytes
        })
}

/// Valid files built from tensor sizes and gaps: (file, expected tensors).
fn generated_file() -> impl Strategy<Value = (Vec<u8>, Vec<Tensor>)> {
    let dtypes = prop::sample::select(vec![
        ("U8", DType::U8),
        ("BF16", DType::BF16),
        ("F32", DType::F32),
        ("F64", DType::F64),
        ("F8_E4M3", DType::F8E4M3),
    ]);
    let one = (dtypes, prop::collection::vec(0u64..4, 0..3), 0u64..5);
    (prop::collection::vec(one, 0..12), 0usize..4, 0u64..5).prop_map(|(specs, pad, tail)| {
        let mut header = serde_json::Map::new();
        let mut offsets = Vec::new();
        let mut end = 0;
        for (i, ((name, dtype), shape, gap)) in specs.into_iter().enumerate() {
            let len = shape.iter().product::<u64>() * dtype.size_bytes().unwrap();
            let begin = end + gap;
            end = begin + len;
            let tensor_name = format!("t{:02}.{name}", 11 - i);
            header.insert(
                tensor_name.clone(),
                json!({"dtype": name, "shape": shape, "data_offsets": [begin, end]}),
            );
            offsets.push(tensor(&tensor_name, dtype, &shape, begin..end));
        }
        let file = build(
            &Value::Object(header),
            pad,
            &vec![0xAB; (end + tail) as usize],
        );
        let h = file.len() as u64 - end - tail;
        for t in &mut offsets {
            t.range = h + t.range.start..h + t.range.end;
        }
        (file, offsets)
    })
}

/// No panic for any head of any length of the file; the answer is consistent.
fn check_any_head(bytes: &[u8], extra: u64) {
    let file_len = (bytes.len() as u64).saturating_add(extra);
    match sniff(bytes, file_len) {
        Ok(Sniff::Model(layout)) => check_invariant(&layout, file_len),
        Ok(Sniff::NeedHead(need)) => {
            assert!(
                need > bytes.len() as u64 && need <= file_len,
                "NeedHead({need})"
            );
            assert!(need <= 8 + MAX_HEADER_LEN, "NeedHead({need})");
        }
        Ok(Sniff::NotAModel) => {}
        Err(err) => assert!(!err.to_string().is_empty()),
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600),
                                   extra in prop_oneof![0u64..64, any::<u64>()]) {
        check_any_head(&bytes, extra);
    }

    #[test]
    fn plausible_prefixes_never_panic(bytes in plausible_prefix(),
                                      extra in prop_oneof![0u64..64, any::<u64>()]) {
        check_any_head(&bytes, extra);
    }

    #[test]
    fn generated_files_parse_exactly((file, tensors) in generated_file()) {
        let mut expected = tensors;
        expected.sort_by(|a, b| (a.range.start, a.range.end, &a.name).cmp(&(b.range.start, b.range.end, &b.name)));
        let parsed = layout(&file);
        check_invariant(&parsed, file.len() as u64);
        prop_assert_eq!(parsed.tensors, expected);
    }

    #[test]
    fn damaged_generated_files_never_panic((file, _) in generated_file(),
                                           flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                                           cut in any::<prop::sample::Index>()) {
        let mut file = file;
        for (at, byte) in flips {
            let i = at.index(file.len());
            file[i] = byte;
        }
        check_any_head(&file, 0);
        // Truncated: the whole of what is left, told the truth about its length.
        file.truncate(cut.index(file.len() + 1));
        check_any_head(&file, 0);
    }
}

/// Reads a file the way a caller would: a small head first, more when asked.
fn sniff_path(path: &Path) -> Result<Sniff, Error> {
    let bytes = std::fs::read(path).unwrap();
    let file_len = bytes.len() as u64;
    let mut head_len = bytes.len().min(4096);
    loop {
        match sniff(&bytes[..head_len], file_len)? {
            Sniff::NeedHead(need) => {
                assert!(
                    need as usize > head_len,
                    "{}: NeedHead({need}) with {head_len}",
                    path.display()
                );
                head_len = need as usize;
            }
            found => return Ok(found),
        }
    }
}

#[test]
fn dev_corpus_parses_contiguously() {
    let dir = Path::new("/tmp/mmh-dev-corpus");
    let Ok(manifest) = std::fs::read(dir.join("MANIFEST.json")) else {
        eprintln!(
            "skipped: {}/MANIFEST.json is absent (the real-model corpus is optional)",
            dir.display()
        );
        return;
    };
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let mut models = 0;
    for file in manifest["files"].as_array().unwrap() {
        let name = file["path"].as_str().unwrap();
        let path = dir.join(name);
        if !path.is_file() {
            eprintln!("{name}: listed but absent, not checked");
            continue;
        }
        let file_len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(file_len, file["bytes"].as_u64().unwrap(), "{name}");
        let found = sniff_path(&path).unwrap_or_else(|err| panic!("{name}: {err}"));
        if !name.ends_with(".safetensors") {
            // GGUF, PyTorch zip, ONNX, npy, tar, JSON: not safetensors, and not broken ones
            // (the other formats have tests of their own).
            if let Sniff::Model(layout) = &found {
                assert_ne!(layout.format, ModelFormat::Safetensors, "{name}");
            }
            continue;
        }
        let Sniff::Model(layout) = found else {
            panic!("{name}: {found:?}")
        };
        assert!(!layout.tensors.is_empty(), "{name}");
        let mut at = layout.header_len;
        for t in &layout.tensors {
            assert_eq!(t.range.start, at, "{name}: gap before {}", t.name);
            at = t.range.end;
        }
        assert_eq!(at, file_len, "{name}: the tensors do not reach the end");
        // Float tensors have the manifest's dtype; the rest are integer counters.
        let float = file["dtype"].as_str().unwrap();
        for t in &layout.tensors {
            let ok = if t.dtype.is_float() {
                t.dtype.to_string() == float
            } else {
                matches!(t.dtype, DType::I32 | DType::I64)
            };
            assert!(ok, "{name}: {t:?}");
        }
        models += 1;
    }
    assert!(models > 0, "no .safetensors in {}", dir.display());

    // Two versions of one model: same names, shapes and ranges (only values changed).
    let (base, v2) = (
        dir.join("piper-bf16.safetensors"),
        dir.join("piper-bf16-v2.safetensors"),
    );
    let changed = dir.join("piper-bf16-v2.changed.json");
    if base.is_file() && v2.is_file() && changed.is_file() {
        let (Sniff::Model(base), Sniff::Model(v2)) =
            (sniff_path(&base).unwrap(), sniff_path(&v2).unwrap())
        else {
            panic!("piper files are not models");
        };
        let changed: Value = serde_json::from_slice(&std::fs::read(changed).unwrap()).unwrap();
        let shape = |l: &Layout| {
            l.tensors
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone(), t.range.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(shape(&base), shape(&v2));
        assert_eq!(
            base.tensors.len() as u64,
            changed["tensor_count"].as_u64().unwrap()
        );
        let bytes: u64 = base
            .tensors
            .iter()
            .map(|t| t.range.end - t.range.start)
            .sum();
        assert_eq!(bytes, changed["bytes_total"].as_u64().unwrap());
        for name in changed["changed_tensors"].as_array().unwrap() {
            assert!(
                base.tensors
                    .iter()
                    .any(|t| t.name == name.as_str().unwrap()),
                "{name}"
            );
        }
    }
}
