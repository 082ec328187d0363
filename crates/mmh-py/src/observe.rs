//! Running a long library call without the GIL while Python keeps control: progress
//! callbacks, cancellation by a callback that raises, and Ctrl-C.
//!
//! The callback is called once with 0 before the work starts (an exception there stops
//! everything before it begins). The call then runs on a scoped worker thread while the
//! calling thread releases the GIL and waits for it; every 100 ms it takes the GIL back
//! to check for signals (Ctrl-C) and to pass the bytes processed so far to the callback.
//! An exception from either sets the cancel flag that the library polls
//! ([`mmh_dir::Observer::cancelled`]); once the worker has stopped, the exception is
//! raised in its place. At the end the callback gets the final total, if it changed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::{Error, to_py};

/// Time between two calls of the progress callback.
const TICK: Duration = Duration::from_millis(100);

/// The [`mmh_dir::Observer`] handed to the library: a byte counter and a cancel flag.
#[derive(Default)]
pub(crate) struct Watch {
    bytes: AtomicU64,
    cancel: AtomicBool,
}

impl mmh_dir::Observer for Watch {
    fn progress(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
}

/// Runs `work` on a worker thread with the GIL released, reporting its progress to
/// `progress` (called with the total bytes processed: 0 first, then at most every
/// 100 ms, and once more at the end if the total changed) and cancelling it on Ctrl-C
/// or when the callback raises; that exception is then raised instead of the result.
///
/// A result that completes despite a late exception (the work had passed its last
/// poll) is dropped: callers keep outputs uncommitted in `T` where they can.
pub(crate) fn observed<T: Send>(
    py: Python<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(&Watch) -> mmh_dir::Result<T> + Send,
) -> PyResult<T> {
    let watch = Watch::default();
    let mut reporter = Reporter {
        progress,
        reported: None,
        raised: None,
        watch: &watch,
    };
    reporter.report(true);
    if let Some(raised) = reporter.raised.take() {
        return Err(raised);
    }
    let (done, mut finished) = mpsc::channel::<()>();
    let result = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let result = work(&watch);
            let _ = done.send(());
            result
        });
        loop {
            // A `Receiver` may not be shared with the thread that runs while the GIL is
            // released, only moved to it and back.
            let (event, back) = py.detach(move || (finished.recv_timeout(TICK), finished));
            finished = back;
            match event {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(interrupt) = py.check_signals() {
                        reporter.fail(interrupt);
                    }
                    reporter.report(false);
                }
                // Disconnected: the worker panicked; joining it raises the panic.
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    if let Some(raised) = reporter.raised.take() {
        return Err(raised);
    }
    let value = result.map_err(|err| {
        if err.is_cancelled() {
            // Only our flag cancels, and it is set with an exception; keep a message
            // should the library ever stop on its own.
            Error::new_err(err.to_string())
        } else {
            to_py(err)
        }
    })?;
    reporter.report(false);
    match reporter.raised {
        Some(raised) => Err(raised),
        None => Ok(value),
    }
}

/// Calls the progress callback and remembers the first exception.
struct Reporter<'a, 'py> {
    progress: Option<&'a Bound<'py, PyAny>>,
    /// The last total passed to the callback.
    reported: Option<u64>,
    raised: Option<PyErr>,
    watch: &'a Watch,
}

impl Reporter<'_, '_> {
    /// Passes the current total to the callback if it changed (or `always`), unless
    /// an exception already stopped the work.
    fn report(&mut self, always: bool) {
        let Some(callback) = self.progress else {
            return;
        };
        if self.raised.is_some() {
            return;
        }
        let total = self.watch.bytes.load(Ordering::Relaxed);
        if !always && self.reported == Some(total) {
            return;
        }
        self.reported = Some(total);
        if let Err(raised) = callback.call1((total,)) {
            self.fail(raised);
        }
    }

    fn fail(&mut self, raised: PyErr) {
        if self.raised.is_none() {
            self.raised = Some(raised);
        }
        self.watch.cancel.store(true, Ordering::Release);
    }
}

/// Runs `work` with the GIL released, for calls too short to need progress.
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> mmh_dir::Result<T> + Send,
) -> PyResult<T> {
    py.detach(work).map_err(to_py)
}
