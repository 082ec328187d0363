//! What a fold and a verification report: plain read-only records.

use pyo3::prelude::*;

/// What a fold did: bytes in and out, chunks, and the bytes that dedup, the base and
/// deltas saved.
#[pyclass(frozen, get_all, module = "mmh")]
#[derive(Clone)]
pub(crate) struct FoldReport {
    /// Bytes of content folded.
    input_bytes: u64,
    /// Bytes of the archive written.
    archive_bytes: u64,
    /// Chunks in the archive's index.
    chunks: u64,
    /// Content bytes stored once for several places (repeats within the input).
    deduplicated_bytes: u64,
    /// Content bytes referenced in (or copied from) the base archive.
    base_bytes: u64,
    /// Content bytes coded as deltas against the base archive.
    delta_bytes: u64,
    /// What was skipped or could not be kept (unreadable files, special files, ...).
    warnings: Vec<String>,
}

impl From<mmh_dir::FoldSummary> for FoldReport {
    fn from(summary: mmh_dir::FoldSummary) -> Self {
        FoldReport {
            input_bytes: summary.input_bytes,
            archive_bytes: summary.archive_bytes,
            chunks: summary.chunks,
            deduplicated_bytes: summary.deduplicated_bytes,
            base_bytes: summary.base_bytes,
            delta_bytes: summary.delta_bytes,
            warnings: summary.warnings,
        }
    }
}

#[pymethods]
impl FoldReport {
    /// Archive bytes over input bytes (as if the input were 1 byte when empty).
    #[getter]
    fn ratio(&self) -> f64 {
        self.archive_bytes as f64 / self.input_bytes.max(1) as f64
    }

    fn __repr__(&self) -> String {
        format!(
            "FoldReport(input_bytes={}, archive_bytes={}, ratio={:.4}, chunks={}, \
             deduplicated_bytes={}, base_bytes={}, delta_bytes={}, warnings={})",
            self.input_bytes,
            self.archive_bytes,
            self.ratio(),
            self.chunks,
            self.deduplicated_bytes,
            self.base_bytes,
            self.delta_bytes,
            self.warnings.len()
        )
    }
}

/// What a verification checked.
#[pyclass(frozen, get_all, module = "mmh")]
pub(crate) struct Report {
    /// Entries in the archive.
    entries: u64,
    /// Chunks in its index (including those held by bases).
    chunks: u64,
    /// Bytes of file content checked (shared chunks count once per entry).
    content_bytes: u64,
}

impl From<mmh_verify::Report> for Report {
    fn from(report: mmh_verify::Report) -> Self {
        Report {
            entries: report.entries,
            chunks: report.chunks,
            content_bytes: report.content_bytes,
        }
    }
}

#[pymethods]
impl Report {
    fn __repr__(&self) -> String {
        format!(
            "Report(entries={}, chunks={}, content_bytes={})",
            self.entries, self.chunks, self.content_bytes
        )
    }
}
