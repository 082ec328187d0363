#!/usr/bin/env python3
"""ZipNN on one file of raw tensor bytes, for `cargo xtask bench --models` (models.rs).

    python zipnn_bench.py RAW DTYPE --threads 1,2 --runs 3

RAW holds the tensor bytes of one dtype of one model file, concatenated; DTYPE is ZipNN's
`bytearray_dtype` (bfloat16, float16 or float32). For each thread count it builds
`ZipNN(input_format="byte", bytearray_dtype=DTYPE, threads=N)` with ZipNN's default
method ("AUTO": its byte grouping and Huffman coder; 0.5.4 reads no other method on this
path), compresses and decompresses the bytes in memory `--runs` times, checks that the
bytes come back, and prints one JSON object on stdout:

    {"zipnn": "0.5.4", "bytes": N, "threads": [{"threads": 1, "compressed_bytes": M,
     "compress_s": [...], "decompress_s": [...], "compress_cpu_s": [...],
     "decompress_cpu_s": [...]}, ...]}

`*_cpu_s` is the process's CPU time (all threads) during each run.

Times exclude the copy each compress gets (see `compress` below) and file reading.
"""

import argparse
import importlib.metadata
import json
import sys
import time
import warnings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", help="file of raw tensor bytes")
    parser.add_argument("dtype", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--threads", default="1", help="comma-separated thread counts")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (all are printed)")
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch, imported by zipnn, warns on import
        from zipnn import ZipNN

    with open(args.raw, "rb") as f:
        data = f.read()
    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        z = ZipNN(input_format="byte", bytearray_dtype=args.dtype, threads=threads)
        compress_s, decompress_s, compress_cpu_s, decompress_cpu_s = [], [], [], []
        compressed = None
        for _ in range(args.runs):
            # ZipNN 0.5.4 reorders the bytes of its input in place, even of a `bytes`
            # object: give it a fresh copy each time, outside the timing.
            scratch = bytearray(data)
            start, cpu = time.perf_counter(), time.process_time()
            compressed = z.compress(scratch)
            compress_s.append(time.perf_counter() - start)
            compress_cpu_s.append(time.process_time() - cpu)
            del scratch
            start, cpu = time.perf_counter(), time.process_time()
            restored = z.decompress(compressed)
            decompress_s.append(time.perf_counter() - start)
            decompress_cpu_s.append(time.process_time() - cpu)
            if restored != data:
                print(f"zipnn ({threads} threads) did not give the bytes back", file=sys.stderr)
                return 1
        results.append(
            {
                "threads": threads,
                "compressed_bytes": len(compressed),
                "compress_s": compress_s,
                "decompress_s": decompress_s,
                "compress_cpu_s": compress_cpu_s,
                "decompress_cpu_s": decompress_cpu_s,
            }
        )
    json.dump(
        {"zipnn": importlib.metadata.version("zipnn"), "bytes": len(data), "threads": results},
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
