//! The CUDA backend of `mmh_codecs::Accelerator` (cudarc with dynamic loading, kernels
//! compiled at run time by NVRTC from `kernels/`).
//!
//! Not written yet: it is the subject of the "GPU acceleration, part 2" issue. Until then
//! this crate exports nothing, so nothing can mistake it for a working backend.
#![forbid(unsafe_code)]
