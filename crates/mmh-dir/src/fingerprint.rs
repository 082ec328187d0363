//! The model fingerprint: one SHA-256 over the names, dtypes, shapes and data of a
//! model's tensors, whatever files hold them (one model file, the shards of a directory,
//! or an archive of either). The canonical form is specified byte by byte in
//! docs/FINGERPRINT.md; a change to it is a new version there and in [`DOMAIN`].

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use mmh_format::Digest;
use mmh_format::consts::MAGIC;
use mmh_model::{Layout, Tensor};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::tensor_listing::archived_files;
use crate::{Error, Observer, Result, file_tensor_layout, read_range, tensor_layout};

/// The domain tag that opens the canonical form (FINGERPRINT.md §1): it names the
/// construction and its version, so that no other SHA-256 input of this project (chunk,
/// entry or index digests) can produce the same value by accident.
const DOMAIN: &[u8] = b"mmh-model-fingerprint-v1\0";

/// A model's fingerprint and the files it was taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFingerprint {
    /// SHA-256 of the canonical form.
    pub digest: Digest,
    /// The model files that hold its tensors, sorted by name (a path relative to the
    /// directory, an archive entry's name, or a lone file's name), with how many
    /// tensors each holds.
    pub files: Vec<(String, usize)>,
}

impl ModelFingerprint {
    /// The digest in lowercase hexadecimal, as `mmh hash` prints it.
    pub fn hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// How many tensors the model has.
    pub fn tensors(&self) -> usize {
        self.files.iter().map(|(_, n)| n).sum()
    }
}

/// The fingerprint of the model at `path`: a model file, a directory (the union of the
/// tensors of every model file under it), or an `.mmh` archive of either (its bases
/// found among `bases` or next to it). An archive gives the value of the files it
/// holds; its tensors are decoded in memory ([`read_range`]), never written to disk.
///
/// Files and directories whose name starts with `.` are left out of a directory and of
/// an archive of one alike (`.git` and caches keep copies of the weights). Tensors are hashed
/// in parallel; the observer hears of each tensor's bytes and may cancel.
///
/// # Errors
/// [`Error::NoTensors`] when `path` holds no tensors, [`Error::DuplicateTensor`] when
/// two tensors share a name, [`Error::Cancelled`], and errors reading the files or the
/// archive.
pub fn model_fingerprint(
    path: &Path,
    bases: &[PathBuf],
    observer: &dyn Observer,
) -> Result<ModelFingerprint> {
    let meta =
        std::fs::metadata(path).map_err(Error::io("cannot read the metadata of", Some(path)))?;
    if meta.is_dir() {
        let files = model_files_under(path)?;
        let layouts = files
            .iter()
            .map(|(name, _, layout)| (name.as_str(), layout));
        fingerprint_of(path, layouts, observer, |file, range, out| {
            read_file_range(&files[file].1, range, out)
        })
    } else if is_archive(path)? {
        let chain = crate::open_chain(path, bases)?;
        // An archive of one file stands for that file, whatever its name; any other for
        // a directory.
        let tree = crate::single_file(chain.index()).is_err();
        let files = archived_files(chain.index())
            .filter(|(name, _)| !(tree && name.split('/').any(is_hidden)))
            .filter_map(|(name, _)| match tensor_layout(&chain, name) {
                Ok(Some(layout)) => Some(Ok((name, layout))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>>>()?;
        let layouts = files.iter().map(|(name, layout)| (*name, layout));
        fingerprint_of(path, layouts, observer, |file, range, out| {
            read_range(&chain, files[file].0, range, out).map(drop)
        })
    } else {
        let layout = file_tensor_layout(path)?;
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let layouts = layout.iter().map(|layout| (name.as_str(), layout));
        fingerprint_of(path, layouts, observer, |_, range, out| {
            read_file_range(path, range, out)
        })
    }
}

/// Whether a file starts with the archive magic (FORMAT.md §2) rather than a model's.
fn is_archive(path: &Path) -> Result<bool> {
    let mut head = Vec::with_capacity(MAGIC.len());
    File::open(path)
        .and_then(|f| f.take(MAGIC.len() as u64).read_to_end(&mut head))
        .map_err(Error::io("cannot read", Some(path)))?;
    Ok(head == MAGIC)
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// The model files under `dir` (symbolic links followed, as in a Hugging Face cache
/// whose snapshots link to blobs), each with its name relative to `dir` (`/`-separated),
/// its path and its layout.
fn model_files_under(dir: &Path) -> Result<Vec<(String, PathBuf, Layout)>> {
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_hidden(&e.file_name().to_string_lossy()));
    let mut files = Vec::new();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            Error::io("cannot walk", Some(&path))(e.into())
        })?;
        if entry.file_type().is_file() {
            let name = entry
                .path()
                .strip_prefix(dir)
                .unwrap_or(entry.path())
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            files.push((name, entry.into_path()));
        }
    }
    let layouts = files
        .par_iter()
        .map(|(_, path)| file_tensor_layout(path))
        .collect::<Result<Vec<_>>>()?;
    Ok(files
        .into_iter()
        .zip(layouts)
        .filter_map(|((name, path), layout)| Some((name, path, layout?)))
        .collect())
}

