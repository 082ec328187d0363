"""Fold files, directories and AI models into verifiable, seekable MMH-RS archives.

Every function releases the GIL while the library works. The long ones (``fold``,
``unfold``, ``verify``) take ``progress``: a callable that receives the total bytes
processed so far, called from the calling thread at most about 10 times a second (once
at the start, once more at the end). If it raises, the operation is cancelled, nothing
is left under the output's name, and its exception propagates. Ctrl-C
(``KeyboardInterrupt``) cancels the same way. (``verify`` cannot stop early: it runs to
the end before the exception propagates.)

Errors: ``mmh.Error`` and its subclasses ``IntegrityError`` (damaged or hostile archive)
and ``FormatError`` (not an archive, or an unsupported version); ``FileNotFoundError``
and other ``OSError`` subclasses for files; ``FileExistsError`` for an existing output
without ``force=True``; ``ValueError`` for bad options and ranges. Messages are the
library's, as the ``mmh`` CLI prints them.
"""

import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias, final

from numpy.typing import NDArray

__all__ = [
    "Archive",
    "Entry",
    "EntryReader",
    "Error",
    "FoldReport",
    "FormatError",
    "IntegrityError",
    "Report",
    "TensorInfo",
    "Writer",
    "__version__",
    "fingerprint",
    "fold",
    "load_safetensors",
    "model_hash",
    "open",
    "unfold",
    "verify",
]

__version__: Final[str]

_StrPath: TypeAlias = str | os.PathLike[str]
_Codec: TypeAlias = Literal["auto", "zstd", "lz4", "store", "pattern"]
_Progress: TypeAlias = Callable[[int], object]

class Error(Exception):
    """Base class of the module's errors; raised as is for errors of no narrower class
    (no such entry, an entry that is not a file, a base archive that cannot be found)."""

class IntegrityError(Error):
    """The archive's bytes are damaged or hostile: a checksum or SHA-256 mismatch, a
    truncated or malformed archive, an entry name that would escape the target (what the
    ``mmh`` CLI exits with code 3 for)."""

class FormatError(Error):
    """The file is not an MMH archive, or one of a format version this build cannot read."""

@final
class FoldReport:
    """What a fold did."""

    @property
    def input_bytes(self) -> int:
        """Bytes of content folded."""
    @property
    def archive_bytes(self) -> int:
        """Bytes of the archive written."""
    @property
    def chunks(self) -> int:
        """Chunks in the archive's index."""
    @property
    def deduplicated_bytes(self) -> int:
        """Content bytes stored once for several places (repeats within the input)."""
    @property
    def base_bytes(self) -> int:
        """Content bytes referenced in (or copied from) the base archive."""
    @property
    def delta_bytes(self) -> int:
        """Content bytes coded as deltas against the base archive."""
    @property
    def warnings(self) -> list[str]:
        """What was skipped or could not be kept (unreadable files, special files, ...)."""
    @property
    def ratio(self) -> float:
        """``archive_bytes / input_bytes`` (as if the input were 1 byte when empty)."""

@final
class Report:
    """What a verification checked."""

    @property
    def entries(self) -> int:
        """Entries in the archive."""
    @property
    def chunks(self) -> int:
        """Chunks in its index (including those held by base archives)."""
    @property
    def content_bytes(self) -> int:
        """Bytes of file content checked (shared chunks count once per entry)."""

@final
class Entry:
    """One entry of an archive."""

    @property
    def name(self) -> str:
        """Path in the archive, ``/``-separated."""
    @property
    def kind(self) -> Literal["file", "directory", "symlink", "hardlink"]:
        """What the entry is."""
    @property
    def size(self) -> int:
        """Content size in bytes (0 for anything but a file)."""
    @property
    def mode(self) -> int:
        """Unix permission bits."""
    @property
    def mtime(self) -> float:
        """Modification time, in seconds since the Unix epoch."""
    @property
    def target(self) -> str | None:
        """What a symbolic or hard link points to; None for files and directories."""
    @property
    def digest(self) -> str | None:
        """Hex SHA-256 of a file's content; None for anything but a file."""

