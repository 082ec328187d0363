//! Choosing the backend that does the bulk work (hashing, chunking, the tensor codec),
//! so that every front end offers the same choice with the same fallbacks.
//!
//! Every backend writes the same bytes ([`mmh_codecs::Accelerator`]), so falling back to
//! the CPU, for a whole run or for one call whose kernel failed, never changes an archive.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use mmh_codecs::{Accelerator, CdcParams, CpuAccelerator, Digest, FloatKind};

use crate::{Error, Result};

type CodecResult<T> = std::result::Result<T, mmh_codecs::Error>;

/// Which backend to use (`--accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    /// A GPU when one is present, for calls large enough to pay for the transfer; the
    /// CPU otherwise.
    #[default]
    Auto,
    /// The CPU reference.
    Cpu,
    /// OpenCL, on every device or those asked for (CPU devices such as PoCL included).
    OpenCl,
    /// CUDA.
    Cuda,
}

impl FromStr for AccelChoice {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(AccelChoice::Auto),
            "cpu" => Ok(AccelChoice::Cpu),
            "opencl" => Ok(AccelChoice::OpenCl),
            "cuda" => Ok(AccelChoice::Cuda),
            _ => Err(Error::InvalidOption(format!(
                "unknown accelerator {name:?} (expected one of: auto, cpu, opencl, cuda)"
            ))),
        }
    }
}

impl fmt::Display for AccelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelChoice::Auto => "auto",
            AccelChoice::Cpu => "cpu",
            AccelChoice::OpenCl => "opencl",
            AccelChoice::Cuda => "cuda",
        })
    }
}

#[cfg(any(feature = "opencl", feature = "cuda"))]
/// Under [`AccelChoice::Auto`], calls on fewer bytes than this stay on the CPU: below it,
/// copying to a device and back costs more than the CPU takes.
const AUTO_MIN_BYTES: usize = 1 << 20;

/// The backend a run uses: a device backend with the CPU behind it, or the CPU alone.
///
/// A call that the device backend fails for reasons of its own (a kernel that does not
/// build, memory it cannot get) is done again on the CPU and counted; damaged input is an
/// error on every backend and is not retried.
pub struct Backend {
    device: Option<Box<dyn Accelerator>>,
    /// Calls smaller than this go to the CPU.
    min_bytes: usize,
    /// Why the CPU does the work asked of a device, if it does.
    cpu_reason: Option<String>,
    /// The devices in use, for people.
    description: String,
    /// The first device failure, and how many calls fell back.
    fallbacks: Mutex<(Option<String>, u64)>,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("device", &self.device)
            .field("min_bytes", &self.min_bytes)
            .finish()
    }
}

impl Default for Backend {
    fn default() -> Self {
        Backend::cpu(None)
    }
}

impl Backend {
    /// Opens the backend `choice` names, on the devices numbered `devices` (all when
    /// `None`). A device backend that cannot start (no driver, no device, kernels that do
    /// not build) leaves the CPU doing the work, with the reason in
    /// [`Backend::cpu_reason`]; one that is not compiled into this build is an error.
    /// `auto` takes the first of CUDA and OpenCL that has a GPU.
    pub fn open(choice: AccelChoice, devices: Option<&[usize]>) -> Result<Backend> {
        let on_device = |opened: std::result::Result<Backend, String>| {
            opened.unwrap_or_else(|why| Backend::cpu(Some(format!("{why}; the CPU does the work"))))
        };
        match choice {
            AccelChoice::Cpu => Ok(Backend::cpu(None)),
            AccelChoice::OpenCl => Ok(on_device(Backend::opencl(devices, false)?)),
            AccelChoice::Cuda => Ok(on_device(Backend::cuda(devices, false)?)),
            AccelChoice::Auto => Ok([Backend::cuda, Backend::opencl]
                .into_iter()
                .find_map(|open| open(devices, true).ok()?.ok())
                .unwrap_or_else(|| Backend::cpu(None))),
        }
    }

    fn cpu(reason: Option<String>) -> Backend {
        Backend {
            device: None,
            min_bytes: usize::MAX,
            cpu_reason: reason,
            description: format!("CPU, {} threads", rayon::current_num_threads()),
            fallbacks: Mutex::new((None, 0)),
        }
    }

    /// A device backend as opened, or why it did not open.
    #[cfg(any(feature = "opencl", feature = "cuda"))]
    fn on_devices<D: mmh_gpu::Device>(
        opened: std::result::Result<mmh_gpu::GpuAccelerator<D>, mmh_gpu::Error>,
        auto: bool,
    ) -> std::result::Result<Backend, String> {
        let accelerator = opened.map_err(|why| why.to_string())?;
        Ok(Backend {
            description: accelerator
                .device_infos()
                .iter()
                .map(|d| format!("{} ({})", d.name, d.platform))
                .collect::<Vec<_>>()
                .join(", "),
            device: Some(Box::new(accelerator)),
            min_bytes: if auto { AUTO_MIN_BYTES } else { 0 },
            cpu_reason: None,
            fallbacks: Mutex::new((None, 0)),
        })
    }

