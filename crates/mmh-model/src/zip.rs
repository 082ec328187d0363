//! The zip reading that PyTorch checkpoints and npz files need: the central directory at
//! the end of the file (Zip64 included) and the local header in front of each record, to
//! find where a stored record's bytes lie. Nothing is decompressed. A zip crate would do
//! more (inflate, write) and less (it does not bound what a hostile directory makes it
//! read and allocate, nor report exact data offsets): the reading needed here is small.
//! Format: PKWARE APPNOTE.TXT, sections 4.3.7 (local header), 4.3.12 (central directory),
//! 4.3.14 to 4.3.16 (Zip64 and end records), 4.5.3 (Zip64 extra field).

use std::ops::Range;

use crate::source::Budgeted;
use crate::{Error, Layout, MAX_HEADER_LEN, ModelFormat, Result, npy, pytorch};

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const END_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_END_SIG: u32 = 0x0606_4b50;
const LOCAL_LEN: u64 = 30;
const CENTRAL_LEN: usize = 46;
const END_LEN: u64 = 22;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_END_LEN: u64 = 56;
/// The end record may be followed by a comment of up to this many bytes.
const MAX_COMMENT: u64 = 0xffff;
/// Compression method 0: stored.
pub(crate) const STORED: u16 = 0;

/// One record of the central directory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    pub method: u16,
    pub encrypted: bool,
    /// Bytes of the record as stored.
    pub compressed: u64,
    local_offset: u64,
}

/// A zip's directory.
pub(crate) struct Zip {
    pub format: ModelFormat,
    pub entries: Vec<Entry>,
    /// Where the central directory starts: every record's data ends before it.
    directory_start: u64,
}

impl Zip {
    pub(crate) fn error(&self, offset: u64, reason: String) -> Error {
        Error::Malformed {
            format: self.format,
            offset,
            reason,
        }
    }

    /// The absolute byte range of `entry`'s stored bytes, read from its local header.
    pub(crate) fn data_range(&self, source: &Budgeted<'_>, entry: &Entry) -> Result<Range<u64>> {
        let at = entry.local_offset;
        let header_end = at
            .checked_add(LOCAL_LEN)
            .filter(|&end| end <= self.directory_start);
        let Some(header_end) = header_end else {
            return Err(self.error(
                at,
                format!(
                    "record {:?}: local header past the central directory",
                    entry.name
                ),
            ));
        };
        let header = source.read(at..header_end)?;
        if le32(&header, 0) != LOCAL_SIG {
            return Err(self.error(
                at,
                format!("record {:?}: no local header signature", entry.name),
            ));
        }
        let lengths = u64::from(le16(&header, 26)) + u64::from(le16(&header, 28));
        let start = header_end + lengths;
        let end = start
            .checked_add(entry.compressed)
            .filter(|&end| end <= self.directory_start);
        let Some(end) = end else {
            return Err(self.error(
                at,
                format!(
                    "record {:?}: its {} bytes run into the central directory",
                    entry.name, entry.compressed
                ),
            ));
        };
        Ok(start..end)
    }

    /// The bytes of a small stored record (a pickle, a byte-order note), at most
    /// [`MAX_HEADER_LEN`].
    pub(crate) fn read_record(
        &self,
        source: &Budgeted<'_>,
        entry: &Entry,
    ) -> Result<(Vec<u8>, Range<u64>)> {
        let range = self.data_range(source, entry)?;
        if entry.method != STORED || entry.encrypted {
            return Err(self.error(
                entry.local_offset,
                format!("record {:?} is compressed or encrypted", entry.name),
            ));
        }
        if entry.compressed > MAX_HEADER_LEN {
            return Err(Error::TooLarge {
                format: self.format,
                what: "a metadata record",
                claimed: entry.compressed,
                max: MAX_HEADER_LEN,
            });
        }
        Ok((source.read(range.clone())?, range))
    }
}

