//! Content-defined chunk boundaries on the device.

use std::sync::Mutex;

use mmh_codecs::CdcParams;

use crate::{Error, Gpu};

pub(crate) fn boundaries(
    gpus: &[Mutex<Gpu>],
    data: &[u8],
    params: &CdcParams,
) -> Result<Vec<usize>, Error> {
    unimplemented!("{} devices, {} bytes, {params:?}", gpus.len(), data.len())
}
