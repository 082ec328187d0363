//! SHA-256 of chunk batches on the device (`kernels/sha256.cl`).
//!
//! The batch is cut into jobs, runs of consecutive chunks, which the devices take in turn,
//! one host thread per device, so a faster device simply takes more jobs. A job goes up
//! in uploads of at most the device's limit; a chunk larger than that goes up in pieces,
//! each continuing from the state the previous one left, so no batch fails for its size.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use mmh_codecs::Digest;

use crate::{Access, Arg, Device, DeviceInfo, Error, on_each_device, room};

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// `total` of a piece that does not end its chunk (see the kernel).
const NOT_FINAL: u64 = u64::MAX;

/// The digests of `chunks`, in uploads of at most `cap` bytes (rounded down to whole
/// blocks).
pub(crate) fn digest_batch<D: Device>(
    gpus: &[Mutex<D>],
    chunks: &[&[u8]],
    cap: usize,
) -> Result<Vec<Digest>, Error> {
    let cap = (cap / 64 * 64).max(64);
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let total: usize = chunks.iter().map(|chunk| reserved(chunk.len())).sum();
    // Every device gets work even when the batch is small, but no job is larger than
    // one upload, which would leave a device idle at the end of a large batch.
    let target = cap.min(total.div_ceil(gpus.len()));
    let jobs = jobs(chunks, target);
    let next = AtomicUsize::new(0);
    let done = on_each_device(gpus, |_, gpu| {
        let limit = upload_limit(gpu.info(), gpu.free_memory(), cap);
        let mut finished = Vec::new();
        loop {
            let job = next.fetch_add(1, Ordering::Relaxed);
            let Some(range) = jobs.get(job) else {
                return Ok(finished);
            };
            match run_job(gpu, &chunks[range.clone()], limit) {
                Ok(digests) => finished.push((job, digests)),
                Err(error) => {
                    // The other devices stop after their current job.
                    next.store(jobs.len(), Ordering::Relaxed);
                    return Err(error);
                }
            }
        }
    });
    let mut by_job = vec![Vec::new(); jobs.len()];
    for finished in done {
        for (job, digests) in finished? {
            by_job[job] = digests;
        }
    }
    Ok(by_job.concat())
}

/// Bytes of an upload a chunk of `len` bytes takes: whole blocks, and one for an empty
/// chunk so that the number of pieces in an upload stays bounded by its size.
fn reserved(len: usize) -> usize {
    len.div_ceil(64).max(1) * 64
}

/// The largest upload for a device: its [`room`] for a batch of at most `cap` bytes, in
/// its largest buffer.
fn upload_limit(info: &DeviceInfo, free: Option<u64>, cap: usize) -> usize {
    let limit = room(info, free, cap).min(usize::try_from(info.max_buffer).unwrap_or(usize::MAX));
    // The kernel takes a piece's length as a uint.
    let limit = limit.min(u32::MAX as usize);
    (limit / 64 * 64).max(64)
}

/// Consecutive chunk ranges of at most `target` reserved bytes each, or one chunk.
fn jobs(chunks: &[&[u8]], target: usize) -> Vec<std::ops::Range<usize>> {
    let mut jobs = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (index, chunk) in chunks.iter().enumerate() {
        let len = reserved(chunk.len());
        if size > 0 && size + len > target {
            jobs.push(start..index);
            (start, size) = (index, 0);
        }
        size += len;
    }
    jobs.push(start..chunks.len());
    jobs
}

/// One piece of an upload: its place in the data buffer and its state to continue from.
struct Piece {
    offset: u64,
    len: u32,
    total: u64,
}

