//! Finding OpenCL devices and building the kernels on each.

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_GPU, Device};
use opencl3::platform::get_platforms;
use opencl3::program::Program;

use crate::Error;

/// What `mmh info --accel` shows of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The platform's name, such as `"Portable Computing Language"`.
    pub platform: String,
    /// The device's name.
    pub name: String,
    /// The OpenCL version the device reports.
    pub version: String,
    /// Global memory, in bytes.
    pub memory: u64,
    /// The largest single buffer, in bytes.
    pub max_buffer: u64,
    /// Compute units.
    pub compute_units: u32,
    /// Whether the device is a GPU (not a CPU, as PoCL's devices are).
    pub is_gpu: bool,
}

/// Every device of every platform, in platform order.
pub fn devices() -> Result<Vec<(DeviceInfo, Device)>, Error> {
    let platforms = get_platforms().map_err(|code| Error::NoPlatform(code.to_string()))?;
    let mut found = Vec::new();
    for platform in platforms {
        let platform_name = platform.name().unwrap_or_default();
        let Ok(ids) = platform.get_devices(CL_DEVICE_TYPE_ALL) else {
            continue;
        };
        for id in ids {
            let device = Device::new(id);
            let call = |code| Error::Call {
                call: "clGetDeviceInfo",
                device: format!("{platform_name} device"),
                code,
            };
            let info = DeviceInfo {
                platform: platform_name.clone(),
                name: device.name().map_err(call)?.trim().to_string(),
                version: device.version().map_err(call)?,
                memory: device.global_mem_size().map_err(call)?,
                max_buffer: device.max_mem_alloc_size().map_err(call)?,
                compute_units: device.max_compute_units().map_err(call)?,
                is_gpu: device.dev_type().map_err(call)? & CL_DEVICE_TYPE_GPU != 0,
            };
            found.push((info, device));
        }
    }
    Ok(found)
}

/// The kernel sources, embedded so that the binary needs no files at run time.
pub(crate) const KERNELS: [(&str, &str); 3] = [
    ("sha256.cl", include_str!("../../../kernels/sha256.cl")),
    ("cdc.cl", include_str!("../../../kernels/cdc.cl")),
    ("tensor.cl", include_str!("../../../kernels/tensor.cl")),
];

/// One device, ready to run every kernel: its context, an in-order queue and the built
/// programs, in [`KERNELS`] order.
pub(crate) struct Gpu {
    pub(crate) info: DeviceInfo,
    pub(crate) context: Context,
    pub(crate) queue: CommandQueue,
    pub(crate) programs: Vec<Program>,
}

impl Gpu {
    pub(crate) fn open(info: DeviceInfo, device: &Device) -> Result<Gpu, Error> {
        let call = |call| {
            let device = info.name.clone();
            move |code| Error::Call { call, device, code }
        };
        let context = Context::from_device(device).map_err(call("clCreateContext"))?;
        let queue = CommandQueue::create_default_with_properties(&context, 0, 0)
            .map_err(call("clCreateCommandQueue"))?;
        let programs = KERNELS
            .iter()
            .map(|&(kernels, source)| {
                Program::create_and_build_from_source(&context, source, "-cl-std=CL1.2").map_err(
                    |log| Error::Build {
                        kernels,
                        device: info.name.clone(),
                        log,
                    },
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Gpu {
            info,
            context,
            queue,
            programs,
        })
    }

    /// The program built from the kernel file `name`.
    pub(crate) fn program(&self, name: &str) -> &Program {
        let index = KERNELS
            .iter()
            .position(|&(file, _)| file == name)
            .expect("a kernel file of KERNELS");
        &self.programs[index]
    }

    /// Wraps an OpenCL error code with the call and this device's name.
    pub(crate) fn failed(
        &self,
        call: &'static str,
    ) -> impl Fn(opencl3::error_codes::ClError) -> Error {
        let device = self.info.name.clone();
        move |code| Error::Call {
            call,
            device: device.clone(),
            code,
        }
    }
}
