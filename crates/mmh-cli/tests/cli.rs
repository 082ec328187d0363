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
    // A range across the end of the first chunk, wherever content-defined chunking put it.
    let index = mmh_format::Archive::open(std::fs::read(&archive).unwrap())
        .unwrap()
        .index()
        .clone();
    assert!(
        index.chunks.len() > 1,
        "the input is cut into several chunks"
    );
    let cut = index.chunks[0].raw_len as usize;
    let part = mmh()
        .arg("cat")
        .arg(&archive)
        .args([
            "input.bin",
            "--range",
            &format!("{}..{}", cut - 6, cut + 10),
        ])
        .output()
        .unwrap();
    assert_eq!(part.stdout, data[cut - 6..cut + 10]);
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
    // From a pipe: the whole tree, a subset, and verify.
    let bytes = std::fs::read(&archive).unwrap();
    let piped = dir.path().join("piped");
    mmh()
        .args(["unfold", "-q", "-", "-o"])
        .arg(&piped)
        .write_stdin(bytes.clone())
        .assert()
        .success();
    assert_eq!(std::fs::read(piped.join("sub/weights.bin")).unwrap(), data);
    assert!(piped.join("sub/empty").is_dir());
    let piped_part = dir.path().join("piped-part");
    mmh()
        .args(["unfold", "-q", "-", "-o"])
        .arg(&piped_part)
        .arg("weights-copy.bin")
        .write_stdin(bytes.clone())
        .assert()
        .success();
    assert!(piped_part.join("weights-copy.bin").exists() && !piped_part.join("sub").exists());
    mmh()
        .args(["verify", "-q", "-"])
        .write_stdin(bytes)
        .assert()
        .success();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mmh-spool"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "spool files left behind: {leftovers:?}"
    );
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

/// A safetensors file of 24 F32 tensors of 64 KiB (one 64 KiB piece each with
/// `--chunk-size 16K`, whose largest chunk is 64 KiB); `step` > 0 moves tensors 5 and 17
/// a little, as training would.
fn model(step: u32) -> Vec<u8> {
    let (tensors, values) = (24usize, 16_384usize);
    let mut header = String::from("{");
    for t in 0..tensors {
        let (start, end) = (t * values * 4, (t + 1) * values * 4);
        if t > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            r#""layer.{t}.weight":{{"dtype":"F32","shape":[{values}],"data_offsets":[{start},{end}]}}"#
        ));
    }
    header.push('}');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for t in 0..tensors {
        for _ in 0..values {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut value = ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1;
            if (t == 5 || t == 17) && step > 0 {
                value = value * (1.0 + 0.001 * step as f32) + 1e-5;
            }
            file.extend_from_slice(&value.to_le_bytes());
        }
    }
    file
}

