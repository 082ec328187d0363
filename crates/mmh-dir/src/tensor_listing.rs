//! The tensors of the model files in an archive: one row per tensor with the archive
//! bytes it takes (`mmh list --tensors`), and finding one tensor by name (`mmh cat
//! --tensor`).

use mmh_format::{EntryKind, Index, ReadAt};
use mmh_model::Tensor;
use mmh_verify::Chain;

use crate::list::stored_share;
use crate::{Error, Result, tensor_layout};

/// One tensor of a model file in an archive.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorListing {
    /// The file entry that holds it.
    pub file: String,
    /// The tensor: name, dtype, shape and byte range in the file.
    pub tensor: Tensor,
    /// Archive bytes its data take: for each chunk it overlaps, the chunk's frame's
    /// share by raw length of the bytes they have in common (as
    /// [`EntryListing::stored`](crate::EntryListing::stored) counts whole chunks; bytes
    /// held by a base count nothing).
    pub stored: u64,
}

impl TensorListing {
    /// Raw size of the tensor's data.
    pub fn size(&self) -> u64 {
        self.tensor.range.end - self.tensor.range.start
    }
}

/// The files of the archive, in archive order, with their sizes.
pub(crate) fn archived_files(index: &Index) -> impl Iterator<Item = (&str, u64)> {
    index.entries.iter().filter_map(|e| match &e.kind {
        EntryKind::File { size, .. } => Some((e.name.as_str(), *size)),
        _ => None,
    })
}

/// Every tensor of every model file in the archive, files in archive order and tensors
/// in file order. Reads the first bytes of each file (decoding the chunks that hold
/// them) to find its layout; files that are not models are left out.
pub fn list_tensors<R: ReadAt>(chain: &Chain<R>) -> Result<Vec<TensorListing>> {
    let index = chain.index();
    let mut rows = Vec::new();
    for (file, _) in archived_files(index) {
        let Some(layout) = tensor_layout(chain, file)? else {
            continue;
        };
        let chunks = chunk_spans(index, file)?;
        rows.extend(layout.all_tensors().map(|tensor| TensorListing {
            file: file.to_owned(),
            stored: stored_in(index, &chunks, &tensor.range).round() as u64,
            tensor: tensor.clone(),
        }));
    }
    Ok(rows)
}

/// Tensor `name` of the model file `entry`.
///
/// # Errors
/// [`Error::NotAModel`] when the file is not a model file this build recognises,
/// [`Error::NoSuchTensor`] when it has no tensor of that name, and the errors of
/// [`tensor_layout`].
pub fn find_tensor<R: ReadAt>(chain: &Chain<R>, entry: &str, name: &str) -> Result<Tensor> {
    let layout =
        tensor_layout(chain, entry)?.ok_or_else(|| Error::NotAModel { path: entry.into() })?;
    layout
        .all_tensors()
        .find(|t| t.name == name)
        .cloned()
        .ok_or_else(|| Error::NoSuchTensor {
            file: entry.into(),
            name: name.into(),
        })
}

/// A file's chunks in content order, each with the offset of its first byte.
fn chunk_spans(index: &Index, file: &str) -> Result<Vec<(u64, u32)>> {
    let EntryKind::File { chunks, .. } = &crate::find_entry(index, file)?.kind else {
        return Err(Error::NotAFile { name: file.into() });
    };
    let mut at = 0u64;
    Ok(chunks
        .iter()
        .map(|&c| {
            let span = (at, c);
            at += u64::from(index.chunks[c as usize].raw_len);
            span
        })
        .collect())
}

