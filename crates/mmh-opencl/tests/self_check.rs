//! A device that computes wrongly is refused when the backend opens, before it can write
//! an archive that does not unfold: here an OpenCL device whose reads come back with one
//! bit flipped. Skips without an OpenCL device, unless `MMH_REQUIRE_OPENCL=1`.

use mmh_gpu::{Access, Arg, Device, DeviceInfo, Error, GpuAccelerator, Scalar};
use mmh_opencl::OpenClDevice;

/// A device whose every read flips the lowest bit of its first byte.
struct Flipping(OpenClDevice);

impl Device for Flipping {
    const BACKEND: &'static str = "opencl";
    type Buffer<T: Scalar> = <OpenClDevice as Device>::Buffer<T>;
    type Mem = <OpenClDevice as Device>::Mem;

    fn info(&self) -> &DeviceInfo {
        self.0.info()
    }

    fn new_stream(&self) -> Result<Self, Error> {
        self.0.new_stream().map(Flipping)
    }

    fn upload<T: Scalar>(&self, data: &[T]) -> Result<Self::Buffer<T>, Error> {
        self.0.upload(data)
    }

    fn buffer<T: Scalar>(&self, access: Access, count: usize) -> Result<Self::Buffer<T>, Error> {
        self.0.buffer(access, count)
    }

    fn write<T: Scalar>(
        &self,
        buffer: &mut Self::Buffer<T>,
        offset: usize,
        data: &[T],
    ) -> Result<(), Error> {
        self.0.write(buffer, offset, data)
    }

    fn read<T: Scalar>(
        &self,
        buffer: &Self::Buffer<T>,
        offset: usize,
        out: &mut [T],
    ) -> Result<(), Error> {
        self.0.read(buffer, offset, out)?;
        if let Some(byte) = bytemuck::cast_slice_mut::<T, u8>(out).first_mut() {
            *byte ^= 1;
        }
        Ok(())
    }

    fn mem<T: Scalar>(buffer: &Self::Buffer<T>) -> Self::Mem {
        OpenClDevice::mem(buffer)
    }

    fn finish(&self) -> Result<(), Error> {
        self.0.finish()
    }

    unsafe fn run(
        &self,
        file: &str,
        name: &str,
        args: &[Arg<Self::Mem>],
        global: usize,
        local: Option<usize>,
    ) -> Result<(), Error> {
        // SAFETY: the caller's promise, passed on unchanged.
        unsafe { self.0.run(file, name, args, global, local) }
    }
}

#[test]
fn a_device_that_computes_wrongly_is_refused() {
    let devices = match mmh_opencl::open_devices(None) {
        Ok(devices) => devices,
        Err(error)
            if error.is_absent() && std::env::var("MMH_REQUIRE_OPENCL").as_deref() != Ok("1") =>
        {
            eprintln!("skipped: {error}");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let flipping = devices.into_iter().map(Flipping).collect();
    match GpuAccelerator::new(flipping) {
        Err(error @ Error::Mismatch { .. }) => {
            assert!(
                error
                    .to_string()
                    .contains("failed the check against the CPU"),
                "{error}"
            );
        }
        other => panic!(
            "a device with flipped reads was accepted: {:?}",
            other.map(|_| ())
        ),
    }
    assert!(
        mmh_opencl::open(None).is_ok(),
        "the same devices, unflipped, pass"
    );
}