/// `dir/v1.mmh` from `dir/v1.safetensors`, and `dir/v2.mmh` from `dir/v2.safetensors`
/// folded against it; returns v2's content and v2's fold summary.
fn fold_against_base(dir: &Path) -> (Vec<u8>, serde_json::Value) {
    let (v1, v2) = (model(0), model(1));
    std::fs::write(dir.join("v1.safetensors"), &v1).unwrap();
    std::fs::write(dir.join("v2.safetensors"), &v2).unwrap();
    mmh()
        .args(["fold", "-q", "--chunk-size", "16K"])
        .arg(dir.join("v1.safetensors"))
        .arg("-o")
        .arg(dir.join("v1.mmh"))
        .assert()
        .success();
    let summary = stdout_json(
        mmh()
            .args(["fold", "--json", "--chunk-size", "16K", "--base"])
            .arg(dir.join("v1.mmh"))
            .arg(dir.join("v2.safetensors"))
            .arg("-o")
            .arg(dir.join("v2.mmh")),
    );
    (v2, summary)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn fold_with_a_base_stores_only_the_changes_and_unfolds_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let (v2, summary) = fold_against_base(dir.path());
    let (v1_len, v2_len) = (
        file_len(&dir.path().join("v1.mmh")),
        file_len(&dir.path().join("v2.mmh")),
    );
    assert!(v2_len * 10 < v1_len, "v2 {v2_len} bytes, v1 {v1_len}");
    assert_eq!(summary["archive_bytes"], v2_len);
    assert_eq!(summary["delta_bytes"], 2 * 65_536, "{summary}");
    assert_eq!(
        summary["base_bytes"],
        v2.len() as u64 - 2 * 65_536,
        "{summary}"
    );
    let out = dir.path().join("out.safetensors");
    mmh()
        .args(["unfold", "-q"])
        .arg(dir.path().join("v2.mmh"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(std::fs::read(&out).unwrap(), v2);
    mmh()
        .args(["verify", "-q"])
        .arg(dir.path().join("v2.mmh"))
        .assert()
        .success();
    let listing = String::from_utf8(
        mmh()
            .arg("list")
            .arg(dir.path().join("v2.mmh"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(listing.contains("base"), "{listing}");
}

#[test]
fn a_moved_base_is_asked_for_and_then_given_with_base() {
    let dir = tempfile::tempdir().unwrap();
    let (v2, _) = fold_against_base(dir.path());
    let archive = dir.path().join("v2.mmh");
    let moved = dir.path().join("old-versions/model-v1.mmh");
    std::fs::create_dir(moved.parent().unwrap()).unwrap();
    std::fs::rename(dir.path().join("v1.mmh"), &moved).unwrap();
    let out = dir.path().join("out.safetensors");
    for subcommand in [
        vec!["unfold".into(), archive.clone(), "-o".into(), out.clone()],
        vec!["verify".into(), archive.clone()],
        vec!["cat".into(), archive.clone(), "v2.safetensors".into()],
    ] {
        let output = mmh().args(&subcommand).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{subcommand:?}: {stderr}");
        assert!(
            stderr.contains("\"v1.mmh\"") && stderr.contains("--base"),
            "{subcommand:?}: {stderr}"
        );
        assert!(!out.exists());
    }
    mmh()
        .args(["unfold", "-q"])
        .arg(&archive)
        .arg("-o")
        .arg(&out)
        .arg("--base")
        .arg(&moved)
        .assert()
        .success();
    assert_eq!(std::fs::read(&out).unwrap(), v2);
    let report = stdout_json(
        mmh()
            .args(["verify", "--json", "--base"])
            .arg(&moved)
            .arg(&archive),
    );
    assert_eq!(report["ok"], true);
    assert_eq!(report["content_bytes"], v2.len() as u64);
    let part = mmh()
        .arg("cat")
        .arg(&archive)
        .args(["v2.safetensors", "--range", "300000..300100", "--base"])
        .arg(&moved)
        .output()
        .unwrap();
    assert!(part.status.success());
    assert_eq!(part.stdout, v2[300_000..300_100]);
    // A base that is not the one folded against is refused, not used.
    let other = dir.path().join("other.mmh");
    mmh()
        .args(["fold", "-q", "--chunk-size", "16K"])
        .arg(dir.path().join("v2.safetensors"))
        .arg("-o")
        .arg(&other)
        .assert()
        .success();
    mmh()
        .args(["verify", "--base"])
        .arg(&other)
        .arg(&archive)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("--base"));
}

#[test]
fn a_self_contained_fold_unfolds_without_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let (v2, _) = fold_against_base(dir.path());
    let alone = dir.path().join("alone.mmh");
    let summary = stdout_json(
        mmh()
            .args([
                "fold",
                "--json",
                "--chunk-size",
                "16K",
                "--self-contained",
                "--base",
            ])
            .arg(dir.path().join("v1.mmh"))
            .arg(dir.path().join("v2.safetensors"))
            .arg("-o")
            .arg(&alone),
    );
    assert!(summary["base_bytes"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["delta_bytes"], 0);
    std::fs::remove_file(dir.path().join("v1.mmh")).unwrap();
    let out = dir.path().join("out.safetensors");
    mmh()
        .args(["unfold", "-q"])
        .arg(&alone)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(std::fs::read(&out).unwrap(), v2);
    mmh().args(["verify", "-q"]).arg(&alone).assert().success();
    mmh()
        .args(["fold", "--self-contained"])
        .arg(dir.path().join("v2.safetensors"))
        .assert()
        .code(2);
}

#[test]
fn diff_lists_added_removed_and_changed_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    for (tree, files) in [
        (
            &old,
            [
                ("same.txt", "unchanged\n"),
                ("edited.txt", "before\n"),
                ("gone.txt", "removed\n"),
            ],
        ),
        (
            &new,
            [
                ("same.txt", "unchanged\n"),
                ("edited.txt", "after!!\n"),
                ("fresh.txt", "added\n"),
            ],
        ),
    ] {
        std::fs::create_dir(tree).unwrap();
        for (name, content) in files {
            std::fs::write(tree.join(name), content).unwrap();
        }
        let mut archive = tree.as_os_str().to_owned();
        archive.push(".mmh");
        mmh()
            .args(["fold", "-q", "--deterministic"])
            .arg(tree)
            .arg("-o")
            .arg(archive)
            .assert()
            .success();
    }
    let (old_mmh, new_mmh) = (dir.path().join("old.mmh"), dir.path().join("new.mmh"));
    let out = mmh()
        .arg("diff")
        .arg(&old_mmh)
        .arg(&new_mmh)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // "after!!\n" (8 bytes) and "added\n" (6 bytes) are the chunks old lacks.
    assert_eq!(
        lines,
        [
            "+ fresh.txt",
            "- gone.txt",
            "M edited.txt",
            &format!(
                "1 added, 1 removed, 1 changed, 1 unchanged; 2 chunks (14 bytes) in {} that {} lacks",
                new_mmh.display(),
                old_mmh.display()
            ),
        ]
    );
    let json = stdout_json(mmh().args(["diff", "--json"]).arg(&old_mmh).arg(&new_mmh));
    assert_eq!(json["added"], serde_json::json!(["fresh.txt"]));
    assert_eq!(json["removed"], serde_json::json!(["gone.txt"]));
    assert_eq!(json["changed"], serde_json::json!(["edited.txt"]));
    assert_eq!(json["unchanged"], 1);
    assert_eq!(json["new_chunks"], 2);
    assert_eq!(json["new_chunk_bytes"], 14);
    // An archive against itself: nothing differs.
    let same = mmh()
        .arg("diff")
        .arg(&new_mmh)
        .arg(&new_mmh)
        .output()
        .unwrap();
    let same = String::from_utf8(same.stdout).unwrap();
    assert!(
        same.starts_with("0 added, 0 removed, 0 changed, 3 unchanged; 0 chunks (0 bytes)"),
        "{same}"
    );
}

#[test]
fn diff_compares_a_directory_with_the_archive_it_was_folded_into() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for (name, content) in [
        ("same.txt", "unchanged\n"),
        ("edited.txt", "before\n"),
        ("gone.txt", "x\n"),
    ] {
        std::fs::write(tree.join(name), content).unwrap();
    }
    let archive = dir.path().join("tree.mmh");
    mmh()
        .args(["fold", "-q"])
        .arg(&tree)
        .arg("-o")
        .arg(&archive)
        .assert()
        .success();
    std::fs::write(tree.join("edited.txt"), "after!!\n").unwrap();
    std::fs::remove_file(tree.join("gone.txt")).unwrap();
    std::fs::write(tree.join("fresh.txt"), "added\n").unwrap();
    let json = stdout_json(mmh().args(["diff", "--json"]).arg(&archive).arg(&tree));
    assert_eq!(json["added"], serde_json::json!(["fresh.txt"]));
    assert_eq!(json["removed"], serde_json::json!(["gone.txt"]));
    assert_eq!(json["changed"], serde_json::json!(["edited.txt"]));
    assert_eq!(json["unchanged"], 1);
    assert_eq!(json["new_chunk_bytes"], 14);
}

/// A safetensors file of F32 tensors `(name, values)`, in the order given.
fn safetensors_of(tensors: &[(String, Vec<f32>)]) -> Vec<u8> {
    let mut at = 0;
    let fields: Vec<String> = tensors
        .iter()
        .map(|(name, values)| {
            let end = at + values.len() * 4;
            let field = format!(
                r#""{name}":{{"dtype":"F32","shape":[{},4],"data_offsets":[{at},{end}]}}"#,
                values.len() / 4
            );
            at = end;
            field
        })
        .collect();
    let json = format!("{{{}}}", fields.join(","));
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(json.as_bytes());
    for (_, values) in tensors {
        file.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    file
}

/// Six tensors of 4 to 128 Ki values: noise, and one of zeros.
fn tensors() -> Vec<(String, Vec<f32>)> {
    let mut x = 0x9E37_79B9u32;
    (0..6)
        .map(|t| {
            let len = 4usize << (3 * t);
            let values = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if t == 4 { 0.0 } else { (x >> 8) as f32 / 1e7 }
                })
                .collect();
            (format!("block.{t}.weight"), values)
        })
        .collect()
}

/// The first field of each line of `mmh hash MODEL` (and that it succeeded).
fn fingerprint(model: &Path) -> String {
    let out = mmh().args(["hash", "-q"]).arg(model).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let (digest, path) = line.trim_end().split_once("  ").unwrap();
    assert_eq!(path, model.display().to_string());
    assert_eq!(digest.len(), 64);
    digest.to_owned()
}

#[test]
fn list_tensors_shows_each_tensor_with_its_share_of_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    std::fs::write(&model, safetensors_of(&tensors())).unwrap();
    let archive = dir.path().join("m.mmh");
    fold(&model, &archive);

    let listing = stdout_json(mmh().args(["list", "--tensors", "--json"]).arg(&archive));
    let rows = listing["tensors"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let zeros = &rows[4];
    assert_eq!(zeros["file"], "m.safetensors");
    assert_eq!(zeros["name"], "block.4.weight");
    assert_eq!(zeros["dtype"], "F32");
    assert_eq!(zeros["shape"], serde_json::json!([4096, 4]));
    assert_eq!(zeros["size"], 4 * 16384);
    // The shares of the tensors are (about) the stored size of the file they make up.
    let entries = stdout_json(mmh().args(["list", "--json"]).arg(&archive));
    let file_stored = entries["entries"][0]["stored"].as_u64().unwrap();
    let tensors_stored: u64 = rows.iter().map(|r| r["stored"].as_u64().unwrap()).sum();
    assert!(
        tensors_stored <= file_stored && file_stored - tensors_stored < 1_000,
        "{tensors_stored} of {file_stored}"
    );

    let text = mmh()
        .args(["list", "--tensors"])
        .arg(&archive)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 7, "{text}");
    let line = text.lines().nth(5).unwrap();
    assert!(line.starts_with(&format!("{:>14}", 4 * 16384)), "{line}");
    assert!(line.contains(" F32 "), "{line}");
    assert!(
        line.ends_with(&format!("{:<20} m.safetensors  block.4.weight", "[4096,4]")),
        "{line}"
    );
}

