//! Peak RSS of the release `mmh` binary folding generated data from a pipe.
//!
//! The child is `mmh fold - -o FILE -q`; this process feeds its stdin from the generator
//! on a thread and polls the child's VmHWM while it runs (see `sys::peak_rss` for why not
//! `ru_maxrss`). The point of the figure: it must not grow with the input.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use mmh_benches::{MixedData, format_size};
use serde::Serialize;

use super::Config;

/// The generated input sizes measured.
pub const SIZES: [u64; 2] = [256 << 20, 2 << 30];

/// One RSS measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RssResult {
    pub input_bytes: u64,
    pub peak_rss_bytes: u64,
    pub archive_bytes: u64,
    pub seconds: f64,
}

pub fn measure(
    config: &Config,
    seed: u64,
    target: &Path,
    scratch: &Path,
) -> Result<Vec<RssResult>> {
    let bin = target
        .join("release")
        .join(format!("mmh{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        eprintln!("bench: {} is missing; building it", bin.display());
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--package", "mmh-cli"])
            .current_dir(crate::workspace_root())
            .status()
            .context("cannot run cargo")?;
        ensure!(
            status.success(),
            "`cargo build --release -p mmh-cli` failed ({status})"
        );
    }
    let mut results = Vec::new();
    for len in SIZES {
        eprintln!("bench: peak RSS of `mmh fold` on {}", format_size(len));
        let archive = scratch.join("rss.mmh");
        let _ = std::fs::remove_file(&archive);
        let start = Instant::now();
        let mut child = Command::new(&bin)
            .arg("fold")
            .arg("-")
            .arg("-o")
            .arg(&archive)
            .args(["-q", "--threads", &config.threads.to_string()])
            .args(["--level", &config.level.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let mut stdin = child.stdin.take().context("no stdin pipe")?;
        let feeder = std::thread::spawn(move || {
            super::measure::copy(MixedData::new(seed, len), &mut stdin)
            // stdin is dropped here: end of input.
        });
        // Poll the child's high-water mark while it runs: it only grows, so the last
        // reading before exit is the peak unless memory grew in the final milliseconds.
        let pid = child.id();
        let done = AtomicBool::new(false);
        let (exit, peak_rss_bytes) =
            std::thread::scope(|scope| -> Result<(std::process::ExitStatus, u64)> {
                let poller = scope.spawn(|| {
                    let mut peak = 0;
                    while !done.load(Ordering::Relaxed) {
                        peak = super::sys::peak_rss(pid).unwrap_or(0).max(peak);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    peak
                });
                let status = child.wait();
                done.store(true, Ordering::Relaxed);
                let peak = poller.join().expect("the poller does not panic");
                Ok((status?, peak))
            })?;
        let seconds = start.elapsed().as_secs_f64();
        let fed = feeder.join().expect("the feeder thread does not panic");
        ensure!(exit.success(), "mmh fold failed ({exit})");
        ensure!(fed? == len, "mmh fold did not read all its input");
        let archive_bytes = std::fs::metadata(&archive)?.len();
        let _ = std::fs::remove_file(&archive);
        results.push(RssResult {
            input_bytes: len,
            peak_rss_bytes,
            archive_bytes,
            seconds,
        });
    }
    Ok(results)
}
