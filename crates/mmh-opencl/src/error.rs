//! The error type of this crate.

/// Everything that can go wrong in `mmh-opencl`. Whatever the data, these are failures of
/// the platform: the pipeline reports them and can fall back to the CPU.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No OpenCL ICD loader (`libOpenCL.so.1`) could be loaded, or it lists no platform.
    #[error("no OpenCL platform: {0} (install an OpenCL driver, e.g. Debian's pocl-opencl-icd)")]
    NoPlatform(String),

    /// The platforms list no device, or none of the ones asked for.
    #[error("no OpenCL device{0}")]
    NoDevice(String),

    /// A kernel source did not compile for a device.
    #[error("OpenCL kernels {kernels} do not build on {device}: {log}")]
    Build {
        /// The kernel file, such as `"sha256.cl"`.
        kernels: &'static str,
        /// The device's name.
        device: String,
        /// The compiler's log.
        log: String,
    },

    /// An OpenCL call failed.
    #[error("OpenCL {call} failed on {device}: {code}")]
    Call {
        /// What was being done, such as `"enqueue sha256_chunks"`.
        call: &'static str,
        /// The device's name.
        device: String,
        /// The OpenCL error.
        code: opencl3::error_codes::ClError,
    },
}

impl From<Error> for mmh_codecs::Error {
    fn from(error: Error) -> Self {
        mmh_codecs::Error::Backend {
            backend: "opencl",
            reason: error.to_string(),
        }
    }
}
