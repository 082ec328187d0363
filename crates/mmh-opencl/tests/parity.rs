//! The device tests and the cross-backend parity suite on every OpenCL device: in CI,
//! PoCL. Without an OpenCL platform they skip, unless `MMH_REQUIRE_OPENCL=1`.

mmh_gpu::device_backend_tests!(
    mmh_opencl::OpenClDevice,
    mmh_opencl::open,
    "MMH_REQUIRE_OPENCL"
);
