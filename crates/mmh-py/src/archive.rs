//! `Archive` (an open archive and its bases), `EntryReader` (a seekable file object
//! over one entry), and the plain records they hand out: `Entry`, `TensorInfo`.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mmh_dir::Chain;
use mmh_format::{EntryKind, Index};
use mmh_model::Layout;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::arrays::tensor_array;
use crate::observe::detached;

/// An archive opened for reading.
type Shared = Arc<Chain<File>>;

/// The size of the file entry `name`, if it is one.
fn file_size(index: &Index, name: &str) -> Option<u64> {
    match &mmh_dir::find_entry(index, name).ok()?.kind {
        EntryKind::File { size, .. } => Some(*size),
        _ => None,
    }
}

/// A `bytes` object of `len` bytes filled by `fill` with the GIL released; `fill` must
/// write exactly `len` bytes.
fn bytes_from<'py>(
    py: Python<'py>,
    len: u64,
    fill: impl FnOnce(&mut &mut [u8]) -> mmh_dir::Result<()> + Send,
) -> PyResult<Bound<'py, PyBytes>> {
    let len = usize::try_from(len)
        .map_err(|_| pyo3::exceptions::PyMemoryError::new_err("entry too large"))?;
    PyBytes::new_with(py, len, |buffer| {
        detached(py, move || {
            let mut rest = buffer;
            fill(&mut rest)?;
            if !rest.is_empty() {
                return Err(mmh_dir::Error::Io {
                    context: "reading",
                    path: None,
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            Ok(())
        })
    })
}

/// Bytes `start..end` of the file entry `name` (the end clamped to its size), each chunk
/// checked against its SHA-256.
fn read_range<'py>(
    py: Python<'py>,
    chain: &Shared,
    name: &str,
    start: u64,
    end: u64,
) -> PyResult<Bound<'py, PyBytes>> {
    // A range the library refuses gets no buffer; the library says why.
    let len = file_size(chain.index(), name)
        .filter(|&size| start <= end && start <= size)
        .map_or(0, |size| end.min(size) - start);
    bytes_from(py, len, |out| {
        mmh_dir::read_range(chain, name, start..end, out).map(|_| ())
    })
}

/// An archive opened for reading, with the base archives it references.
///
/// Use it as a context manager, or call `close()`; readers opened from it stay usable
/// after it is closed.
#[pyclass(frozen, module = "mmh")]
pub(crate) struct Archive {
    chain: Mutex<Option<Shared>>,
    path: String,
    /// Model layouts already read, by entry name: `tensor()` calls in a row read the
    /// file's header once.
    layouts: Mutex<HashMap<String, Arc<Option<Layout>>>>,
}

impl Archive {
    pub(crate) fn new(chain: Chain<File>, path: String) -> Self {
        Archive {
            chain: Mutex::new(Some(Arc::new(chain))),
            path,
            layouts: Mutex::default(),
        }
    }

    fn chain(&self) -> PyResult<Shared> {
        self.chain
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| PyValueError::new_err("I/O operation on a closed archive"))
    }

    /// The layout of model file `path`, if it is one.
    fn layout(&self, py: Python<'_>, path: &str) -> PyResult<Arc<Option<Layout>>> {
        let chain = self.chain()?;
        if let Some(known) = self.layouts.lock().expect("not poisoned").get(path) {
            return Ok(Arc::clone(known));
        }
        let layout = Arc::new(detached(py, || mmh_dir::tensor_layout(&chain, path))?);
        self.layouts
            .lock()
            .expect("not poisoned")
            .insert(path.to_owned(), Arc::clone(&layout));
        Ok(layout)
    }
}

#[pymethods]
impl Archive {
    /// Every entry of the archive, in archive order.
    fn entries(&self) -> PyResult<Vec<Entry>> {
        let chain = self.chain()?;
        Ok(mmh_dir::list_entries(chain.index())
            .iter()
            .map(|listing| Entry::new(listing.entry, listing.size))
            .collect())
    }

