//! `cargo xtask demo`: folds a built-in sample (a synthetic safetensors-style model file)
//! with the same library calls as `mmh`, then lists, verifies, unfolds and compares it,
//! and shows that a flipped byte is caught.

use std::fs;
use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use mmh_dir::{FoldOptions, Overwrite, PendingFile, Quiet};

/// A deterministic xorshift64* generator: the sample must be the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Roughly normal (sum of four uniforms), scaled like trained weights.
    fn weight(&mut self) -> f32 {
        let sum: f64 = (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        ((sum - 2.0) * 0.035) as f32
    }
}

/// Builds a safetensors-style file: JSON header, a bf16 matrix, an fp32 matrix, a
/// zero-filled buffer and fp32 values that are really bf16 (low bytes zero).
fn sample_model() -> Vec<u8> {
    let mut rng = Rng(0x005E_ED0F_D330);
    let n = 4 << 20;
    let bf16: Vec<u8> = (0..n)
        .flat_map(|_| ((rng.weight().to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    let fp32: Vec<u8> = (0..n / 2)
        .flat_map(|_| rng.weight().to_le_bytes())
        .collect();
    let zeros = vec![0u8; 4 << 20];
    let clean: Vec<u8> = (0..n / 2)
        .flat_map(|_| (rng.weight().to_bits() & 0xFFFF_0000).to_le_bytes())
        .collect();
    let mut offset = 0;
    let mut header = String::from("{");
    for (name, dtype, bytes) in [
        ("layers.0.attn.weight", "BF16", &bf16),
        ("layers.0.mlp.weight", "F32", &fp32),
        ("layers.0.kv_cache", "F32", &zeros),
        ("layers.1.mlp.weight", "F32", &clean),
    ] {
        let elems = bytes.len() / if dtype == "BF16" { 2 } else { 4 };
        header += &format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{elems}],\"data_offsets\":[{offset},{}]}},",
            offset + bytes.len()
        );
        offset += bytes.len();
    }
    header.pop();
    header.push('}');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for part in [&bf16, &fp32, &zeros, &clean] {
        file.extend_from_slice(part);
    }
    file
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

pub fn run(_args: &[String]) -> Result<()> {
    let dir = crate::workspace_root().join("target/demo");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let input = dir.join("sample.safetensors");
    let archive_path = dir.join("sample.safetensors.mmh");
    let unfolded = dir.join("sample.unfolded.safetensors");
    let damaged = dir.join("damaged.mmh");
    let original = sample_model();
    fs::write(&input, &original).with_context(|| format!("cannot write {}", input.display()))?;
    println!(
        "demo: wrote a built-in sample model ({:.1} MB: bf16 and fp32 weights, a zero buffer, fp32 holding bf16 values) to {}",
        mb(original.len() as u64),
        input.display()
    );

    let started = Instant::now();
    let mut pending = PendingFile::create(&archive_path, Overwrite::Replace)?;
    let summary = mmh_dir::fold_path(
        &input,
        &mmh_dir::WalkOptions::default(),
        pending.file(),
        &FoldOptions::default(),
        &Quiet,
    )?;
    pending.commit()?;
    let fold_secs = started.elapsed().as_secs_f64();
    println!(
        "fold:    {} -> {} ({:.1} MB -> {:.1} MB, {:.1}% of the input) in {:.2} s, {:.0} MB/s",
        input.display(),
        archive_path.display(),
        mb(summary.input_bytes),
        mb(summary.archive_bytes),
        100.0 * summary.archive_bytes as f64 / summary.input_bytes as f64,
        fold_secs,
        mb(summary.input_bytes) / fold_secs
    );
    let codecs: Vec<String> = summary
        .frames_by_codec
        .iter()
        .map(|(codec, n)| format!("{n} x {codec}"))
        .collect();
    println!(
        "         frames coded by --codec auto: {}",
        codecs.join(", ")
    );

    let archive = mmh_dir::open_archive(&archive_path)?;
    let report = mmh_verify::verify_archive(&archive, &|_| {})?;
    println!(
        "verify:  OK: {} chunk(s), {:.1} MB of content, every SHA-256 and the Merkle root match",
        report.chunks,
        mb(report.content_bytes)
    );

    let started = Instant::now();
    let entry = mmh_dir::single_file(archive.index())?;
    mmh_dir::unfold_to_path(&archive, entry, &unfolded, Overwrite::Replace, &Quiet)?;
    let unfold_secs = started.elapsed().as_secs_f64();
    ensure!(
        fs::read(&unfolded)? == original,
        "unfolded bytes differ from the input"
    );
    println!(
        "unfold:  {} in {:.2} s, {:.0} MB/s, bit-identical to the input",
        unfolded.display(),
        unfold_secs,
        mb(summary.input_bytes) / unfold_secs
    );

    let mut bytes = fs::read(&archive_path)?;
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    fs::File::create(&damaged)?.write_all(&bytes)?;
    let caught =
        mmh_dir::open_archive(&damaged).and_then(|a| Ok(mmh_verify::verify_archive(&a, &|_| {})?));
    match caught {
        Err(err) => println!("damage:  flipped one bit at byte {at} of a copy; verify says: {err}"),
        Ok(_) => anyhow::bail!("a flipped bit at byte {at} went unnoticed"),
    }
    println!(
        "\nTry the CLI: cargo run --release -p mmh-cli -- fold {} -o x.mmh",
        input.display()
    );
    Ok(())
}