    /// The OpenCL backend: `Err` when it is not compiled in, `Ok(Err(why))` when it
    /// cannot start; under `auto`, only on GPUs.
    #[cfg(feature = "opencl")]
    fn opencl(
        devices: Option<&[usize]>,
        auto: bool,
    ) -> Result<std::result::Result<Backend, String>> {
        let opened = if auto && devices.is_none() {
            // An OpenCL device that is a CPU (PoCL) is slower than the CPU path itself.
            mmh_opencl::devices().and_then(|all| {
                let gpus: Vec<usize> = (0..all.len()).filter(|&n| all[n].is_gpu).collect();
                match gpus.is_empty() {
                    true => Err(mmh_opencl::Error::NoDevice {
                        backend: "opencl",
                        which: " that is a GPU".into(),
                    }),
                    false => mmh_opencl::open(Some(&gpus)),
                }
            })
        } else {
            mmh_opencl::open(devices)
        };
        Ok(Backend::on_devices(opened, auto))
    }

    /// The CUDA backend, as [`Backend::opencl`].
    #[cfg(feature = "cuda")]
    fn cuda(devices: Option<&[usize]>, auto: bool) -> Result<std::result::Result<Backend, String>> {
        Ok(Backend::on_devices(mmh_cuda::open(devices), auto))
    }

    #[cfg(not(feature = "opencl"))]
    fn opencl(_: Option<&[usize]>, _: bool) -> Result<std::result::Result<Backend, String>> {
        Err(Error::InvalidOption(
            "--accel opencl: this build has no OpenCL backend".into(),
        ))
    }

    #[cfg(not(feature = "cuda"))]
    fn cuda(_: Option<&[usize]>, _: bool) -> Result<std::result::Result<Backend, String>> {
        Err(Error::InvalidOption(
            "--accel cuda: this build has no CUDA backend".into(),
        ))
    }

    /// Why the CPU does the work that a device was asked for, if it does.
    pub fn cpu_reason(&self) -> Option<&str> {
        self.cpu_reason.as_deref()
    }

    /// The devices that do the work, for people: names and platforms.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// How many calls fell back to the CPU after the device failed them, and the first
    /// failure.
    pub fn fallbacks(&self) -> (u64, Option<String>) {
        let fallbacks = self.fallbacks.lock().expect("fallback lock");
        (fallbacks.1, fallbacks.0.clone())
    }

    /// Runs `call` on the device when there is one and `bytes` are worth it, on the CPU
    /// otherwise or when the device fails it.
    fn route<T>(
        &self,
        bytes: usize,
        mut call: impl FnMut(&dyn Accelerator) -> CodecResult<T>,
    ) -> CodecResult<T> {
        if let Some(device) = self.device.as_deref().filter(|_| bytes >= self.min_bytes) {
            match call(device) {
                Err(mmh_codecs::Error::Backend { backend, reason }) => {
                    let mut fallbacks = self.fallbacks.lock().expect("fallback lock");
                    fallbacks
                        .0
                        .get_or_insert(format!("{backend} backend: {reason}"));
                    fallbacks.1 += 1;
                }
                done => return done,
            }
        }
        call(&CpuAccelerator)
    }
}

impl Accelerator for Backend {
    fn name(&self) -> &'static str {
        self.device.as_deref().map_or("cpu", |device| device.name())
    }

    fn digest_batch(&self, chunks: &[&[u8]]) -> CodecResult<Vec<Digest>> {
        let bytes = chunks.iter().map(|chunk| chunk.len()).sum();
        self.route(bytes, |backend| backend.digest_batch(chunks))
    }

    fn find_chunk_boundaries(&self, data: &[u8], params: &CdcParams) -> CodecResult<Vec<usize>> {
        self.route(data.len(), |backend| {
            backend.find_chunk_boundaries(data, params)
        })
    }

    fn encode_tensor(&self, raw: &[u8], kind: FloatKind, out: &mut Vec<u8>) -> CodecResult<bool> {
        self.route(raw.len(), |backend| backend.encode_tensor(raw, kind, out))
    }

    fn decode_tensor(
        &self,
        stored: &[u8],
        raw_len: usize,
        kind: FloatKind,
        out: &mut Vec<u8>,
    ) -> CodecResult<()> {
        self.route(raw_len, |backend| {
            backend.decode_tensor(stored, raw_len, kind, out)
        })
    }
}

