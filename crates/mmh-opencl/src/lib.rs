//! The OpenCL backend of `mmh_codecs::Accelerator` (opencl3, ICD loader loaded at run
//! time, kernels from `kernels/`), tested on PoCL in CI.
//!
//! Not written yet: it is the subject of the "GPU acceleration, part 1" issue. Until then
//! this crate exports nothing, so nothing can mistake it for a working backend.
#![forbid(unsafe_code)]
