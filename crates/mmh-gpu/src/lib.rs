//! What the device backends of [`mmh_codecs::Accelerator`] share: the kernels (the
//! workspace's `kernels/`, one source per operation for every backend) and the host side
//! of each operation, written once over the [`Device`] trait, which `mmh-opencl` and
//! `mmh-cuda` implement with a handful of calls (buffers in and out, kernel launches).
//!
//! Sharing the host side means the OpenCL tests, which run for real on PoCL in CI,
//! exercise every line that the CUDA backend runs besides its own few calls.
//!
//! [`GpuAccelerator`] is the backend over one or more devices, with
//! [`STREAMS_PER_DEVICE`] streams on each: concurrent callers take different streams, so
//! one's copies overlap another's kernels; batches are spread over all of them, and sized
//! from the memory each device has free. Its output is byte-identical to
//! [`mmh_codecs::CpuAccelerator`]'s, which [`mmh_codecs::parity`] and
//! [`device_backend_tests!`] check for every backend.
#![deny(missing_docs)]

mod cdc;
mod error;
pub mod kernels;
mod sha256;
mod tensor;
pub mod testing;
mod timed;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mmh_codecs::{Accelerator, BLOCK_VALUES, CdcParams, Digest, FloatKind};

pub use error::Error;
use timed::{Stages, Timed};

/// What `mmh info --accel` shows of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The platform's name, such as `"Portable Computing Language"` or `"CUDA"`.
    pub platform: String,
    /// The device's name.
    pub name: String,
    /// The version the device reports (OpenCL version, CUDA compute capability).
    pub version: String,
    /// Global memory, in bytes.
    pub memory: u64,
    /// The largest single buffer, in bytes.
    pub max_buffer: u64,
    /// Compute units (OpenCL) or streaming multiprocessors (CUDA).
    pub compute_units: u32,
    /// Whether the device is a GPU (not a CPU, as PoCL's devices are).
    pub is_gpu: bool,
}

/// What device buffers hold: plain numbers, which every backend copies as bytes.
pub trait Scalar: bytemuck::Pod + Send + Sync {}

impl<T: bytemuck::Pod + Send + Sync> Scalar for T {}

/// How a kernel uses a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Kernels only read it.
    ReadOnly,
    /// Kernels only write it.
    WriteOnly,
    /// Kernels read and write it.
    ReadWrite,
}

/// A kernel argument for [`Device::run`].
#[derive(Debug, Clone, Copy)]
pub enum Arg<M> {
    /// A buffer, from [`Device::mem`].
    Mem(M),
    /// A `uint`.
    U32(u32),
    /// A `ulong`.
    U64(u64),
}

/// One stream of work on a device of a backend (a CUDA stream, an OpenCL command queue),
/// ready to run every kernel of [`kernels::SOURCES`]: the few calls the operations make.
/// Calls wait until their work is done, so a buffer handed to a call may be reused as soon
/// as it returns; work on another stream of the same device runs meanwhile.
pub trait Device: Send + Sized + 'static {
    /// The backend's name, such as `"opencl"`.
    const BACKEND: &'static str;
    /// Device memory holding values of `T`.
    type Buffer<T: Scalar>;
    /// A buffer as a kernel argument.
    type Mem: Copy;

    /// What the device is.
    fn info(&self) -> &DeviceInfo;

    /// Another stream on the same device, sharing its compiled kernels: its copies and
    /// kernels may run while this one's do.
    fn new_stream(&self) -> Result<Self, Error>;

    /// The device memory free now, where the backend can tell (CUDA can, OpenCL cannot).
    fn free_memory(&self) -> Option<u64> {
        None
    }

    /// A buffer holding a copy of `data`, which must not be empty.
    fn upload<T: Scalar>(&self, data: &[T]) -> Result<Self::Buffer<T>, Error>;

    /// An uninitialised buffer of `count` (not zero) values.
    fn buffer<T: Scalar>(&self, access: Access, count: usize) -> Result<Self::Buffer<T>, Error>;

    /// Copies `data` into `buffer` from value `offset` on.
    fn write<T: Scalar>(
        &self,
        buffer: &mut Self::Buffer<T>,
        offset: usize,
        data: &[T],
    ) -> Result<(), Error>;

    /// Copies `buffer` from value `offset` on into `out`, after every launch before.
    fn read<T: Scalar>(
        &self,
        buffer: &Self::Buffer<T>,
        offset: usize,
        out: &mut [T],
    ) -> Result<(), Error>;

    /// `buffer` as a kernel argument.
    fn mem<T: Scalar>(buffer: &Self::Buffer<T>) -> Self::Mem;

    /// Waits until every launch before is done.
    fn finish(&self) -> Result<(), Error>;

    /// Launches the kernel `name` of the kernel file `file` over `global` work-items in
    /// one dimension, in work-groups of `local` (which divides `global`), or of 64.
    ///
    /// # Safety
    ///
    /// `args` match the kernel's parameters in number, order and type, and the kernel
    /// stays inside every buffer for `global` work-items with the sizes passed.
    unsafe fn run(
        &self,
        file: &str,
        name: &str,
        args: &[Arg<Self::Mem>],
        global: usize,
        local: Option<usize>,
    ) -> Result<(), Error>;
}