/// The digests of `chunks`, in uploads of at most `limit` bytes on one device.
fn run_job<D: Device>(gpu: &D, chunks: &[&[u8]], limit: usize) -> Result<Vec<Digest>, Error> {
    let mut digests = Vec::with_capacity(chunks.len());
    let mut data = Vec::new();
    let mut pieces = Vec::new();
    let mut states = Vec::new();
    // The chunk being uploaded, how much of it is done, and the state after that.
    let (mut next, mut done, mut carried) = (0, 0, INITIAL);
    while next < chunks.len() {
        data.clear();
        pieces.clear();
        states.clear();
        while let Some(chunk) = chunks.get(next) {
            let rest = &chunk[done..];
            let room = limit - data.len();
            let (take, total) = if reserved(rest.len()) <= room {
                (rest.len(), chunk.len() as u64)
            } else if room > 0 {
                // Room is a whole number of blocks, and the rest is larger.
                (room, NOT_FINAL)
            } else {
                break;
            };
            pieces.push(Piece {
                offset: data.len() as u64,
                len: take as u32,
                total,
            });
            states.extend_from_slice(&carried);
            data.extend_from_slice(&rest[..take]);
            data.resize(data.len() + reserved(take) - take, 0);
            if total == NOT_FINAL {
                done += take;
                break;
            }
            (next, done) = (next + 1, 0);
        }
        launch(gpu, &data, &pieces, &mut states)?;
        for (piece, state) in pieces.iter().zip(states.chunks_exact(8)) {
            let state: [u32; 8] = state.try_into().expect("8 words per piece");
            if piece.total == NOT_FINAL {
                carried = state;
            } else {
                carried = INITIAL;
                let mut digest = [0; 32];
                for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
                    bytes.copy_from_slice(&word.to_be_bytes());
                }
                digests.push(digest);
            }
        }
    }
    Ok(digests)
}

/// Runs `sha256_pieces` over one upload, replacing each piece's state in `states`.
fn launch<D: Device>(
    gpu: &D,
    data: &[u8],
    pieces: &[Piece],
    states: &mut [u32],
) -> Result<(), Error> {
    let offsets: Vec<u64> = pieces.iter().map(|piece| piece.offset).collect();
    let lens: Vec<u32> = pieces.iter().map(|piece| piece.len).collect();
    let totals: Vec<u64> = pieces.iter().map(|piece| piece.total).collect();
    // An upload of only empty chunks still reserves a block each, so `data` is not empty.
    let data_buffer = gpu.upload(data)?;
    let offset_buffer = gpu.upload(&offsets)?;
    let len_buffer = gpu.upload(&lens)?;
    let total_buffer = gpu.upload(&totals)?;
    let mut state_buffer = gpu.buffer::<u32>(Access::ReadWrite, states.len())?;
    gpu.write(&mut state_buffer, 0, states)?;
    let args = [
        Arg::Mem(D::mem(&data_buffer)),
        Arg::Mem(D::mem(&offset_buffer)),
        Arg::Mem(D::mem(&len_buffer)),
        Arg::Mem(D::mem(&total_buffer)),
        Arg::Mem(D::mem(&state_buffer)),
        Arg::U32(pieces.len() as u32),
    ];
    // SAFETY: the arguments are sha256_pieces' six, in order; work-items
    // past `n` return at once; each piece reads `data` from its offset up to its reserved
    // whole blocks, all inside `data`, and its eight words of `states`.
    unsafe {
        gpu.run(
            "sha256.cl",
            "sha256_pieces",
            &args,
            pieces.len().next_multiple_of(64),
            None,
        )?;
    }
    gpu.read(&state_buffer, 0, states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_follows_the_device() {
        let info = DeviceInfo {
            platform: String::new(),
            name: String::new(),
            version: String::new(),
            memory: 1000,
            max_buffer: 1000,
            compute_units: 1,
            is_gpu: false,
        };
        let cap = crate::DEFAULT_BATCH_LIMIT;
        // A stream's quarter of a quarter of the memory, but one block at least.
        assert_eq!(upload_limit(&info, None, cap), 64);
        // What is free, but in the largest buffer, in whole blocks.
        assert_eq!(upload_limit(&info, Some(1 << 20), cap), 960);
        assert_eq!(upload_limit(&info, Some(1 << 20), 200), 192);
        let big = DeviceInfo {
            memory: 1 << 40,
            max_buffer: 1 << 38,
            ..info
        };
        assert_eq!(upload_limit(&big, None, cap), cap);
        assert_eq!(upload_limit(&big, Some(1 << 20), cap), 1 << 18);
    }
}