    /// The whole content of file entry `path`, every chunk and the whole file checked
    /// against their SHA-256.
    fn read<'py>(&self, py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyBytes>> {
        let chain = self.chain()?;
        let entry = mmh_dir::find_entry(chain.index(), path).map_err(crate::errors::to_py)?;
        let size = file_size(chain.index(), path).unwrap_or(0);
        bytes_from(py, size, |out| {
            mmh_dir::unfold_entry(&chain, entry, out, &mmh_dir::Quiet).map(|_| ())
        })
    }

    /// Bytes `start` to `end` of file entry `path` (`end` is clamped to its size),
    /// decoding only the chunks that overlap them, each checked against its SHA-256.
    fn read_range<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        start: u64,
        end: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        read_range(py, &self.chain()?, path, start, end)
    }

    /// A read-only, seekable binary file object over file entry `path`.
    fn open(&self, path: &str) -> PyResult<EntryReader> {
        let chain = self.chain()?;
        let entry = mmh_dir::find_entry(chain.index(), path).map_err(crate::errors::to_py)?;
        let EntryKind::File { size, .. } = entry.kind else {
            return Err(crate::errors::to_py(mmh_dir::Error::NotAFile {
                name: path.into(),
            }));
        };
        Ok(EntryReader {
            chain: Mutex::new(Some(chain)),
            name: path.into(),
            size,
            position: AtomicU64::new(0),
        })
    }

    /// The tensors of model file `path` (safetensors), in file order; an empty list for
    /// a file that is not a model. Without `path`, those of every model file in the
    /// archive, in archive order (this reads the first bytes of every file).
    #[pyo3(signature = (path=None))]
    fn tensors(&self, py: Python<'_>, path: Option<&str>) -> PyResult<Vec<TensorInfo>> {
        let paths: Vec<String> = match path {
            Some(path) => vec![path.to_owned()],
            None => self
                .chain()?
                .index()
                .entries
                .iter()
                .filter(|e| matches!(e.kind, mmh_format::EntryKind::File { .. }))
                .map(|e| e.name.clone())
                .collect(),
        };
        let mut tensors = Vec::new();
        for path in &paths {
            if let Some(layout) = Option::as_ref(&*self.layout(py, path)?) {
                tensors.extend(layout.all_tensors().map(|t| TensorInfo::new(path, t)));
            }
        }
        Ok(tensors)
    }

    /// Tensor `name` of model file `path` as a numpy array of its dtype and shape,
    /// decoding only the chunks that hold it. The array owns the decoded bytes (no copy).
    fn tensor<'py>(&self, py: Python<'py>, path: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let chain = self.chain()?;
        let layout = self.layout(py, path)?;
        let tensor = Option::as_ref(&*layout)
            .ok_or_else(|| not_a_model(path))?
            .all_tensors()
            .find(|t| t.name == name)
            .ok_or_else(|| PyKeyError::new_err(format!("no tensor named {name:?} in {path:?}")))?;
        let range = tensor.range.clone();
        let bytes = detached(py, || {
            let mut bytes =
                Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
            mmh_dir::read_range(&chain, path, range, &mut bytes)?;
            Ok(bytes)
        })?;
        tensor_array(py, bytes, &tensor.dtype, &tensor.shape)
    }

    /// Closes the archive (readers opened from it stay open).
    fn close(&self) {
        self.chain.lock().expect("not poisoned").take();
        self.layouts.lock().expect("not poisoned").clear();
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.chain.lock().expect("not poisoned").is_none()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { " (closed)" } else { "" };
        format!("<mmh.Archive {:?}{state}>", self.path)
    }
}

pub(crate) fn not_a_model(path: &str) -> PyErr {
    PyValueError::new_err(format!("entry {path:?} is not a safetensors file"))
}