@final
class TensorInfo:
    """Where one tensor of a model file lies and what it holds."""

    @property
    def path(self) -> str:
        """The model file (entry name) holding the tensor."""
    @property
    def name(self) -> str:
        """The tensor's name."""
    @property
    def dtype(self) -> str:
        """Its element type as safetensors names it: "BF16", "F32", "F8_E4M3", ..."""
    @property
    def shape(self) -> tuple[int, ...]:
        """Its dimensions, outermost first; () for a scalar."""
    @property
    def offset(self) -> int:
        """Byte offset of its data in the file."""
    @property
    def nbytes(self) -> int:
        """Bytes of data."""

@final
class EntryReader:
    """A read-only, seekable binary file over one file entry of an archive.

    Each read decodes only the chunks it overlaps, each checked against its SHA-256.
    Closing the archive it came from does not close it.
    """

    @property
    def name(self) -> str:
        """The entry's name in the archive."""
    @property
    def size(self) -> int:
        """The entry's size in bytes."""
    @property
    def closed(self) -> bool:
        """Whether the reader is closed."""
    def read(self, n: int | None = -1) -> bytes:
        """Reads up to ``n`` bytes (all that remain when ``n`` is negative or None);
        ``b""`` at the end."""
    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Reads into a writable byte buffer; returns the number of bytes read, 0 at the end."""
    def seek(self, offset: int, whence: int = 0) -> int:
        """Moves to ``offset`` from the start (``whence`` 0, ``os.SEEK_SET``), the current
        position (1) or the end (2); returns the new position. Past the end is allowed;
        a negative position raises ValueError."""
    def tell(self) -> int:
        """The current position."""
    def seekable(self) -> bool:
        """True."""
    def readable(self) -> bool:
        """True."""
    def writable(self) -> bool:
        """False."""
    def flush(self) -> None:
        """Does nothing (there for ``io.BufferedReader``, which can wrap a reader)."""
    def close(self) -> None:
        """Closes the reader; further reads raise ValueError."""
    def __enter__(self) -> EntryReader: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> bool: ...

@final
class Archive:
    """An archive opened for reading (see ``mmh.open``), with the base archives it
    references. A context manager; readers opened from it stay usable after it closes.
    Every method raises ValueError once it is closed."""

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def entries(self) -> list[Entry]:
        """Every entry, in archive order."""
    def read(self, path: str) -> bytes:
        """The whole content of file entry ``path``, every chunk and the whole file checked
        against their SHA-256."""
    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``start:end`` of file entry ``path`` (``end`` is clamped to its size),
        decoding only the chunks that overlap them. A start past the end or a reversed
        range raises ValueError."""
    def open(self, path: str) -> EntryReader:
        """A read-only, seekable binary file object over file entry ``path``."""
    def tensors(self, path: str | None = None) -> list[TensorInfo]:
        """The tensors of model file ``path`` (safetensors), in file order; an empty list
        for a file that is not a model. Without ``path``, those of every model file in the
        archive, in archive order (this reads the first bytes of every file)."""
    def tensor(self, path: str, name: str) -> NDArray[Any]:
        """Tensor ``name`` of model file ``path`` as a numpy array of its dtype and shape,
        decoding only the chunks that hold it; the array owns the decoded bytes (no copy).

        dtypes: F16/F32/F64 → float16/32/64; I8..I64, U8..U64 → the integer types; BOOL →
        bool; BF16 → ``ml_dtypes.bfloat16`` when ``ml_dtypes`` imports, else uint16 (the
        raw bits); F8_E4M3/F8_E5M2 → ``ml_dtypes.float8_e4m3fn``/``float8_e5m2``, else
        uint8. Raises KeyError for an unknown tensor name, ValueError for a file that is
        not a safetensors file or a dtype numpy cannot hold."""
    def close(self) -> None:
        """Closes the archive."""
    def __enter__(self) -> Archive: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> bool: ...

@final
class Writer:
    """Folds a stream written from Python into an archive holding one file entry.

    Folding runs on a background thread while Python writes; ``write()`` waits (GIL
    released) when the fold is four buffers behind, so memory stays flat. The archive
    appears at ``dst`` only on ``close()`` (also called when a ``with`` block ends
    normally); a block that ends with an exception, or ``abort()``, removes it.

    ``codec``, ``level``, ``threads`` and ``force`` are those of ``mmh.fold``.
    """

    def __new__(
        cls,
        dst: _StrPath,
        name: str = "-",
        codec: _Codec = "auto",
        level: int | None = None,
        threads: int | None = None,
        force: bool = False,
    ) -> Writer: ...
    @property
    def closed(self) -> bool:
        """Whether the writer is closed or aborted."""
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Appends ``data`` (any buffer of bytes, copied once) to the stream; returns its
        length. Raises the fold's error if the fold has failed."""
    def close(self) -> FoldReport:
        """Ends the stream, waits for the fold to finish and moves the archive to ``dst``;
        returns what the fold did. Calling it again returns the same report."""
    def abort(self) -> None:
        """Stops the fold and removes the partial archive: nothing is left at ``dst``."""
    def writable(self) -> bool:
        """True."""
    def flush(self) -> None:
        """Does nothing: buffers reach the fold as they are written."""
    def __enter__(self) -> Writer: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
        /,
    ) -> bool: ...

