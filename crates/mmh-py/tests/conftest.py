"""Shared fixtures for the tests of the `mmh` Python module.

Run with `pytest crates/mmh-py/tests -q` after `maturin develop --release` (see
docs/python.md). Everything is generated under pytest's `tmp_path`; the tests that use the
development corpus skip when it is absent.
"""

import os
from pathlib import Path

import numpy as np
import pytest

#: The development corpus of real models (optional).
CORPUS = Path(os.environ.get("MMH_DEV_CORPUS", "/tmp/mmh-dev-corpus"))


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def random_bytes(n: int, seed: int = 0) -> bytes:
    """Incompressible bytes."""
    return np.random.default_rng(seed).bytes(n)


def compressible_bytes(n: int, seed: int = 0) -> bytes:
    """Bytes that zstd and lz4 shrink to well under half (small alphabet, some runs)."""
    r = np.random.default_rng(seed)
    symbols = r.integers(0, 4, size=n, dtype=np.uint8) + ord("a")
    # Runs of one byte every so often, so lz4 finds matches too.
    runs = r.integers(0, n, size=max(1, n // 4096))
    for start in runs:
        symbols[start : start + 512] = ord("z")
    return symbols.tobytes()


@pytest.fixture
def tree(tmp_path):
    """A directory tree: nested directories, an empty file, the same 300 KB file twice,
    a symbolic link, a hard link and a small text file. Returns (root, duplicated size)."""
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "deep").mkdir()
    dup = random_bytes(300_000, seed=1)
    (root / "a" / "x.bin").write_bytes(dup)
    (root / "a" / "b" / "y.bin").write_bytes(dup)
    (root / "empty").write_bytes(b"")
    (root / "a" / "b" / "hi.txt").write_bytes(b"hello\n")
    (root / "a" / "b" / "deep" / "text.txt").write_bytes(compressible_bytes(200_000, seed=2))
    os.symlink("a/x.bin", root / "link")
    os.link(root / "a" / "b" / "hi.txt", root / "hard")
    os.chmod(root / "a" / "b" / "hi.txt", 0o640)
    return root, len(dup)
