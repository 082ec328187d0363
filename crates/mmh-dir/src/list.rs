use mmh_codecs::CodecId;
use mmh_format::consts::FRAME_HEADER_LEN;
use mmh_format::{ChunkRecord, ChunkSource, Entry, EntryKind, Index};

/// One line of an archive listing.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryListing<'a> {
    /// The entry.
    pub entry: &'a Entry,
    /// Content size (0 for non-files).
    pub size: u64,
    /// Archive bytes its chunks take: each chunk's share of its frame, by raw length
    /// (shared chunks count for each entry; chunks held by a base count nothing).
    pub stored: u64,
    /// Codecs its chunks' frames use, with the raw bytes each codes (`base` for chunks
    /// held by a base archive; a codec id this build does not know is listed as its
    /// number).
    pub codecs: Vec<(String, u64)>,
}

impl EntryListing<'_> {
    /// Stored size over content size (1.0 for empty content).
    pub fn ratio(&self) -> f64 {
        if self.size == 0 {
            1.0
        } else {
            self.stored as f64 / self.size as f64
        }
    }
}

/// Describes every entry: size, stored size and codecs.
pub fn list_entries(index: &Index) -> Vec<EntryListing<'_>> {
    index
        .entries
        .iter()
        .map(|entry| {
            let mut listing = EntryListing {
                entry,
                size: 0,
                stored: 0,
                codecs: Vec::new(),
            };
            if let EntryKind::File { size, chunks, .. } = &entry.kind {
                listing.size = *size;
                for &c in chunks {
                    let record = &index.chunks[c as usize];
                    let name = match record.source {
                        ChunkSource::Frame { frame, .. } | ChunkSource::Delta { frame, .. } => {
                            let stored = stored_share(index, record, u64::from(record.raw_len));
                            listing.stored += stored.round() as u64;
                            let frame = &index.frames[frame as usize];
                            let codec = CodecId::try_from(frame.codec).map_or_else(
                                |_| format!("codec#{}", frame.codec),
                                |id| id.to_string(),
                            );
                            match record.source {
                                ChunkSource::Delta { .. } => format!("delta+{codec}"),
                                _ => codec,
                            }
                        }
                        ChunkSource::Base { .. } => "base".to_string(),
                    };
                    match listing.codecs.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, bytes)) => *bytes += u64::from(record.raw_len),
                        None => listing.codecs.push((name, u64::from(record.raw_len))),
                    }
                }
            }
            listing
        })
        .collect()
}

/// The archive bytes that `raw_bytes` of `chunk`'s decoded content take: its frame's
/// stored size (header included) shared out by raw length. Chunks held by a base take
/// nothing here. The one rule behind every stored size a listing shows.
pub(crate) fn stored_share(index: &Index, chunk: &ChunkRecord, raw_bytes: u64) -> f64 {
    match chunk.source {
        ChunkSource::Frame { frame, .. } | ChunkSource::Delta { frame, .. } => {
            let frame = &index.frames[frame as usize];
            (FRAME_HEADER_LEN as u64 + u64::from(frame.stored_len)) as f64 * raw_bytes as f64
                / f64::from(frame.raw_len.max(1))
        }
        ChunkSource::Base { .. } => 0.0,
    }
}
