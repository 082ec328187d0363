//! safetensors: an 8-byte little-endian header length `n`, `n` bytes of JSON header (a
//! UTF-8 object, padded with trailing spaces), then the tensor data. Each header key names a
//! tensor, `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}`, with offsets
//! relative to the start of the data at `8 + n`; the key `__metadata__` holds a
//! string-to-string map, which is ignored here.
//! Format: <https://github.com/huggingface/safetensors#format>.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    DType, Error, Layout, MAX_HEADER_LEN, ModelFormat, Result, Sniff, Tensor, byte_len,
    sorted_disjoint,
};

/// Bytes of the header length field.
const LEN_FIELD: u64 = 8;
/// The shortest header: `{}`.
const MIN_HEADER: u64 = 2;
/// Header lengths with either of the two high bytes set (256 TiB and more) are read as "not
/// safetensors" rather than "broken safetensors": eight bytes of text or of another binary
/// format give such lengths, and a real header is never near that size.
const IMPLAUSIBLE_LEN: u64 = 1 << 48;
/// The header key that is not a tensor.
const METADATA_KEY: &str = "__metadata__";

/// One tensor's entry in the header.
#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// See [`crate::sniff`]; `head.len() <= file_len` has been checked.
pub(crate) fn sniff(head: &[u8], file_len: u64) -> Result<Sniff> {
    if file_len < LEN_FIELD + MIN_HEADER {
        return Ok(Sniff::NotAModel);
    }
    let Some(len_field) = head.first_chunk::<8>() else {
        return Ok(Sniff::NeedHead(LEN_FIELD));
    };
    let claimed = u64::from_le_bytes(*len_field);
    let opens = opens_header(head);
    if opens == Some(false) || !(MIN_HEADER..IMPLAUSIBLE_LEN).contains(&claimed) {
        return Ok(Sniff::NotAModel);
    }
    // No overflow: claimed < 2^48.
    let header_end = LEN_FIELD + claimed;
    let broken = if claimed > MAX_HEADER_LEN {
        Some(Error::HeaderTooLarge {
            claimed,
            max: MAX_HEADER_LEN,
        })
    } else if header_end > file_len {
        Some(Error::HeaderPastEnd {
            header_end,
            file_len,
        })
    } else {
        None
    };
    if let Some(err) = broken {
        // Only a header opening after the length makes the file claim to be safetensors.
        return match opens {
            Some(_) => Err(err),
            None => Ok(Sniff::NeedHead(LEN_FIELD + MIN_HEADER)),
        };
    }
    // header_end <= 8 + MAX_HEADER_LEN fits in usize; `get` is None while head is short.
    let header = usize::try_from(header_end)
        .ok()
        .and_then(|end| head.get(8..end));
    let Some(header) = header else {
        return Ok(Sniff::NeedHead(header_end));
    };
    parse_header(header, header_end, file_len).map(Sniff::Model)
}

/// Whether the bytes after the length field open a JSON object the way a safetensors header
/// does: `{` then `"`, `}` or whitespace. Two bytes rather than one, so that another format
/// whose ninth byte happens to be `{` (a GGUF file with 123 tensors) is not taken for broken
/// safetensors. `None` while `head` ends too early to tell.
fn opens_header(head: &[u8]) -> Option<bool> {
    match head.get(8..).unwrap_or_default() {
        [] | [b'{'] => None,
        [b'{', next, ..] => Some(matches!(next, b'"' | b'}' | b' ' | b'\t' | b'\n' | b'\r')),
        _ => Some(false),
    }
}

/// Parses and validates the JSON `header`, which ends at byte `header_end` of a file of
/// `file_len >= header_end` bytes.
fn parse_header(header: &[u8], header_end: u64, file_len: u64) -> Result<Layout> {
    // Entries stay borrowed raw text until each is parsed, so a hostile header costs little
    // more memory than its own (capped) size. Duplicate keys: the last one wins.
    let entries: BTreeMap<String, &RawValue> =
        serde_json::from_slice(header).map_err(|source| Error::Json { header_end, source })?;
    let data_len = file_len - header_end;
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, raw) in entries {
        if name == METADATA_KEY {
            continue;
        }
        let entry: Entry = match serde_json::from_str(raw.get()) {
            Ok(entry) => entry,
            Err(source) => return Err(Error::Entry { name, source }),
        };
        tensors.push(tensor(name, entry, header_end, data_len)?);
    }
    Ok(Layout {
        format: ModelFormat::Safetensors,
        header_len: header_end,
        tensors: sorted_disjoint(ModelFormat::Safetensors, tensors)?,
        shared: Vec::new(),
    })
}

/// Validates one entry against the data section (`data_len` bytes from `header_end`).
fn tensor(name: String, entry: Entry, header_end: u64, data_len: u64) -> Result<Tensor> {
    let Entry {
        dtype,
        shape,
        data_offsets: [begin, end],
    } = entry;
    if begin > end {
        return Err(Error::OffsetsReversed { name, begin, end });
    }
    if end > data_len {
        return Err(Error::TensorPastEnd {
            name,
            end,
            data_len,
        });
    }
    let dtype = DType::from_safetensors_name(&dtype);
    if let Some(expected) = byte_len(ModelFormat::Safetensors, &name, &dtype, &shape)? {
        let actual = end - begin;
        if expected != actual {
            return Err(Error::LengthMismatch {
                name,
                dtype,
                shape,
                expected,
                actual,
            });
        }
    }
    // No overflow: end <= data_len = file_len - header_end.
    let range = header_end + begin..header_end + end;
    Ok(Tensor {
        name,
        dtype,
        shape,
        range,
    })
}
