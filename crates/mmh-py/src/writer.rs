//! `Writer`: a stream produced in Python, folded into a one-entry archive while it is
//! written. `write()` copies each buffer into a bounded queue (4 buffers) that a
//! background thread running `mmh_dir::fold_stream` reads, so memory stays flat
//! whatever the stream's length; the archive is a `PendingFile` that `close()` commits
//! and an abort removes.

use std::io::{self, BufWriter, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use mmh_dir::{EntryMeta, FoldSummary, Observer, Overwrite, PendingFile};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PySlice;

use crate::errors::to_py;
use crate::observe::detached;
use crate::reports::FoldReport;

/// Buffers waiting for the fold thread.
const QUEUE: usize = 4;
/// The largest piece queued at once: a larger write is queued piece by piece, so that
/// the queue never holds more than `QUEUE` of these.
const PIECE: usize = 4 << 20;

/// What the fold thread gives back: its result and the archive, still uncommitted.
type Folded = (mmh_dir::Result<FoldSummary>, PendingFile);

enum State {
    Open {
        queue: SyncSender<Vec<u8>>,
        abort: Arc<AtomicBool>,
        fold: JoinHandle<Folded>,
    },
    /// Closed: the report of a successful close, none after an abort or a failure.
    Closed(Option<FoldReport>),
}

/// Folds a stream written from Python into an archive holding one file entry.
#[pyclass(module = "mmh")]
pub(crate) struct Writer {
    state: State,
    dst: PathBuf,
}

/// The fold's input: the queued buffers, in order. The end of the queue is the end of
/// the stream, unless the writer was aborted.
struct Queue {
    buffers: Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    abort: Arc<AtomicBool>,
}

impl Read for Queue {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.buffers.recv() {
                Ok(buffer) => {
                    self.current = buffer;
                    self.at = 0;
                }
                Err(_) if self.abort.load(Ordering::Acquire) => {
                    return Err(io::Error::other("the writer was aborted"));
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Stops the fold once the writer is aborted.
struct Aborted(Arc<AtomicBool>);

impl Observer for Aborted {
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Writer {
    /// Takes the writer out of the open state, handing back what the fold thread
    /// returned once it has read the whole stream (`abort` false) or stopped.
    fn finish(&mut self, py: Python<'_>, abort: bool) -> Option<Folded> {
        let State::Open {
            queue,
            abort: flag,
            fold,
        } = std::mem::replace(&mut self.state, State::Closed(None))
        else {
            return None;
        };
        if abort {
            flag.store(true, Ordering::Release);
        }
        drop(queue);
        match py.detach(|| fold.join()) {
            Ok(folded) => Some(folded),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Queues one buffer, or raises the error that stopped the fold thread.
    fn send(&mut self, py: Python<'_>, buffer: Vec<u8>) -> PyResult<()> {
        let State::Open { queue, .. } = &self.state else {
            return Err(closed());
        };
        if py.detach(|| queue.send(buffer)).is_ok() {
            return Ok(());
        }
        // The fold thread stopped reading: it failed.
        match self.finish(py, true) {
            Some((Err(err), _)) => Err(to_py(err)),
            _ => Err(PyValueError::new_err("the writer's fold stopped early")),
        }
    }
}

fn closed() -> PyErr {
    PyValueError::new_err("I/O operation on a closed Writer")
}

#[pymethods]
impl Writer {
    /// Starts folding into `dst` an entry called `name`; refuses an existing `dst`
    /// unless `force`.
    #[new]
    #[pyo3(signature = (dst, name = "-", codec = "auto", level = None, threads = None, force = false))]
    fn new(
        py: Python<'_>,
        dst: PathBuf,
        name: &str,
        codec: &str,
        level: Option<i32>,
        threads: Option<usize>,
        force: bool,
    ) -> PyResult<Self> {
        let options = crate::fold_options(codec, level, threads, None).map_err(to_py)?;
        let overwrite = if force {
            Overwrite::Replace
        } else {
            Overwrite::Refuse
        };
        let mut pending = detached(py, || PendingFile::create(&dst, overwrite))?;
        let (queue, buffers) = sync_channel(QUEUE);
        let abort = Arc::new(AtomicBool::new(false));
        let input = Queue {
            buffers,
            current: Vec::new(),
            at: 0,
            abort: Arc::clone(&abort),
        };
        let observer = Aborted(Arc::clone(&abort));
        let meta = EntryMeta {
            name: name.to_owned(),
            ..EntryMeta::stdin()
        };
        let fold = std::thread::Builder::new()
            .name("mmh-writer".into())
            .spawn(move || {
                let output = BufWriter::with_capacity(1 << 20, pending.file());
                let result = mmh_dir::fold_stream(input, meta, output, &options, &observer);
                (result, pending)
            })
            .map_err(|e| crate::errors::os_error(e.kind(), e.to_string()))?;
        Ok(Writer {
            state: State::Open { queue, abort, fold },
            dst,
        })
    }

    /// Appends `data` (bytes, bytearray, memoryview: any buffer of bytes) to the stream;
    /// returns its length. Waits, with the GIL released, while the fold is behind.
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if !matches!(self.state, State::Open { .. }) {
            return Err(closed());
        }
        let buffer = PyBuffer::<u8>::get(data)?;
        let len = buffer.item_count();
        if len > PIECE && buffer.is_c_contiguous() {
            // Queued piece by piece, each copied from a slice of a flat memoryview.
            let flat = py
                .import("builtins")?
                .getattr("memoryview")?
                .call1((data,))?
                .call_method1("cast", ("B",))?;
            for start in (0..len).step_by(PIECE) {
                let end = (start + PIECE).min(len);
                let piece = flat.get_item(PySlice::new(py, start as isize, end as isize, 1))?;
                let piece = PyBuffer::<u8>::get(&piece)?.to_vec(py)?;
                self.send(py, piece)?;
            }
        } else if len > 0 {
            let bytes = buffer.to_vec(py)?;
            self.send(py, bytes)?;
        }
        Ok(len)
    }

    /// Ends the stream, waits for the fold to finish and moves the archive to `dst`;
    /// returns what the fold did. Calling it again returns the same report.
    fn close(&mut self, py: Python<'_>) -> PyResult<FoldReport> {
        if let State::Closed(done) = &self.state {
            return done.clone().ok_or_else(|| {
                PyValueError::new_err("the Writer was aborted or failed; nothing was written")
            });
        }
        let (result, pending) = self.finish(py, false).expect("the writer is open");
        let summary = result.map_err(to_py)?;
        detached(py, || pending.commit())?;
        let report = FoldReport::from(summary);
        self.state = State::Closed(Some(report.clone()));
        Ok(report)
    }

    /// Stops folding and removes the partial archive: nothing is left at `dst`.
    fn abort(&mut self, py: Python<'_>) {
        self.finish(py, true);
    }

    /// Whether the writer is closed (or aborted).
    #[getter]
    fn closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// True: a Writer is written to.
    fn writable(&self) -> bool {
        true
    }

    /// Does nothing: buffers go to the fold as they are written.
    fn flush(&self) {}

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Closes the writer when the block ends normally; aborts it (removing the partial
    /// archive) when it ends with an exception, which then propagates.
    #[pyo3(signature = (exc_type, _exc = None, _traceback = None))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if exc_type.is_some_and(|t| !t.is_none()) {
            self.abort(py);
        } else if !self.closed() {
            self.close(py)?;
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { " (closed)" } else { "" };
        format!("<mmh.Writer {:?}{state}>", self.dst.display().to_string())
    }
}

impl Drop for Writer {
    /// A writer dropped open (never closed) is aborted: its partial archive is removed.
    fn drop(&mut self) {
        if let State::Open { queue, abort, fold } =
            std::mem::replace(&mut self.state, State::Closed(None))
        {
            abort.store(true, Ordering::Release);
            drop(queue);
            let _ = fold.join();
        }
    }
}
