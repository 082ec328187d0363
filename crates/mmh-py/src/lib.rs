//! `mmh`, the Python module of MMH-RS: fold files, directories and streams into
//! verifiable, seekable archives, unfold and verify them, read entries and byte ranges,
//! and load tensors of archived safetensors files as numpy arrays.
//!
//! A thin shell over `mmh-dir` and `mmh-verify`, as the `mmh` CLI is: every operation
//! is one library call, made with the GIL released (`observe.rs` runs the long ones on a
//! worker thread so that progress callbacks and Ctrl-C reach them). Errors map to
//! exceptions in `errors.rs`; the API is documented for Python in `mmh.pyi`.
//!
//! Built with maturin (`maturin develop --release` in this directory); under cargo the
//! crate is a plain rlib, so that workspace builds need no Python library to link.
//! No Cargo features of its own: pyproject.toml turns on `pyo3/extension-module`.
#![forbid(unsafe_code)]

mod archive;
mod arrays;
mod errors;
mod observe;
mod reports;
mod writer;

use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use mmh_codecs::EncodeParams;
use mmh_dir::{Backend, BaseMode, FoldBase, FoldOptions, Observer, Overwrite, PendingFile};
use pyo3::exceptions::{PyRuntimeWarning, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::archive::{Archive, Entry, EntryReader, TensorInfo, hex, not_a_model};
use crate::errors::{Error, FormatError, IntegrityError, to_py};
use crate::observe::{detached, observed};
use crate::reports::{FoldReport, Report};
use crate::writer::Writer;

/// Fold options from the Python arguments (the CLI's defaults: zstd level 3, all cores).
pub(crate) fn fold_options(
    codec: &str,
    level: Option<i32>,
    threads: Option<usize>,
    base: Option<FoldBase>,
) -> mmh_dir::Result<FoldOptions> {
    let encode = EncodeParams {
        choice: codec.parse()?,
        zstd_level: level.unwrap_or(EncodeParams::default().zstd_level),
        zstd_long: false,
    };
    encode.validate()?;
    Ok(FoldOptions {
        encode,
        threads,
        base,
        ..FoldOptions::default()
    })
}

/// The backend `accel` names ("auto", "cpu", "opencl", "cuda"), as `--accel` opens it; a
/// device backend that cannot start is a RuntimeWarning, and the CPU does the work.
fn backend(py: Python<'_>, accel: &str) -> PyResult<Arc<Backend>> {
    let backend = accel
        .parse()
        .and_then(|choice| Backend::open(choice, None))
        .map_err(to_py)?;
    if let Some(reason) = backend.cpu_reason() {
        let reason = std::ffi::CString::new(reason).unwrap_or_default();
        PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &reason, 1)?;
    }
    Ok(Arc::new(backend))
}

fn overwrite(force: bool) -> Overwrite {
    if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    }
}

fn check_callable(progress: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    match progress {
        Some(p) if !p.is_callable() => Err(PyTypeError::new_err(
            "progress must be a callable taking the bytes processed, or None",
        )),
        _ => Ok(()),
    }
}

