//! The real `mmh` binary, run as a user would: every subcommand, pipes, --force, and the
//! documented exit codes (0 ok, 1 error, 2 usage, 3 integrity failure).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use tempfile::TempDir;

fn mmh() -> Command {
    Command::cargo_bin("mmh").unwrap()
}

/// A workspace with `input.bin`: text, zeros and noise, several 64 KiB chunks.
fn setup() -> (TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut data = b"layer.weight 0.125 -0.5 ".repeat(8000);
    data.extend(vec![0u8; 100_000]);
    let mut x = 12345u32;
    data.extend((0..50_000).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    }));
    let input = dir.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();
    (dir, input, data)
}

fn fold(input: &Path, archive: &Path) {
    mmh()
        .args(["fold", "-q", "--chunk-size", "64K"])
        .arg(input)
        .arg("-o")
        .arg(archive)
        .assert()
        .success();
}

fn stdout_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn fold_unfold_roundtrip_with_default_names() {
    let (dir, input, data) = setup();
    mmh().arg("fold").arg(&input).assert().success();
    let archive = dir.path().join("input.bin.mmh");
    assert!(archive.exists());
    std::fs::rename(&input, dir.path().join("original")).unwrap();
    mmh().arg("unfold").arg(&archive).assert().success();
    assert_eq!(std::fs::read(&input).unwrap(), data);
}

#[test]
fn fold_json_summary_and_list_and_verify() {
    let (dir, input, data) = setup();
    let archive = dir.path().join("a.mmh");
    let summary = stdout_json(
        mmh()
            .args([
                "fold",
                "--json",
                "--codec",
                "zstd",
                "--level",
                "5",
                "--threads",
                "2",
            ])
            .arg(&input)
            .arg("-o")
            .arg(&archive),
    );
    assert_eq!(summary["input_bytes"], data.len() as u64);
    assert_eq!(
        summary["archive_bytes"],
        std::fs::metadata(&archive).unwrap().len()
    );
    assert!(summary["ratio"].as_f64().unwrap() < 0.5);

    let listing = stdout_json(mmh().args(["list", "--json"]).arg(&archive));
    let entry = &listing["entries"][0];
    assert_eq!(entry["name"], "input.bin");
    assert_eq!(entry["size"], data.len() as u64);
    let text = mmh().arg("list").arg(&archive).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.lines().nth(1).unwrap().ends_with(" input.bin"),
        "{text}"
    );

    let report = stdout_json(mmh().args(["verify", "--json"]).arg(&archive));
    assert_eq!(report["ok"], true);
    assert_eq!(report["content_bytes"], data.len() as u64);
}

#[test]
fn every_codec_roundtrips_through_the_cli() {
    let (dir, input, data) = setup();
    for codec in ["auto", "zstd", "lz4", "pattern", "store"] {
        let archive = dir.path().join(format!("{codec}.mmh"));
        let output = dir.path().join(format!("{codec}.out"));
        mmh()
            .args(["fold", "-q", "--codec", codec, "--chunk-size", "100000"])
            .arg(&input)
            .arg("-o")
            .arg(&archive)
            .assert()
            .success();
        mmh()
            .args(["unfold", "-q"])
            .arg(&archive)
            .arg("-o")
            .arg(&output)
            .assert()
            .success();
        assert_eq!(std::fs::read(&output).unwrap(), data, "codec {codec}");
    }
}

#[test]
fn stdin_to_stdout_and_back() {
    let (_dir, _input, data) = setup();
    let archive = mmh()
        .args(["fold", "-", "-o", "-"])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(archive.status.success());
    assert!(archive.stdout.len() < data.len());
    let restored = mmh()
        .args(["unfold", "-", "-o", "-"])
        .write_stdin(archive.stdout.clone())
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(restored.stdout, data);
    mmh()
        .args(["verify", "-"])
        .write_stdin(archive.stdout)
        .assert()
        .success();
}

