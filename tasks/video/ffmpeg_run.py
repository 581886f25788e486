"""Running the ffmpeg binary on one video, and the VideoError that says in a few words why a file is unusable."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Messages by which ffmpeg's demuxers report that the data stops before the file says it should.
_TRUNCATION_MARKERS = (
    "moov atom not found",
    "atom truncated",
    "partial file",
    "file ended prematurely",
    "packet corrupt",
    "corrupt input packet",
)
# The first video stream that is real footage, not cover art ("V" skips attached pictures).
_VIDEO_STREAM = "V:0"


class VideoError(Exception):
    """A video file that cannot be used; `reason` says why in a few words, the message names the file."""

    def __init__(self, path: Path, reason: str, detail: str) -> None:
        super().__init__(f"Video {path}: {detail}")
        self.path = path
        self.reason = reason


class FramesMissing(VideoError):
    """ffmpeg delivered fewer of the requested frames than asked for (reason "truncated")."""

    def __init__(self, path: Path, detail: str, frames_decoded: int | None) -> None:
        super().__init__(path, "truncated", detail)
        self.frames_decoded = frames_decoded  # the whole video's decoded frames, when ffmpeg reported it


def require_nonempty_file(path: Path) -> None:
    if not path.is_file():
        raise VideoError(path, "not found", "no such file.")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file", "the file is empty (0 bytes).")


def run_ffmpeg(args: list[str], path: Path, timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    try:
        # subprocess.run kills ffmpeg when the timeout expires, before raising.
        return subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        detail = f"ffmpeg took longer than {timeout_s:g} s and was stopped."
        raise VideoError(path, "timeout", detail) from None


def checked_stderr(returncode: int, stderr_bytes: bytes, path: Path) -> str:
    """ffmpeg's stderr once the run is known good; a failed or truncated run raises VideoError."""
    stderr = stderr_bytes.decode("utf-8", errors="replace")
    if returncode != 0:
        raise failure(path, stderr)
    marker = _truncation_marker(stderr)
    if marker is not None:
        raise VideoError(path, "truncated", f"the file is truncated (ffmpeg: {marker}).")
    return stderr


def failure(path: Path, stderr: str) -> VideoError:
    """The VideoError for an ffmpeg run that exited with an error."""
    marker = _truncation_marker(stderr)
    if marker is not None:
        return VideoError(path, "truncated", f"the file is truncated (ffmpeg: {marker}).")
    if "matches no streams" in stderr:
        return VideoError(path, "no video stream", "the file has no video stream.")
    if "Error opening input" in stderr:
        if _riff_is_cut(path):
            return VideoError(path, "truncated", "the file is truncated (its RIFF header declares more bytes).")
        return VideoError(path, "not a video", "ffmpeg cannot read it as a video file.")
    last_line = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
    return VideoError(path, "ffmpeg failed", f"ffmpeg failed ({last_line}).")


def _riff_is_cut(path: Path) -> bool:
    """Whether `path` is a RIFF file (AVI, WAV) shorter than the size its first chunk declares.

    ffmpeg reports an AVI cut inside its header only as invalid data, so the cut is found here.
    """
    with path.open("rb") as file:
        head = file.read(12)
    if len(head) < 12 or head[:4] != b"RIFF":
        return False
    declared = 8 + int.from_bytes(head[4:8], "little")
    return path.stat().st_size < declared


def _truncation_marker(stderr: str) -> str | None:
    lowered = stderr.lower()
    return next((marker for marker in _TRUNCATION_MARKERS if marker in lowered), None)