/// Folds the file or directory `src` into the archive `dst`, as `mmh fold` does.
///
/// codec: "auto" (per chunk among pattern, zstd, lz4 and store), "zstd", "lz4", "store"
/// or "pattern". level: zstd level, 1 to 22 (default 3). threads: worker threads
/// (default: all cores). base: an earlier archive whose chunks are referenced rather
/// than stored again (changed tensors become deltas); with self_contained=True they are
/// copied instead, so the archive stands alone. force: replace an existing `dst`.
/// accel: the backend for hashing, chunking and the tensor codec, "auto" (a GPU when
/// there is one), "cpu", "opencl" or "cuda"; the archive is the same bytes whichever.
/// progress: called with the input bytes folded so far (0 first, about 10 times a
/// second, then the total); an exception from it cancels the fold and propagates.
/// Nothing appears at `dst` unless the fold succeeds.
#[pyfunction]
#[pyo3(signature = (src, dst, codec = "auto", level = None, threads = None, base = None, self_contained = false, force = false, accel = "auto", progress = None))]
#[allow(clippy::too_many_arguments)] // the keyword arguments of the Python function
fn fold(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    codec: &str,
    level: Option<i32>,
    threads: Option<usize>,
    base: Option<PathBuf>,
    self_contained: bool,
    force: bool,
    accel: &str,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<FoldReport> {
    check_callable(progress.as_ref())?;
    if self_contained && base.is_none() {
        return Err(PyValueError::new_err("self_contained=True needs base"));
    }
    let mode = if self_contained {
        BaseMode::Copy
    } else {
        BaseMode::Reference
    };
    let options = fold_options(codec, level, threads, None).map_err(to_py)?;
    let accelerator = backend(py, accel)?;
    let (summary, pending) = observed(py, progress.as_ref(), |watch| {
        let options = FoldOptions {
            accelerator,
            base: base
                .as_deref()
                .map(|path| FoldBase::open(path, mode, &[]))
                .transpose()?,
            ..options
        };
        let mut pending = PendingFile::create(&dst, overwrite(force))?;
        let sink = BufWriter::with_capacity(1 << 20, pending.file());
        let walk = mmh_dir::WalkOptions::default();
        let summary = mmh_dir::fold_path(&src, &walk, sink, &options, watch)?;
        Ok((summary, pending))
    })?;
    // Committed only now: a progress callback that raised has had its last say.
    detached(py, || pending.commit())?;
    Ok(summary.into())
}

/// Unfolds `archive` into `dst`, as `mmh unfold` does; returns the bytes written.
///
/// An archive of one file (and no `paths`, or only that file's name) becomes the file
/// `dst`; any other the directory `dst`, with every entry or those under `paths`.
/// bases: the base archives it references, when they are not next to it under their
/// recorded names. force: replace existing files. accel: the backend that decodes
/// tensors, as for fold. progress: called with the bytes written so far; an exception
/// from it cancels the unfold and propagates.
#[pyfunction]
#[pyo3(
    signature = (archive, dst, paths = None, bases = Vec::new(), force = false, accel = "auto", progress = None),
    text_signature = "(archive, dst, paths=None, bases=(), force=False, accel='auto', progress=None)"
)]
#[allow(clippy::too_many_arguments)] // the keyword arguments of the Python function
fn unfold(
    py: Python<'_>,
    archive: PathBuf,
    dst: PathBuf,
    paths: Option<Vec<String>>,
    bases: Vec<PathBuf>,
    force: bool,
    accel: &str,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<u64> {
    check_callable(progress.as_ref())?;
    let paths = paths.unwrap_or_default();
    let accelerator = backend(py, accel)?;
    observed(py, progress.as_ref(), |watch| {
        let chain = mmh_dir::open_chain(&archive, &bases)?.with_accelerator(accelerator);
        Ok(mmh_dir::unfold_path(&chain, &dst, &paths, overwrite(force), watch)?.bytes)
    })
}

/// Decodes and checks everything in `archive`, as `mmh verify` does: frames, chunk and
/// file SHA-256, the Merkle root. Raises IntegrityError on damage.
///
/// accel: the backend that decodes tensors, as for fold. progress: called with the
/// content bytes checked so far; an exception from it propagates once the verification
/// has run to its end (it cannot stop early).
#[pyfunction]
#[pyo3(
    signature = (archive, bases = Vec::new(), accel = "auto", progress = None),
    text_signature = "(archive, bases=(), accel='auto', progress=None)"
)]
fn verify(
    py: Python<'_>,
    archive: PathBuf,
    bases: Vec<PathBuf>,
    accel: &str,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<Report> {
    check_callable(progress.as_ref())?;
    let accelerator = backend(py, accel)?;
    observed(py, progress.as_ref(), |watch| {
        let chain = mmh_dir::open_chain(&archive, &bases)?.with_accelerator(accelerator);
        let report = mmh_verify::verify_archive(&chain, &|bytes| watch.progress(bytes))?;
        Ok(report.into())
    })
}

/// Hex SHA-256 of the archive's index, as its trailer records it: the identity that
/// `base=` matches. Reads the trailer and the index only.
#[pyfunction]
fn fingerprint(py: Python<'_>, archive: PathBuf) -> PyResult<String> {
    detached(py, || {
        Ok(hex(&mmh_dir::open_file(&archive)?.index_digest()))
    })
}

/// Hex model fingerprint of `path` (docs/FINGERPRINT.md), as `mmh hash` prints it:
/// SHA-256 over the name, dtype, shape and data of every tensor, sorted by name. The
/// same for a model file, a directory of model files (the union of their tensors) and
/// an archive of either, which is read without unfolding it to disk. Raises ValueError
/// when `path` holds no tensors or two tensors share a name.
///
/// progress: called with the tensor bytes read so far; raising from it cancels.
#[pyfunction]
#[pyo3(
    signature = (path, bases = Vec::new(), progress = None),
    text_signature = "(path, bases=(), progress=None)"
)]
fn model_hash(
    py: Python<'_>,
    path: PathBuf,
    bases: Vec<PathBuf>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    check_callable(progress.as_ref())?;
    observed(py, progress.as_ref(), |watch| {
        Ok(mmh_dir::model_fingerprint(&path, &bases, watch)?.hex())
    })
}