#[test]
fn cat_tensor_writes_exactly_the_bytes_of_one_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let content = safetensors_of(&tensors());
    let model = dir.path().join("m.safetensors");
    std::fs::write(&model, &content).unwrap();
    let archive = dir.path().join("m.mmh");
    fold(&model, &archive);
    // block.3 starts after the header and blocks 0 to 2 (4 + 32 + 256 values).
    let header = 8 + u64::from_le_bytes(content[..8].try_into().unwrap()) as usize;
    let start = header + 4 * (4 + 32 + 256);
    let expected = &content[start..start + 4 * 2048];

    let out = mmh()
        .args(["cat", "--tensor", "block.3.weight"])
        .arg(&archive)
        .arg("m.safetensors")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, expected);

    let file = dir.path().join("block3.bin");
    mmh()
        .args(["cat", "--tensor", "block.3.weight", "-o"])
        .arg(&file)
        .arg(&archive)
        .arg("m.safetensors")
        .assert()
        .success()
        .stdout("");
    assert_eq!(std::fs::read(&file).unwrap(), expected);
    // An existing output is kept unless forced.
    mmh()
        .args(["cat", "--tensor", "block.0.weight", "-o"])
        .arg(&file)
        .arg(&archive)
        .arg("m.safetensors")
        .assert()
        .code(1);
    assert_eq!(std::fs::read(&file).unwrap(), expected);

    mmh()
        .args(["cat", "--tensor", "block.9.weight"])
        .arg(&archive)
        .arg("m.safetensors")
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicates::str::contains(
            r#"no tensor named "block.9.weight" in "m.safetensors""#,
        ))
        .stderr(predicates::str::contains("mmh list --tensors"));
}

