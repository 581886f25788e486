"""The frame count an AVI file declares in its header, read without starting ffmpeg.

MSVD's clips are AVI files, whose header states the video stream's length in frames. Reading it costs a
few kilobytes of I/O where a packet-counting ffmpeg run costs a process start and a demux of the whole
file. The figure is only a plan: the decoding pass reports the true count and tasks.video.clips plans again
when the two differ, so a wrong header costs time, never correctness.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

_HEADER_BYTES = 64 * 1024  # the hdrl list sits at the start; its size is a few kilobytes at most
_STRH_LENGTH_OFFSET = 32  # AVISTREAMHEADER: fccType, fccHandler, dwFlags, wPriority, wLanguage, ... dwLength


def avi_frame_count(path: Path) -> int | None:
    """The first video stream's dwLength from an AVI header; None when `path` is not a readable AVI."""
    try:
        with path.open("rb") as file:
            data = file.read(_HEADER_BYTES)
    except OSError:
        return None
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"AVI ":
        return None
    for header_list in _lists(data, 12, len(data), b"hdrl"):
        for stream_list in _lists(data, header_list[0], header_list[1], b"strl"):
            for chunk_id, start, size in _chunks(data, *stream_list):
                if chunk_id == b"strh" and size >= _STRH_LENGTH_OFFSET + 4 and data[start : start + 4] == b"vids":
                    (length,) = struct.unpack_from("<I", data, start + _STRH_LENGTH_OFFSET)
                    return length or None
    return None


def _chunks(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(id, data start, data size) of each RIFF chunk between `start` and `end`, stopping at a cut one."""
    position = start
    while position + 8 <= end:
        chunk_id = data[position : position + 4]
        (size,) = struct.unpack_from("<I", data, position + 4)
        if position + 8 + size > end:
            return
        yield chunk_id, position + 8, size
        position += 8 + size + (size & 1)  # chunks are padded to an even size


def _lists(data: bytes, start: int, end: int, list_type: bytes) -> Iterator[tuple[int, int]]:
    """(contents start, end) of each LIST chunk of `list_type` between `start` and `end`."""
    for chunk_id, chunk_start, size in _chunks(data, start, end):
        if chunk_id == b"LIST" and data[chunk_start : chunk_start + 4] == list_type:
            yield chunk_start + 4, chunk_start + size
