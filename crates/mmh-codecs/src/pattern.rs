//! The pattern codec: a chunk that is a short period repeated.
//!
//! Stored form: `[p as u8]` followed by the `p` bytes of the period, `1 <= p <= 251`.
//! The raw length comes from the container; the last repetition may be partial.

use crate::{CodecId, Error};

/// The longest period the pattern codec stores.
///
/// 251 is the largest prime below 256: it keeps the period length in one byte, and a
/// prime bound covers the common `i * k mod 251` style fills that tests and padding use.
pub const MAX_PATTERN_PERIOD: usize = 251;

/// How much of the chunk the period search looks at; see [`find_period`] for why twice
/// the longest period is enough.
const SEARCH_PREFIX: usize = 2 * MAX_PATTERN_PERIOD;

/// The smallest period `p <= MAX_PATTERN_PERIOD` of `data`, if it has one. O(n).
///
/// The minimal period `p` of the prefix of length `m = min(n, 502)` comes from the KMP
/// failure function, and one slice comparison confirms it on the whole chunk. That finds
/// every period `q <= 251` of the whole chunk, by Fine–Wilf: the prefix has both periods
/// `p` and `q`, and `p + q - gcd(p, q) <= 502 <= m` (or `m = n`, where `p` is already the
/// minimal period of the whole), so `gcd(p, q)` is a period of the prefix; `p` being
/// minimal forces `gcd(p, q) = p`, so `p` divides `q`. The first `q` bytes lie inside the
/// prefix and are `p`-periodic, and the chunk repeats them, so `p` is a period of the
/// whole chunk and the confirmation succeeds. If the confirmation fails, no period
/// `<= 251` exists.
pub(crate) fn find_period(data: &[u8]) -> Option<usize> {
    let n = data.len();
    if n == 0 {
        return None;
    }
    let prefix = &data[..n.min(SEARCH_PREFIX)];
    let p = minimal_period(prefix);
    (p <= MAX_PATTERN_PERIOD && data[p..] == data[..n - p]).then_some(p)
}

/// Minimal period of a non-empty `s` of at most [`SEARCH_PREFIX`] bytes, via the KMP
/// failure function (`fail[i]`: length of the longest proper border of `s[..=i]`).
fn minimal_period(s: &[u8]) -> usize {
    debug_assert!(!s.is_empty() && s.len() <= SEARCH_PREFIX);
    let mut fail = [0usize; SEARCH_PREFIX];
    let mut k = 0;
    for i in 1..s.len() {
        while k > 0 && s[i] != s[k] {
            k = fail[k - 1];
        }
        if s[i] == s[k] {
            k += 1;
        }
        fail[i] = k;
    }
    s.len() - fail[s.len() - 1]
}

/// Encodes `raw` as a pattern if that is smaller than `raw` (`1 + p < raw.len()`).
/// Returns whether it did; `out` is cleared either way.
pub(crate) fn encode(raw: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    match find_period(raw) {
        Some(p) if 1 + p < raw.len() => {
            // `p <= MAX_PATTERN_PERIOD` (251), so the cast is lossless.
            out.push(p as u8);
            out.extend_from_slice(&raw[..p]);
            true
        }
        _ => false,
    }
}

/// Rebuilds `raw_len` bytes from a stored pattern into `out` (cleared first).
pub(crate) fn decode(stored: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    out.clear();
    let corrupt = |reason: String| Error::Corrupt {
        codec: CodecId::Pattern,
        reason,
    };
    let (&p, period) = stored
        .split_first()
        .ok_or_else(|| corrupt("empty stored pattern, expected a period length byte".into()))?;
    let p = usize::from(p);
    if !(1..=MAX_PATTERN_PERIOD).contains(&p) {
        return Err(corrupt(format!(
            "period length is {p}, should be in 1..={MAX_PATTERN_PERIOD}"
        )));
    }
    if period.len() != p {
        return Err(corrupt(format!(
            "stored {} period bytes, period length byte says {p}",
            period.len()
        )));
    }
    out.reserve_exact(raw_len);
    out.extend_from_slice(&period[..p.min(raw_len)]);
    // Doubling copies: until the last step `out.len()` is `p * 2^k`, a whole number of
    // periods, so copying any prefix of it continues the pattern.
    while out.len() < raw_len {
        let n = out.len().min(raw_len - out.len());
        out.extend_from_within(..n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious O(n * 251) search, as an oracle for the O(n) one.
    fn naive_period(data: &[u8]) -> Option<usize> {
        (1..=MAX_PATTERN_PERIOD.min(data.len())).find(|&p| data[p..] == data[..data.len() - p])
    }

    #[test]
    fn finds_the_smallest_period() {
        assert_eq!(find_period(&[7; 1000]), Some(1));
        assert_eq!(find_period(b"abcabcabcab"), Some(3));
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(find_period(&data), Some(251));
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 252) as u8).collect();
        assert_eq!(find_period(&data), None);
        assert_eq!(find_period(&[]), None);
    }

    #[test]
    fn period_seen_only_after_the_search_prefix_is_rejected() {
        let mut data = vec![3u8; 4000];
        data[3000] = 4;
        assert_eq!(find_period(&data), None);
    }

    #[test]
    fn agrees_with_naive_search_on_short_alphabets() {
        // Two symbols and short lengths produce many near-periodic strings, where a wrong
        // Fine–Wilf argument would show.
        let mut state = 0x2545F4914F6CDD1Du64;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let period = 1 + (state % 12) as usize;
            let len = (state >> 8) as usize % 700;
            let seed: Vec<u8> = (0..period)
                .map(|i| ((state >> (16 + i)) & 1) as u8)
                .collect();
            let mut data: Vec<u8> = (0..len).map(|i| seed[i % period]).collect();
            if state & 0x100_0000 != 0 && !data.is_empty() {
                let at = (state >> 32) as usize % data.len();
                data[at] ^= 1;
            }
            assert_eq!(find_period(&data), naive_period(&data), "{data:?}");
        }
    }

    #[test]
    fn decode_rejects_bad_period_lengths() {
        let mut out = Vec::new();
        for stored in [&[0u8][..], &[252, 1], &[2, 1], &[]] {
            assert!(decode(stored, 10, &mut out).is_err(), "{stored:?}");
        }
        let mut stored = vec![252u8];
        stored.extend(std::iter::repeat_n(9, 252));
        assert!(decode(&stored, 1000, &mut out).is_err());
    }

    #[test]
    fn decode_of_empty_or_partial_output() {
        let mut out = vec![1, 2, 3];
        decode(&[2, 5, 6], 0, &mut out).unwrap();
        assert!(out.is_empty());
        decode(&[2, 5, 6], 1, &mut out).unwrap();
        assert_eq!(out, [5]);
        decode(&[2, 5, 6], 7, &mut out).unwrap();
        assert_eq!(out, [5, 6, 5, 6, 5, 6, 5]);
    }
}