#[test]
fn cat_tensor_of_a_file_that_is_no_model_is_an_error() {
    let (dir, input, _) = setup();
    let archive = dir.path().join("a.mmh");
    fold(&input, &archive);
    mmh()
        .args(["cat", "--tensor", "w"])
        .arg(&archive)
        .arg("input.bin")
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicates::str::contains(
            r#""input.bin" is not a model file"#,
        ));
    // --tensor and --range are two ways to say what to write.
    mmh()
        .args(["cat", "--tensor", "w", "--range", "0..1"])
        .arg(&archive)
        .arg("input.bin")
        .assert()
        .code(2);
}

#[test]
fn hash_is_the_same_for_a_file_its_archive_and_its_shards() {
    let dir = tempfile::tempdir().unwrap();
    let all = tensors();
    let model = dir.path().join("m.safetensors");
    std::fs::write(&model, safetensors_of(&all)).unwrap();
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    // Shards split the tensors in another order than the file has them.
    let (first, second): (Vec<_>, Vec<_>) = all
        .iter()
        .cloned()
        .partition(|(n, _)| n.contains(['1', '4']));
    std::fs::write(
        shards.join("model-00001-of-00002.safetensors"),
        safetensors_of(&first),
    )
    .unwrap();
    std::fs::write(
        shards.join("model-00002-of-00002.safetensors"),
        safetensors_of(&second),
    )
    .unwrap();
    std::fs::write(shards.join("config.json"), "{}").unwrap();

    let expected = fingerprint(&model);
    assert_eq!(fingerprint(&shards), expected);
    for (input, name) in [(&model, "m.mmh"), (&shards, "shards.mmh")] {
        let archive = dir.path().join(name);
        fold(input, &archive);
        assert_eq!(fingerprint(&archive), expected, "{name}");
    }
    let summary = stdout_json(
        mmh()
            .args(["hash", "--json"])
            .arg(dir.path().join("shards.mmh")),
    );
    assert_eq!(summary["fingerprint"], expected.as_str());
    assert_eq!(summary["tensors"], 6);
    assert_eq!(
        summary["files"],
        serde_json::json!([
            {"file": "model-00001-of-00002.safetensors", "tensors": 2},
            {"file": "model-00002-of-00002.safetensors", "tensors": 4},
        ])
    );

    // Other weights, another fingerprint.
    let mut changed = all.clone();
    changed[2].1[7] += 1.0;
    std::fs::write(&model, safetensors_of(&changed)).unwrap();
    assert_ne!(fingerprint(&model), expected);
}

