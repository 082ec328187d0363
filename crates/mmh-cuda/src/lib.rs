//! The CUDA backend of `mmh_codecs::Accelerator`: [`CudaDevice`] implements
//! [`mmh_gpu::Device`] with cudarc, and [`mmh_gpu::GpuAccelerator`] runs every operation
//! over it, with output byte-identical to `mmh_codecs::CpuAccelerator`'s.
//!
//! The kernels are the same sources as OpenCL's (`kernels/*.cl`), made CUDA C by
//! `kernels/cuda.cuh` and compiled at run time by NVRTC for each device's architecture
//! ([`compile`]), so neither nvcc nor libcuda is needed to build. The driver and NVRTC are
//! loaded on first use; where they are missing, [`open`] says so with
//! [`Error::NoRuntime`] (cudarc would panic if asked for a context without a driver, so
//! this crate probes first).
#![deny(missing_docs)]

mod device;

pub use device::{CudaDevice, compile};
pub use mmh_gpu::{DeviceInfo, Error};

/// The CUDA backend.
pub type CudaAccelerator = mmh_gpu::GpuAccelerator<CudaDevice>;

/// Every CUDA device this machine has: what `mmh info --accel` lists.
pub fn devices() -> Result<Vec<DeviceInfo>, Error> {
    device::devices()
}

/// Opens the devices numbered `select` (a number may repeat), or all of them, and
/// compiles the kernels for each.
pub fn open(select: Option<&[usize]>) -> Result<CudaAccelerator, Error> {
    let all = device::devices()?;
    let chosen = mmh_gpu::select_devices("cuda", all.len(), select)?;
    let devices = chosen
        .into_iter()
        .map(|ordinal| CudaDevice::open(ordinal, all[ordinal].clone()))
        .collect::<Result<_, _>>()?;
    CudaAccelerator::new(devices)
}