/// The layout of a PyTorch zip or an npz file, given its head; `None` for any other file.
pub(crate) fn layout(head: &[u8], source: &Budgeted<'_>) -> Result<Option<Layout>> {
    // The first record tells the format: torch.save writes the pickle first, numpy.savez
    // only arrays.
    if head.len() < LOCAL_LEN as usize || le32(head, 0) != LOCAL_SIG {
        return Ok(None);
    }
    let name_end = LOCAL_LEN as usize + usize::from(le16(head, 26));
    let Some(first) = head.get(LOCAL_LEN as usize..name_end) else {
        return Ok(None);
    };
    let format = if first == b"data.pkl" || first.ends_with(b"/data.pkl") {
        ModelFormat::PyTorch
    } else if first.ends_with(b".npy") {
        ModelFormat::Npz
    } else {
        return Ok(None);
    };
    let zip = directory(format, source)?;
    match format {
        ModelFormat::PyTorch => pytorch::layout(&zip, source).map(Some),
        _ => npy::npz_layout(&zip, source).map(Some),
    }
}

/// Reads the central directory from the end of the file.
fn directory(format: ModelFormat, source: &Budgeted<'_>) -> Result<Zip> {
    let size = source.size();
    let malformed = |offset, reason: &str| Error::Malformed {
        format,
        offset,
        reason: reason.to_owned(),
    };
    let tail_start = size.saturating_sub(END_LEN + MAX_COMMENT);
    let tail = source.read(tail_start..size)?;
    // The last end record whose comment reaches exactly to the end of the file.
    let end_at = (0..=tail.len().saturating_sub(END_LEN as usize))
        .rev()
        .find(|&i| {
            tail.len() >= i + END_LEN as usize
                && le32(&tail, i) == END_SIG
                && i + END_LEN as usize + usize::from(le16(&tail, i + 20)) == tail.len()
        })
        .ok_or_else(|| malformed(size, "no zip end-of-central-directory record (truncated?)"))?;
    let end = &tail[end_at..];
    let end_pos = tail_start + end_at as u64;
    let (mut count, mut dir_len, mut dir_start) = (
        u64::from(le16(end, 10)),
        u64::from(le32(end, 12)),
        u64::from(le32(end, 16)),
    );
    // The directory ends where the records that describe it begin.
    let mut dir_limit = end_pos;
    if count == 0xffff || dir_len == 0xffff_ffff || dir_start == 0xffff_ffff {
        let locator_at = end_pos
            .checked_sub(ZIP64_LOCATOR_LEN)
            .ok_or_else(|| malformed(end_pos, "Zip64 values without a Zip64 locator"))?;
        let locator = source.read(locator_at..end_pos)?;
        if le32(&locator, 0) != ZIP64_LOCATOR_SIG {
            return Err(malformed(
                locator_at,
                "Zip64 values without a Zip64 locator",
            ));
        }
        let zip64_at = le64(&locator, 8);
        let zip64_end = zip64_at
            .checked_add(ZIP64_END_LEN)
            .filter(|&e| e <= locator_at);
        let Some(zip64_end) = zip64_end else {
            return Err(malformed(
                locator_at,
                "the Zip64 end record lies past its locator",
            ));
        };
        let record = source.read(zip64_at..zip64_end)?;
        if le32(&record, 0) != ZIP64_END_SIG {
            return Err(malformed(
                zip64_at,
                "no Zip64 end-of-central-directory signature",
            ));
        }
        (count, dir_len, dir_start) = (le64(&record, 32), le64(&record, 40), le64(&record, 48));
        dir_limit = zip64_at;
    }
    if dir_len > MAX_HEADER_LEN {
        return Err(Error::TooLarge {
            format,
            what: "the zip central directory",
            claimed: dir_len,
            max: MAX_HEADER_LEN,
        });
    }
    let dir_end = dir_start.checked_add(dir_len).filter(|&e| e <= dir_limit);
    let Some(dir_end) = dir_end else {
        return Err(malformed(
            end_pos,
            "the central directory lies past its end record",
        ));
    };
    let dir = source.read(dir_start..dir_end)?;
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while pos < dir.len() {
        let at = dir_start + pos as u64;
        let fixed = dir
            .get(pos..pos + CENTRAL_LEN)
            .filter(|fixed| le32(fixed, 0) == CENTRAL_SIG)
            .ok_or_else(|| malformed(at, "a broken central directory record"))?;
        let flags = le16(fixed, 8);
        let method = le16(fixed, 10);
        let mut compressed = u64::from(le32(fixed, 20));
        let mut uncompressed = u64::from(le32(fixed, 24));
        let name_len = usize::from(le16(fixed, 28));
        let extra_len = usize::from(le16(fixed, 30));
        let comment_len = usize::from(le16(fixed, 32));
        let mut local_offset = u64::from(le32(fixed, 42));
        let name_start = pos + CENTRAL_LEN;
        let extra_start = name_start + name_len;
        let next = extra_start + extra_len + comment_len;
        let (Some(name), Some(mut extra)) = (
            dir.get(name_start..extra_start),
            dir.get(extra_start..extra_start + extra_len),
        ) else {
            return Err(malformed(
                at,
                "a central directory record runs past the directory",
            ));
        };
        // Zip64 extra field: the 64-bit values of the fields saturated above, in order.
        while let [id0, id1, len0, len1, rest @ ..] = extra {
            let len = usize::from(u16::from_le_bytes([*len0, *len1]));
            let Some(mut field) = rest.get(..len) else {
                break;
            };
            if u16::from_le_bytes([*id0, *id1]) == 1 {
                for value in [&mut uncompressed, &mut compressed, &mut local_offset] {
                    if *value == 0xffff_ffff
                        && let Some((bytes, more)) = field.split_first_chunk::<8>()
                    {
                        *value = u64::from_le_bytes(*bytes);
                        field = more;
                    }
                }
            }
            extra = &rest[len..];
        }
        if method == STORED && compressed != uncompressed {
            return Err(malformed(at, "a stored record whose sizes differ"));
        }
        entries.push(Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            method,
            encrypted: flags & 1 != 0,
            compressed,
            local_offset,
        });
        pos = next;
    }
    if entries.len() as u64 != count {
        return Err(malformed(
            end_pos,
            &format!(
                "the end record counts {count} records, the directory holds {}",
                entries.len()
            ),
        ));
    }
    Ok(Zip {
        format,
        entries,
        directory_start: dir_start,
    })
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut out = [0; 8];
    out.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(out)
}

