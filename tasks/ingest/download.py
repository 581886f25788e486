"""Fetch one source file: resumable, checksummed, retried HTTP(S) downloads, or a copy of a local file."""

from __future__ import annotations

import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

from configs.errors import UserError
from tasks.digest import sha256_uncached

Progress = Callable[[int, int | None], None]  # (bytes done, bytes in all or None when unknown)
CHUNK = 1 << 20


class _Transient(Exception):
    """A failure worth another try: the connection broke, the server was busy, or it timed out."""


def is_remote(url: str) -> bool:
    return urlparse(url).scheme in ("http", "https")


def local_path(url: str) -> Path:
    """The filesystem path of a file:// URL or a plain path."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise UserError(f"dataset.sources: {url!r}: only http(s)://, file:// URLs and local paths are supported")
    return Path(url)


def file_name(url: str) -> str:
    """The file name a URL or path points at, e.g. 'MSVD-QA.zip'."""
    name = Path(unquote(urlparse(url).path)).name if is_remote(url) else local_path(url).name
    if not name:
        raise UserError(f"dataset.sources: {url!r} does not end in a file name")
    return name


def download(url: str, target: Path, sha256: str | None, *, timeout_s: float, retries: int = 3,
             progress: Progress | None = None, backoff_s: float = 1.0) -> Path:
    """Put the file at `url` (http(s)://, file:// or a path) at `target` and return `target`.

    HTTP(S) streams into `target.partial`, resumes it with a Range request after an interruption
    (starting over when the server ignores the range), and tries again up to `retries` times in a row
    after transient failures (connection errors, timeouts, 5xx, 408, 429), waiting backoff_s * 2**n between
    tries. A try that brought new bytes resets that count. Other 4xx answers (404...) fail at once. The file is
    checked against `sha256` when given, then moved into place atomically.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    if is_remote(url):
        _fetch_http(url, partial, timeout_s, retries, progress, backoff_s)
    else:
        source = local_path(url)
        if not source.is_file():
            raise UserError(f"dataset.sources: {source} is not a file")
        shutil.copyfile(source, partial)
        if progress is not None:
            size = partial.stat().st_size
            progress(size, size)
    if sha256 is not None:
        actual = sha256_uncached(partial)
        if actual != sha256.lower():
            partial.unlink()
            raise UserError(f"{url}: sha256 mismatch: expected {sha256.lower()}, downloaded {actual}")
    os.replace(partial, target)  # a crash never leaves a half-written file under the real name
    return target


def _fetch_http(url: str, partial: Path, timeout_s: float, retries: int, progress: Progress | None,
                backoff_s: float) -> None:
    failures = 0
    while True:
        before = partial.stat().st_size if partial.exists() else 0
        try:
            _fetch_once(url, partial, timeout_s, progress)
            return
        except _Transient as exc:
            after = partial.stat().st_size if partial.exists() else 0
            failures = 0 if after > before else failures + 1
            if failures > retries:
                raise UserError(f"{url}: download failed after {retries + 1} tries in a row ({exc})") from exc
            time.sleep(backoff_s * 2 ** max(failures - 1, 0))


def _fetch_once(url: str, partial: Path, timeout_s: float, progress: Progress | None) -> None:
    """One request: append to `partial` from where it stops, or rewrite it when the server starts over."""
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            partial.unlink()  # the partial file is no prefix of this resource (it grew past it): start over
            raise _Transient(f"HTTP 416 for a resume at byte {offset}") from exc
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code}") from exc
        raise UserError(f"{url}: the server answered HTTP {exc.code} ({exc.reason})") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, (OSError, http.client.HTTPException)):
            raise _Transient(f"{type(reason).__name__}: {reason}") from exc
        raise UserError(f"{url}: cannot connect ({reason})") from exc
    with response:
        resumed = response.status == 206 and _range_start(response.headers.get("Content-Range")) == offset
        if offset and not resumed:
            offset = 0  # the server sent the whole file again (200) or an unexpected range
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        done = offset
        with partial.open("ab" if resumed else "wb") as file:
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # not around write: a full disk is no glitch
                    raise _Transient(f"{type(exc).__name__} after {done} bytes") from exc
                if not block:
                    break
                file.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    # http.client returns a short body without complaint when the peer closes early, so count it.
    if total is not None and done < total:
        raise _Transient(f"connection closed after {done} of {total} bytes")


def _range_start(content_range: str | None) -> int | None:
    """First byte of a 'bytes START-END/TOTAL' header."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    start = content_range[len("bytes "):].split("-", 1)[0]
    return int(start) if start.isdigit() else None