/// Writes bytes `range` of the file at `path` to `out`.
fn read_file_range(path: &Path, range: Range<u64>, out: &mut TensorHashers<'_>) -> Result<()> {
    let len = range.end - range.start;
    let mut file = File::open(path).map_err(Error::io("cannot open the model file", Some(path)))?;
    file.seek(SeekFrom::Start(range.start))
        .map_err(Error::io("cannot read the model file", Some(path)))?;
    let copied = io::copy(&mut BufReader::with_capacity(1 << 20, file.take(len)), out)
        .map_err(Error::io("cannot read the model file", Some(path)))?;
    if copied < len {
        // The layout was read from this file: it shrank since.
        return Err(Error::io("cannot read a tensor of", Some(path))(
            io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    Ok(())
}

/// What the canonical form takes from one tensor (FINGERPRINT.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TensorRecord {
    name: String,
    dtype: String,
    shape: Vec<u64>,
    data_len: u64,
    data_digest: Digest,
}

/// The span of file bytes one task reads: tensors are hashed a run at a time, runs in
/// parallel. A run reads its span once, so that an archive frame holding many small
/// tensors is decoded once per run rather than once per tensor; a run ends at the
/// first tensor boundary past this many bytes, so a frame is decoded at most twice.
const RUN_BYTES: u64 = 64 << 20;

/// Consecutive tensors of one file, read as one span.
struct Run<'a> {
    file: usize,
    span: Range<u64>,
    /// Sorted by start.
    tensors: Vec<&'a Tensor>,
}

/// Cuts each file's tensors into runs. A run ends only where no tensor before the cut
/// reaches past it, so that every tensor lies in one run even where ranges overlap.
fn runs<'a>(files: &[(&str, Vec<&'a Tensor>)]) -> Vec<Run<'a>> {
    let mut runs = Vec::new();
    for (file, (_, tensors)) in files.iter().enumerate() {
        let mut sorted = tensors.clone();
        sorted.sort_by_key(|t| (t.range.start, t.range.end));
        let mut run: Option<Run<'a>> = None;
        for tensor in sorted {
            match &mut run {
                Some(open)
                    if open.span.end > tensor.range.start
                        || open.span.end - open.span.start < RUN_BYTES =>
                {
                    open.span.end = open.span.end.max(tensor.range.end);
                    open.tensors.push(tensor);
                }
                _ => {
                    runs.extend(run.take());
                    run = Some(Run {
                        file,
                        span: tensor.range.clone(),
                        tensors: vec![tensor],
                    });
                }
            }
        }
        runs.extend(run);
    }
    runs
}

/// Takes the bytes of a run's span in order and feeds each tensor's hasher the bytes
/// that fall in its range (bytes between tensors are skipped).
struct TensorHashers<'a> {
    /// File offset of the next byte.
    at: u64,
    tensors: &'a [&'a Tensor],
    hashers: Vec<Sha256>,
    /// Tensors before this one end at or before `at`: with ranges sorted by start, the
    /// search for the tensors a write touches starts here.
    first: usize,
    observer: &'a dyn Observer,
}

impl io::Write for TensorHashers<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.observer.cancelled() {
            // Not `Interrupted`, which `write_all` would retry; the caller sees that
            // the observer cancelled.
            return Err(io::Error::other("cancelled"));
        }
        let end = self.at + bytes.len() as u64;
        while self
            .tensors
            .get(self.first)
            .is_some_and(|t| t.range.end <= self.at)
        {
            self.first += 1;
        }
        for (tensor, hasher) in self.tensors[self.first..]
            .iter()
            .zip(&mut self.hashers[self.first..])
            .take_while(|(t, _)| t.range.start < end)
        {
            let from = tensor.range.start.max(self.at) - self.at;
            let to = tensor.range.end.min(end).saturating_sub(self.at);
            if from < to {
                hasher.update(&bytes[from as usize..to as usize]);
            }
        }
        self.at = end;
        self.observer.progress(bytes.len() as u64);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The fingerprint of the tensors of `files` (name and layout of each model file),
