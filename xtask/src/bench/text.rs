//! Text-like test content: prose from a vocabulary of pseudo-words with Zipf frequencies,
//! with some JSON-ish lines among it, tuned so that zstd -3 compresses it about 3-4x like
//! real source trees, logs and documents (the tree bench prints the ratio it got).
//!
//! Deterministic: the same seed gives the same bytes on every machine.

use mmh_benches::Rng;

/// Words in the vocabulary.
pub const VOCABULARY: usize = 4000;

/// Syllables that pseudo-words are made of.
const SYLLABLES: [&str; 48] = [
    "ka", "ro", "mi", "tel", "an", "su", "ver", "lo", "den", "pa", "ri", "sto", "ne", "gra", "bi",
    "ul", "mon", "te", "cha", "fi", "dor", "el", "qua", "zi", "ban", "or", "li", "pre", "nu",
    "sal", "ko", "in", "de", "tra", "me", "vo", "ost", "ha", "gen", "ly", "ex", "ur", "ti", "com",
    "ba", "ist", "ad", "ing",
];

/// Keys of the JSON-ish lines (the same few, as in real records).
const KEYS: [&str; 8] = [
    "id", "name", "kind", "tags", "score", "parent", "enabled", "updated",
];

/// A text generator: its vocabulary, shared by every file it writes.
#[derive(Debug, Clone)]
pub struct TextGen {
    words: Vec<String>,
}

impl TextGen {
    /// The vocabulary drawn from `seed`: [`VOCABULARY`] words of 1-4 syllables, shorter
    /// ones more often (as in natural languages, where frequent words are short, though
    /// here the rank is not tied to the length).
    pub fn new(seed: u64) -> TextGen {
        let mut rng = Rng::new(seed);
        let words = (0..VOCABULARY)
            .map(|_| {
                let syllables = 1 + rng.below(2) + rng.below(3);
                (0..syllables)
                    .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
                    .collect()
            })
            .collect();
        TextGen { words }
    }

    /// A word drawn with Zipf (s = 1) frequencies: rank `k` with probability about
    /// `1 / (k + 1)`, by inverting the continuous distribution (`exp` of a uniform).
    fn word(&self, rng: &mut Rng) -> &str {
        let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let rank = ((u * (VOCABULARY as f64 + 1.0).ln()).exp() - 1.0) as usize;
        &self.words[rank.min(VOCABULARY - 1)]
    }

    /// Appends exactly `len` bytes of text to `out`: a title line, then paragraphs of
    /// sentences, with one line in seven a JSON-ish record.
    pub fn fill(&self, rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
        let end = out.len() + len;
        out.extend_from_slice(b"# ");
        let words = 2 + rng.below(4) as usize;
        self.sentence(rng, words, out);
        out.extend_from_slice(b"\n\n");
        while out.len() < end {
            if rng.below(7) == 0 {
                self.record(rng, out);
            } else {
                for _ in 0..1 + rng.below(4) {
                    let words = 5 + rng.below(14) as usize;
                    self.sentence(rng, words, out);
                    out.extend_from_slice(b". ");
                }
                out.pop();
            }
            out.push(b'\n');
            if rng.below(4) == 0 {
                out.push(b'\n');
            }
        }
        out.truncate(end);
    }

    /// `words` words, the first capitalised, with a comma now and then.
    fn sentence(&self, rng: &mut Rng, words: usize, out: &mut Vec<u8>) {
        for i in 0..words {
            let word = self.word(rng).as_bytes();
            if i == 0 {
                out.push(word[0].to_ascii_uppercase());
                out.extend_from_slice(&word[1..]);
            } else {
                out.push(b' ');
                out.extend_from_slice(word);
            }
            if i + 1 < words && rng.below(9) == 0 {
                out.push(b',');
            }
        }
    }

    /// `{"id": 41873, "name": "kaver", "tags": ["ro", "mitel"], ...}` with 3-6 keys.
    fn record(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        use std::io::Write as _;
        out.push(b'{');
        let keys = 3 + rng.below(4) as usize;
        for (i, key) in KEYS.iter().take(keys).enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            let _ = write!(out, "\"{key}\": ");
            let _ = match *key {
                "id" | "parent" => write!(out, "{}", rng.below(100_000)),
                "score" => write!(out, "{}.{:03}", rng.below(10), rng.below(1000)),
                "enabled" => write!(out, "{}", rng.below(2) == 1),
                "updated" => write!(
                    out,
                    "\"2025-{:02}-{:02}T{:02}:{:02}:00Z\"",
                    1 + rng.below(12),
                    1 + rng.below(28),
                    rng.below(24),
                    rng.below(60)
                ),
                "tags" => {
                    out.push(b'[');
                    for t in 0..1 + rng.below(3) {
                        if t > 0 {
                            out.extend_from_slice(b", ");
                        }
                        let _ = write!(out, "\"{}\"", self.word(rng));
                    }
                    write!(out, "]")
                }
                _ => write!(out, "\"{}\"", self.word(rng)),
            };
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        TextGen::new(1).fill(&mut Rng::new(seed), len, &mut out);
        out
    }

    #[test]
    fn fills_exactly_and_deterministically() {
        for len in [0, 1, 2, 100, 8192] {
            assert_eq!(sample(5, len).len(), len);
        }
        assert_eq!(sample(5, 5000), sample(5, 5000));
        assert_ne!(sample(5, 5000), sample(6, 5000));
        assert!(sample(7, 1 << 16).is_ascii());
    }

    #[test]
    fn compresses_like_text() {
        // The tree bench promises text that zstd -3 takes to about a third or a quarter.
        let text = sample(3, 4 << 20);
        let packed = zstd::bulk::compress(&text, 3).unwrap();
        let ratio = text.len() as f64 / packed.len() as f64;
        assert!((2.7..=4.5).contains(&ratio), "zstd -3 ratio {ratio:.2}");
    }
}
