//! The OpenCL backend of `mmh_codecs::Accelerator`: [`OpenClDevice`] implements
//! [`mmh_gpu::Device`] with opencl3, and [`mmh_gpu::GpuAccelerator`] runs every operation
//! over it (the kernels are the workspace's `kernels/*.cl`, embedded), with output
//! byte-identical to `mmh_codecs::CpuAccelerator`'s.
//!
//! The ICD loader is loaded at run time (opencl3's default), so the crate builds on
//! machines without OpenCL; [`open`] then fails with [`Error::NoRuntime`]. CI runs every
//! kernel on PoCL, Debian's OpenCL for CPUs.
#![deny(missing_docs)]

mod device;

pub use device::OpenClDevice;
pub use mmh_gpu::{DeviceInfo, Error};

/// The OpenCL backend.
pub type OpenClAccelerator = mmh_gpu::GpuAccelerator<OpenClDevice>;

/// Every OpenCL device this machine has: what `mmh info --accel` lists.
pub fn devices() -> Result<Vec<DeviceInfo>, Error> {
    Ok(device::devices()?
        .into_iter()
        .map(|(info, _)| info)
        .collect())
}

/// Opens the devices numbered `select` in [`devices`]' order (a number may repeat), or
/// all of them, builds the kernels on each, and checks them against the CPU.
pub fn open(select: Option<&[usize]>) -> Result<OpenClAccelerator, Error> {
    OpenClAccelerator::new(open_devices(select)?)
}

/// The devices of [`open`], each with its kernels built, not yet checked.
pub fn open_devices(select: Option<&[usize]>) -> Result<Vec<OpenClDevice>, Error> {
    let all = device::devices()?;
    mmh_gpu::select_devices("opencl", all.len(), select)?
        .into_iter()
        .map(|number| {
            let (info, device) = &all[number];
            OpenClDevice::open(info.clone(), device)
        })
        .collect()
}
