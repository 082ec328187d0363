//! Running external programs (the release `mmh`, tar, zstd) for the bench: the wall time
//! of a command or a pipeline, and the peak RSS of each of its processes.
//!
//! Peak RSS is each process's VmHWM polled from /proc every [`POLL`] while it runs, not
//! `ru_maxrss` from `wait4` (see [`super::sys::peak_rss`] for why). A process that grows
//! in its last milliseconds, or lives less than one poll, is under-counted.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// How often [`watch`] reads every process's high-water mark and checks for its exit.
const POLL: Duration = Duration::from_millis(2);

/// What one run of a command or pipeline cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cost {
    /// From the first spawn to the last exit (seen within one [`POLL`]).
    pub seconds: f64,
    /// Peak RSS of each process, in pipeline order (0 where the process exited before
    /// the first poll).
    pub peak_rss_bytes: Vec<u64>,
}

impl Cost {
    /// The largest process of the pipeline.
    pub fn max_rss(&self) -> u64 {
        self.peak_rss_bytes.iter().copied().max().unwrap_or(0)
    }
}

/// A pipeline that ran to success.
#[derive(Debug)]
pub struct Finished {
    pub cost: Cost,
    /// The last command's standard output.
    pub stdout: Vec<u8>,
    /// Bytes the feeder wrote to the first command's standard input.
    pub fed: Option<u64>,
}

/// Writes the first command's standard input (dropping it ends the input); returns the
/// bytes written.
pub type Feed = Box<dyn FnOnce(ChildStdin) -> io::Result<u64> + Send>;

/// Runs one command; see [`pipeline`].
pub fn run(command: Command, limit: Duration) -> Result<Finished> {
    pipeline(vec![command], None, limit)
}

/// Runs `commands` as a shell pipeline would (each one's standard output into the next
/// one's standard input), without a shell, so that every process is our child and its
/// RSS can be read. The first command's standard input is `feed`, else empty; every
/// standard error is kept for the error message. Fails when any process exits
/// unsuccessfully, or when the pipeline runs past `limit` (it is then killed).
pub fn pipeline(
    mut commands: Vec<Command>,
    feed: Option<Feed>,
    limit: Duration,
) -> Result<Finished> {
    let shown = commands.iter().map(show).collect::<Vec<_>>().join(" | ");
    let last = commands.len().checked_sub(1).context("an empty pipeline")?;
    let start = Instant::now();
    let mut children: Vec<Child> = Vec::new();
    let mut upstream = None;
    for (i, command) in commands.iter_mut().enumerate() {
        let stdin = match upstream.take() {
            Some(out) => Stdio::from(out),
            None if feed.is_some() => Stdio::piped(),
            None => Stdio::null(),
        };
        let spawned = command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                // Those already started would wait for input forever.
                for mut started in children {
                    let _ = started.kill();
                    let _ = started.wait();
                }
                return Err(err).with_context(|| format!("cannot run `{}`", show(command)));
            }
        };
        if i < last {
            upstream = child.stdout.take();
        }
        children.push(child);
    }

    let stdin = children[0].stdin.take();
    let stdout = children[last].stdout.take();
    let stderrs: Vec<_> = children.iter_mut().map(|c| c.stderr.take()).collect();
    let (waited, out, errs, fed) = std::thread::scope(|scope| {
        let feeder = feed
            .zip(stdin)
            .map(|(feed, stdin)| scope.spawn(|| feed(stdin)));
        let out = scope.spawn(|| drain(stdout));
        let errs: Vec<_> = stderrs
            .into_iter()
            .map(|e| scope.spawn(|| drain(e)))
            .collect();
        let waited = watch(&mut children, start + limit);
        let join = "the bench's helper threads do not panic";
        (
            waited,
            out.join().expect(join),
            errs.into_iter()
                .map(|e| e.join().expect(join))
                .collect::<Vec<_>>(),
            feeder.map(|f| f.join().expect(join)),
        )
    });
    let seconds = start.elapsed().as_secs_f64();

    if waited.killed {
        bail!(
            "`{shown}` was killed after {} s (the --timeout for one command)",
            limit.as_secs()
        );
    }
    let mut failures = Vec::new();
    for (i, (state, err)) in waited.states.iter().zip(&errs).enumerate() {
        let program = show_program(&commands[i]);
        match state {
            State::Exited(s) if s.success() => {}
            State::Exited(s) => failures.push(format!("{program}: {s}{}", tail(err))),
            State::Lost(e) => failures.push(format!("{program}: cannot wait: {e}")),
            State::Running => unreachable!("watch returns once every process is done"),
        }
    }
    if !failures.is_empty() {
        bail!("`{shown}` failed: {}", failures.join("; "));
    }
    let fed = match fed {
        Some(Err(e)) => return Err(e).with_context(|| format!("cannot feed `{shown}`")),
        Some(Ok(n)) => Some(n),
        None => None,
    };
    Ok(Finished {
        cost: Cost {
            seconds,
            peak_rss_bytes: waited.peaks,
        },
        stdout: out,
        fed,
    })
}

/// Where a child of the pipeline stands.
#[derive(Debug)]
enum State {
    Running,
    Exited(ExitStatus),
    /// `try_wait` failed; the child was killed.
    Lost(io::Error),
}

/// What [`watch`] saw.
struct Watched {
    states: Vec<State>,
    peaks: Vec<u64>,
    /// Whether the deadline passed and the pipeline was killed.
    killed: bool,
}