/// The device backend over one or more devices of one kind.
pub struct GpuAccelerator<D: Device> {
    /// One lock per stream, [`STREAMS_PER_DEVICE`] per device: a stream serves one batch
    /// at a time, and concurrent callers take different streams.
    devices: Arc<Vec<Mutex<Timed<D>>>>,
    /// What each device is, once per device.
    infos: Arc<Vec<DeviceInfo>>,
    /// Where the devices' time went, all devices together.
    stages: Arc<Stages>,
    /// The most bytes one batch puts on a device, besides what its memory allows.
    batch_limit: usize,
}

impl<D: Device> std::fmt::Debug for GpuAccelerator<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuAccelerator")
            .field("backend", &D::BACKEND)
            .field("devices", &self.device_infos())
            .finish()
    }
}

/// Where a device backend's time went ([`GpuAccelerator::take_stage_times`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Copies to and from devices, and allocations: the time at least one stream spent
    /// in them.
    pub transfer: Duration,
    /// Kernels, from launch until done, likewise.
    pub kernels: Duration,
    /// The time at least one stream was copying or running a kernel: less than their sum
    /// when one stream's copies overlapped another's kernels.
    pub busy: Duration,
}

/// The default batch limit: large enough that a launch costs little next to its
/// transfer, small enough that a device with less memory to spare is not the common case.
pub const DEFAULT_BATCH_LIMIT: usize = 64 << 20;

/// Streams opened on each device. Two let one caller's copies overlap another's kernels
/// (calls are synchronous, so overlap comes from concurrent callers, such as the fold
/// pipeline's threads); two more keep the device busy while those callers do their host
/// side (frequencies, payload layout, checks).
pub const STREAMS_PER_DEVICE: usize = 4;

impl<D: Device> GpuAccelerator<D> {
    /// The backend on `devices` (not empty), with [`STREAMS_PER_DEVICE`] streams on each,
    /// once a small input of every operation has given the CPU's bytes on each device
    /// ([`Error::Mismatch`] otherwise): a device or driver that computes wrongly must fail
    /// here, not write archives that do not unfold.
    pub fn new(devices: Vec<D>) -> Result<Self, Error> {
        if devices.is_empty() {
            return Err(Error::NoDevice {
                backend: D::BACKEND,
                which: String::new(),
            });
        }
        let stages = Arc::new(Stages::default());
        let infos: Vec<DeviceInfo> = devices.iter().map(|device| device.info().clone()).collect();
        let mut per_device = Vec::with_capacity(devices.len());
        for device in devices {
            let one = GpuAccelerator {
                devices: Arc::new(vec![Mutex::new(Timed::new(device, Arc::clone(&stages)))]),
                infos: Arc::new(Vec::new()),
                stages: Arc::clone(&stages),
                batch_limit: DEFAULT_BATCH_LIMIT,
            };
            one.self_check()?;
            let checked = Arc::into_inner(one.devices)
                .and_then(|mut one| one.pop())
                .expect("one device, not shared yet")
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner);
            let mut streams = (1..STREAMS_PER_DEVICE)
                .map(|_| checked.new_stream())
                .collect::<Result<Vec<_>, _>>()?;
            streams.insert(0, checked);
            per_device.push(streams.into_iter());
        }
        // Stream s of every device before stream s + 1 of any: callers that take the first
        // free stream spread over the devices first.
        let streams = (0..STREAMS_PER_DEVICE)
            .flat_map(|_| {
                per_device
                    .iter_mut()
                    .filter_map(Iterator::next)
                    .collect::<Vec<_>>()
            })
            .map(Mutex::new)
            .collect();
        // The check's time is not the caller's.
        stages.take();
        Ok(GpuAccelerator {
            devices: Arc::new(streams),
            infos: Arc::new(infos),
            stages,
            batch_limit: DEFAULT_BATCH_LIMIT,
        })
    }

    /// Compares every operation with the CPU on one small input (a few milliseconds on a
    /// GPU): digests, chunk boundaries, and a bf16 tensor of two blocks coded and decoded.
    fn self_check(&self) -> Result<(), Error> {
        let weights = mmh_codecs::parity::weights(FloatKind::Bf16, BLOCK_VALUES + 999, 1);
        let chunks: Vec<&[u8]> = weights.chunks(1000).take(8).collect();
        let mismatch = |detail| Error::Mismatch {
            backend: D::BACKEND,
            detail,
        };
        mmh_codecs::parity::digests(self, &chunks).map_err(mismatch)?;
        mmh_codecs::parity::boundaries(self, &weights, &CdcParams::default()).map_err(mismatch)?;
        mmh_codecs::parity::tensor(self, &weights, FloatKind::Bf16).map_err(mismatch)
    }

    /// The same devices, with at most `bytes` on a device per batch (rounded to what each
    /// operation needs: whole SHA-256 blocks, whole 4 KiB CDC tiles).
    pub fn with_batch_limit(&self, bytes: usize) -> Self {
        GpuAccelerator {
            devices: Arc::clone(&self.devices),
            infos: Arc::clone(&self.infos),
            stages: Arc::clone(&self.stages),
            batch_limit: bytes,
        }
    }

    /// Time the devices spent since the last call, all streams of all devices together:
    /// copying to and from them (allocations included), running kernels (launch to
    /// finish), and either. The rest of a call's time is the host's.
    pub fn take_stage_times(&self) -> StageTimes {
        self.stages.take()
    }

    /// The devices in use.
    pub fn device_infos(&self) -> Vec<DeviceInfo> {
        self.infos.to_vec()
    }
}