/// Writes small zips for the tests of this crate.
#[cfg(test)]
pub(crate) mod writer {
    /// A stored zip of `records` (name, bytes), each data start padded to `align` bytes
    /// with an extra field as torch.save pads, with Zip64 records when `zip64`.
    pub(crate) fn zip(records: &[(&str, &[u8])], align: usize, zip64: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in records {
            let offset = out.len() as u32;
            // An extra field of 4 header bytes and filler puts the data on `align`.
            let base = out.len() + 30 + name.len() + 4;
            let pad = if align > 1 {
                base.next_multiple_of(align) - base + 4
            } else {
                0
            };
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&(pad as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            if pad > 0 {
                out.extend_from_slice(&[0x46, 0x42]);
                out.extend_from_slice(&((pad - 4) as u16).to_le_bytes());
                out.extend(std::iter::repeat_n(b'Z', pad - 4));
            }
            out.extend_from_slice(data);
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            let size = if zip64 { u32::MAX } else { data.len() as u32 };
            central.extend_from_slice(&size.to_le_bytes());
            central.extend_from_slice(&size.to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&(if zip64 { 28u16 } else { 0 }).to_le_bytes());
            // Comment length, disk, attributes.
            central.extend_from_slice(&[0; 10]);
            central.extend_from_slice(&(if zip64 { u32::MAX } else { offset }).to_le_bytes());
            central.extend_from_slice(name.as_bytes());
            if zip64 {
                central.extend_from_slice(&[1, 0, 24, 0]);
                central.extend_from_slice(&(data.len() as u64).to_le_bytes());
                central.extend_from_slice(&(data.len() as u64).to_le_bytes());
                central.extend_from_slice(&u64::from(offset).to_le_bytes());
            }
        }
        let dir_start = out.len() as u64;
        out.extend_from_slice(&central);
        let count = records.len() as u64;
        if zip64 {
            let zip64_at = out.len() as u64;
            out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&(central.len() as u64).to_le_bytes());
            out.extend_from_slice(&dir_start.to_le_bytes());
            out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&zip64_at.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let (count16, len32, start32) = if zip64 {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (count as u16, central.len() as u32, dir_start as u32)
        };
        out.extend_from_slice(&count16.to_le_bytes());
        out.extend_from_slice(&count16.to_le_bytes());
        out.extend_from_slice(&len32.to_le_bytes());
        out.extend_from_slice(&start32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }
}