#[test]
fn hash_of_an_archive_folded_against_a_base_reads_through_the_base() {
    let dir = tempfile::tempdir().unwrap();
    fold_against_base(dir.path());
    assert_eq!(
        fingerprint(&dir.path().join("v2.mmh")),
        fingerprint(&dir.path().join("v2.safetensors"))
    );
    assert_ne!(
        fingerprint(&dir.path().join("v2.mmh")),
        fingerprint(&dir.path().join("v1.mmh"))
    );
}

#[test]
fn hash_refuses_paths_without_tensors_and_names_in_two_shards() {
    let (dir, input, _) = setup();
    mmh()
        .arg("hash")
        .arg(&input)
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicates::str::contains("holds no tensors"));
    let archive = dir.path().join("a.mmh");
    fold(&input, &archive);
    mmh()
        .arg("hash")
        .arg(&archive)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("holds no tensors"));
    mmh()
        .arg("hash")
        .arg(dir.path().join("missing"))
        .assert()
        .code(1);

    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let all = tensors();
    std::fs::write(shards.join("a.safetensors"), safetensors_of(&all[..3])).unwrap();
    std::fs::write(shards.join("b.safetensors"), safetensors_of(&all[2..])).unwrap();
    mmh()
        .arg("hash")
        .arg(&shards)
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            r#"tensor "block.2.weight" is in both "a.safetensors" and "b.safetensors""#,
        ));
}