#[test]
fn unfold_from_a_pipe_into_a_file() {
    let (dir, input, data) = setup();
    let archive = dir.path().join("a.mmh");
    fold(&input, &archive);
    let output = dir.path().join("piped.out");
    mmh()
        .args(["unfold", "-", "-o"])
        .arg(&output)
        .write_stdin(std::fs::read(&archive).unwrap())
        .assert()
        .success();
    assert_eq!(std::fs::read(&output).unwrap(), data);
}

#[test]
fn cat_writes_an_entry_or_a_range() {
    let (dir, input, data) = setup();
    let archive = dir.path().join("a.mmh");
    fold(&input, &archive);
    let whole = mmh()
        .arg("cat")
        .arg(&archive)
        .arg("input.bin")
        .output()
        .unwrap();
    assert_eq!(whole.stdout, data);
    let part = mmh()
        .arg("cat")
        .arg(&archive)
        .args(["input.bin", "--range", "65530..65546"])
        .output()
        .unwrap();
    assert_eq!(part.stdout, data[65530..65546]);
    mmh()
        .arg("cat")
        .arg(&archive)
        .arg("missing")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no entry named \"missing\""));
}

#[test]
fn existing_outputs_are_kept_unless_forced() {
    let (dir, input, data) = setup();
    let archive = dir.path().join("a.mmh");
    std::fs::write(&archive, b"precious").unwrap();
    mmh()
        .arg("fold")
        .arg(&input)
        .arg("-o")
        .arg(&archive)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("already exists (use --force"));
    assert_eq!(std::fs::read(&archive).unwrap(), b"precious");
    mmh()
        .args(["fold", "-q", "--force"])
        .arg(&input)
        .arg("-o")
        .arg(&archive)
        .assert()
        .success();

    let output = dir.path().join("out");
    std::fs::write(&output, b"precious").unwrap();
    mmh()
        .arg("unfold")
        .arg(&archive)
        .arg("-o")
        .arg(&output)
        .assert()
        .code(1);
    assert_eq!(std::fs::read(&output).unwrap(), b"precious");
    mmh()
        .args(["unfold", "-f"])
        .arg(&archive)
        .arg("-o")
        .arg(&output)
        .assert()
        .success();
    assert_eq!(std::fs::read(&output).unwrap(), data);
}

#[test]
fn usage_errors_exit_2_and_missing_files_exit_1() {
    mmh().arg("fold").assert().code(2);
    mmh()
        .args(["fold", "x", "--codec", "brotli"])
        .assert()
        .code(2);
    mmh()
        .args(["fold", "x", "--chunk-size", "4X"])
        .assert()
        .code(2);
    mmh().args(["frobnicate"]).assert().code(2);
    mmh()
        .args(["verify", "/nonexistent/a.mmh"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("/nonexistent/a.mmh"));
    mmh()
        .args(["fold", "-", "-o", "-", "--level", "30"])
        .write_stdin("x")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("30"));
}

/// Region boundaries of an archive: header, first frame header, first frame body, index
/// frame, trailer.
fn regions(archive: &[u8]) -> Vec<(&'static str, usize)> {
    let len = archive.len();
    let index_at = u64::from_le_bytes(archive[len - 56..len - 48].try_into().unwrap()) as usize;
    vec![
        ("header", 9),
        ("frame header", 16 + 5),
        ("frame body", 16 + 24 + 3),
        ("index frame header", index_at + 2),
        ("index", index_at + 30),
        ("trailer", len - 40),
        ("trailer magic", len - 1),
    ]
}

