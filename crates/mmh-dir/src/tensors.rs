//! Where the tensors of an archived model file lie, read from the file's first bytes
//! without unfolding the rest: what `Archive.tensors` in the Python module (and a
//! listing of tensors) shows.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

use mmh_format::{EntryKind, ReadAt};
use mmh_model::{Layout, Sniff};
use mmh_verify::Chain;

use crate::unfold::{find_entry, read_range};
use crate::{Error, Result};

/// Bytes read first: the whole header of most model files.
const FIRST_HEAD: u64 = 64 << 10;
/// The longest head read to find a layout, as when folding (`chunking.rs`): a model
/// whose header is longer is listed as plain bytes.
const MAX_HEAD: u64 = 64 << 20;

/// The layout of the file entry `entry` if it is a model file (safetensors today), read
/// from its first bytes through [`read_range`] (64 KiB, then as much as the header
/// needs, up to 64 MiB); `None` for any other file.
///
/// A file that claims to be a model but breaks the format's rules is `None` too, as it
/// is to the fold, which stores it as plain bytes. Errors are those of reading the
/// archive (and [`Error::NoSuchEntry`], [`Error::NotAFile`]).
pub fn tensor_layout<R: ReadAt>(chain: &Chain<R>, entry: &str) -> Result<Option<Layout>> {
    let size = match &find_entry(chain.index(), entry)?.kind {
        EntryKind::File { size, .. } => *size,
        _ => {
            return Err(Error::NotAFile { name: entry.into() });
        }
    };
    layout_of(size, |range, head| {
        read_range(chain, entry, range, head).map(drop)
    })
}

/// The layout of the file at `path` if it is a model file, read as [`tensor_layout`]
/// reads an archived one; `None` for any other file (a directory or a missing file is
/// an error).
pub fn file_tensor_layout(path: &Path) -> Result<Option<Layout>> {
    let mut file = File::open(path).map_err(Error::io("cannot open the model file", Some(path)))?;
    let size = file
        .metadata()
        .map_err(Error::io("cannot read the metadata of", Some(path)))?
        .len();
    layout_of(size, |range, head| {
        file.seek(SeekFrom::Start(range.start))
            .and_then(|_| {
                (&mut file)
                    .take(range.end - range.start)
                    .read_to_end(head)
                    .map(drop)
            })
            .map_err(Error::io("cannot read the model file", Some(path)))
    })
}

/// Sniffs a file of `size` bytes whose byte ranges `read` appends to a buffer.
fn layout_of(
    size: u64,
    mut read: impl FnMut(Range<u64>, &mut Vec<u8>) -> Result<()>,
) -> Result<Option<Layout>> {
    let mut head = Vec::new();
    read(0..FIRST_HEAD.min(size), &mut head)?;
    loop {
        match mmh_model::sniff(&head, size) {
            Ok(Sniff::Model(layout)) => return Ok(Some(layout)),
            // Each pass reads strictly more, and never past MAX_HEAD: the loop ends.
            Ok(Sniff::NeedHead(needed))
                if needed <= MAX_HEAD.min(size) && needed > head.len() as u64 =>
            {
                let have = head.len() as u64;
                read(have..needed, &mut head)?;
                if (head.len() as u64) < needed {
                    // The file shrank while being read: not a model we can place.
                    return Ok(None);
                }
            }
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use mmh_format::Archive;
    use mmh_model::DType;

    use super::*;
    use crate::{EntryMeta, FoldOptions, Quiet, fold_stream};

    /// A safetensors file with one F32 tensor `w` of `n` elements and a header padded
    /// to `pad` bytes of JSON.
    fn safetensors(n: usize, pad: usize) -> Vec<u8> {
        let mut json = format!(
            r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
            n * 4
        );
        while json.len() < pad {
            json.push(' ');
        }
        let mut file = (json.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(json.as_bytes());
        for i in 0..n {
            file.extend_from_slice(&(i as f32).to_le_bytes());
        }
        file
    }

    fn archive_of(content: &[u8]) -> Chain<Vec<u8>> {
        let meta = EntryMeta {
            name: "m".into(),
            mode: 0o644,
            mtime: Default::default(),
        };
        let mut archive = Vec::new();
        fold_stream(content, meta, &mut archive, &FoldOptions::default(), &Quiet).unwrap();
        Chain::standalone(Archive::open(archive).unwrap()).unwrap()
    }

    #[test]
    fn finds_the_tensors_of_a_safetensors_file() {
        let file = safetensors(1000, 0);
        let layout = tensor_layout(&archive_of(&file), "m").unwrap().unwrap();
        assert_eq!(layout.tensors.len(), 1);
        assert_eq!(layout.tensors[0].dtype, DType::F32);
        assert_eq!(layout.tensors[0].shape, [1000]);
        assert_eq!(layout.tensors[0].range.end, file.len() as u64);
    }

    #[test]
    fn reads_past_the_first_head_for_a_long_header() {
        let file = safetensors(10, 200_000);
        let layout = tensor_layout(&archive_of(&file), "m").unwrap().unwrap();
        assert_eq!(layout.header_len, 8 + 200_000);
    }

    #[test]
    fn plain_and_broken_files_have_no_layout() {
        assert_eq!(
            tensor_layout(&archive_of(b"plain text"), "m").unwrap(),
            None
        );
        assert_eq!(tensor_layout(&archive_of(b""), "m").unwrap(), None);
        let mut truncated = safetensors(1000, 0);
        truncated.truncate(2000);
        assert_eq!(tensor_layout(&archive_of(&truncated), "m").unwrap(), None);
    }

    #[test]
    fn a_file_on_disk_has_the_layout_its_archive_has() {
        let file = safetensors(1000, 70_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, &file).unwrap();
        let on_disk = file_tensor_layout(&path).unwrap().unwrap();
        assert_eq!(
            Some(on_disk),
            tensor_layout(&archive_of(&file), "m").unwrap()
        );
        std::fs::write(&path, b"plain text").unwrap();
        assert_eq!(file_tensor_layout(&path).unwrap(), None);
        assert!(file_tensor_layout(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_missing_entry_is_an_error() {
        let err = tensor_layout(&archive_of(b"x"), "other").unwrap_err();
        assert!(matches!(err, Error::NoSuchEntry { .. }));
    }
}
