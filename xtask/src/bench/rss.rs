//! Peak RSS of the release `mmh` binary folding generated data from a pipe.
//!
//! The child is `mmh fold - -o FILE -q`; this process feeds its stdin from the generator
//! on a thread and polls the child's VmHWM while it runs (`external::pipeline`; see
//! `sys::peak_rss` for why not `ru_maxrss`). The point of the figure: it must not grow
//! with the input.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, ensure};
use mmh_benches::{MixedData, format_size};
use serde::Serialize;

use super::{Config, external};

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
    let bin = external::mmh_binary(target)?;
    let mut results = Vec::new();
    for len in SIZES {
        eprintln!("bench: peak RSS of `mmh fold` on {}", format_size(len));
        let archive = scratch.join("rss.mmh");
        let _ = std::fs::remove_file(&archive);
        let mut fold = Command::new(&bin);
        fold.arg("fold")
            .arg("-")
            .arg("-o")
            .arg(&archive)
            .args(["-q", "--threads", &config.threads.to_string()])
            .args(["--level", &config.level.to_string()]);
        let feed: external::Feed =
            Box::new(move |mut stdin| super::measure::copy(MixedData::new(seed, len), &mut stdin));
        let done = external::pipeline(vec![fold], Some(feed), config.timeout)?;
        ensure!(done.fed == Some(len), "mmh fold did not read all its input");
        let archive_bytes = std::fs::metadata(&archive)?.len();
        let _ = std::fs::remove_file(&archive);
        results.push(RssResult {
            input_bytes: len,
            peak_rss_bytes: done.cost.max_rss(),
            archive_bytes,
            seconds: done.cost.seconds,
        });
    }
    Ok(results)
}