/// Opens `archive` for reading, with the base archives it references (found among
/// `bases`, else next to it).
#[pyfunction]
#[pyo3(
    name = "open",
    signature = (archive, bases = Vec::new()),
    text_signature = "(archive, bases=())"
)]
fn open_archive(py: Python<'_>, archive: PathBuf, bases: Vec<PathBuf>) -> PyResult<Archive> {
    let chain = detached(py, || mmh_dir::open_chain(&archive, &bases))?;
    Ok(Archive::new(chain, archive.display().to_string()))
}

/// Every tensor of the safetensors file `path` in `archive`, by name, as numpy arrays
/// that share one buffer holding the decoded file (checked against its SHA-256).
#[pyfunction]
fn load_safetensors<'py>(
    py: Python<'py>,
    archive: PathBuf,
    path: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let (layout, bytes) = detached(py, || {
        let chain = mmh_dir::open_chain(&archive, &[])?;
        let Some(layout) = mmh_dir::tensor_layout(&chain, path)? else {
            return Ok(None);
        };
        let entry = mmh_dir::find_entry(chain.index(), path)?;
        let mut bytes = Vec::new();
        mmh_dir::unfold_entry(&chain, entry, &mut bytes, &mmh_dir::Quiet)?;
        Ok(Some((layout, bytes)))
    })?
    .ok_or_else(|| not_a_model(path))?;
    let whole = arrays::byte_array(py, bytes);
    let tensors = PyDict::new(py);
    for tensor in layout.all_tensors() {
        let array =
            arrays::tensor_view(&whole, tensor.range.clone(), &tensor.dtype, &tensor.shape)?;
        tensors.set_item(&tensor.name, array)?;
    }
    Ok(tensors)
}

/// Fold, unfold, verify and read MMH-RS archives; tensors of archived safetensors files
/// as numpy arrays.
#[pymodule]
fn mmh(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(fold, m)?)?;
    m.add_function(wrap_pyfunction!(unfold, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(model_hash, m)?)?;
    m.add_function(wrap_pyfunction!(open_archive, m)?)?;
    m.add_function(wrap_pyfunction!(load_safetensors, m)?)?;
    m.add_class::<FoldReport>()?;
    m.add_class::<Report>()?;
    m.add_class::<Entry>()?;
    m.add_class::<Archive>()?;
    m.add_class::<EntryReader>()?;
    m.add_class::<TensorInfo>()?;
    m.add_class::<Writer>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("FormatError", py.get_type::<FormatError>())?;
    Ok(())
}
