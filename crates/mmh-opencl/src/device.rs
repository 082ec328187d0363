//! Finding OpenCL devices, building the kernels on each, and the calls of
//! [`mmh_gpu::Device`]: buffers in and out, and kernel launches.
//!
//! The unsafe code of the crate is here. Its invariants, which every `// SAFETY:`
//! comment cites by number:
//!
//! 1. A host pointer handed to OpenCL points to as many initialised values as the call
//!    reads or writes, and is only used during a blocking call (or copied by
//!    `CL_MEM_COPY_HOST_PTR` before `clCreateBuffer` returns).
//! 2. A kernel's arguments match its parameters in number, order and type, and every
//!    buffer is large enough for every index the kernel reaches with the sizes passed:
//!    what the callers of [`mmh_gpu::Device::run`] promise.

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use mmh_gpu::{Access, Arg, DeviceInfo, Error, Scalar, kernels};
use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{CL_DEVICE_TYPE_ALL, CL_DEVICE_TYPE_GPU, Device};
use opencl3::error_codes::ClError;
use opencl3::kernel::Kernel;
use opencl3::memory::{
    Buffer, CL_MEM_COPY_HOST_PTR, CL_MEM_READ_ONLY, CL_MEM_READ_WRITE, CL_MEM_WRITE_ONLY, ClMem,
};
use opencl3::platform::get_platforms;
use opencl3::program::Program;
use opencl3::types::{CL_BLOCKING, cl_mem};

const BACKEND: &str = "opencl";

/// Every device of every platform, in platform order.
pub(crate) fn devices() -> Result<Vec<(DeviceInfo, Device)>, Error> {
    let platforms = get_platforms().map_err(|code| Error::NoRuntime {
        backend: BACKEND,
        reason: format!(
            "{code} (no OpenCL ICD loader or platform; install a driver, e.g. Debian's pocl-opencl-icd)"
        ),
    })?;
    let mut found = Vec::new();
    for platform in platforms {
        let platform_name = platform.name().unwrap_or_default();
        let Ok(ids) = platform.get_devices(CL_DEVICE_TYPE_ALL) else {
            continue;
        };
        for id in ids {
            let device = Device::new(id);
            let call = failed("clGetDeviceInfo", &format!("{platform_name} device"));
            let info = DeviceInfo {
                platform: platform_name.clone(),
                name: device.name().map_err(&call)?.trim().to_string(),
                version: device.version().map_err(&call)?,
                memory: device.global_mem_size().map_err(&call)?,
                max_buffer: device.max_mem_alloc_size().map_err(&call)?,
                compute_units: device.max_compute_units().map_err(&call)?,
                is_gpu: device.dev_type().map_err(&call)? & CL_DEVICE_TYPE_GPU != 0,
            };
            found.push((info, device));
        }
    }
    Ok(found)
}

/// An in-order command queue on the device of `context`.
fn new_queue(context: &Context, info: &DeviceInfo) -> Result<CommandQueue, Error> {
    CommandQueue::create_default_with_properties(context, 0, 0)
        .map_err(failed("clCreateCommandQueue", &info.name))
}

/// Wraps an OpenCL error code with the call and the device's name.
fn failed(call: &'static str, device: &str) -> impl Fn(ClError) -> Error + use<> {
    let device = device.to_owned();
    move |code| Error::Call {
        backend: BACKEND,
        call,
        device: device.clone(),
        reason: code.to_string(),
    }
}

/// One command queue on an OpenCL device, ready to run every kernel: its in-order queue,
/// and the context and the programs built from [`kernels::SOURCES`] (in that order),
/// which the device's queues share.
pub struct OpenClDevice {
    info: DeviceInfo,
    context: Arc<Context>,
    queue: CommandQueue,
    programs: Arc<Vec<Program>>,
}

impl OpenClDevice {
    pub(crate) fn open(info: DeviceInfo, device: &Device) -> Result<OpenClDevice, Error> {
        let context =
            Context::from_device(device).map_err(failed("clCreateContext", &info.name))?;
        let queue = new_queue(&context, &info)?;
        let programs = kernels::SOURCES
            .iter()
            .map(|&(kernels, source)| {
                Program::create_and_build_from_source(&context, source, "-cl-std=CL1.2").map_err(
                    |log| Error::Build {
                        backend: BACKEND,
                        kernels,
                        device: info.name.clone(),
                        log,
                    },
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(OpenClDevice {
            info,
            context: Arc::new(context),
            queue,
            programs: Arc::new(programs),
        })
    }

    fn failed(&self, call: &'static str) -> impl Fn(ClError) -> Error {
        failed(call, &self.info.name)
    }
}

impl mmh_gpu::Device for OpenClDevice {
    const BACKEND: &'static str = BACKEND;
    type Buffer<T: Scalar> = Buffer<T>;
    type Mem = cl_mem;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn new_stream(&self) -> Result<Self, Error> {
        Ok(OpenClDevice {
            info: self.info.clone(),
            context: Arc::clone(&self.context),
            queue: new_queue(&self.context, &self.info)?,
            programs: Arc::clone(&self.programs),
        })
    }

    fn upload<T: Scalar>(&self, data: &[T]) -> Result<Buffer<T>, Error> {
        let flags = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
        let host = data.as_ptr().cast_mut().cast::<c_void>();
        // SAFETY: invariant 1: `host` points to `data.len()` values, copied before the
        // call returns; OpenCL never writes through it.
        unsafe { Buffer::create(&self.context, flags, data.len(), host) }
            .map_err(self.failed("clCreateBuffer"))
    }

    fn buffer<T: Scalar>(&self, access: Access, count: usize) -> Result<Buffer<T>, Error> {
        let flags = match access {
            Access::ReadOnly => CL_MEM_READ_ONLY,
            Access::WriteOnly => CL_MEM_WRITE_ONLY,
            Access::ReadWrite => CL_MEM_READ_WRITE,
        };
        // SAFETY: invariant 1 holds trivially: no host pointer.
        unsafe { Buffer::create(&self.context, flags, count, ptr::null_mut()) }
            .map_err(self.failed("clCreateBuffer"))
    }

    fn write<T: Scalar>(
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

    fn read<T: Scalar>(
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

    fn mem<T: Scalar>(buffer: &Buffer<T>) -> cl_mem {
        buffer.get()
    }

    fn finish(&self) -> Result<(), Error> {
        self.queue.finish().map_err(self.failed("clFinish"))
    }

    unsafe fn run(
        &self,
        file: &str,
        name: &str,
        args: &[Arg<cl_mem>],
        global: usize,
        local: Option<usize>,
    ) -> Result<(), Error> {
        let program = &self.programs[kernels::index(file)];
        let kernel = Kernel::create(program, name).map_err(self.failed("clCreateKernel"))?;
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
        let local = local.unwrap_or(64);
        // SAFETY: invariant 2, which the caller promises; the size pointers point to one
        // value each for the one dimension, and live across the call.
        unsafe {
            self.queue
                .enqueue_nd_range_kernel(kernel.get(), 1, ptr::null(), &global, &local, &[])
        }
        .map_err(self.failed("clEnqueueNDRangeKernel"))?;
        Ok(())
    }
}
