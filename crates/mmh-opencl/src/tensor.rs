//! The tensor codec's blocks on the device.

use std::sync::Mutex;

use mmh_codecs::FloatKind;

use crate::Gpu;

pub(crate) fn encode(
    gpus: &[Mutex<Gpu>],
    raw: &[u8],
    kind: FloatKind,
    out: &mut Vec<u8>,
) -> Result<bool, mmh_codecs::Error> {
    unimplemented!(
        "{} devices, {} bytes of {kind:?} into {}",
        gpus.len(),
        raw.len(),
        out.len()
    )
}

pub(crate) fn decode(
    gpus: &[Mutex<Gpu>],
    stored: &[u8],
    raw_len: usize,
    kind: FloatKind,
    out: &mut Vec<u8>,
) -> Result<(), mmh_codecs::Error> {
    unimplemented!(
        "{} devices, {} bytes of {kind:?} to {raw_len} into {}",
        gpus.len(),
        stored.len(),
        out.len()
    )
}
