//! Tensors as numpy arrays: the bytes decoded by the library become the array's own
//! buffer (`PyArray1::from_vec`), viewed with the tensor's dtype and shape.

use mmh_model::DType;
use numpy::PyArray1;
use pyo3::exceptions::{PyImportError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PySlice, PyTuple};

/// The numpy dtype of a safetensors element type: a little-endian type string, or an
/// `ml_dtypes` type for bfloat16 and float8 when that package imports (else the unsigned
/// integer of the same width).
fn numpy_dtype<'py>(py: Python<'py>, dtype: &DType) -> PyResult<Bound<'py, PyAny>> {
    let (name, ml_dtype) = match dtype {
        DType::Bool => ("|b1", None),
        DType::U8 => ("|u1", None),
        DType::I8 => ("|i1", None),
        DType::I16 => ("<i2", None),
        DType::U16 => ("<u2", None),
        DType::I32 => ("<i4", None),
        DType::U32 => ("<u4", None),
        DType::I64 => ("<i8", None),
        DType::U64 => ("<u8", None),
        DType::F16 => ("<f2", None),
        DType::F32 => ("<f4", None),
        DType::F64 => ("<f8", None),
        DType::BF16 => ("<u2", Some("bfloat16")),
        DType::F8E4M3 => ("|u1", Some("float8_e4m3fn")),
        DType::F8E5M2 => ("|u1", Some("float8_e5m2")),
        other => {
            return Err(PyValueError::new_err(format!(
                "tensors of dtype {other} have no numpy equivalent"
            )));
        }
    };
    if let Some(ml_dtype) = ml_dtype {
        match py.import("ml_dtypes") {
            Ok(module) => return module.getattr(ml_dtype),
            Err(err) if err.is_instance_of::<PyImportError>(py) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(pyo3::types::PyString::new(py, name).into_any())
}

/// A numpy array of `dtype` and `shape` over `bytes`, without copying them.
pub(crate) fn tensor_array<'py>(
    py: Python<'py>,
    bytes: Vec<u8>,
    dtype: &DType,
    shape: &[u64],
) -> PyResult<Bound<'py, PyAny>> {
    view(PyArray1::from_vec(py, bytes).into_any(), dtype, shape)
}

/// `bytes` (a one-dimensional uint8 array) viewed as `dtype` and `shape`.
fn view<'py>(
    bytes: Bound<'py, PyAny>,
    dtype: &DType,
    shape: &[u64],
) -> PyResult<Bound<'py, PyAny>> {
    let py = bytes.py();
    let shape = PyTuple::new(py, shape)?;
    bytes
        .call_method1("view", (numpy_dtype(py, dtype)?,))?
        .call_method1("reshape", (shape,))
}

/// Slice `range` of the uint8 array `whole`, viewed as `dtype` and `shape`; the result
/// shares `whole`'s buffer.
pub(crate) fn tensor_view<'py>(
    whole: &Bound<'py, PyAny>,
    range: std::ops::Range<u64>,
    dtype: &DType,
    shape: &[u64],
) -> PyResult<Bound<'py, PyAny>> {
    let index = |at: u64| {
        isize::try_from(at).map_err(|_| PyValueError::new_err("tensor offset out of range"))
    };
    let slice = PySlice::new(whole.py(), index(range.start)?, index(range.end)?, 1);
    view(whole.get_item(slice)?, dtype, shape)
}

/// The whole-file buffer that [`tensor_view`] slices.
pub(crate) fn byte_array(py: Python<'_>, bytes: Vec<u8>) -> Bound<'_, PyAny> {
    PyArray1::from_vec(py, bytes).into_any()
}
