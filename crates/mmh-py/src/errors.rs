//! The module's exceptions and the mapping from the library's errors to them. The
//! message is always the error's `Display` text, the line the CLI prints after
//! `mmh: error: `.

use std::io;

use pyo3::exceptions::{
    PyException, PyFileExistsError, PyFileNotFoundError, PyIsADirectoryError, PyNotADirectoryError,
    PyOSError, PyPermissionError, PyValueError,
};
use pyo3::{PyErr, create_exception};

create_exception!(
    mmh,
    Error,
    PyException,
    "Base class of the errors of the mmh module (also raised as is for errors of no \
     narrower class, such as a missing entry or a base archive that cannot be found)."
);
create_exception!(
    mmh,
    IntegrityError,
    Error,
    "The archive's bytes are damaged or hostile: a checksum or SHA-256 mismatch, a \
     truncated or malformed archive, an entry name that would escape the target (what \
     `mmh` exits with code 3 for)."
);
create_exception!(
    mmh,
    FormatError,
    Error,
    "The file is not an MMH archive, or one of a format version this build cannot read."
);

/// Converts a library error into the Python exception the API promises.
pub(crate) fn to_py(err: mmh_dir::Error) -> PyErr {
    let message = err.to_string();
    if matches!(err, mmh_dir::Error::OutputExists { .. }) {
        return PyFileExistsError::new_err(message);
    }
    if is_bad_argument(&err) {
        return PyValueError::new_err(message);
    }
    if format_error(&err).is_some_and(is_not_an_archive) {
        return FormatError::new_err(message);
    }
    if err.is_integrity() {
        return IntegrityError::new_err(message);
    }
    if let Some(io) = io_source(&err) {
        return os_error(io.kind(), message);
    }
    Error::new_err(message)
}

/// Options out of range, an unknown codec name, a byte range outside its entry, a path
/// given as a model that holds none (or one with two tensors of a name).
fn is_bad_argument(err: &mmh_dir::Error) -> bool {
    use mmh_codecs::Error as Codec;
    match err {
        mmh_dir::Error::InvalidOption(_)
        | mmh_dir::Error::BadRange { .. }
        | mmh_dir::Error::NoTensors { .. }
        | mmh_dir::Error::DuplicateTensor { .. } => true,
        mmh_dir::Error::Codec(codec) => matches!(
            codec,
            Codec::UnknownCodecName { .. }
                | Codec::InvalidLevel { .. }
                | Codec::InvalidCdcParams { .. }
        ),
        _ => false,
    }
}

/// The container error under `err`, if that is what it is.
fn format_error(err: &mmh_dir::Error) -> Option<&mmh_format::Error> {
    match err {
        mmh_dir::Error::Format(e) => Some(e),
        mmh_dir::Error::Verify(e) => match &**e {
            mmh_verify::Error::Format(e) => Some(e),
            _ => None,
        },
        _ => None,
    }
}

/// A file that does not start like an archive, or an archive of a newer version.
fn is_not_an_archive(err: &mmh_format::Error) -> bool {
    match err {
        mmh_format::Error::UnsupportedVersion { .. } => true,
        mmh_format::Error::BadMagic { offset, .. } => *offset == 0,
        _ => false,
    }
}

/// The operating-system error at the root of `err`, if any.
fn io_source(err: &mmh_dir::Error) -> Option<&io::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cause = e.source();
    }
    None
}

/// The built-in `OSError` subclass for `kind`, as Python's own file functions raise.
pub(crate) fn os_error(kind: io::ErrorKind, message: String) -> PyErr {
    match kind {
        io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        io::ErrorKind::AlreadyExists => PyFileExistsError::new_err(message),
        io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
        io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(message),
        io::ErrorKind::NotADirectory => PyNotADirectoryError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}
