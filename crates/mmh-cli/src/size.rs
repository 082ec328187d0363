//! Parsing of sizes (`4M`, `512K`, `1048576`) and byte ranges (`START..END`).

use std::ops::Range;

/// Parses a byte count with an optional binary suffix K, M, G (also KiB, MiB, GiB).
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 4M, 512K, 1048576)"))?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        other => return Err(format!("unknown size suffix {other:?} (use K, M or G)")),
    };
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses `START..END` (sizes as in [`parse`]); `START..` reads to the end.
pub fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not a range START..END"))?;
    let start = if start.is_empty() { 0 } else { parse(start)? };
    let end = if end.is_empty() {
        u64::MAX
    } else {
        parse(end)?
    };
    if end < start {
        return Err(format!("range {text:?} ends before it starts"));
    }
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ranges_parse() {
        assert_eq!(parse("4M"), Ok(4 << 20));
        assert_eq!(parse("512k"), Ok(512 << 10));
        assert_eq!(parse("1048576"), Ok(1 << 20));
        assert!(parse("4X").unwrap_err().contains("unknown size suffix"));
        assert_eq!(parse_range("10..20"), Ok(10..20));
        assert_eq!(parse_range("1K.."), Ok(1024..u64::MAX));
        assert!(parse_range("20..10").is_err());
    }
}
