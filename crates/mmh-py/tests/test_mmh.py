"""Tests of the `mmh` Python module against the API in docs/python.md.

Fast (a few seconds): all data is generated small under `tmp_path`, except the optional
real-model tests, which use the development corpus when it is present.
"""

import gc
import hashlib
import io
import json
import os
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, compressible_bytes, random_bytes

import mmh

try:
    import ml_dtypes
except ImportError:  # the module then returns bit patterns (uint16 / uint8)
    ml_dtypes = None


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_files(root: Path) -> dict:
    """Everything under `root`: name -> ("dir", mode) | ("file", bytes, mode) | ("link", target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", st.st_mode & 0o777)
            else:
                out[rel] = ("file", path.read_bytes(), st.st_mode & 0o777)
    return out


def leftovers(directory: Path, expected=()) -> list:
    """Names in `directory` other than `expected` (temporary files left behind)."""
    return sorted(set(os.listdir(directory)) - set(expected))


# safetensors dtype name -> (numpy dtype of the values written, bytes per element)
ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # written as bit patterns
    "F8_E4M3": np.uint8,  # written as bit patterns
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def write_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> dict:
    """Writes a safetensors file without the `safetensors` package: an 8-byte little-endian
    header length, the JSON header (padded with spaces to a multiple of 8), then the data.
    `tensors` maps name -> (dtype name, numpy array of the values, in ST_DTYPES' types).
    Tensors are laid out in the given order, unaligned. Returns name -> (begin, end) file
    offsets of each tensor's data."""
    header = {}
    blobs = []
    offset = 0
    for name, (dtype, array) in tensors.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    start = 8 + len(text)
    return {
        name: (start + h["data_offsets"][0], start + h["data_offsets"][1])
        for name, h in header.items()
        if name != "__metadata__"
    }


def sample_tensors(rng) -> dict:
    """One tensor of every dtype the module maps, with awkward shapes among them."""
    bf16_bits = (rng.standard_normal((6, 4)).astype(np.float32).view(np.uint32) >> 16).astype(
        np.uint16
    )
    return {
        # A 7-byte tensor first: everything after it starts at an odd offset.
        "u8": ("U8", rng.integers(0, 256, size=7, dtype=np.uint8)),
        "f32": ("F32", rng.standard_normal((4, 5)).astype(np.float32)),
        "f16": ("F16", rng.standard_normal(3).astype(np.float16)),
        "i64": ("I64", rng.integers(-(2**62), 2**62, size=(2, 2, 2), dtype=np.int64)),
        "bf16": ("BF16", bf16_bits),
        "scalar": ("F32", np.array(3.25, dtype=np.float32)),
        "empty": ("F32", np.zeros((0, 3), dtype=np.float32)),
        "f64": ("F64", rng.standard_normal((2, 3)).astype(np.float64)),
        "i8": ("I8", rng.integers(-128, 128, size=(5,), dtype=np.int8)),
        "i16": ("I16", rng.integers(-(2**15), 2**15, size=(3, 1), dtype=np.int16)),
        "i32": ("I32", rng.integers(-(2**31), 2**31, size=(4,), dtype=np.int32)),
        "u16": ("U16", rng.integers(0, 2**16, size=(2, 2), dtype=np.uint16)),
        "u32": ("U32", rng.integers(0, 2**32, size=(3,), dtype=np.uint32)),
        "u64": ("U64", rng.integers(0, 2**63, size=(2,), dtype=np.uint64)),
        "bool": ("BOOL", rng.integers(0, 2, size=(3, 3)).astype(np.bool_)),
        "f8": ("F8_E4M3", rng.integers(0, 0x7F, size=(4, 2), dtype=np.uint8)),
        # Large enough to span several chunks (and to be worth compressing).
        "big": ("F32", rng.standard_normal((512, 1024)).astype(np.float32)),
    }


def expected_dtype(st_dtype: str):
    if st_dtype == "BF16":
        return np.dtype(ml_dtypes.bfloat16) if ml_dtypes else np.dtype(np.uint16)
    if st_dtype == "F8_E4M3":
        return np.dtype(ml_dtypes.float8_e4m3fn) if ml_dtypes else np.dtype(np.uint8)
    return np.dtype(ST_DTYPES[st_dtype])


def assert_tensor_equal(got: np.ndarray, st_dtype: str, want: np.ndarray, name: str):
    assert isinstance(got, np.ndarray), name
    assert got.dtype == expected_dtype(st_dtype), (name, got.dtype)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    if st_dtype == "BF16":
        np.testing.assert_array_equal(got.view(np.uint16), want, err_msg=name)
    elif st_dtype == "F8_E4M3":
        np.testing.assert_array_equal(got.view(np.uint8), want, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


def header_tensor_count(path: Path) -> int:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return sum(1 for k in header if k != "__metadata__")


# ---------------------------------------------------------------------------------------
# Module surface
# ---------------------------------------------------------------------------------------


def test_module_surface():
    assert isinstance(mmh.__version__, str) and mmh.__version__
    for name in ("fold", "unfold", "verify", "fingerprint", "model_hash", "open", "load_safetensors"):
        assert callable(getattr(mmh, name)), name
    for name in ("FoldReport", "Report", "Entry", "Archive", "EntryReader", "TensorInfo", "Writer"):
        assert hasattr(mmh, name), name
    assert issubclass(mmh.Error, Exception)
    assert issubclass(mmh.IntegrityError, mmh.Error)
    assert issubclass(mmh.FormatError, mmh.Error)
    assert not issubclass(mmh.IntegrityError, mmh.FormatError)


# ---------------------------------------------------------------------------------------
# fold / unfold
# ---------------------------------------------------------------------------------------


def test_fold_unfold_file_roundtrip(tmp_path):
    data = compressible_bytes(3_000_000, seed=3) + random_bytes(500_000, seed=4)
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    dst = tmp_path / "data.mmh"
    report = mmh.fold(src, dst)
    assert isinstance(report, mmh.FoldReport)
    assert report.input_bytes == len(data)
    assert report.archive_bytes == dst.stat().st_size
    assert report.archive_bytes < len(data) // 2
    assert report.ratio == pytest.approx(report.archive_bytes / report.input_bytes)
    assert report.chunks > 0
    assert report.deduplicated_bytes == 0
    assert report.base_bytes == 0 and report.delta_bytes == 0
    assert report.warnings == []
    assert "FoldReport" in repr(report) and str(report.input_bytes) in repr(report)

    out = tmp_path / "out.bin"
    written = mmh.unfold(dst, out)
    assert written == len(data)
    assert out.read_bytes() == data

    # str paths work as well as PathLike ones.
    out2 = tmp_path / "out2.bin"
    assert mmh.unfold(str(dst), str(out2)) == len(data)
    assert out2.read_bytes() == data


def test_fold_report_is_read_only(tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"abc" * 1000)
    report = mmh.fold(src, tmp_path / "f.mmh")
    with pytest.raises(AttributeError):
        report.input_bytes = 1
    assert report.input_bytes == 3000


def test_fold_empty_file(tmp_path):
    src = tmp_path / "empty"
    src.write_bytes(b"")
    dst = tmp_path / "empty.mmh"
    report = mmh.fold(src, dst)
    assert report.input_bytes == 0
    assert isinstance(report.ratio, float)
    out = tmp_path / "out"
    assert mmh.unfold(dst, out) == 0
    assert out.read_bytes() == b""


def test_fold_unfold_tree_roundtrip(tmp_path, tree):
    root, dup_size = tree
    dst = tmp_path / "tree.mmh"
    report = mmh.fold(root, dst)
    files = {p: v for p, v in tree_files(root).items() if v[0] == "file"}
    unique_bytes = len(root.joinpath("a/x.bin").read_bytes()) * 2 + 200_000 + 6  # no hard link
    assert report.input_bytes == unique_bytes
    assert report.deduplicated_bytes == dup_size
    assert report.archive_bytes == dst.stat().st_size
    assert report.ratio == pytest.approx(report.archive_bytes / report.input_bytes)

    out = tmp_path / "out"
    written = mmh.unfold(dst, out)
    assert written == unique_bytes
    assert tree_files(out) == tree_files(root)
    assert os.readlink(out / "link") == "a/x.bin"
    assert (out / "hard").stat().st_ino == (out / "a/b/hi.txt").stat().st_ino
    assert (out / "empty").stat().st_size == 0
    assert len(files) == 6


def test_unfold_paths_subset(tmp_path, tree):
    root, _ = tree
    dst = tmp_path / "tree.mmh"
    mmh.fold(root, dst)
    out = tmp_path / "out"
    written = mmh.unfold(dst, out, paths=["a/b/deep"])
    assert written == 200_000
    assert sorted(tree_files(out)) == ["a", "a/b", "a/b/deep", "a/b/deep/text.txt"]
    assert (out / "a/b/deep/text.txt").read_bytes() == (root / "a/b/deep/text.txt").read_bytes()


@pytest.mark.parametrize("codec", ["zstd", "lz4", "store", "auto", "pattern"])
def test_codecs(tmp_path, codec):
    data = compressible_bytes(1_500_000, seed=5)
    src = tmp_path / "c.bin"
    src.write_bytes(data)
    dst = tmp_path / "c.mmh"
    report = mmh.fold(src, dst, codec=codec)
    assert report.input_bytes == len(data)
    if codec == "store":
        assert report.archive_bytes >= len(data)
    elif codec in ("zstd", "lz4", "auto"):
        assert report.archive_bytes < len(data) * 0.6, report
    out = tmp_path / "c.out"
    assert mmh.unfold(dst, out) == len(data)
    assert out.read_bytes() == data


def test_accel_choices_give_the_same_archive(tmp_path):
    """Every backend writes the same bytes; on a machine without an OpenCL device,
    accel="opencl" warns and the CPU does the work."""
    data = np.arange(300_000, dtype=np.float32).tobytes()
    src = tmp_path / "w.bin"
    src.write_bytes(data)
    mmh.fold(src, tmp_path / "cpu.mmh", accel="cpu")
    mmh.fold(src, tmp_path / "opencl.mmh", accel="opencl")
    assert (tmp_path / "cpu.mmh").read_bytes() == (tmp_path / "opencl.mmh").read_bytes()
    assert mmh.unfold(tmp_path / "opencl.mmh", tmp_path / "out", accel="opencl") == len(data)
    assert mmh.verify(tmp_path / "opencl.mmh", accel="auto").content_bytes == len(data)
    with pytest.raises(ValueError, match="cpu, opencl, cuda"):
        mmh.fold(src, tmp_path / "x.mmh", accel="tpu")


def test_level_and_threads(tmp_path):
    data = compressible_bytes(2_000_000, seed=6)
    src = tmp_path / "l.bin"
    src.write_bytes(data)
    low = mmh.fold(src, tmp_path / "l1.mmh", codec="zstd", level=1)
    high = mmh.fold(src, tmp_path / "l19.mmh", codec="zstd", level=19, threads=1)
    assert high.archive_bytes < low.archive_bytes
    one = mmh.fold(src, tmp_path / "t1.mmh", threads=1)
    for name in ("l1.mmh", "l19.mmh", "t1.mmh"):
        out = tmp_path / (name + ".out")
        mmh.unfold(tmp_path / name, out)
        assert out.read_bytes() == data, name
    assert one.input_bytes == len(data)


def test_force(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"new content " * 1000)
    dst = tmp_path / "f.mmh"
    dst.write_bytes(b"precious")
    with pytest.raises(FileExistsError) as err:
        mmh.fold(src, dst)
    assert "f.mmh" in str(err.value)
    assert dst.read_bytes() == b"precious"
    mmh.fold(src, dst, force=True)
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        mmh.unfold(dst, out)
    assert out.read_bytes() == b"old"
    mmh.unfold(dst, out, force=True)
    assert out.read_bytes() == src.read_bytes()


def test_missing_inputs(tmp_path):
    with pytest.raises(FileNotFoundError):
        mmh.fold(tmp_path / "nope", tmp_path / "nope.mmh")
    assert not (tmp_path / "nope.mmh").exists()
    with pytest.raises(FileNotFoundError):
        mmh.unfold(tmp_path / "nope.mmh", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        mmh.verify(tmp_path / "nope.mmh")
    with pytest.raises(FileNotFoundError):
        mmh.open(tmp_path / "nope.mmh")
    with pytest.raises(FileNotFoundError):
        mmh.fingerprint(tmp_path / "nope.mmh")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"codec": "brotli"},
        {"level": 99},
        {"level": 0},
        {"codec": "zstd", "level": 99},
        {"threads": 0},
        {"self_contained": True},  # without base
    ],
)
def test_bad_options(tmp_path, kwargs):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    with pytest.raises(ValueError):
        mmh.fold(src, tmp_path / "f.mmh", **kwargs)
    assert leftovers(tmp_path, ["f.bin"]) == []