/// The archive bytes that the content bytes `range` take, given the file's chunk spans.
fn stored_in(index: &Index, chunks: &[(u64, u32)], range: &std::ops::Range<u64>) -> f64 {
    // The first chunk that ends after the range starts: the last one starting at or
    // before it.
    let first = chunks
        .partition_point(|&(start, _)| start <= range.start)
        .saturating_sub(1);
    chunks[first..]
        .iter()
        .take_while(|&&(start, _)| start < range.end)
        .map(|&(start, c)| {
            let record = &index.chunks[c as usize];
            let end = start + u64::from(record.raw_len);
            let overlap = end.min(range.end).saturating_sub(start.max(range.start));
            stored_share(index, record, overlap)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use mmh_format::Archive;

    use super::*;
    use crate::{CdcParams, EntryMeta, FoldOptions, Quiet, fold_stream, list_entries};

    /// A safetensors file of F32 tensors `(name, values)`, in the order given.
    fn safetensors(tensors: &[(&str, Vec<f32>)]) -> Vec<u8> {
        let mut at = 0;
        let fields: Vec<String> = tensors
            .iter()
            .map(|(name, values)| {
                let end = at + values.len() * 4;
                let field = format!(
                    r#""{name}":{{"dtype":"F32","shape":[{}],"data_offsets":[{at},{end}]}}"#,
                    values.len()
                );
                at = end;
                field
            })
            .collect();
        let json = format!("{{{}}}", fields.join(","));
        let mut file = (json.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(json.as_bytes());
        for (_, values) in tensors {
            file.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        }
        file
    }

    /// Folds `content` with small chunks and frames, so that most frames lie within one
    /// tensor and a tensor's share follows its own compression.
    fn archive_of(content: &[u8]) -> Chain<Vec<u8>> {
        let meta = EntryMeta {
            name: "m.safetensors".into(),
            mode: 0o644,
            mtime: Default::default(),
        };
        let options = FoldOptions {
            cdc: CdcParams {
                min_size: 4 << 10,
                avg_size: 16 << 10,
                max_size: 64 << 10,
            },
            frame_size: 64 << 10,
            ..FoldOptions::default()
        };
        let mut archive = Vec::new();
        fold_stream(content, meta, &mut archive, &options, &Quiet).unwrap();
        Chain::standalone(Archive::open(archive).unwrap()).unwrap()
    }

    /// Noise that does not compress, so that each tensor's share is close to its size.
    fn noise(n: usize, seed: u32) -> Vec<f32> {
        // xorshift32: every bit random, exponents included.
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                f32::from_bits(x)
            })
            .collect()
    }

    #[test]
    fn tensor_shares_add_up_to_the_file_stored_size() {
        let file = safetensors(&[
            ("a", noise(100_000, 1)),
            ("b", vec![0.0; 200_000]),
            ("c", noise(50_000, 2)),
        ]);
        let chain = archive_of(&file);
        let rows = list_tensors(&chain).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.tensor.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(rows.iter().all(|r| r.file == "m.safetensors"));
        assert_eq!(rows[1].size(), 800_000);
        // Zeros fold to almost nothing; noise does not compress.
        assert!(rows[1].stored < 10_000, "{}", rows[1].stored);
        assert!(rows[0].stored > 390_000, "{}", rows[0].stored);
        // Besides the tensors, the file holds only its header (a few hundred bytes);
        // the entry's stored size rounds per chunk, a tensor's once.
        let entry = list_entries(chain.index())[0].stored;
        let tensors: u64 = rows.iter().map(|r| r.stored).sum();
        assert!(tensors <= entry + 100, "{tensors} > {entry}");
        assert!(entry - tensors.min(entry) < 2_000, "{tensors} << {entry}");
    }

    #[test]
    fn a_tensor_is_found_by_name_and_unknown_ones_are_errors() {
        let chain = archive_of(&safetensors(&[("a", vec![1.0; 10]), ("b", vec![2.0; 5])]));
        let b = find_tensor(&chain, "m.safetensors", "b").unwrap();
        assert_eq!(b.shape, [5]);
        assert!(matches!(
            find_tensor(&chain, "m.safetensors", "z"),
            Err(Error::NoSuchTensor { file, name }) if file == "m.safetensors" && name == "z"
        ));
        let plain = archive_of(b"not a model");
        assert!(matches!(
            find_tensor(&plain, "m.safetensors", "a"),
            Err(Error::NotAModel { .. })
        ));
        assert!(list_tensors(&plain).unwrap().is_empty());
    }
}
