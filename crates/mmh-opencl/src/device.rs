//! Finding OpenCL devices, building the kernels on each, and the few calls the operations
//! make: buffers in and out, and kernel launches.
//!
//! The unsafe code of the crate's host side is here. Its invariants, which every
//! `// SAFETY:` comment cites by number:
//!
//! 1. A host pointer handed to OpenCL points to as many initialised values as the call
//!    reads or writes, and is only used during a blocking call (or copied by
//!    `CL_MEM_COPY_HOST_PTR` before `clCreateBuffer` returns).
//! 2. A kernel's arguments match its parameters in number, order and type, and every
//!    buffer is large enough for every index the kernel reaches with the sizes passed;
//!    [`Gpu::run`]'s callers check this against the `.cl` file.

use std::ffi::c_void;
use std::ptr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_GPU, Device};
use opencl3::kernel::Kernel;
use opencl3::memory::{Buffer, CL_MEM_COPY_HOST_PTR, CL_MEM_READ_ONLY, ClMem, cl_mem_flags};
use opencl3::platform::get_platforms;
use opencl3::program::Program;
use opencl3::types::{CL_BLOCKING, cl_mem};

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

    /// A read-only device buffer holding a copy of `data`, which must not be empty
    /// (OpenCL has no empty buffers).
    pub(crate) fn upload<T>(&self, data: &[T]) -> Result<Buffer<T>, Error> {
        let flags = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
        let host = data.as_ptr().cast_mut().cast::<c_void>();
        // SAFETY: invariant 1: `host` points to `data.len()` values, copied before the
        // call returns; OpenCL never writes through it.
        unsafe { Buffer::create(&self.context, flags, data.len(), host) }
            .map_err(self.failed("clCreateBuffer"))
    }

    /// An uninitialised device buffer of `count` (not zero) values.
    pub(crate) fn buffer<T>(&self, flags: cl_mem_flags, count: usize) -> Result<Buffer<T>, Error> {
        // SAFETY: invariant 1 holds trivially: no host pointer.
        unsafe { Buffer::create(&self.context, flags, count, ptr::null_mut()) }
            .map_err(self.failed("clCreateBuffer"))
    }

    /// Copies `data` into `buffer` from value `offset` on, waiting until it is done.
    pub(crate) fn write<T>(
        &self,
        buffer: &mut Buffer<T>,
        offset: usize,
        data: &[T],
    ) -> Result<(), Error> {
        let bytes = offset * size_of::<T>();
        // SAFETY: invariant 1: a blocking write of `data.len()` values from `data`.
        unsafe {
            self.queue
                .enqueue_write_buffer(buffer, CL_BLOCKING, bytes, data, &[])
        }
        .map_err(self.failed("clEnqueueWriteBuffer"))?;
        Ok(())
    }

    /// Copies `buffer` from value `offset` on into `out`, after every command queued
    /// before.
    pub(crate) fn read<T>(
        &self,
        buffer: &Buffer<T>,
        offset: usize,
        out: &mut [T],
    ) -> Result<(), Error> {
        let bytes = offset * size_of::<T>();
        // SAFETY: invariant 1: a blocking read of `out.len()` values into `out`.
        unsafe {
            self.queue
                .enqueue_read_buffer(buffer, CL_BLOCKING, bytes, out, &[])
        }
        .map_err(self.failed("clEnqueueReadBuffer"))?;
        Ok(())
    }

    /// Queues the kernel `name` of the kernel file `file` over `global` work-items in one
    /// dimension, in work-groups of `local` or of the driver's choice.
    ///
    /// # Safety
    ///
    /// Invariant 2: `args` match the kernel's parameters and the kernel stays inside
    /// every buffer for `global`.
    pub(crate) unsafe fn run(
        &self,
        file: &str,
        name: &str,
        args: &[Arg],
        global: usize,
        local: Option<usize>,
    ) -> Result<(), Error> {
        let kernel =
            Kernel::create(self.program(file), name).map_err(self.failed("clCreateKernel"))?;
        for (index, arg) in (0..).zip(args) {
            // SAFETY: invariant 2, which the caller promises; each value lives across
            // the call, which copies it.
            unsafe {
                match arg {
                    Arg::Mem(mem) => kernel.set_arg(index, mem),
                    Arg::U32(value) => kernel.set_arg(index, value),
                    Arg::U64(value) => kernel.set_arg(index, value),
                }
            }
            .map_err(self.failed("clSetKernelArg"))?;
        }
        let local_size = local.as_ref().map_or(ptr::null(), ptr::from_ref);
        // SAFETY: invariant 2, which the caller promises; the size pointers point to one
        // value each for the one dimension, and live across the call.
        unsafe {
            self.queue.enqueue_nd_range_kernel(
                kernel.get(),
                1,
                ptr::null(),
                &global,
                local_size,
                &[],
            )
        }
        .map_err(self.failed("clEnqueueNDRangeKernel"))?;
        Ok(())
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

/// A kernel argument for [`Gpu::run`].
pub(crate) enum Arg {
    /// A buffer, from [`ClMem::get`].
    Mem(cl_mem),
    /// A `uint`.
    U32(u32),
    /// A `ulong`.
    U64(u64),
}

impl<T> From<&Buffer<T>> for Arg {
    fn from(buffer: &Buffer<T>) -> Self {
        Arg::Mem(buffer.get())
    }
}

/// Locks a device. A panic while another thread held it leaves nothing half-done that a
/// later batch relies on: every operation makes its own buffers and waits for its queue.
pub(crate) fn lock(gpu: &Mutex<Gpu>) -> MutexGuard<'_, Gpu> {
    gpu.lock().unwrap_or_else(PoisonError::into_inner)
}
