//! Counting where a device's time goes, so that benchmarks can say which stage bounds an
//! operation: every call is timed, and a launch waits for its kernel, which the next
//! read would wait for anyway. Streams work at the same time, so a stage's time is the
//! wall time during which at least one stream was in it: a copy on one stream and a
//! kernel on another both count, and together they count once as busy.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{Access, Arg, Device, DeviceInfo, Error, Scalar, StageTimes};

/// Where the streams of one accelerator spent their time.
#[derive(Debug, Default)]
pub(crate) struct Stages {
    transfer: Span,
    kernels: Span,
    busy: Span,
}

impl Stages {
    /// The times so far, which start again from zero.
    pub(crate) fn take(&self) -> StageTimes {
        StageTimes {
            transfer: self.transfer.take(),
            kernels: self.kernels.take(),
            busy: self.busy.take(),
        }
    }
}

/// The wall time during which at least one stream was inside a stage.
#[derive(Debug, Default)]
struct Span(Mutex<SpanState>);

#[derive(Debug, Default)]
struct SpanState {
    /// Streams inside now.
    inside: u32,
    /// Since when, while `inside` is not zero.
    since: Option<Instant>,
    /// Time counted and not yet taken.
    total: Duration,
}

impl Span {
    fn state(&self) -> std::sync::MutexGuard<'_, SpanState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self) {
        let mut state = self.state();
        if state.inside == 0 {
            state.since = Some(Instant::now());
        }
        state.inside += 1;
    }

    fn leave(&self) {
        let mut state = self.state();
        state.inside -= 1;
        if state.inside == 0 {
            let since = state.since.take().expect("set while inside");
            state.total += since.elapsed();
        }
    }

    /// The time so far, counting from now on again (also for streams inside now).
    fn take(&self) -> Duration {
        let mut state = self.state();
        let now = Instant::now();
        let mut total = std::mem::take(&mut state.total);
        if let Some(since) = state.since.replace(now).filter(|_| state.inside > 0) {
            total += now - since;
        }
        if state.inside == 0 {
            state.since = None;
        }
        total
    }
}

/// A stream inside a stage and inside "busy", until dropped (also by a panic).
struct Inside<'a>([&'a Span; 2]);

impl<'a> Inside<'a> {
    fn new(spans: [&'a Span; 2]) -> Self {
        spans.iter().for_each(|span| span.enter());
        Inside(spans)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.iter().for_each(|span| span.leave());
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

    fn count<T>(&self, stage: &Span, call: impl FnOnce() -> T) -> T {
        let _inside = Inside::new([stage, &self.stages.busy]);
        call()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_inside_at_once_count_once() {
        let span = Span::default();
        let start = Instant::now();
        span.enter();
        span.enter();
        std::thread::sleep(Duration::from_millis(10));
        span.leave();
        let midway = span.take();
        std::thread::sleep(Duration::from_millis(10));
        span.leave();
        let wall = start.elapsed();
        let rest = span.take();
        // Two streams inside for 20 ms would be 40 ms as a sum.
        assert!(midway >= Duration::from_millis(10));
        assert!(rest >= Duration::from_millis(10));
        assert!(midway + rest <= wall, "{midway:?} + {rest:?} > {wall:?}");
        assert_eq!(span.take(), Duration::ZERO);
    }
}
