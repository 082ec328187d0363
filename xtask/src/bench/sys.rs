//! What the bench needs from the system that std does not offer: a child's peak RSS, the
//! free space of a file system, and this process's CPU time.
//!
//! Safety invariants, cited by the `SAFETY:` comments below:
//! 1. `libc::rusage` and `libc::statvfs` are plain C structs of integers, for which all
//!    zero bytes are a valid value.
//! 2. Every pointer handed to the kernel points to a live, exclusively borrowed local of
//!    the type the call expects, or to a NUL-terminated `CString` that outlives the call.

use std::io;
use std::path::Path;

/// The peak resident set (VmHWM) of the live process `pid`, in bytes, from
/// `/proc/PID/status`; `None` once it has exited or where there is no procfs.
///
/// Not `ru_maxrss` from `wait4`: on Linux a child's `ru_maxrss` includes the resident set
/// of the parent it was forked from (exec folds the old address space's high-water mark
/// into the process's maximum), so a bench process holding 100 MiB would report every
/// child as at least 100 MiB.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes an unprivileged user may still write on the file system holding `path`.
#[cfg(unix)]
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: invariant 1.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: invariant 2: `c_path` is NUL-terminated and lives past the call; `stat` is
    // a live local.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(not(unix))]
pub fn free_bytes(_path: &Path) -> io::Result<u64> {
    Ok(u64::MAX)
}

/// CPU time (user + system) this process has used so far, all threads, in seconds.
#[cfg(unix)]
pub fn cpu_seconds() -> f64 {
    // SAFETY: invariant 1.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: invariant 2: `usage` is a live local borrowed only here.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(not(unix))]
pub fn cpu_seconds() -> f64 {
    f64::NAN
}