/// A read-only, seekable binary file over one file entry of an archive. Each read
/// decodes only the chunks it overlaps, each checked against its SHA-256.
#[pyclass(frozen, module = "mmh")]
pub(crate) struct EntryReader {
    chain: Mutex<Option<Shared>>,
    name: String,
    size: u64,
    position: AtomicU64,
}

impl EntryReader {
    fn chain(&self) -> PyResult<Shared> {
        self.chain
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| PyValueError::new_err("I/O operation on closed file."))
    }

    /// The range `read(n)` covers from the current position.
    fn next_range(&self, n: Option<i64>) -> (u64, u64) {
        let start = self.position.load(Ordering::Relaxed);
        let end = match n {
            Some(n) if n >= 0 => start.saturating_add(n as u64).min(self.size),
            _ => self.size,
        };
        (start, end.max(start))
    }
}

#[pymethods]
impl EntryReader {
    /// Reads up to `n` bytes (all that remain when `n` is negative or None); `b""` at
    /// the end.
    #[pyo3(signature = (n = -1), text_signature = "($self, n=-1)")]
    fn read<'py>(&self, py: Python<'py>, n: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let chain = self.chain()?;
        let (start, end) = self.next_range(n);
        if start >= end {
            return Ok(PyBytes::new(py, b""));
        }
        let bytes = read_range(py, &chain, &self.name, start, end)?;
        self.position.store(end, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Reads into the writable buffer `buffer` (bytearray, memoryview, ...); returns the
    /// number of bytes read, 0 at the end.
    fn readinto(&self, py: Python<'_>, buffer: pyo3::buffer::PyBuffer<u8>) -> PyResult<usize> {
        let chain = self.chain()?;
        let (start, end) = self.next_range(i64::try_from(buffer.item_count()).ok());
        if start >= end {
            return Ok(0);
        }
        let data = detached(py, || {
            let mut data = Vec::with_capacity((end - start) as usize);
            mmh_dir::read_range(&chain, &self.name, start..end, &mut data)?;
            Ok(data)
        })?;
        if data.len() == buffer.item_count() {
            buffer.copy_from_slice(py, &data)?;
        } else {
            // A short read (at the end of the entry) fills only the start of the buffer;
            // pyo3 copies whole buffers only, so the rest is copied back unchanged.
            let mut whole = buffer.to_vec(py)?;
            whole[..data.len()].copy_from_slice(&data);
            buffer.copy_from_slice(py, &whole)?;
        }
        self.position.store(end, Ordering::Relaxed);
        Ok(data.len())
    }

    /// Moves to `offset` from the start (`whence` 0), the current position (1) or the
    /// end (2); returns the new position. Positions past the end are allowed.
    #[pyo3(signature = (offset, whence = 0))]
    fn seek(&self, offset: i64, whence: i32) -> PyResult<u64> {
        self.chain()?;
        let base = match whence {
            0 => 0,
            1 => self.position.load(Ordering::Relaxed),
            2 => self.size,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "invalid whence ({whence}, should be 0, 1 or 2)"
                )));
            }
        };
        let position = i128::from(base) + i128::from(offset);
        let position = u64::try_from(position)
            .map_err(|_| PyValueError::new_err(format!("negative seek position {position}")))?;
        self.position.store(position, Ordering::Relaxed);
        Ok(position)
    }

    /// The current position.
    fn tell(&self) -> PyResult<u64> {
        self.chain()?;
        Ok(self.position.load(Ordering::Relaxed))
    }

    /// True: readers can seek.
    fn seekable(&self) -> PyResult<bool> {
        self.chain()?;
        Ok(true)
    }

    /// True: readers can read.
    fn readable(&self) -> PyResult<bool> {
        self.chain()?;
        Ok(true)
    }

    /// False: readers cannot write.
    fn writable(&self) -> PyResult<bool> {
        self.chain()?;
        Ok(false)
    }

    /// Does nothing (the reader has nothing to write); there for `io.BufferedReader`.
    fn flush(&self) -> PyResult<()> {
        self.chain()?;
        Ok(())
    }

    /// Closes the reader; further reads raise ValueError.
    fn close(&self) {
        self.chain.lock().expect("not poisoned").take();
    }

    /// Whether the reader is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.chain.lock().expect("not poisoned").is_none()
    }

    /// The entry's name in the archive.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The entry's size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { " (closed)" } else { "" };
        format!("<mmh.EntryReader {:?}{state}>", self.name)
    }
}

