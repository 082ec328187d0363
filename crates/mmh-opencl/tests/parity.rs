//! The cross-backend parity suite (`mmh_codecs::parity`) on every OpenCL device: in CI,
//! PoCL. Without an OpenCL platform the tests skip, unless `MMH_REQUIRE_OPENCL=1`.

use std::sync::OnceLock;

use mmh_codecs::Accelerator;
use mmh_opencl::OpenClAccelerator;

/// Opened once: building the kernels takes PoCL about a second.
fn opencl() -> Option<&'static dyn Accelerator> {
    static BACKEND: OnceLock<Option<OpenClAccelerator>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            OpenClAccelerator::new(None)
                .inspect_err(|e| eprintln!("OpenCL: {e}"))
                .ok()
        })
        .as_ref()
        .map(|backend| backend as &dyn Accelerator)
}

mmh_codecs::backend_parity_tests!(opencl(), "MMH_REQUIRE_OPENCL");