/// Everything `mmh info --accel` shows: each backend compiled in, and its devices or
/// why it has none.
pub fn describe_backends() -> Vec<(AccelChoice, std::result::Result<Vec<String>, String>)> {
    let cpu = vec![format!("{} threads (rayon)", rayon::current_num_threads())];
    let backends = vec![(AccelChoice::Cpu, Ok(cpu))];
    #[cfg(feature = "opencl")]
    let backends = [
        backends,
        vec![(AccelChoice::OpenCl, describe(mmh_opencl::devices()))],
    ]
    .concat();
    #[cfg(feature = "cuda")]
    let backends = [
        backends,
        vec![(AccelChoice::Cuda, describe(mmh_cuda::devices()))],
    ]
    .concat();
    backends
}

#[cfg(any(feature = "opencl", feature = "cuda"))]
fn describe(
    devices: std::result::Result<Vec<mmh_gpu::DeviceInfo>, mmh_gpu::Error>,
) -> std::result::Result<Vec<String>, String> {
    let devices = devices.map_err(|e| e.to_string())?;
    Ok(devices
        .iter()
        .enumerate()
        .map(|(number, d)| {
            format!(
                "{number}: {} ({}, {}; {}, {} compute units, {} MiB)",
                d.name,
                if d.is_gpu { "GPU" } else { "CPU" },
                d.platform,
                d.version,
                d.compute_units,
                d.memory >> 20
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that fails every call, as one out of memory would.
    #[derive(Debug)]
    struct FailingDevice;

    impl Accelerator for FailingDevice {
        fn name(&self) -> &'static str {
            "failing"
        }

        fn digest_batch(&self, _: &[&[u8]]) -> CodecResult<Vec<Digest>> {
            Err(mmh_codecs::Error::Backend {
                backend: "failing",
                reason: "out of device memory".into(),
            })
        }

        fn find_chunk_boundaries(&self, _: &[u8], _: &CdcParams) -> CodecResult<Vec<usize>> {
            self.digest_batch(&[]).map(|_| Vec::new())
        }

        fn encode_tensor(&self, _: &[u8], _: FloatKind, _: &mut Vec<u8>) -> CodecResult<bool> {
            self.digest_batch(&[]).map(|_| false)
        }

        fn decode_tensor(
            &self,
            _: &[u8],
            _: usize,
            _: FloatKind,
            _: &mut Vec<u8>,
        ) -> CodecResult<()> {
            self.digest_batch(&[]).map(|_| ())
        }
    }

    fn on(device: impl Accelerator + 'static, min_bytes: usize) -> Backend {
        Backend {
            device: Some(Box::new(device)),
            min_bytes,
            ..Backend::cpu(None)
        }
    }

    #[test]
    fn calls_the_device_fails_are_redone_on_the_cpu_and_counted() {
        let backend = on(FailingDevice, 0);
        let raw = mmh_codecs::parity::weights(FloatKind::Bf16, 50_000, 3);
        mmh_codecs::parity::tensor(&backend, &raw, FloatKind::Bf16).unwrap();
        mmh_codecs::parity::digests(&backend, &[b"abc"]).unwrap();
        let (calls, first) = backend.fallbacks();
        // Encode and decode of the tensor, and the digests.
        assert_eq!(calls, 3);
        assert_eq!(first.unwrap(), "failing backend: out of device memory");
    }

    #[test]
    fn small_calls_stay_on_the_cpu_and_damage_is_not_retried() {
        let backend = on(FailingDevice, 1 << 20);
        mmh_codecs::parity::digests(&backend, &[b"abc"]).unwrap();
        assert_eq!(backend.fallbacks().0, 0);

        // The CPU reference standing in for a device that reports damage.
        let cpu = on(CpuAccelerator, 0);
        let raw = mmh_codecs::parity::weights(FloatKind::F32, 20_000, 1);
        let mut stored = Vec::new();
        assert!(
            cpu.encode_tensor(&raw, FloatKind::F32, &mut stored)
                .unwrap()
        );
        let mut out = Vec::new();
        let damaged = &stored[..stored.len() - 1];
        assert!(matches!(
            cpu.decode_tensor(damaged, raw.len(), FloatKind::F32, &mut out),
            Err(mmh_codecs::Error::Corrupt { .. })
        ));
        assert_eq!(cpu.fallbacks().0, 0);
    }

    #[test]
    fn choices_parse_and_unknown_ones_are_named() {
        for choice in [
            AccelChoice::Auto,
            AccelChoice::Cpu,
            AccelChoice::OpenCl,
            AccelChoice::Cuda,
        ] {
            assert_eq!(choice.to_string().parse::<AccelChoice>().unwrap(), choice);
        }
        let err = "vulkan".parse::<AccelChoice>().unwrap_err().to_string();
        assert!(err.contains("vulkan") && err.contains("opencl"), "{err}");
    }
}