def fold(
    src: _StrPath,
    dst: _StrPath,
    codec: _Codec = "auto",
    level: int | None = None,
    threads: int | None = None,
    base: _StrPath | None = None,
    self_contained: bool = False,
    force: bool = False,
    progress: _Progress | None = None,
) -> FoldReport:
    """Folds the file or directory ``src`` into the archive ``dst``, as ``mmh fold`` does.

    codec: "auto" picks per chunk among pattern, zstd, lz4 and store; the others force
        one codec (falling back to store where it would not shrink a chunk).
    level: zstd level, 1 to 22 (default 3).
    threads: worker threads (default: all cores).
    base: an earlier archive; only what it lacks is stored, the rest referenced (changed
        tensors as deltas), so unfolding needs it (next to ``dst`` or passed as ``bases``).
    self_contained: with ``base``, copy its chunks instead of referencing them, so the
        archive stands alone.
    force: replace an existing ``dst`` (else FileExistsError).
    progress: see the module's documentation; receives input bytes folded.
    """

def unfold(
    archive: _StrPath,
    dst: _StrPath,
    paths: Sequence[str] | None = None,
    bases: Sequence[_StrPath] = (),
    force: bool = False,
    progress: _Progress | None = None,
) -> int:
    """Unfolds ``archive`` into ``dst``, as ``mmh unfold`` does; returns the bytes written.

    An archive of one file (and no ``paths``, or only that file's name) becomes the file
    ``dst``; any other becomes the directory ``dst`` with all entries, or those under
    ``paths``. Every byte is checked before it is written, and nothing is written outside
    ``dst``. ``bases``: base archives the archive references, when they are not next to
    it under the names they had. ``force``: replace existing files (else FileExistsError).
    """

def verify(
    archive: _StrPath,
    bases: Sequence[_StrPath] = (),
    progress: _Progress | None = None,
) -> Report:
    """Decodes and checks everything in ``archive`` (frames, chunk and file SHA-256, the
    Merkle root), as ``mmh verify`` does; raises IntegrityError on damage."""

def fingerprint(archive: _StrPath) -> str:
    """Hex SHA-256 of the archive's index, as recorded in its trailer: the identity that
    ``base=`` matches. Cheap: reads the trailer and the index only."""

def model_hash(
    path: _StrPath,
    bases: Sequence[_StrPath] = (),
    progress: _Progress | None = None,
) -> str:
    """Hex model fingerprint of ``path`` (docs/FINGERPRINT.md), as ``mmh hash`` prints it:
    SHA-256 over the name, dtype, shape and data of every tensor, sorted by name.

    ``path`` is a model file, a directory (the union of the tensors of its model files;
    names starting with ``.`` left out) or an archive of either (its bases among
    ``bases`` or next to it); the same weights give the same value in each. Unlike
    ``fingerprint``, which identifies an archive's bytes, this identifies the weights.
    Raises ``ValueError`` when ``path`` holds no tensors or two tensors share a name.
    ``progress`` receives the tensor bytes read so far."""

def open(archive: _StrPath, bases: Sequence[_StrPath] = ()) -> Archive:
    """Opens ``archive`` for reading, with the base archives it references (found among
    ``bases``, else next to it under their recorded names)."""

def load_safetensors(archive: _StrPath, path: str) -> dict[str, NDArray[Any]]:
    """Every tensor of the safetensors file ``path`` in ``archive``, by name, as numpy
    arrays (dtypes as for ``Archive.tensor``).

    The file is decoded once and checked against its SHA-256; the arrays are views of
    that one buffer, which stays in memory while any of them is alive. Raises ValueError
    if the file is not a safetensors file."""