/// The real models of the development corpus (`bash /work/shared/corpus/build.sh`):
/// the bf16 Piper voice as one file and as a sharded directory, and their archives.
#[test]
fn hash_of_the_corpus_models_is_the_same_across_formats_shards_and_archives() {
    let corpus = Path::new("/tmp/mmh-dev-corpus");
    let (file, shards) = (
        corpus.join("piper-bf16.safetensors"),
        corpus.join("model-dir"),
    );
    if !file.is_file() || !shards.is_dir() {
        eprintln!(
            "skipped: {} is absent (build it with `bash /work/shared/corpus/build.sh`)",
            corpus.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let expected = fingerprint(&file);
    assert_eq!(fingerprint(&shards), expected);
    for (input, name) in [(&file, "file.mmh"), (&shards, "dir.mmh")] {
        let archive = dir.path().join(name);
        fold(input, &archive);
        assert_eq!(fingerprint(&archive), expected, "{name}");
    }
    // The same state dict as a PyTorch checkpoint and as safetensors, and the
    // checkpoint's archive (folded with its tensors found through the zip directory).
    let (checkpoint, safetensors) = (
        corpus.join("khmer-fp32.pth"),
        corpus.join("khmer-fp32.safetensors"),
    );
    let expected = fingerprint(&safetensors);
    assert_eq!(fingerprint(&checkpoint), expected);
    let archive = dir.path().join("checkpoint.mmh");
    fold(&checkpoint, &archive);
    assert_eq!(fingerprint(&archive), expected);
}

/// A tree of a float model and other bytes, folded with `--accel opencl` and with
/// `--accel cpu`: the same archive bytes, and unfolded with OpenCL to the same tree.
/// Without an OpenCL device the CLI falls back to the CPU, and the test says so and
/// stops, unless MMH_REQUIRE_OPENCL=1.
#[test]
fn an_archive_folded_with_opencl_is_the_one_the_cpu_folds() {
    let (dir, input, data) = setup();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("model.safetensors"), model(0)).unwrap();
    std::fs::rename(&input, tree.join("input.bin")).unwrap();
    let folded = |accel: &str| {
        let archive = dir.path().join(format!("{accel}.mmh"));
        let summary = stdout_json(
            mmh()
                .args(["fold", "--json", "--deterministic", "--accel", accel])
                .arg(&tree)
                .arg("-o")
                .arg(&archive),
        );
        (std::fs::read(&archive).unwrap(), summary)
    };
    let (on_cpu, _) = folded("cpu");
    let (on_opencl, summary) = folded("opencl");
    if summary["accelerator"] != "opencl" {
        assert!(
            std::env::var("MMH_REQUIRE_OPENCL").as_deref() != Ok("1"),
            "MMH_REQUIRE_OPENCL=1 but the fold ran on {}",
            summary["accelerator"]
        );
        eprintln!("skipped: no OpenCL device, the fold fell back to the CPU");
        return;
    }
    assert!(
        summary["frames_by_codec"]["f32"].as_u64() > Some(0),
        "{summary}"
    );
    assert!(on_opencl == on_cpu, "the archives differ");

    let out = dir.path().join("out");
    mmh()
        .args(["unfold", "-q", "--accel", "opencl"])
        .arg(dir.path().join("opencl.mmh"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert_eq!(std::fs::read(out.join("input.bin")).unwrap(), data);
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        model(0)
    );
    mmh()
        .args(["verify", "-q", "--accel", "opencl"])
        .arg(dir.path().join("opencl.mmh"))
        .assert()
        .success();
}

#[test]
fn accelerators_are_listed_and_a_missing_device_leaves_the_work_to_the_cpu() {
    let out = mmh().args(["info", "--accel"]).output().unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing.contains("cpu:") && listing.contains("opencl"),
        "{listing}"
    );

    // Without a CUDA driver, asking for CUDA is a warning and the CPU does the work.
    let (dir, input, data) = setup();
    let out = mmh()
        .args(["fold", "--json", "--accel", "cuda"])
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("a.mmh"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if summary["accelerator"] == "cpu" {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cuda unavailable") && stderr.contains("the CPU does the work"),
            "{stderr}"
        );
    }
    mmh()
        .args(["unfold", "-q", "--accel", "cuda"])
        .arg(dir.path().join("a.mmh"))
        .arg("-o")
        .arg(dir.path().join("back"))
        .assert()
        .success();
    assert_eq!(std::fs::read(dir.path().join("back")).unwrap(), data);
    mmh()
        .args(["fold", "--accel", "tpu"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cpu, opencl, cuda"));
}
