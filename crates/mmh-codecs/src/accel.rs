//! The operations a GPU can take over, and their CPU reference implementation.

use fastcdc::v2020 as cdc;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::{Error, FloatKind, tensor};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Content-defined chunking parameters, in bytes.
///
/// Changing any of them moves every chunk boundary, so archives written with different
/// parameters do not deduplicate against each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdcParams {
    /// No chunk is shorter, except the last of a stream.
    pub min_size: u32,
    /// The size chunks cluster around.
    pub avg_size: u32,
    /// No chunk is longer.
    pub max_size: u32,
}

impl Default for CdcParams {
    /// 16 KiB / 64 KiB / 256 KiB.
    fn default() -> Self {
        CdcParams {
            min_size: 16 * 1024,
            avg_size: 64 * 1024,
            max_size: 256 * 1024,
        }
    }
}

impl CdcParams {
    /// Checks the limits of fastcdc v2020 (`MINIMUM_MIN..=MINIMUM_MAX` and so on),
    /// `min < avg < max`, and that all three are even: fastcdc scans in byte pairs, and an
    /// odd size would silently shift boundaries by one byte (fastcdc issue #52).
    pub fn validate(&self) -> Result<(), Error> {
        let (min, avg, max) = (self.min_size, self.avg_size, self.max_size);
        let in_range = |v: u32, lo: usize, hi: usize| (lo..=hi).contains(&(v as usize));
        let reason = if !in_range(min, cdc::MINIMUM_MIN, cdc::MINIMUM_MAX) {
            Some("min must be in 64..=1048576")
        } else if !in_range(avg, cdc::AVERAGE_MIN, cdc::AVERAGE_MAX) {
            Some("avg must be in 256..=4194304")
        } else if !in_range(max, cdc::MAXIMUM_MIN, cdc::MAXIMUM_MAX) {
            Some("max must be in 1024..=16777216")
        } else if !(min < avg && avg < max) {
            Some("sizes must satisfy min < avg < max")
        } else if min % 2 != 0 || avg % 2 != 0 || max % 2 != 0 {
            Some("sizes must be even")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidCdcParams {
                min,
                avg,
                max,
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// The operations that a GPU backend (OpenCL, CUDA, in their own crates) implements too.
///
/// **Every implementation's output is byte-identical to [`CpuAccelerator`]'s**, which is
/// the reference: chunk boundaries decide deduplication and digests identify chunks, so a
/// backend that differed would write archives that other machines cannot match.
pub trait Accelerator: Send + Sync + std::fmt::Debug {
    /// A short name for logs and benchmarks, such as `"cpu"`.
    fn name(&self) -> &'static str;

    /// The SHA-256 of each chunk, in the same order.
    fn digest_batch(&self, chunks: &[&[u8]]) -> Result<Vec<Digest>, Error>;

    /// Content-defined chunk boundaries of `data`, taken as one whole stream: the end
    /// offset of every chunk, strictly ascending, the last equal to `data.len()`. Empty for
    /// empty `data`. Fails with [`Error::InvalidCdcParams`] when `params` do not validate.
    fn find_chunk_boundaries(&self, data: &[u8], params: &CdcParams) -> Result<Vec<usize>, Error>;

    /// Codes `raw` as values of `kind` with the tensor codec (FORMAT.md §7.1) into `out`,
    /// which it clears first. Returns whether the payload is smaller than `raw`; when it
    /// is not, `out` holds no usable payload (the caller stores the bytes instead).
    fn encode_tensor(&self, raw: &[u8], kind: FloatKind, out: &mut Vec<u8>) -> Result<bool, Error>;

    /// Decodes a tensor codec payload of `raw_len` bytes of `kind` into `out`, which it
    /// clears first. `stored` is hostile: a payload that does not decode to exactly
    /// `raw_len` bytes is [`Error::Corrupt`], with `out` left empty.
    fn decode_tensor(
        &self,
        stored: &[u8],
        raw_len: usize,
        kind: FloatKind,
        out: &mut Vec<u8>,
    ) -> Result<(), Error>;
}

/// The reference backend: SHA-256 from `sha2` on the rayon pool, and boundaries from
/// fastcdc v2020 with its default normalization (level 1) and unseeded gear table.
///
/// A GPU backend reproduces boundaries by using the same gear table
/// (`fastcdc::v2020::GEAR`, and `GEAR_LS` for the pairwise scan), the masks
/// `fastcdc::v2020::select_masks(avg, Normalization::Level1)`, and fastcdc's cut rule:
/// no test before `min_size`, the strict mask up to `avg_size`, the relaxed one up to
/// `max_size`, and a forced cut at `max_size`, with candidate positions tested in byte
/// pairs exactly as `fastcdc::v2020::cut` does. The pinned vectors in this crate's tests
/// are the check.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuAccelerator;

impl Accelerator for CpuAccelerator {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn digest_batch(&self, chunks: &[&[u8]]) -> Result<Vec<Digest>, Error> {
        Ok(chunks
            .par_iter()
            .map(|chunk| Sha256::digest(chunk).into())
            .collect())
    }

    fn find_chunk_boundaries(&self, data: &[u8], params: &CdcParams) -> Result<Vec<usize>, Error> {
        params.validate()?;
        Ok(cdc::FastCDC::new(
            data,
            params.min_size as usize,
            params.avg_size as usize,
            params.max_size as usize,
        )
        .map(|chunk| chunk.offset + chunk.length)
        .collect())
    }

    fn encode_tensor(&self, raw: &[u8], kind: FloatKind, out: &mut Vec<u8>) -> Result<bool, Error> {
        Ok(tensor::encode(raw, kind, out))
    }

    fn decode_tensor(
        &self,
        stored: &[u8],
        raw_len: usize,
        kind: FloatKind,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        out.clear();
        tensor::decode(stored, raw_len, kind, out).map_err(|reason| {
            out.clear();
            Error::Corrupt {
                codec: kind.codec(),
                reason,
            }
        })
    }
}
