//! The device tests and the cross-backend parity suite on every CUDA device. Without a
//! CUDA driver they skip, unless `MMH_REQUIRE_CUDA=1` (set it on GPU machines).

mmh_gpu::device_backend_tests!(mmh_cuda::CudaDevice, mmh_cuda::open, "MMH_REQUIRE_CUDA");
