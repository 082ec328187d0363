//! The kernels, embedded so that binaries need no files at run time.
//!
//! Each operation's kernels are one source (the workspace's `kernels/*.cl`): OpenCL C 1.2,
//! limited to what maps one to one onto CUDA C, which `kernels/cuda.cuh` does when put in
//! front of it. One source is what makes the backends' output the same bytes by
//! construction, not by care.

/// Each kernel file's name and source, without a prelude.
pub const SOURCES: [(&str, &str); 3] = [
    ("sha256.cl", include_str!("../../../kernels/sha256.cl")),
    ("cdc.cl", include_str!("../../../kernels/cdc.cl")),
    ("tensor.cl", include_str!("../../../kernels/tensor.cl")),
];

/// What makes a kernel source CUDA C, for NVRTC with `-default-device`.
pub const CUDA_PRELUDE: &str = include_str!("../../../kernels/cuda.cuh");

/// The index of the kernel file `file` in [`SOURCES`].
pub fn index(file: &str) -> usize {
    SOURCES
        .iter()
        .position(|&(name, _)| name == file)
        .expect("a kernel file of SOURCES")
}
