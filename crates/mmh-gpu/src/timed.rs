//! Counting where a device's time goes, so that benchmarks can say which stage bounds an
//! operation: every call is timed, and a launch waits for its kernel, which the next
//! read would wait for anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Access, Arg, Device, DeviceInfo, Error, Scalar, StageTimes};

/// Nanoseconds spent, shared by the devices of one accelerator.
#[derive(Debug, Default)]
pub(crate) struct Stages {
    transfer: AtomicU64,
    kernels: AtomicU64,
}

impl Stages {
    /// The times so far, which start again from zero.
    pub(crate) fn take(&self) -> StageTimes {
        StageTimes {
            transfer: Duration::from_nanos(self.transfer.swap(0, Ordering::Relaxed)),
            kernels: Duration::from_nanos(self.kernels.swap(0, Ordering::Relaxed)),
        }
    }
}

/// A device whose calls add their time to [`Stages`].
pub(crate) struct Timed<D> {
    device: D,
    stages: Arc<Stages>,
}

impl<D> Timed<D> {
    pub(crate) fn new(device: D, stages: Arc<Stages>) -> Self {
        Timed { device, stages }
    }

    fn count<T>(&self, counter: &AtomicU64, call: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let result = call();
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, Ordering::Relaxed);
        result
    }
}

impl<D: Device> Device for Timed<D> {
    const BACKEND: &'static str = D::BACKEND;
    type Buffer<T: Scalar> = D::Buffer<T>;
    type Mem = D::Mem;

    fn info(&self) -> &DeviceInfo {
        self.device.info()
    }

    fn new_stream(&self) -> Result<Self, Error> {
        Ok(Timed::new(
            self.device.new_stream()?,
            Arc::clone(&self.stages),
        ))
    }

    fn free_memory(&self) -> Option<u64> {
        self.device.free_memory()
    }

    fn upload<T: Scalar>(&self, data: &[T]) -> Result<D::Buffer<T>, Error> {
        self.count(&self.stages.transfer, || self.device.upload(data))
    }

    fn buffer<T: Scalar>(&self, access: Access, count: usize) -> Result<D::Buffer<T>, Error> {
        self.count(&self.stages.transfer, || self.device.buffer(access, count))
    }

    fn write<T: Scalar>(
        &self,
        buffer: &mut D::Buffer<T>,
        offset: usize,
        data: &[T],
    ) -> Result<(), Error> {
        self.count(&self.stages.transfer, || {
            self.device.write(buffer, offset, data)
        })
    }

    fn read<T: Scalar>(
        &self,
        buffer: &D::Buffer<T>,
        offset: usize,
        out: &mut [T],
    ) -> Result<(), Error> {
        self.count(&self.stages.transfer, || {
            self.device.read(buffer, offset, out)
        })
    }

    fn mem<T: Scalar>(buffer: &D::Buffer<T>) -> D::Mem {
        D::mem(buffer)
    }

    fn finish(&self) -> Result<(), Error> {
        self.count(&self.stages.kernels, || self.device.finish())
    }

    unsafe fn run(
        &self,
        file: &str,
        name: &str,
        args: &[Arg<D::Mem>],
        global: usize,
        local: Option<usize>,
    ) -> Result<(), Error> {
        self.count(&self.stages.kernels, || {
            // SAFETY: what the caller promises for this launch holds for the device's.
            unsafe { self.device.run(file, name, args, global, local) }?;
            self.device.finish()
        })
    }
}
