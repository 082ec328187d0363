//! Where the tensors of an archived model file lie, read from the file's first bytes
//! without unfolding the rest: what `Archive.tensors` in the Python module (and a
//! listing of tensors) shows.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::Path;

use mmh_format::{EntryKind, ReadAt};
use mmh_model::{Layout, ModelSource};
use mmh_verify::Chain;

use crate::chunking::placed;
use crate::unfold::{find_entry, read_range};
use crate::{Error, Result};

/// The layout of the file entry `entry` if it is a model file (see [`mmh_model::layout`]
/// for the formats), read through [`read_range`] without unfolding the rest; `None` for
/// any other file.
///
/// A file that claims to be a model but breaks the format's rules is `None` too: the fold
/// stores it as plain bytes. Errors are those of reading the archive (and
/// [`Error::NoSuchEntry`], [`Error::NotAFile`]).
pub fn tensor_layout<R: ReadAt>(chain: &Chain<R>, entry: &str) -> Result<Option<Layout>> {
    let size = match &find_entry(chain.index(), entry)?.kind {
        EntryKind::File { size, .. } => *size,
        _ => {
            return Err(Error::NotAFile { name: entry.into() });
        }
    };
    placed(mmh_model::layout(&EntrySource::new(chain, entry, size)))
}

/// The layout of the file at `path` if it is a model file, read as [`tensor_layout`]
/// reads an archived one; `None` for any other file (a directory or a missing file is
/// an error).
pub fn file_tensor_layout(path: &Path) -> Result<Option<Layout>> {
    let file = File::open(path).map_err(Error::io("cannot open the model file", Some(path)))?;
    match mmh_model::layout(&file) {
        Err(mmh_model::Error::Read { source, .. }) => {
            Err(Error::io("cannot read the model file", Some(path))(source))
        }
        found => placed(found),
    }
}

/// An archived file, read anywhere through [`read_range`]: how [`mmh_model::layout`] reads
/// an archive's entry. Its read errors carry the archive's [`Error`], which [`placed`]
/// returns as itself.
pub(crate) struct EntrySource<'c, R: ReadAt> {
    chain: &'c Chain<R>,
    name: &'c str,
    size: u64,
}

impl<'c, R: ReadAt> EntrySource<'c, R> {
    pub(crate) fn new(chain: &'c Chain<R>, name: &'c str, size: u64) -> Self {
        EntrySource { chain, name, size }
    }
}

impl<R: ReadAt> ModelSource for EntrySource<'_, R> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, range: Range<u64>, buf: &mut Vec<u8>) -> io::Result<()> {
        let want = range.end.saturating_sub(range.start);
        let read = read_range(self.chain, self.name, range, &mut *buf).map_err(io::Error::other)?;
        if read < want {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
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