def test_progress_must_be_callable(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    with pytest.raises(TypeError):
        mmh.fold(src, tmp_path / "f.mmh", progress=5)
    assert not (tmp_path / "f.mmh").exists()


# ---------------------------------------------------------------------------------------
# Bases
# ---------------------------------------------------------------------------------------


@pytest.fixture
def versions(tmp_path, rng):
    """Two versions of a BF16 model with one tensor changed slightly, and v1's archive."""
    tensors = {
        f"layer{i}.weight": (
            "BF16",
            (rng.standard_normal((256, 512)).astype(np.float32).view(np.uint32) >> 16).astype(
                np.uint16
            ),
        )
        for i in range(8)
    }
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    v1 = tmp_path / "v1" / "model.safetensors"
    write_safetensors(v1, tensors)
    changed = tensors["layer3.weight"][1].copy()
    changed[::7, ::5] ^= 1  # flip the low bit of a few values
    tensors["layer3.weight"] = ("BF16", changed)
    v2 = tmp_path / "v2" / "model.safetensors"
    write_safetensors(v2, tensors)
    a1 = tmp_path / "m1.mmh"
    mmh.fold(v1, a1)
    return v1, v2, a1, changed


def test_base(tmp_path, versions):
    v1, v2, a1, changed = versions
    a2 = tmp_path / "m2.mmh"
    report = mmh.fold(v2, a2, base=a1)
    assert report.input_bytes == v2.stat().st_size
    assert report.base_bytes + report.delta_bytes > 0
    assert report.archive_bytes < a1.stat().st_size / 4, report

    # The base is found beside the archive.
    out = tmp_path / "out1"
    assert mmh.unfold(a2, out) == v2.stat().st_size
    assert out.read_bytes() == v2.read_bytes()
    assert mmh.verify(a2).content_bytes == v2.stat().st_size

    loaded = mmh.load_safetensors(a2, "model.safetensors")
    assert_tensor_equal(loaded["layer3.weight"], "BF16", changed, "layer3.weight")

    # Moved (and renamed) base: the library's message, naming the option.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / "renamed.mmh"
    shutil.move(a1, moved)
    with pytest.raises(mmh.Error) as err:
        mmh.unfold(a2, tmp_path / "out2")
    assert "--base" in str(err.value)
    assert "m1.mmh" in str(err.value)
    assert not (tmp_path / "out2").exists()
    with pytest.raises(mmh.Error):
        mmh.verify(a2)
    with pytest.raises(mmh.Error):
        mmh.open(a2).read("model.safetensors")

    out3 = tmp_path / "out3"
    mmh.unfold(a2, out3, bases=[moved])
    assert out3.read_bytes() == v2.read_bytes()
    assert mmh.verify(a2, bases=[str(moved)]).content_bytes == v2.stat().st_size
    with mmh.open(a2, bases=[moved]) as archive:
        assert archive.read("model.safetensors") == v2.read_bytes()
        got = archive.tensor("model.safetensors", "layer3.weight")
        assert_tensor_equal(got, "BF16", changed, "layer3.weight")


def test_self_contained(tmp_path, versions):
    v1, v2, a1, changed = versions
    a2 = tmp_path / "m2.mmh"
    a3 = tmp_path / "m3.mmh"
    referenced = mmh.fold(v2, a2, base=a1)
    contained = mmh.fold(v2, a3, base=a1, self_contained=True)
    assert contained.archive_bytes > referenced.archive_bytes
    a1.unlink()
    out = tmp_path / "out"
    mmh.unfold(a3, out)
    assert out.read_bytes() == v2.read_bytes()
    assert mmh.verify(a3).content_bytes == v2.stat().st_size
    t = mmh.load_safetensors(a3, "model.safetensors")
    assert_tensor_equal(t["layer3.weight"], "BF16", changed, "layer3.weight")


def test_missing_base_to_fold(tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"x" * 1000)
    with pytest.raises(FileNotFoundError):
        mmh.fold(src, tmp_path / "f.mmh", base=tmp_path / "nope.mmh")
    assert not (tmp_path / "f.mmh").exists()


# ---------------------------------------------------------------------------------------
# verify and damaged archives
# ---------------------------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path):
    """A single-file archive of 2 MB of compressible data: (archive path, content)."""
    data = compressible_bytes(2_000_000, seed=7)
    src = tmp_path / "payload.bin"
    src.write_bytes(data)
    dst = tmp_path / "payload.mmh"
    mmh.fold(src, dst, codec="zstd")
    return dst, data


def test_verify_ok(tmp_path, archive, tree):
    path, data = archive
    report = mmh.verify(path)
    assert isinstance(report, mmh.Report)
    assert report.entries == 1
    assert report.content_bytes == len(data)
    assert report.chunks > 0
    assert "Report" in repr(report)

    root, _ = tree
    tree_archive = tmp_path / "tree.mmh"
    folded = mmh.fold(root, tree_archive)
    report = mmh.verify(tree_archive)
    assert report.entries == 10
    assert report.content_bytes == folded.input_bytes


def _damage(path: Path, how: str) -> Path:
    data = bytearray(path.read_bytes())
    bad = path.with_name(f"{how}.mmh")
    if how == "flipped":
        data[len(data) // 2] ^= 0x40
    elif how == "truncated":
        data = data[: len(data) // 2]
    bad.write_bytes(bytes(data))
    return bad


def test_verify_flipped_byte(tmp_path, archive):
    path, _ = archive
    bad = _damage(path, "flipped")
    with pytest.raises(mmh.IntegrityError) as err:
        mmh.verify(bad)
    message = str(err.value).lower()
    assert any(word in message for word in ("damaged", "mismatch", "checksum")), message
    # The same damage stops reads and unfolds, which leave no output.
    with pytest.raises(mmh.IntegrityError):
        with mmh.open(bad) as archive_:
            archive_.read("payload.bin")
    with pytest.raises(mmh.IntegrityError):
        mmh.unfold(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path, ["payload.bin", "payload.mmh", "flipped.mmh"]) == []


def test_verify_truncated(archive):
    path, _ = archive
    bad = _damage(path, "truncated")
    with pytest.raises((mmh.IntegrityError, mmh.FormatError)) as err:
        mmh.verify(bad)
    assert isinstance(err.value, mmh.Error)
    message = str(err.value).lower()
    assert any(word in message for word in ("trailer", "truncated")), message


@pytest.mark.parametrize(
    "content, words",
    [
        (b"hello world " * 100, ("magic", "header")),
        (b"abc", ("truncated", "header", "short")),
        (b"", ("truncated", "header", "short", "empty")),
    ],
)
def test_verify_not_an_archive(tmp_path, content, words):
    path = tmp_path / "junk.mmh"
    path.write_bytes(content)
    for call in (mmh.verify, mmh.open, mmh.fingerprint):
        with pytest.raises((mmh.IntegrityError, mmh.FormatError)) as err:
            call(path)
        assert isinstance(err.value, mmh.Error)
        message = str(err.value).lower()
        assert any(word in message for word in words), (call, message)


# ---------------------------------------------------------------------------------------
# fingerprint
# ---------------------------------------------------------------------------------------


def test_fingerprint(tmp_path, archive, tree):
    path, _ = archive
    fp = mmh.fingerprint(path)
    assert isinstance(fp, str) and len(fp) == 64
    int(fp, 16)
    assert fp == fp.lower()
    copy = tmp_path / "copy-with-another-name.mmh"
    shutil.copyfile(path, copy)
    assert mmh.fingerprint(copy) == fp
    other = tmp_path / "other.mmh"
    mmh.fold(tree[0], other)
    assert mmh.fingerprint(other) != fp
    # Only the index is read: damage in a frame does not change the fingerprint.
    assert mmh.fingerprint(_damage(path, "flipped")) == fp


# ---------------------------------------------------------------------------------------
# open: entries, read, read_range, EntryReader
# ---------------------------------------------------------------------------------------


def test_entries(tmp_path, tree):
    root, _ = tree
    dst = tmp_path / "tree.mmh"
    mmh.fold(root, dst)
    with mmh.open(dst) as archive:
        entries = archive.entries()
    assert all(isinstance(e, mmh.Entry) for e in entries)
    by_name = {e.name: e for e in entries}
    assert sorted(by_name) == sorted(
        [
            "a",
            "a/b",
            "a/b/deep",
            "a/b/deep/text.txt",
            "a/b/hi.txt",
            "a/b/y.bin",
            "a/x.bin",
            "empty",
            "hard",
            "link",
        ]
    )
    for name, entry in by_name.items():
        st = (root / name).lstat()
        assert entry.mtime == pytest.approx(st.st_mtime, abs=1e-3), name
        if entry.kind != "symlink":
            assert entry.mode & 0o777 == st.st_mode & 0o777, name
        assert name in repr(entry)
    for name in ("a", "a/b", "a/b/deep"):
        assert by_name[name].kind == "directory"
        assert by_name[name].digest is None and by_name[name].target is None
    for name in ("a/b/deep/text.txt", "a/b/hi.txt", "a/b/y.bin", "a/x.bin", "empty"):
        entry = by_name[name]
        content = (root / name).read_bytes()
        assert entry.kind == "file"
        assert entry.size == len(content)
        assert entry.digest == sha256(content)
        assert entry.target is None
    assert by_name["a/b/hi.txt"].mode & 0o777 == 0o640
    assert by_name["empty"].digest == sha256(b"")
    assert by_name["link"].kind == "symlink" and by_name["link"].target == "a/x.bin"
    assert by_name["hard"].kind == "hardlink" and by_name["hard"].target == "a/b/hi.txt"
    assert by_name["link"].digest is None
    for name in ("a", "link", "hard"):
        assert by_name[name].size == 0, name


def test_read_and_read_range(tmp_path, tree):
    root, _ = tree
    dst = tmp_path / "tree.mmh"
    mmh.fold(root, dst)
    x = (root / "a/x.bin").read_bytes()
    with mmh.open(dst) as archive:
        assert archive.read("a/x.bin") == x
        assert archive.read("empty") == b""
        assert archive.read("a/b/hi.txt") == b"hello\n"
        assert archive.read_range("a/x.bin", 10, 100) == x[10:100]
        assert archive.read_range("a/x.bin", 65_000, 200_000) == x[65_000:200_000]
        assert archive.read_range("a/x.bin", len(x) - 10, len(x) + 1000) == x[-10:]  # clamped
        assert archive.read_range("a/x.bin", 5, 5) == b""
        with pytest.raises((mmh.Error, ValueError)) as err:
            archive.read_range("a/x.bin", len(x) + 1, len(x) + 2)
        assert "a/x.bin" in str(err.value)
        with pytest.raises((KeyError, FileNotFoundError, mmh.Error)) as err:
            archive.read("no/such/file")
        assert "no/such/file" in str(err.value)
        with pytest.raises((mmh.Error, IsADirectoryError, ValueError)) as err:
            archive.read("a/b")
        assert "a/b" in str(err.value)


def test_archive_close(tmp_path, archive):
    path, data = archive
    a = mmh.open(path)
    assert a.read("payload.bin") == data
    a.close()
    with pytest.raises((ValueError, mmh.Error)):
        a.read("payload.bin")
    with mmh.open(path) as a2:
        pass
    with pytest.raises((ValueError, mmh.Error)):
        a2.entries()


def test_entry_reader(tmp_path, rng):
    data = random_bytes(1_200_000, seed=8)  # many chunks
    src = tmp_path / "r.bin"
    src.write_bytes(data)
    dst = tmp_path / "r.mmh"
    mmh.fold(src, dst)
    size = len(data)
    with mmh.open(dst) as archive:
        with archive.open("r.bin") as r:
            assert r.name == "r.bin" and r.size == size
            assert r.readable() and r.seekable() and not r.writable()
            assert not r.closed
            assert r.tell() == 0
            assert r.read(10) == data[:10]
            assert r.tell() == 10
            assert r.seek(100) == 100
            assert r.read(50) == data[100:150]
            assert r.seek(5, 1) == 155
            assert r.tell() == 155
            assert r.read(1) == data[155:156]
            assert r.seek(-10, 2) == size - 10
            assert r.read() == data[-10:]
            assert r.read() == b""
            assert r.read(100) == b""
            assert r.seek(0, io.SEEK_END) == size
            assert r.seek(size + 50) == size + 50  # past the end, as files allow
            assert r.read(10) == b""

            # readinto a bytearray and into memoryview slices
            r.seek(1000)
            buf = bytearray(100)
            assert r.readinto(buf) == 100
            assert bytes(buf) == data[1000:1100]
            big = bytearray(200)
            n = r.readinto(memoryview(big)[10:50])
            assert n == 40
            assert bytes(big[10:50]) == data[1100:1140]
            assert big[:10] == bytearray(10) and big[50:] == bytearray(150)
            r.seek(size - 3)
            tail = bytearray(10)
            assert r.readinto(tail) == 3
            assert bytes(tail[:3]) == data[-3:]
            assert r.readinto(tail) == 0

            # read(-1) from the middle, and sequential chunked reads
            r.seek(size // 2)
            assert r.read(-1) == data[size // 2 :]
            r.seek(0)
            parts = []
            while True:
                part = r.read(65_537)
                if not part:
                    break
                parts.append(part)
            assert b"".join(parts) == data

            # random reads across chunk boundaries
            for _ in range(200):
                start = int(rng.integers(0, size))
                n = int(rng.integers(0, 300_000))
                r.seek(start)
                assert r.read(n) == data[start : start + n]
        assert r.closed
        with pytest.raises((ValueError, mmh.Error)):
            r.read(1)

        r2 = archive.open("r.bin")
        r2.close()
        assert r2.closed
        r2.close()  # closing twice is harmless, as for files
        with pytest.raises((ValueError, mmh.Error)):
            r2.seek(0)


def test_entry_reader_negative_seek(tmp_path):
    src = tmp_path / "s.bin"
    src.write_bytes(b"0123456789")
    dst = tmp_path / "s.mmh"
    mmh.fold(src, dst)
    with mmh.open(dst) as archive, archive.open("s.bin") as r:
        with pytest.raises((ValueError, OSError)):
            r.seek(-1)
        with pytest.raises((ValueError, OSError)):
            r.seek(0, 3)
        assert r.tell() == 0
        assert r.read() == b"0123456789"


def test_entry_reader_under_buffered_reader(tmp_path):
    data = random_bytes(300_000, seed=9)
    src = tmp_path / "b.bin"
    src.write_bytes(data)
    dst = tmp_path / "b.mmh"
    mmh.fold(src, dst)
    with mmh.open(dst) as archive:
        raw = archive.open("b.bin")
        # What io.BufferedReader calls on its raw stream (close() flushes first).
        needed = ("readinto", "readable", "seekable", "seek", "tell", "close", "flush")
        missing = [m for m in needed if not hasattr(raw, m)]
        if missing:
            pytest.skip(f"EntryReader is not RawIOBase-compatible: no {', '.join(missing)}")
        buffered = io.BufferedReader(raw, buffer_size=8192)
        assert buffered.read(10) == data[:10]
        assert buffered.readline() == data[10 : data.index(b"\n", 10) + 1]
        buffered.seek(1000)
        assert buffered.read(5000) == data[1000:6000]
        buffered.seek(-100, io.SEEK_END)
        assert buffered.read() == data[-100:]
        buffered.close()
        assert raw.closed


def test_entry_reader_of_directory_or_missing(tmp_path, tree):
    root, _ = tree
    dst = tmp_path / "tree.mmh"
    mmh.fold(root, dst)
    with mmh.open(dst) as archive:
        with pytest.raises((KeyError, FileNotFoundError, mmh.Error)) as err:
            archive.open("missing.bin")
        assert "missing.bin" in str(err.value)
        with pytest.raises((mmh.Error, IsADirectoryError, ValueError)):
            archive.open("a/b")


# ---------------------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------------------


@pytest.fixture
def model(tmp_path, rng):
    tensors = sample_tensors(rng)
    src = tmp_path / "model.safetensors"
    ranges = write_safetensors(src, tensors, metadata={"format": "pt"})
    dst = tmp_path / "model.mmh"
    mmh.fold(src, dst)
    return src, dst, tensors, ranges


def test_tensors_list(model):
    src, dst, tensors, ranges = model
    with mmh.open(dst) as archive:
        infos = archive.tensors("model.safetensors")
    assert all(isinstance(t, mmh.TensorInfo) for t in infos)
    by_name = {t.name: t for t in infos}
    assert sorted(by_name) == sorted(tensors)
    for name, (dtype, array) in tensors.items():
        info = by_name[name]
        assert info.dtype == dtype, name
        assert info.shape == tuple(array.shape), name
        assert isinstance(info.shape, tuple)
        begin, end = ranges[name]
        assert info.nbytes == array.nbytes == end - begin, name
        if info.nbytes:  # an empty tensor's offset is not pinned down
            assert info.offset == begin, name
    assert by_name["scalar"].shape == ()
    assert by_name["empty"].shape == (0, 3) and by_name["empty"].nbytes == 0


def test_tensor_values(model):
    src, dst, tensors, _ = model
    with mmh.open(dst) as archive:
        for name, (dtype, array) in tensors.items():
            got = archive.tensor("model.safetensors", name)
            assert_tensor_equal(got, dtype, array, name)
        scalar = archive.tensor("model.safetensors", "scalar")
        assert scalar.shape == () and float(scalar) == 3.25
        if ml_dtypes is not None:
            bf16 = archive.tensor("model.safetensors", "bf16")
            expected = (tensors["bf16"][1].astype(np.uint32) << 16).view(np.float32)
            np.testing.assert_array_equal(bf16.astype(np.float32), expected)


def test_load_safetensors(model):
    src, dst, tensors, _ = model
    loaded = mmh.load_safetensors(dst, "model.safetensors")
    assert isinstance(loaded, dict)
    assert sorted(loaded) == sorted(tensors)
    for name, (dtype, array) in tensors.items():
        assert_tensor_equal(loaded[name], dtype, array, name)


def test_tensor_unknown_name(model):
    _, dst, _, _ = model
    with mmh.open(dst) as archive:
        with pytest.raises((KeyError, mmh.Error)) as err:
            archive.tensor("model.safetensors", "no.such.tensor")
        assert "no.such.tensor" in str(err.value)


def reference_model_hash(tensors: dict) -> str:
    """The model fingerprint computed from the steps of docs/FINGERPRINT.md alone."""

    def u64(n: int) -> bytes:
        return struct.pack("<Q", n)

    h = hashlib.sha256(b"mmh-model-fingerprint-v1\0" + u64(len(tensors)))
    for name in sorted(tensors, key=str.encode):
        dtype, array = tensors[name]
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        for field in (name.encode(), dtype.encode()):
            h.update(u64(len(field)) + field)
        h.update(u64(array.ndim) + b"".join(u64(d) for d in array.shape))
        h.update(u64(len(data)) + hashlib.sha256(data).digest())
    return h.hexdigest()


def test_model_hash_of_a_file_its_shards_and_their_archives(tmp_path, model):
    src, dst, tensors, _ = model
    expected = reference_model_hash(tensors)
    assert mmh.model_hash(src) == expected
    assert mmh.model_hash(dst) == expected
    shards = tmp_path / "shards"
    shards.mkdir()
    names = sorted(tensors)
    write_safetensors(shards / "a.safetensors", {n: tensors[n] for n in names[::2]})
    write_safetensors(shards / "b.safetensors", {n: tensors[n] for n in names[1::2]})
    (shards / "config.json").write_text("{}")
    assert mmh.model_hash(shards) == expected
    mmh.fold(shards, tmp_path / "shards.mmh")
    assert mmh.model_hash(tmp_path / "shards.mmh") == expected
    assert mmh.model_hash(src) != mmh.fingerprint(dst)


def test_model_hash_errors(tmp_path, model):
    src, _, tensors, _ = model
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="holds no tensors"):
        mmh.model_hash(text)
    shutil.copy(src, tmp_path / "copy.safetensors")
    with pytest.raises(ValueError, match="is in both"):
        mmh.model_hash(tmp_path)
    with pytest.raises(FileNotFoundError):
        mmh.model_hash(tmp_path / "missing")


def test_tensors_of_non_model(tmp_path, tree):
    root, _ = tree
    dst = tmp_path / "tree.mmh"
    mmh.fold(root, dst)
    with mmh.open(dst) as archive:
        assert archive.tensors("a/x.bin") == []
        assert archive.tensors("a/b/hi.txt") == []
        assert archive.tensors("empty") == []
        with pytest.raises(ValueError) as err:
            archive.tensor("a/x.bin", "w")
        assert "a/x.bin" in str(err.value)
    with pytest.raises(ValueError):
        mmh.load_safetensors(dst, "a/b/hi.txt")


def test_tensors_in_a_tree(tmp_path, rng):
    root = tmp_path / "models"
    (root / "sub").mkdir(parents=True)
    tensors = {
        "w": ("F32", rng.standard_normal((16, 16)).astype(np.float32)),
        "b": ("F16", rng.standard_normal(16).astype(np.float16)),
    }
    write_safetensors(root / "sub" / "m.safetensors", tensors)
    (root / "README").write_text("not a model")
    dst = tmp_path / "models.mmh"
    mmh.fold(root, dst)
    with mmh.open(dst) as archive:
        assert {t.name for t in archive.tensors("sub/m.safetensors")} == {"w", "b"}
        # Without a path: every model file's tensors, each naming its file.
        assert {(t.path, t.name) for t in archive.tensors()} == {
            ("sub/m.safetensors", "w"),
            ("sub/m.safetensors", "b"),
        }
        assert_tensor_equal(archive.tensor("sub/m.safetensors", "w"), "F32", tensors["w"][1], "w")
    loaded = mmh.load_safetensors(dst, "sub/m.safetensors")
    assert_tensor_equal(loaded["b"], "F16", tensors["b"][1], "b")


# ---------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------


def test_writer_buffers_and_sizes(tmp_path):
    dst = tmp_path / "w.mmh"
    expected = bytearray()
    small = compressible_bytes(1024, seed=10)
    large = compressible_bytes(16 << 20, seed=11)
    source = bytearray(random_bytes(5000, seed=12))
    w = mmh.Writer(dst, name="stream.bin")
    assert w.write(b"bytes object") == 12
    expected += b"bytes object"
    assert w.write(bytearray(b"a bytearray")) == 11
    expected += b"a bytearray"
    view = memoryview(source)
    assert w.write(view[100:1100]) == 1000
    expected += source[100:1100]
    assert w.write(view[4000:]) == 1000
    expected += source[4000:]
    assert w.write(b"") == 0
    for _ in range(10_000):
        w.write(small)
    expected += small * 10_000
    for _ in range(2):
        assert w.write(large) == len(large)
        expected += large
    report = w.close()
    assert isinstance(report, mmh.FoldReport)
    assert report.input_bytes == len(expected)
    assert report.archive_bytes == dst.stat().st_size
    assert report.archive_bytes < len(expected) // 2
    with mmh.open(dst) as archive:
        entries = archive.entries()
        assert [e.name for e in entries] == ["stream.bin"]
        assert entries[0].size == len(expected)
        assert entries[0].digest == sha256(bytes(expected))
    out = tmp_path / "out.bin"
    assert mmh.unfold(dst, out) == len(expected)
    assert out.read_bytes() == expected
    assert leftovers(tmp_path, ["w.mmh", "out.bin"]) == []


def test_writer_context_manager(tmp_path):
    dst = tmp_path / "ctx.mmh"
    with mmh.Writer(dst) as w:
        for i in range(100):
            w.write(f"line {i}\n".encode())
    expected = b"".join(f"line {i}\n".encode() for i in range(100))
    with mmh.open(dst) as archive:
        assert [e.name for e in archive.entries()] == ["-"]
        assert archive.read("-") == expected
    # close() inside the block gives the report; leaving the block is then harmless.
    dst2 = tmp_path / "ctx2.mmh"
    with mmh.Writer(dst2, name="x", codec="store", threads=1) as w:
        w.write(expected)
        report = w.close()
    assert report.input_bytes == len(expected)
    assert report.archive_bytes >= len(expected)  # stored
    assert mmh.open(dst2).read("x") == expected


def test_writer_level(tmp_path):
    data = compressible_bytes(1_000_000, seed=13)
    reports = []
    for level in (1, 19):
        with mmh.Writer(tmp_path / f"l{level}.mmh", codec="zstd", level=level) as w:
            w.write(data)
            reports.append(w.close())
    assert reports[1].archive_bytes < reports[0].archive_bytes
    with pytest.raises(ValueError):
        mmh.Writer(tmp_path / "bad.mmh", level=99).close()
    with pytest.raises(ValueError):
        mmh.Writer(tmp_path / "bad.mmh", codec="nope").close()
    assert not (tmp_path / "bad.mmh").exists()


def test_writer_exception_leaves_nothing(tmp_path):
    directory = tmp_path / "out"
    directory.mkdir()
    dst = directory / "partial.mmh"
    with pytest.raises(RuntimeError, match="boom"):
        with mmh.Writer(dst) as w:
            w.write(compressible_bytes(3_000_000, seed=14))
            raise RuntimeError("boom")
    assert not dst.exists()
    assert leftovers(directory) == []


def test_writer_refuses_existing(tmp_path):
    dst = tmp_path / "exists.mmh"
    dst.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        with mmh.Writer(dst) as w:
            w.write(b"data")
    assert dst.read_bytes() == b"precious"
    with mmh.Writer(dst, force=True) as w:
        w.write(b"data")
    assert mmh.open(dst).read("-") == b"data"


def test_writer_other_buffers(tmp_path):
    """Any buffer of bytes: numpy uint8 arrays, non-contiguous views."""
    data = np.arange(3 * (4 << 20), dtype=np.uint64).astype(np.uint8)  # > one 4 MiB piece
    source = bytes(range(256)) * 64
    dst = tmp_path / "o.mmh"
    with mmh.Writer(dst, name="o") as w:
        assert w.write(data) == data.size
        assert w.write(data[::3]) == data[::3].size
        assert w.write(memoryview(source)[::2]) == len(source) // 2
        assert w.write(np.frombuffer(source, dtype=np.uint8)) == len(source)
        with pytest.raises(TypeError):
            w.write("text is not bytes")
    expected = data.tobytes() + data[::3].tobytes() + source[::2] + source
    assert mmh.open(dst).read("o") == expected


def test_writer_close_twice_and_write_after_close(tmp_path):
    w = mmh.Writer(tmp_path / "c.mmh")
    w.write(b"abc")
    first = w.close()
    assert w.closed
    assert w.close().input_bytes == first.input_bytes == 3
    with pytest.raises(ValueError):
        w.write(b"more")
    assert mmh.open(tmp_path / "c.mmh").read("-") == b"abc"


def test_writer_abort_and_drop(tmp_path):
    directory = tmp_path / "out"
    directory.mkdir()
    w = mmh.Writer(directory / "aborted.mmh")
    w.write(b"x" * 100_000)
    w.abort()
    assert w.closed
    with pytest.raises(ValueError):
        w.close()
    # A writer dropped without close() is aborted too.
    w = mmh.Writer(directory / "dropped.mmh")
    w.write(b"y" * 100_000)
    del w
    gc.collect()
    assert leftovers(directory) == []


# ---------------------------------------------------------------------------------------
# Progress and cancellation
# ---------------------------------------------------------------------------------------


@pytest.fixture
def big_input(tmp_path):
    data = compressible_bytes(8 << 20, seed=15)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    return src, len(data)


def _check_totals(calls, total):
    assert calls, "progress was never called"
    assert all(isinstance(c, int) for c in calls)
    assert all(b >= a for a, b in zip(calls, calls[1:], strict=False)), calls
    assert calls[-1] == total, (calls, total)


def test_progress(tmp_path, big_input):
    src, size = big_input
    dst = tmp_path / "big.mmh"
    calls = []
    mmh.fold(src, dst, progress=calls.append)
    _check_totals(calls, size)
    calls = []
    mmh.unfold(dst, tmp_path / "out.bin", progress=calls.append)
    _check_totals(calls, size)
    calls = []
    mmh.verify(dst, progress=calls.append)
    _check_totals(calls, size)


def test_progress_tree(tmp_path, tree):
    root, _ = tree
    dst = tmp_path / "t.mmh"
    calls = []
    report = mmh.fold(root, dst, progress=calls.append)
    _check_totals(calls, report.input_bytes)
    calls = []
    mmh.unfold(dst, tmp_path / "out", progress=calls.append)
    _check_totals(calls, report.input_bytes)


class Stop(RuntimeError):
    pass


def _raise(_done):
    raise Stop("stop here")


def test_progress_cancels_fold(tmp_path, big_input):
    src, _ = big_input
    out = tmp_path / "o"
    out.mkdir()
    with pytest.raises(Stop, match="stop here"):
        mmh.fold(src, out / "big.mmh", progress=_raise)
    assert leftovers(out) == []


def test_progress_cancels_unfold_and_verify(tmp_path, big_input):
    src, _ = big_input
    dst = tmp_path / "big.mmh"
    mmh.fold(src, dst)
    out = tmp_path / "o"
    out.mkdir()
    with pytest.raises(Stop):
        mmh.unfold(dst, out / "big.bin", progress=_raise)
    assert leftovers(out) == []
    with pytest.raises(Stop):
        mmh.verify(dst, progress=_raise)


def _raise_after_start(done):
    if done > 0:
        raise Stop("late stop")


def test_progress_late_exception_propagates_and_leaves_nothing_partial(tmp_path, big_input):
    """A callback that raises only when called with the final total: the exception
    propagates. A fold commits its archive after that call, so none is left; an unfold
    has already renamed its verified output into place by then (the work is done), so
    what is left is complete, never partial."""
    src, _ = big_input
    dst = tmp_path / "big.mmh"
    mmh.fold(src, dst)
    out = tmp_path / "o"
    out.mkdir()
    with pytest.raises(Stop, match="late stop"):
        mmh.fold(src, out / "late.mmh", progress=_raise_after_start)
    assert leftovers(out) == []
    with pytest.raises(Stop, match="late stop"):
        mmh.unfold(dst, out / "late.bin", progress=_raise_after_start)
    assert [p.name for p in out.iterdir()] in ([], ["late.bin"])
    if (out / "late.bin").exists():
        assert (out / "late.bin").read_bytes() == Path(src).read_bytes()


def test_fold_releases_the_gil(tmp_path):
    """While a fold runs in another thread, this one keeps running."""
    data = compressible_bytes(6 << 20, seed=16)
    src = tmp_path / "g.bin"
    src.write_bytes(data)
    done = threading.Event()

    def work():
        try:
            mmh.fold(src, tmp_path / "g.mmh", codec="zstd", level=12, threads=1)
        finally:
            done.set()

    thread = threading.Thread(target=work)
    started = time.perf_counter()
    thread.start()
    last = time.perf_counter()
    gap = 0.0
    while not done.is_set():
        now = time.perf_counter()
        gap = max(gap, now - last)
        last = now
    thread.join()
    elapsed = time.perf_counter() - started
    if elapsed < 0.1:
        pytest.skip(f"fold too fast to judge ({elapsed:.3f} s)")
    assert gap < elapsed / 2, (gap, elapsed)


# ---------------------------------------------------------------------------------------
# Real models from the development corpus
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["piper-bf16.safetensors", "khmer-fp32.safetensors"])
def test_corpus_model(tmp_path, name):
    src = CORPUS / name
    if not src.is_file():
        pytest.skip(f"{src} not present (development corpus)")
    dst = tmp_path / (name + ".mmh")
    report = mmh.fold(src, dst)
    size = src.stat().st_size
    assert report.input_bytes == size
    assert report.archive_bytes < size
    assert mmh.verify(dst).content_bytes == size
    out = tmp_path / name
    assert mmh.unfold(dst, out) == size
    original = src.read_bytes()
    assert out.read_bytes() == original
    loaded = mmh.load_safetensors(dst, name)
    assert len(loaded) == header_tensor_count(src)
    with mmh.open(dst) as archive:
        infos = {t.name: t for t in archive.tensors(name)}
    assert sorted(infos) == sorted(loaded)
    for tname, array in loaded.items():
        info = infos[tname]
        assert array.shape == info.shape, tname
        assert array.nbytes == info.nbytes, tname
        raw = original[info.offset : info.offset + info.nbytes]
        assert array.tobytes() == raw, tname