/// `read` writing bytes `range` of file number `i` to the hashers. `path` names the
/// model in errors.
fn fingerprint_of<'a>(
    path: &Path,
    files: impl Iterator<Item = (&'a str, &'a Layout)>,
    observer: &dyn Observer,
    read: impl Fn(usize, Range<u64>, &mut TensorHashers<'_>) -> Result<()> + Sync,
) -> Result<ModelFingerprint> {
    let files: Vec<(&str, Vec<&Tensor>)> = files
        .map(|(file, layout)| (file, layout.all_tensors().collect()))
        .filter(|(_, tensors): &(_, Vec<_>)| !tensors.is_empty())
        .collect();
    let mut names: Vec<(&str, &str)> = files
        .iter()
        .flat_map(|(file, tensors)| tensors.iter().map(|t| (t.name.as_str(), *file)))
        .collect();
    if names.is_empty() {
        return Err(Error::NoTensors { path: path.into() });
    }
    names.sort();
    if let Some(pair) = names.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::DuplicateTensor {
            name: pair[0].0.into(),
            first: pair[0].1.into(),
            second: pair[1].1.into(),
        });
    }
    let hashed = runs(&files)
        .par_iter()
        .map(|run| {
            let mut hashers = TensorHashers {
                at: run.span.start,
                tensors: &run.tensors,
                hashers: vec![Sha256::new(); run.tensors.len()],
                first: 0,
                observer,
            };
            read(run.file, run.span.clone(), &mut hashers).map_err(|e| {
                if observer.cancelled() {
                    Error::Cancelled
                } else {
                    e
                }
            })?;
            Ok(run
                .tensors
                .iter()
                .zip(hashers.hashers)
                .map(|(tensor, hasher)| TensorRecord {
                    name: tensor.name.clone(),
                    dtype: tensor.dtype.to_string(),
                    shape: tensor.shape.clone(),
                    data_len: tensor.range.end - tensor.range.start,
                    data_digest: hasher.finalize().into(),
                })
                .collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut records: Vec<TensorRecord> = hashed.into_iter().flatten().collect();
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let mut counts: Vec<(String, usize)> = files
        .iter()
        .map(|(file, tensors)| ((*file).to_owned(), tensors.len()))
        .collect();
    counts.sort();
    Ok(ModelFingerprint {
        digest: canonical_digest(&records),
        files: counts,
    })
}

/// SHA-256 of the canonical form of `records`, which must be sorted by name, names
/// unique (FINGERPRINT.md §1).
fn canonical_digest(records: &[TensorRecord]) -> Digest {
    fn field(hasher: &mut Sha256, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update((records.len() as u64).to_le_bytes());
    for record in records {
        field(&mut hasher, record.name.as_bytes());
        field(&mut hasher, record.dtype.as_bytes());
        hasher.update((record.shape.len() as u64).to_le_bytes());
        for dim in &record.shape {
            hasher.update(dim.to_le_bytes());
        }
        hasher.update(record.data_len.to_le_bytes());
        hasher.update(record.data_digest);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FoldOptions, Quiet, WalkOptions, fold_path};

    /// The test vector of FINGERPRINT.md §4, computed there with Python's hashlib.
    const VECTOR: &str = "4a679e9e331a476ba692778d29b8fb9953ecef0af8a175c9b9e3ca4cdc125bde";

    /// The tiny model of FINGERPRINT.md §4, in file order (not name order).
    fn tiny_model() -> Vec<(&'static str, &'static str, Vec<u64>, Vec<u8>)> {
        let w: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        vec![
            ("w", "F32", vec![2, 2], w),
            ("b", "BF16", vec![2], vec![0x80, 0x3f, 0x80, 0xbf]),
            ("s", "I64", vec![], 7i64.to_le_bytes().to_vec()),
        ]
    }

    /// A safetensors file of `(name, dtype, shape, data)` tensors, in the order given.
    fn safetensors(tensors: &[(&str, &str, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
        let mut at = 0;
        let mut fields = Vec::new();
        for (name, dtype, shape, data) in tensors {
            let shape: Vec<String> = shape.iter().map(u64::to_string).collect();
            fields.push(format!(
                r#""{name}":{{"dtype":"{dtype}","shape":[{}],"data_offsets":[{at},{}]}}"#,
                shape.join(","),
                at + data.len()
            ));
            at += data.len();
        }
        let json = format!("{{{}}}", fields.join(","));
        let mut file = (json.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(json.as_bytes());
        for (.., data) in tensors {
            file.extend_from_slice(data);
        }
        file
    }

    fn records(tensors: &[(&str, &str, Vec<u64>, Vec<u8>)]) -> Vec<TensorRecord> {
        let mut records: Vec<TensorRecord> = tensors
            .iter()
            .map(|(name, dtype, shape, data)| TensorRecord {
                name: (*name).into(),
                dtype: (*dtype).into(),
                shape: shape.clone(),
                data_len: data.len() as u64,
                data_digest: Sha256::digest(data).into(),
            })
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    fn hex(digest: &Digest) -> String {
        ModelFingerprint {
            digest: *digest,
            files: Vec::new(),
        }
        .hex()
    }

    #[test]
    fn the_canonical_form_gives_the_documented_vector() {
        assert_eq!(hex(&canonical_digest(&records(&tiny_model()))), VECTOR);
    }

    #[test]
    fn every_field_of_a_tensor_counts() {
        let base = tiny_model();
        let mut variants = Vec::new();
        for change in 0..4 {
            let mut model = base.clone();
            match change {
                0 => model[0].0 = "v",
                1 => model[0].1 = "I32",
                2 => model[0].2 = vec![4],
                _ => model[0].3[0] ^= 1,
            }
            variants.push(hex(&canonical_digest(&records(&model))));
        }
        variants.push(VECTOR.into());
        variants.sort();
        variants.dedup();
        assert_eq!(variants.len(), 5);
    }

    #[test]
    fn a_file_its_archive_and_its_shards_have_one_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model();
        let file = dir.path().join("model.safetensors");
        std::fs::write(&file, safetensors(&model)).unwrap();
        let of = |path: &Path| model_fingerprint(path, &[], &Quiet).unwrap();
        let fingerprint = of(&file);
        assert_eq!(fingerprint.hex(), VECTOR);
        assert_eq!(fingerprint.files, [("model.safetensors".into(), 3)]);

        let shards = dir.path().join("shards");
        std::fs::create_dir_all(shards.join("sub")).unwrap();
        std::fs::write(shards.join("a.safetensors"), safetensors(&model[..1])).unwrap();
        std::fs::write(shards.join("sub/b.safetensors"), safetensors(&model[1..])).unwrap();
        std::fs::write(shards.join("README.md"), "not a model").unwrap();
        // Hidden files are left out: a copy of a shard there is no duplicate.
        std::fs::create_dir(shards.join(".cache")).unwrap();
        std::fs::write(shards.join(".cache/a.safetensors"), safetensors(&model)).unwrap();
        let sharded = of(&shards);
        assert_eq!(sharded.digest, fingerprint.digest);
        assert_eq!(
            sharded.files,
            [("a.safetensors".into(), 1), ("sub/b.safetensors".into(), 2)]
        );

        // A lone file's archive is that file, hidden name or not.
        let hidden = dir.path().join(".model.safetensors");
        std::fs::copy(&file, &hidden).unwrap();
        for input in [&file, &shards, &hidden] {
            let archive = dir.path().join("a.mmh");
            let out = File::create(&archive).unwrap();
            fold_path(
                input,
                &WalkOptions::default(),
                out,
                &FoldOptions::default(),
                &Quiet,
            )
            .unwrap();
            assert_eq!(of(&archive).digest, fingerprint.digest, "{input:?}");
        }
    }

    #[test]
    fn a_name_in_two_files_and_a_model_without_tensors_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model();
        std::fs::write(dir.path().join("1.safetensors"), safetensors(&model)).unwrap();
        std::fs::write(dir.path().join("2.safetensors"), safetensors(&model[2..])).unwrap();
        let err = model_fingerprint(dir.path(), &[], &Quiet).unwrap_err();
        assert!(
            matches!(&err, Error::DuplicateTensor { name, first, second }
                if name == "s" && first == "1.safetensors" && second == "2.safetensors"),
            "{err}"
        );

        let plain = dir.path().join("notes.txt");
        std::fs::write(&plain, "not a model").unwrap();
        let err = model_fingerprint(&plain, &[], &Quiet).unwrap_err();
        assert!(matches!(&err, Error::NoTensors { path } if *path == plain));
        let empty = tempfile::tempdir().unwrap();
        let err = model_fingerprint(empty.path(), &[], &Quiet).unwrap_err();
        assert!(matches!(err, Error::NoTensors { .. }));
        assert!(matches!(
            model_fingerprint(&dir.path().join("missing"), &[], &Quiet),
            Err(Error::Io { .. })
        ));
    }
}