#[test]
fn damaged_archives_exit_3_and_leave_no_output() {
    let (dir, input, _) = setup();
    let archive = dir.path().join("a.mmh");
    fold(&input, &archive);
    let good = std::fs::read(&archive).unwrap();
    let damaged = dir.path().join("damaged.mmh");
    let output = dir.path().join("out");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (region, at) in regions(&good) {
        let mut bytes = good.clone();
        bytes[at] ^= 0x04;
        cases.push((format!("flip in {region}"), bytes));
        cases.push((format!("cut in {region}"), good[..at].to_vec()));
    }
    for (what, bytes) in cases {
        std::fs::write(&damaged, &bytes).unwrap();
        let verify = mmh().arg("verify").arg(&damaged).output().unwrap();
        assert_eq!(
            verify.status.code(),
            Some(3),
            "{what}: verify: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        assert!(
            String::from_utf8_lossy(&verify.stderr).starts_with("mmh: error: "),
            "{what}"
        );
        let unfold = mmh()
            .arg("unfold")
            .arg(&damaged)
            .arg("-o")
            .arg(&output)
            .output()
            .unwrap();
        assert_eq!(
            unfold.status.code(),
            Some(3),
            "{what}: unfold: {}",
            String::from_utf8_lossy(&unfold.stderr)
        );
        let piped = mmh()
            .args(["unfold", "-", "-o"])
            .arg(&output)
            .write_stdin(bytes)
            .output()
            .unwrap();
        assert_eq!(
            piped.status.code(),
            Some(3),
            "{what}: unfold from a pipe: {}",
            String::from_utf8_lossy(&piped.stderr)
        );
        assert!(!output.exists(), "{what}: an output was left behind");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            3,
            "{what}: temporary files left: {leftovers:?}"
        );
    }
}

#[test]
fn a_closed_reader_is_not_an_error() {
    let (dir, input, _) = setup();
    let archive = dir.path().join("a.mmh");
    fold(&input, &archive);
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("mmh"))
        .arg("cat")
        .arg(&archive)
        .arg("input.bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(&first, b"layer.weig");
}

#[test]
fn stdin_input_defaults_to_stdout_output() {
    let archive = mmh()
        .args(["fold", "-"])
        .write_stdin("abc")
        .output()
        .unwrap();
    assert!(archive.status.success());
    let restored = mmh()
        .args(["unfold", "-"])
        .write_stdin(archive.stdout)
        .output()
        .unwrap();
    assert!(restored.status.success());
    assert_eq!(restored.stdout, b"abc");
}

#[test]
#[cfg(unix)]
fn ctrl_c_leaves_no_file_under_the_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.mmh");
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("mmh"))
        .args(["fold", "-", "--chunk-size", "4K", "-o"])
        .arg(&archive)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vec![b'x'; 100_000]).unwrap();
    // Wait until the fold has started (its temporary file exists), then interrupt it.
    while std::fs::read_dir(dir.path()).unwrap().count() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let kill = StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("interrupted"));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_directory_folds_lists_and_unfolds() {
    let (dir, input, data) = setup();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/empty")).unwrap();
    std::fs::copy(&input, tree.join("sub/weights.bin")).unwrap();
    std::fs::copy(&input, tree.join("weights-copy.bin")).unwrap();
    std::os::unix::fs::symlink("sub/weights.bin", tree.join("link")).unwrap();
    let archive = dir.path().join("tree.mmh");
    let summary = stdout_json(
        mmh()
            .args(["fold", "--json"])
            .arg(&tree)
            .arg("-o")
            .arg(&archive),
    );
    assert_eq!(summary["deduplicated_bytes"], data.len() as u64);
    let listing =
        String::from_utf8(mmh().arg("list").arg(&archive).output().unwrap().stdout).unwrap();
    assert!(listing.contains(" sub/empty/"), "{listing}");
    assert!(listing.contains(" link -> sub/weights.bin"), "{listing}");
    mmh()
        .args(["verify", "-q"])
        .arg(&archive)
        .assert()
        .success();
    let out = dir.path().join("out");
    mmh()
        .args(["unfold", "-q"])
        .arg(&archive)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(std::fs::read(out.join("weights-copy.bin")).unwrap(), data);
    assert_eq!(std::fs::read(out.join("link")).unwrap(), data);
    assert!(out.join("sub/empty").is_dir());
    let part = dir.path().join("part");
    mmh()
        .args(["unfold", "-q"])
        .arg(&archive)
        .arg("-o")
        .arg(&part)
        .arg("sub")
        .assert()
        .success();
    assert!(part.join("sub/weights.bin").exists() && !part.join("link").exists());
    mmh()
        .arg("cat")
        .arg(&archive)
        .arg("sub/weights.bin")
        .assert()
        .success();
    mmh()
        .args(["unfold", "-q"])
        .arg(&archive)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1);
}
