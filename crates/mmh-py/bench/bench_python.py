#!/usr/bin/env python3
"""Compare `mmh.fold` / `mmh.unfold` with ZipNN and zstandard on safetensors models.

    python crates/mmh-py/bench/bench_python.py [MODEL.safetensors ...] [--repeat 3]

Without arguments it runs on /tmp/mmh-dev-corpus/piper-bf16.safetensors and, when present,
khmer-fp32.safetensors beside it. For each model and tool it measures the compressed size,
the ratio (compressed / original, as `FoldReport.ratio`), and compression and decompression
throughput in MB/s of original bytes (10^6 bytes per second), best of `--repeat` runs.
Every tool's output is checked to decompress to the original bytes.

mmh folds and unfolds file to file (the model is read from, and the result written to,
files in a temporary directory; the page cache holds them), with its defaults (codec
"auto", all cores). ZipNN and zstandard work in memory on the bytes of the file, so their
numbers include no file I/O. Install the others with `pip install zipnn zstandard`; a
missing one is reported and its rows skipped.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import struct
import sys
import tempfile
import time
import warnings
from pathlib import Path

DEFAULT_CORPUS = Path("/tmp/mmh-dev-corpus")
DEFAULT_MODELS = ["piper-bf16.safetensors", "khmer-fp32.safetensors"]

# safetensors dtype -> ZipNN's bytearray_dtype
ZIPNN_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main_dtype(path: Path) -> str:
    """The safetensors dtype holding most of the file's bytes."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    bytes_by_dtype: dict[str, int] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        bytes_by_dtype[entry["dtype"]] = bytes_by_dtype.get(entry["dtype"], 0) + end - begin
    return max(bytes_by_dtype, key=bytes_by_dtype.get)


def best_of(repeat: int, run):
    """Runs `run()` (which returns (seconds, result)) `repeat` times; the fastest."""
    best = None
    for _ in range(repeat):
        seconds, result = run()
        if best is None or seconds < best[0]:
            best = (seconds, result)
    return best


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def bench_mmh(path: Path, data: bytes, repeat: int, tmp: Path):
    import mmh

    archive = tmp / (path.name + ".mmh")
    out = tmp / path.name
    fold_s, report = best_of(repeat, lambda: timed(mmh.fold, path, archive, force=True))
    unfold_s, _ = best_of(repeat, lambda: timed(mmh.unfold, archive, out, force=True))
    if out.read_bytes() != data:
        raise SystemExit(f"mmh: {path.name} did not unfold to the original bytes")
    size = archive.stat().st_size
    assert size == report.archive_bytes
    archive.unlink()
    out.unlink()
    return size, fold_s, unfold_s


def bench_zipnn(data: bytes, dtype: str, repeat: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch, imported by zipnn, warns on import
        from zipnn import ZipNN
    z = ZipNN(input_format="byte", bytearray_dtype=ZIPNN_DTYPES.get(dtype, "float32"))

    def compress():
        # ZipNN (0.5.4) reorders the bytes of its input in place, even of a `bytes`
        # object: give it a fresh copy each time, outside the timing.
        scratch = bytearray(data)
        return timed(z.compress, scratch)

    compress_s, compressed = best_of(repeat, compress)
    decompress_s, restored = best_of(repeat, lambda: timed(z.decompress, compressed))
    if bytes(restored) != data:
        raise SystemExit("zipnn did not decompress to the original bytes")
    return len(compressed), compress_s, decompress_s


def bench_zstd(data: bytes, repeat: int, threads: int):
    import zstandard

    cctx = zstandard.ZstdCompressor(level=3, threads=threads)
    dctx = zstandard.ZstdDecompressor()
    compress_s, compressed = best_of(repeat, lambda: timed(cctx.compress, data))
    decompress_s, restored = best_of(
        repeat, lambda: timed(dctx.decompress, compressed, max_output_size=len(data))
    )
    if restored != data:
        raise SystemExit("zstandard did not decompress to the original bytes")
    return len(compressed), compress_s, decompress_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", type=Path, help="safetensors files")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best)")
    args = parser.parse_args()

    models = args.models or [
        DEFAULT_CORPUS / name for name in DEFAULT_MODELS if (DEFAULT_CORPUS / name).is_file()
    ]
    if not models:
        print(f"no model given and none found in {DEFAULT_CORPUS}", file=sys.stderr)
        return 2
    try:
        import mmh
    except ImportError:
        print(
            "the mmh module is not installed: pip install ./crates/mmh-py "
            "(or maturin develop --release in crates/mmh-py)",
            file=sys.stderr,
        )
        return 2

    tools = [("mmh", None)]
    missing = []
    for package in ("zipnn", "zstandard"):
        install = f"pip install {package}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                __import__(package)
            tools.append((package, None))
        except ImportError as err:
            missing.append(f"{package} is not importable ({err}); install it with `{install}`")
    for line in missing:
        print(f"skipping: {line}", file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory(prefix="mmh-bench-") as tmp:
        tmp = Path(tmp)
        for path in models:
            data = path.read_bytes()
            dtype = main_dtype(path)
            print(f"{path.name}: {len(data):,} bytes, mostly {dtype}", file=sys.stderr)
            results = [("mmh.fold / unfold (auto)", bench_mmh(path, data, args.repeat, tmp))]
            if any(t == "zipnn" for t, _ in tools):
                label = f"zipnn ({ZIPNN_DTYPES.get(dtype, 'float32')})"
                results.append((label, bench_zipnn(data, dtype, args.repeat)))
            if any(t == "zstandard" for t, _ in tools):
                results.append(("zstandard -3, 1 thread", bench_zstd(data, args.repeat, 0)))
                results.append(("zstandard -3, all cores", bench_zstd(data, args.repeat, -1)))
            for label, (size, compress_s, decompress_s) in results:
                rows.append(
                    (
                        path.name,
                        label,
                        size,
                        size / len(data),
                        len(data) / 1e6 / compress_s,
                        len(data) / 1e6 / decompress_s,
                    )
                )

    print()
    print("| model | tool | compressed bytes | ratio | compress MB/s | decompress MB/s |")
    print("|---|---|---:|---:|---:|---:|")
    for model, label, size, ratio, c, d in rows:
        print(f"| {model} | {label} | {size:,} | {ratio:.2%} | {c:,.0f} | {d:,.0f} |")
    print()
    zstd_lib = ""
    try:
        import zstandard

        zstd_lib = " (libzstd {}.{}.{})".format(*zstandard.ZSTD_VERSION[:3])
    except ImportError:
        pass
    print(
        f"Versions: mmh {mmh.__version__}, zipnn {version('zipnn')}, "
        f"zstandard {version('zstandard')}{zstd_lib}, numpy {version('numpy')}, "
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs ({platform.machine()}); "
        f"best of {args.repeat}. mmh times are file to file, the others in memory."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
