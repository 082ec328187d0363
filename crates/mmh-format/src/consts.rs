//! Every on-disk constant of the format, each tied to its section of docs/FORMAT.md.

/// File header magic (FORMAT.md §2). PNG-style: the high byte and the CR LF / Ctrl-Z
/// bytes make text-mode transfers and truncated-at-first-newline copies fail loudly.
pub const MAGIC: [u8; 8] = *b"\x89MMH\r\n\x1a\n";
/// The format version this crate writes and the newest it reads (FORMAT.md §2).
pub const FORMAT_VERSION: u16 = 2;
/// Size of the file header (FORMAT.md §2).
pub const HEADER_LEN: usize = 16;

/// Magic that opens every frame (FORMAT.md §3).
pub const FRAME_MAGIC: [u8; 4] = *b"MMHF";
/// Size of a frame header (FORMAT.md §3).
pub const FRAME_HEADER_LEN: usize = 24;
/// Frame kind byte of a data frame (FORMAT.md §3).
pub const FRAME_KIND_DATA: u8 = 0b0000_0000;
/// Frame kind byte of the index frame, which ends the frame sequence (FORMAT.md §3).
pub const FRAME_KIND_INDEX: u8 = 0b0000_0001;
/// Codec id of stored (uncompressed) bytes (FORMAT.md §4, §7).
pub const CODEC_STORE: u8 = 0;
/// Codec id of zstd (the id mmh-codecs gives it); from v2 on, the index frame may use it
/// (FORMAT.md §4).
pub const CODEC_ZSTD: u8 = 1;
/// zstd level of the index frame: its digests do not compress, so a high level buys
/// little on them; this one still shrinks names and numbers well at about 50 MB/s.
pub const INDEX_ZSTD_LEVEL: i32 = 9;

/// Magic that closes the trailer, the last bytes of every archive (FORMAT.md §5).
pub const TRAILER_MAGIC: [u8; 8] = *b"MMH.END\x01";
/// Size of the trailer (FORMAT.md §5).
pub const TRAILER_LEN: usize = 56;

/// Largest raw (decoded) size of one frame, and so of one chunk (FORMAT.md §6). Bounds
/// what a reader allocates for one frame, since a frame's stored size may not exceed its
/// raw size.
pub const MAX_FRAME_RAW_LEN: u32 = 64 << 20;
/// Largest index (FORMAT.md §6): room for millions of chunks, still bounded.
pub const MAX_INDEX_LEN: u32 = 1 << 30;
