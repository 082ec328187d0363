//! The OpenCL backend of [`mmh_codecs::Accelerator`]: content-defined chunk boundaries,
//! SHA-256 of chunk batches and the tensor codec's blocks, run as OpenCL kernels (the
//! `.cl` files in the workspace's `kernels/`, embedded in the binary) on any OpenCL
//! device, with output byte-identical to [`mmh_codecs::CpuAccelerator`]'s.
//!
//! The ICD loader is loaded at run time (opencl3's default), so the crate builds on
//! machines without OpenCL; [`OpenClAccelerator::new`] then fails with
//! [`Error::NoPlatform`]. CI runs every kernel on PoCL, Debian's OpenCL for CPUs.

mod cdc;
mod device;
mod error;
mod sha256;
mod tensor;

use std::sync::Mutex;

use mmh_codecs::{Accelerator, CdcParams, Digest, FloatKind};

pub use device::DeviceInfo;
use device::Gpu;
pub use error::Error;

/// Every OpenCL device this machine has: what `mmh info --accel` lists.
pub fn devices() -> Result<Vec<DeviceInfo>, Error> {
    Ok(device::devices()?
        .into_iter()
        .map(|(info, _)| info)
        .collect())
}

/// The OpenCL backend, on one or more devices.
pub struct OpenClAccelerator {
    /// One lock per device: a device's queue and kernels serve one batch at a time.
    gpus: Vec<Mutex<Gpu>>,
}

impl std::fmt::Debug for OpenClAccelerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenClAccelerator")
            .field("devices", &self.gpus.len())
            .finish()
    }
}

impl OpenClAccelerator {
    /// Opens the devices numbered `select` in [`devices`]' order, or all of them, and
    /// builds the kernels on each.
    pub fn new(select: Option<&[usize]>) -> Result<Self, Error> {
        let all = device::devices()?;
        if all.is_empty() {
            return Err(Error::NoDevice(String::new()));
        }
        let chosen: Vec<usize> = match select {
            Some(numbers) => numbers.to_vec(),
            None => (0..all.len()).collect(),
        };
        if let Some(&missing) = chosen.iter().find(|&&n| n >= all.len()) {
            return Err(Error::NoDevice(format!(
                " numbered {missing}: this machine has {} (0 to {})",
                all.len(),
                all.len() - 1
            )));
        }
        let gpus = chosen
            .into_iter()
            .map(|number| {
                let (info, device) = &all[number];
                Gpu::open(info.clone(), device).map(Mutex::new)
            })
            .collect::<Result<_, _>>()?;
        Ok(OpenClAccelerator { gpus })
    }

    /// The devices in use.
    pub fn device_infos(&self) -> Vec<DeviceInfo> {
        self.gpus
            .iter()
            .map(|gpu| gpu.lock().expect("device lock").info.clone())
            .collect()
    }
}

/// The accelerator on every device here, shared by all tests, or `None` with the reason
/// printed when this machine has no OpenCL platform or device. With `MMH_REQUIRE_OPENCL=1`
/// (CI, where PoCL is installed) that is a failure instead; any other error always is.
#[cfg(test)]
pub(crate) fn test_accelerator() -> Option<&'static OpenClAccelerator> {
    static SHARED: std::sync::OnceLock<Option<OpenClAccelerator>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| match OpenClAccelerator::new(None) {
            Ok(accelerator) => Some(accelerator),
            Err(error @ (Error::NoPlatform(_) | Error::NoDevice(_)))
                if std::env::var("MMH_REQUIRE_OPENCL").as_deref() != Ok("1") =>
            {
                eprintln!(
                    "skipped, no OpenCL here: {error} (MMH_REQUIRE_OPENCL=1 makes this fail)"
                );
                None
            }
            Err(error) => panic!("OpenClAccelerator::new: {error}"),
        })
        .as_ref()
}

/// The accelerators every test runs on: every device here, and the first device opened
/// twice, so that the paths that spread work over devices run on a one-device machine.
/// Empty when [`test_accelerator`] skips.
#[cfg(test)]
pub(crate) fn test_accelerators() -> Vec<&'static OpenClAccelerator> {
    static TWICE: std::sync::OnceLock<OpenClAccelerator> = std::sync::OnceLock::new();
    let Some(all) = test_accelerator() else {
        return Vec::new();
    };
    let twice = TWICE.get_or_init(|| {
        OpenClAccelerator::new(Some(&[0, 0])).expect("the first device, opened twice")
    });
    vec![all, twice]
}

impl Accelerator for OpenClAccelerator {
    fn name(&self) -> &'static str {
        "opencl"
    }

    fn digest_batch(&self, chunks: &[&[u8]]) -> Result<Vec<Digest>, mmh_codecs::Error> {
        Ok(sha256::digest_batch(&self.gpus, chunks)?)
    }

    fn find_chunk_boundaries(
        &self,
        data: &[u8],
        params: &CdcParams,
    ) -> Result<Vec<usize>, mmh_codecs::Error> {
        params.validate()?;
        Ok(cdc::boundaries(&self.gpus, data, params)?)
    }

    fn encode_tensor(
        &self,
        raw: &[u8],
        kind: FloatKind,
        out: &mut Vec<u8>,
    ) -> Result<bool, mmh_codecs::Error> {
        tensor::encode(&self.gpus, raw, kind, out)
    }

    fn decode_tensor(
        &self,
        stored: &[u8],
        raw_len: usize,
        kind: FloatKind,
        out: &mut Vec<u8>,
    ) -> Result<(), mmh_codecs::Error> {
        tensor::decode(&self.gpus, stored, raw_len, kind, out)
    }
}
