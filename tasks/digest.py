"""The one file-digest helper: sha256 of a file's bytes, streamed by `hashlib.file_digest`.

`file_sha256` remembers digests by (path, size, mtime) for the life of the process, so the GloVe file,
weight files and videos that several steps identify are read once per change, not once per caller.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path


class _Stoppable:
    """A binary file whose reads end (as at end of file) once `stop` is set, so a hash can be abandoned."""

    def __init__(self, file, stop: threading.Event) -> None:
        self._file, self._stop = file, stop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return 0 if self._stop.is_set() else self._file.readinto(buffer)


def sha256_uncached(path: Path, stop: threading.Event | None = None) -> str:
    """Hex sha256 of the file as it is now; "" when `stop` was set before the end."""
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file if stop is None else _Stoppable(file, stop), "sha256")
    return "" if stop is not None and stop.is_set() else digest.hexdigest()


@functools.lru_cache(maxsize=16384)
def _sha256_at(path: str, size: int, mtime_ns: int) -> str:
    return sha256_uncached(Path(path))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file; a file whose size and mtime are unchanged is not read again in this process."""
    info = Path(path).stat()
    return _sha256_at(str(Path(path).resolve()), info.st_size, info.st_mtime_ns)
