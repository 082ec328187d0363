//! The system calls the bench needs that std does not offer: a child's peak RSS, the
//! free space of a file system, and this process's CPU time.
//!
//! Safety invariants, cited by the `SAFETY:` comments below:
//! 1. `libc::rusage` and `libc::statvfs` are plain C structs of integers, for which all
//!    zero bytes are a valid value.
//! 2. Every pointer handed to the kernel points to a live, exclusively borrowed local of
//!    the type the call expects, or to a NUL-terminated `CString` that outlives the call.

use std::io;
use std::path::Path;

/// How a waited-for child ended, and its peak resident set.
pub struct Exit {
    /// Exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    /// Peak RSS in bytes (`ru_maxrss` of this child alone).
    pub max_rss: u64,
}

/// Waits for the child `pid` with `wait4`, which returns the resource usage of that one
/// child, unlike `getrusage(RUSAGE_CHILDREN)` (the maximum over every child ever waited
/// for, cargo included) or polling `/proc/PID/status` (which can miss the last peak).
/// The caller must not wait for the child again (std's `Child::wait` would then fail).
#[cfg(unix)]
pub fn wait_with_rss(pid: u32) -> io::Result<Exit> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: invariant 1.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: invariant 2: `status` and `usage` are live locals borrowed only here.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    // Linux reports KiB; macOS reports bytes.
    let unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
    Ok(Exit {
        code,
        max_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * unit,
    })
}

#[cfg(not(unix))]
pub fn wait_with_rss(_pid: u32) -> io::Result<Exit> {
    Err(io::Error::other("peak RSS is measured on Unix only"))
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
