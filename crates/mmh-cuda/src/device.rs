//! Probing for the driver, compiling the kernels with NVRTC, and the calls of
//! [`mmh_gpu::Device`] on one CUDA device.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, Ptx};
use mmh_gpu::{Access, Arg, DeviceInfo, Error, Scalar, kernels};

const BACKEND: &str = "cuda";

fn call_failed(
    call: &'static str,
    device: &str,
) -> impl Fn(cudarc::driver::DriverError) -> Error + use<> {
    let device = device.to_owned();
    move |error| Error::Call {
        backend: BACKEND,
        call,
        device: device.clone(),
        reason: error.to_string(),
    }
}

/// Whether the driver library can be loaded: cudarc panics on first use without it.
fn driver_present() -> bool {
    // SAFETY: only tries to load the library; nothing is called through it.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether NVRTC can be loaded, for the same reason.
fn nvrtc_present() -> bool {
    // SAFETY: as for the driver.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Every CUDA device, in ordinal order.
pub(crate) fn devices() -> Result<Vec<DeviceInfo>, Error> {
    if !driver_present() {
        return Err(Error::NoRuntime {
            backend: BACKEND,
            reason: "no CUDA driver (libcuda.so could not be loaded)".into(),
        });
    }
    let count =
        CudaContext::device_count().map_err(call_failed("cuDeviceGetCount", "the driver"))?;
    (0..count.max(0) as usize)
        .map(|ordinal| {
            let context = CudaContext::new(ordinal)
                .map_err(call_failed("cuCtxCreate", &format!("device {ordinal}")))?;
            let failed = call_failed("cuDeviceGetAttribute", &format!("device {ordinal}"));
            let (major, minor) = context.compute_capability().map_err(&failed)?;
            let memory = context.total_mem().map_err(&failed)? as u64;
            Ok(DeviceInfo {
                platform: "CUDA".into(),
                name: context.name().map_err(&failed)?,
                version: format!("compute capability {major}.{minor}"),
                memory,
                max_buffer: memory,
                compute_units: context
                    .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                    .map_err(&failed)? as u32,
                is_gpu: true,
            })
        })
        .collect()
}

/// The PTX of every kernel file of [`kernels::SOURCES`], in that order, compiled by NVRTC
/// for `arch` (such as `"sm_90"`). Compiled once per architecture per process.
pub fn compile(arch: &str) -> Result<Arc<Vec<String>>, Error> {
    static CACHE: Mutex<Option<HashMap<String, Arc<Vec<String>>>>> = Mutex::new(None);
    if !nvrtc_present() {
        return Err(Error::NoRuntime {
            backend: BACKEND,
            reason: "no NVRTC (libnvrtc.so.12 could not be loaded)".into(),
        });
    }
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(ptx) = cache.get_or_insert_default().get(arch) {
        return Ok(Arc::clone(ptx));
    }
    let ptx = kernels::SOURCES
        .iter()
        .map(|&(file, source)| {
            let options = CompileOptions {
                name: Some(file.to_owned()),
                options: vec![
                    format!("--gpu-architecture={arch}"),
                    // The OpenCL C helpers are plain functions: make them device functions.
                    "--device-as-default-execution-space".to_owned(),
                ],
                ..CompileOptions::default()
            };
            cudarc::nvrtc::compile_ptx_with_opts(
                format!("{}\n{source}", kernels::CUDA_PRELUDE),
                options,
            )
            .map(|ptx| ptx.to_src())
            .map_err(|error| Error::Build {
                backend: BACKEND,
                kernels: file,
                device: arch.to_owned(),
                log: match error {
                    cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                        log.to_string_lossy().into_owned()
                    }
                    other => other.to_string(),
                },
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ptx = Arc::new(ptx);
    cache
        .get_or_insert_default()
        .insert(arch.to_owned(), Arc::clone(&ptx));
    Ok(ptx)
}

/// One stream on a CUDA device, ready to run every kernel: the stream (which does not wait
/// for the device's other streams, as the legacy default stream would) and the kernels'
/// modules, shared by the device's streams.
pub struct CudaDevice {
    info: DeviceInfo,
    stream: Arc<CudaStream>,
    modules: Vec<Arc<cudarc::driver::CudaModule>>,
}

/// Device memory of `T` values, kept as bytes.
pub struct CudaBuffer<T> {
    bytes: CudaSlice<u8>,
    values: PhantomData<T>,
}

impl CudaDevice {
    pub(crate) fn open(ordinal: usize, info: DeviceInfo) -> Result<CudaDevice, Error> {
        let failed = |call| call_failed(call, &info.name);
        let context = CudaContext::new(ordinal).map_err(failed("cuCtxCreate"))?;
        let (major, minor) = context
            .compute_capability()
            .map_err(failed("cuDeviceGetAttribute"))?;
        let ptx = compile(&format!("sm_{major}{minor}"))?;
        let modules = ptx
            .iter()
            .map(|ptx| context.load_module(Ptx::from_src(ptx.clone())))
            .collect::<Result<_, _>>()
            .map_err(failed("cuModuleLoadData"))?;
        Ok(CudaDevice {
            stream: context.new_stream().map_err(failed("cuStreamCreate"))?,
            modules,
            info,
        })
    }

    fn failed(&self, call: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error + use<> {
        call_failed(call, &self.info.name)
    }

    fn function(&self, file: &str, name: &str) -> Result<CudaFunction, Error> {
        self.modules[kernels::index(file)]
            .load_function(name)
            .map_err(self.failed("cuModuleGetFunction"))
    }
}

impl mmh_gpu::Device for CudaDevice {
    const BACKEND: &'static str = BACKEND;
    type Buffer<T: Scalar> = CudaBuffer<T>;
    type Mem = u64;

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn new_stream(&self) -> Result<Self, Error> {
        Ok(CudaDevice {
            info: self.info.clone(),
            stream: self
                .stream
                .context()
                .new_stream()
                .map_err(self.failed("cuStreamCreate"))?,
            modules: self.modules.clone(),
        })
    }

    fn free_memory(&self) -> Option<u64> {
        // A failed query leaves the estimate to the device's size; the next call that
        // needs the driver reports its error.
        let (free, _) = self.stream.context().mem_get_info().ok()?;
        Some(free as u64)
    }

    fn upload<T: Scalar>(&self, data: &[T]) -> Result<CudaBuffer<T>, Error> {
        let bytes = self
            .stream
            .clone_htod(bytemuck::cast_slice::<T, u8>(data))
            .map_err(self.failed("cuMemcpyHtoD"))?;
        Ok(CudaBuffer {
            bytes,
            values: PhantomData,
        })
    }

    fn buffer<T: Scalar>(&self, _: Access, count: usize) -> Result<CudaBuffer<T>, Error> {
        let bytes = self
            .stream
            .alloc_zeros::<u8>(count * size_of::<T>())
            .map_err(self.failed("cuMemAlloc"))?;
        Ok(CudaBuffer {
            bytes,
            values: PhantomData,
        })
    }

    fn write<T: Scalar>(
        &self,
        buffer: &mut CudaBuffer<T>,
        offset: usize,
        data: &[T],
    ) -> Result<(), Error> {
        let start = offset * size_of::<T>();
        let data = bytemuck::cast_slice::<T, u8>(data);
        let mut target = buffer.bytes.slice_mut(start..start + data.len());
        self.stream
            .memcpy_htod(data, &mut target)
            .map_err(self.failed("cuMemcpyHtoD"))
    }

    fn read<T: Scalar>(
        &self,
        buffer: &CudaBuffer<T>,
        offset: usize,
        out: &mut [T],
    ) -> Result<(), Error> {
        let start = offset * size_of::<T>();
        let out = bytemuck::cast_slice_mut::<T, u8>(out);
        let source = buffer.bytes.slice(start..start + out.len());
        self.stream
            .memcpy_dtoh(&source, out)
            .map_err(self.failed("cuMemcpyDtoH"))?;
        self.stream
            .synchronize()
            .map_err(self.failed("cuStreamSynchronize"))
    }

    fn finish(&self) -> Result<(), Error> {
        self.stream
            .synchronize()
            .map_err(self.failed("cuStreamSynchronize"))
    }

    fn mem<T: Scalar>(buffer: &CudaBuffer<T>) -> u64 {
        let stream = buffer.bytes.stream();
        let (pointer, _sync) = buffer.bytes.device_ptr(stream);
        pointer
    }

    unsafe fn run(
        &self,
        file: &str,
        name: &str,
        args: &[Arg<u64>],
        global: usize,
        local: Option<usize>,
    ) -> Result<(), Error> {
        let function = self.function(file, name)?;
        let local = local.unwrap_or(64);
        let config = LaunchConfig {
            grid_dim: ((global / local) as u32, 1, 1),
            block_dim: (local as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = self.stream.launch_builder(&function);
        for arg in args {
            match arg {
                Arg::Mem(pointer) => launch.arg(pointer),
                Arg::U32(value) => launch.arg(value),
                Arg::U64(value) => launch.arg(value),
            };
        }
        // SAFETY: the arguments match the kernel's parameters and the kernel stays inside
        // its buffers, as the caller promises; a device pointer is passed as the 64-bit
        // value a pointer parameter takes.
        unsafe { launch.launch(config) }
            .map(|_| ())
            .map_err(self.failed("cuLaunchKernel"))
    }
}
