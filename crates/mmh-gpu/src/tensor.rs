//! The tensor codec's blocks on the device (placeholder until the tensor kernels land).

use std::sync::Mutex;

use mmh_codecs::FloatKind;

use crate::Device;

pub(crate) fn encode<D: Device>(
    devices: &[Mutex<D>],
    raw: &[u8],
    kind: FloatKind,
    out: &mut Vec<u8>,
) -> Result<bool, mmh_codecs::Error> {
    unimplemented!(
        "{} devices, {} bytes of {kind:?} into {}",
        devices.len(),
        raw.len(),
        out.len()
    )
}

pub(crate) fn decode<D: Device>(
    devices: &[Mutex<D>],
    stored: &[u8],
    raw_len: usize,
    kind: FloatKind,
    out: &mut Vec<u8>,
) -> Result<(), mmh_codecs::Error> {
    unimplemented!(
        "{} devices, {} bytes of {kind:?} to {raw_len} into {}",
        devices.len(),
        stored.len(),
        out.len()
    )
}
