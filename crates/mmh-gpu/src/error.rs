//! The error type of the device backends.

/// Everything that can go wrong on a device backend. Whatever the data, these are
/// failures of the platform: the pipeline reports them and can fall back to the CPU.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend's runtime (the OpenCL ICD loader, the CUDA driver, NVRTC) is missing,
    /// or lists no platform.
    #[error("{backend} unavailable: {reason}")]
    NoRuntime {
        /// The backend, such as `"opencl"`.
        backend: &'static str,
        /// What is missing, and what would provide it.
        reason: String,
    },

    /// No device, or none of the ones asked for.
    #[error("no {backend} device{which}")]
    NoDevice {
        /// The backend.
        backend: &'static str,
        /// Which device was asked for, if any (with a leading space).
        which: String,
    },

    /// A kernel source did not compile for a device.
    #[error("{backend} kernels {kernels} do not build on {device}: {log}")]
    Build {
        /// The backend.
        backend: &'static str,
        /// The kernel file, such as `"sha256.cl"`.
        kernels: &'static str,
        /// The device's name.
        device: String,
        /// The compiler's log.
        log: String,
    },

    /// The device's output differed from the CPU's on the check [`GpuAccelerator::new`]
    /// runs before a device is used, so it is not used.
    ///
    /// [`GpuAccelerator::new`]: crate::GpuAccelerator::new
    #[error("{backend} devices failed the check against the CPU, so they are not used: {detail}")]
    Mismatch {
        /// The backend.
        backend: &'static str,
        /// The first difference.
        detail: String,
    },

    /// A runtime call failed.
    #[error("{backend} {call} failed on {device}: {reason}")]
    Call {
        /// The backend.
        backend: &'static str,
        /// What was being done, such as `"clEnqueueNDRangeKernel"`.
        call: &'static str,
        /// The device's name.
        device: String,
        /// The runtime's error.
        reason: String,
    },
}

impl Error {
    /// The backend that failed.
    pub fn backend(&self) -> &'static str {
        match self {
            Error::NoRuntime { backend, .. }
            | Error::NoDevice { backend, .. }
            | Error::Build { backend, .. }
            | Error::Mismatch { backend, .. }
            | Error::Call { backend, .. } => backend,
        }
    }

    /// Whether the backend has no device to run on here (as opposed to failing on one).
    pub fn is_absent(&self) -> bool {
        matches!(self, Error::NoRuntime { .. } | Error::NoDevice { .. })
    }
}

impl From<Error> for mmh_codecs::Error {
    fn from(error: Error) -> Self {
        mmh_codecs::Error::Backend {
            backend: error.backend(),
            reason: error.to_string(),
        }
    }
}