impl<D: Device> Accelerator for GpuAccelerator<D> {
    fn name(&self) -> &'static str {
        D::BACKEND
    }

    fn digest_batch(&self, chunks: &[&[u8]]) -> Result<Vec<Digest>, mmh_codecs::Error> {
        Ok(sha256::digest_batch(
            &self.devices,
            chunks,
            self.batch_limit,
        )?)
    }

    fn find_chunk_boundaries(
        &self,
        data: &[u8],
        params: &CdcParams,
    ) -> Result<Vec<usize>, mmh_codecs::Error> {
        params.validate()?;
        Ok(cdc::boundaries(
            &self.devices,
            data,
            params,
            self.batch_limit,
        )?)
    }

    fn encode_tensor(
        &self,
        raw: &[u8],
        kind: FloatKind,
        out: &mut Vec<u8>,
    ) -> Result<bool, mmh_codecs::Error> {
        tensor::encode(&self.devices, raw, kind, out, self.batch_limit)
    }

    fn decode_tensor(
        &self,
        stored: &[u8],
        raw_len: usize,
        kind: FloatKind,
        out: &mut Vec<u8>,
    ) -> Result<(), mmh_codecs::Error> {
        tensor::decode(&self.devices, stored, raw_len, kind, out, self.batch_limit)
    }
}

/// The device numbers `select` names (a number may repeat) among `count` devices of
/// `backend`, or all of them; a number past the last is [`Error::NoDevice`].
pub fn select_devices(
    backend: &'static str,
    count: usize,
    select: Option<&[usize]>,
) -> Result<Vec<usize>, Error> {
    let absent = |which: String| Error::NoDevice { backend, which };
    if count == 0 {
        return Err(absent(String::new()));
    }
    let chosen: Vec<usize> = select.map_or_else(|| (0..count).collect(), <[usize]>::to_vec);
    match chosen.iter().find(|&&n| n >= count) {
        Some(&missing) => Err(absent(format!(
            " numbered {missing}: this machine has {count} (0 to {})",
            count - 1
        ))),
        None => Ok(chosen),
    }
}

/// Runs `work` once per device, each in its own thread holding that device, and returns
/// what each gave, in device order; a panic in one is resumed here.
pub(crate) fn on_each_device<D: Device, T: Send>(
    devices: &[Mutex<D>],
    work: impl Fn(usize, &D) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(number, device)| scope.spawn(move || work(number, &lock(device))))
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The bytes one batch may take on a device: a quarter of the memory `free` now, so that
/// the device's other streams, sizing their batches at the same moment, still fit (or,
/// where the backend cannot tell what is free, a quarter of one stream's share of the
/// memory), and no more than `cap`.
pub(crate) fn room(info: &DeviceInfo, free: Option<u64>, cap: usize) -> usize {
    let free = free.unwrap_or(info.memory / STREAMS_PER_DEVICE as u64);
    usize::try_from(free / 4).unwrap_or(usize::MAX).min(cap)
}

/// Locks a device. A panic while another thread held it leaves nothing half-done that a
/// later batch relies on: every operation makes its own buffers and waits for its work.
pub(crate) fn lock<D>(device: &Mutex<D>) -> MutexGuard<'_, D> {
    device.lock().unwrap_or_else(PoisonError::into_inner)
}