/// One entry of an archive.
#[pyclass(frozen, get_all, module = "mmh", name = "Entry")]
pub(crate) struct Entry {
    /// Path in the archive, `/`-separated.
    name: String,
    /// "file", "directory", "symlink" or "hardlink".
    kind: &'static str,
    /// Content size in bytes (0 for anything but a file).
    size: u64,
    /// Unix permission bits.
    mode: u32,
    /// Modification time, in seconds since the Unix epoch.
    mtime: f64,
    /// What a link points to (None for files and directories).
    target: Option<String>,
    /// Hex SHA-256 of a file's content (None for anything but a file).
    digest: Option<String>,
}

impl Entry {
    fn new(entry: &mmh_format::Entry, size: u64) -> Self {
        let (kind, target, digest) = match &entry.kind {
            EntryKind::File { digest, .. } => ("file", None, Some(hex(digest))),
            EntryKind::Directory => ("directory", None, None),
            EntryKind::Symlink { target } => ("symlink", Some(target.clone()), None),
            EntryKind::HardLink { target } => ("hardlink", Some(target.clone()), None),
        };
        Entry {
            name: entry.name.clone(),
            kind,
            size,
            mode: entry.mode,
            mtime: entry.mtime.secs as f64 + f64::from(entry.mtime.nanos) / 1e9,
            target,
            digest,
        }
    }
}

#[pymethods]
impl Entry {
    fn __repr__(&self) -> String {
        let mut repr = format!(
            "Entry(name={:?}, kind={:?}, size={}, mode=0o{:o}",
            self.name, self.kind, self.size, self.mode
        );
        if let Some(target) = &self.target {
            repr.push_str(&format!(", target={target:?}"));
        }
        repr.push(')');
        repr
    }
}

/// Where one tensor of a model file lies and what it holds.
#[pyclass(frozen, module = "mmh")]
pub(crate) struct TensorInfo {
    path: String,
    name: String,
    dtype: String,
    shape: Vec<u64>,
    offset: u64,
    nbytes: u64,
}

impl TensorInfo {
    fn new(path: &str, tensor: &mmh_model::Tensor) -> Self {
        TensorInfo {
            path: path.to_owned(),
            name: tensor.name.clone(),
            dtype: tensor.dtype.to_string(),
            shape: tensor.shape.clone(),
            offset: tensor.range.start,
            nbytes: tensor.range.end - tensor.range.start,
        }
    }
}

#[pymethods]
impl TensorInfo {
    /// The model file (entry name) holding the tensor.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// The tensor's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Its element type as safetensors names it ("BF16", "F32", "F8_E4M3", ...).
    #[getter]
    fn dtype(&self) -> &str {
        &self.dtype
    }

    /// Its dimensions, outermost first; () for a scalar.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    /// Byte offset of its data in the file.
    #[getter]
    fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes of data.
    #[getter]
    fn nbytes(&self) -> u64 {
        self.nbytes
    }

    fn __repr__(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(u64::to_string).collect();
        let comma = if dims.len() == 1 { "," } else { "" };
        format!(
            "TensorInfo(name={:?}, dtype={:?}, shape=({}{comma}), offset={}, nbytes={})",
            self.name,
            self.dtype,
            dims.join(", "),
            self.offset,
            self.nbytes
        )
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
