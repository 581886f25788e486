"""The one file-digest helper: exact sha256, read again only when the file changes, abandonable."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from tasks import digest
from tasks.digest import file_sha256, sha256_uncached


def test_digest_is_sha256_of_the_bytes_across_read_buffers(tmp_path: Path) -> None:
    data = os.urandom((1 << 18) * 3 + 17)  # spans several of file_digest's reads
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_uncached(path) == expected
    assert file_sha256(path) == expected


def test_cached_until_size_or_mtime_change(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(b"first version")
    reads: list[Path] = []
    real = digest.sha256_uncached
    monkeypatch.setattr(digest, "sha256_uncached", lambda p, stop=None: reads.append(p) or real(p, stop))
    digest._sha256_at.cache_clear()
    first = file_sha256(path)
    assert file_sha256(path) == first and len(reads) == 1  # unchanged: not read again
    path.write_bytes(b"second version, longer")  # replaced at the same path
    assert file_sha256(path) == hashlib.sha256(b"second version, longer").hexdigest()
    same_size = b"third  version, longer"
    path.write_bytes(same_size)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same size, newer mtime
    assert file_sha256(path) == hashlib.sha256(same_size).hexdigest()
    assert len(reads) == 3


def test_a_set_stop_abandons_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * (1 << 20))
    stop = threading.Event()
    stop.set()
    assert sha256_uncached(path, stop) == ""