/// Polls every child until all have exited: its VmHWM (read before `try_wait`, since
/// once reaped it has none; the mark only grows, so the last reading is the peak), and
/// at `deadline` kills those still running. Polling with `try_wait` rather than blocking
/// in `wait` lets one thread do both, and a child is only ever killed through its
/// `Child` before it is reaped, so no recycled pid can be hit.
fn watch(children: &mut [Child], deadline: Instant) -> Watched {
    let mut states: Vec<State> = children.iter().map(|_| State::Running).collect();
    let mut peaks = vec![0u64; children.len()];
    let mut killed = false;
    loop {
        for ((child, state), peak) in children.iter_mut().zip(&mut states).zip(&mut peaks) {
            if !matches!(state, State::Running) {
                continue;
            }
            *peak = super::sys::peak_rss(child.id()).unwrap_or(0).max(*peak);
            match child.try_wait() {
                Ok(Some(status)) => *state = State::Exited(status),
                Ok(None) => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    *state = State::Lost(e);
                }
            }
        }
        if states.iter().all(|s| !matches!(s, State::Running)) {
            return Watched {
                states,
                peaks,
                killed,
            };
        }
        if !killed && Instant::now() >= deadline {
            killed = true;
            for (child, state) in children.iter_mut().zip(&states) {
                if matches!(state, State::Running) {
                    let _ = child.kill();
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

fn drain(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut buf);
    }
    buf
}

/// The end of a standard error, on one line, for an error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let start = text.char_indices().rev().nth(299).map_or(0, |(i, _)| i);
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({}{})", if start > 0 { "…" } else { "" }, &text[start..])
    }
}

fn show_program(command: &Command) -> String {
    let program = Path::new(command.get_program());
    super::display_name(program)
}

/// The command as typed, with the program's file name only.
fn show(command: &Command) -> String {
    std::iter::once(show_program(command))
        .chain(
            command
                .get_args()
                .map(|a| super::shell_quote(&a.to_string_lossy())),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// `program`'s version as `--version` prints it (`zstd v1.5.4`), or `program (version
/// unknown)`.
pub fn version(program: &str) -> String {
    let printed = Command::new(program)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let first = printed.lines().next().unwrap_or_default();
    let numbered = first.split_whitespace().find(|word| {
        let digits = word.strip_prefix('v').unwrap_or(word);
        digits.starts_with(|c: char| c.is_ascii_digit()) && digits.contains('.')
    });
    match numbered {
        Some(v) => format!("{program} {}", v.trim_end_matches(',')),
        None => format!("{program} (version unknown)"),
    }
}

/// The release `mmh` binary, built (or brought up to date) once per bench run: a stale
/// binary would measure code that is no longer in the tree. When the build fails (the
/// tree is mid-edit) an existing binary is used with a warning.
pub fn mmh_binary(target: &Path) -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_mmh(target).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_mmh(target: &Path) -> Result<PathBuf> {
    let bin = target
        .join("release")
        .join(format!("mmh{}", std::env::consts::EXE_SUFFIX));
    eprintln!(
        "bench: cargo build --release -p mmh-cli (for {})",
        bin.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--package", "mmh-cli"])
        .current_dir(crate::workspace_root())
        .status()
        .context("cannot run cargo")?;
    match (status.success(), bin.exists()) {
        (true, true) => Ok(bin),
        (true, false) => bail!("cargo built mmh-cli but {} is missing", bin.display()),
        (false, true) => {
            eprintln!(
                "bench: warning: `cargo build --release -p mmh-cli` failed ({status}); \
                 measuring the existing, possibly stale {}",
                bin.display()
            );
            Ok(bin)
        }
        (false, false) => bail!("`cargo build --release -p mmh-cli` failed ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    #[test]
    fn a_pipeline_past_its_limit_is_killed() {
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let start = Instant::now();
        let err = format!("{:#}", run(sleep, Duration::from_millis(200)).unwrap_err());
        assert!(err.contains("killed after"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn pipeline_connects_and_measures_every_process() {
        let mut echo = Command::new("sh");
        echo.args(["-c", "printf 'a\\nb\\nc\\n'"]);
        let mut count = Command::new("wc");
        count.arg("-l");
        let done = pipeline(vec![echo, count], None, LIMIT).unwrap();
        assert_eq!(String::from_utf8_lossy(&done.stdout).trim(), "3");
        assert_eq!(done.cost.peak_rss_bytes.len(), 2);
    }

    #[test]
    fn feed_reaches_the_first_command() {
        let feed: Feed = Box::new(|mut stdin| {
            use std::io::Write;
            stdin.write_all(b"hello")?;
            Ok(5)
        });
        let done = pipeline(vec![Command::new("cat")], Some(feed), LIMIT).unwrap();
        assert_eq!(done.stdout, b"hello");
        assert_eq!(done.fed, Some(5));
    }

    #[test]
    fn failures_name_the_process_and_its_stderr() {
        let mut fail = Command::new("sh");
        fail.args(["-c", "echo oops >&2; exit 3"]);
        let err = format!("{:#}", run(fail, LIMIT).unwrap_err());
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("oops"), "{err}");
        let err = format!(
            "{:#}",
            run(Command::new("/nonexistent/prog"), LIMIT).unwrap_err()
        );
        assert!(err.contains("cannot run `prog`"), "{err}");
    }
}
