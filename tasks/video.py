"""Probe a video and decode chosen frames at two square sizes, with the ffmpeg binary alone (no ffprobe)."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import ffmpeg
import numpy as np

from tasks.ffmpeg_bin import ffmpeg_binary

# Messages by which ffmpeg's demuxers report that the data stops before the file says it should.
_TRUNCATION_MARKERS = (
    "moov atom not found",
    "atom truncated",
    "partial file",
    "file ended prematurely",
    "packet corrupt",
    "corrupt input packet",
)
# libswscale filters offered for resizing: bicubic is what the reference preprocessing used (PIL's, through
# scipy's imresize); area averages the covered pixels and costs ffmpeg ~10% less CPU per video.
Scaler = Literal["bicubic", "area", "bilinear"]
SCALERS: tuple[str, ...] = get_args(Scaler)
# Formats the resize step may keep; ffmpeg negotiates the one that loses least from the decoder's output.
_PLANAR_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gbrp", "gray")
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


@dataclass(frozen=True)
class VideoInfo:
    """What msvqa needs to know about a video before sampling it."""

    width: int
    height: int
    fps: float  # as ffmpeg reports it (rounded to about 4 digits); 0.0 when the file states no rate
    # Video packets in the container, counted without decoding: the frame count to plan from. The decoder
    # produces one frame per packet for every codec met so far; decode_clips reports what it really
    # produced, so a file where the two differ is caught (tasks.clips decodes it again from the true count).
    num_frames: int
    codec: str


@dataclass(frozen=True)
class DecodedClips:
    """The requested frames at both sizes, and how many frames the whole video decoded to."""

    appearance: np.ndarray  # [c, f, A, A, 3] uint8 RGB
    motion: np.ndarray  # [c, f, M, M, 3] uint8 RGB
    frames_decoded: int  # every frame the decoder produced, selected or not: the video's exact length


def probe_video(path: Path, timeout_s: float) -> VideoInfo:
    """Describe the first video stream of `path` and count its packets, without decoding.

    Reading packets costs a fraction of a decode (demuxing only), which matters because the clip stage
    must know the frame count before one decoding pass can select frames. Raises VideoError with
    reason "not found", "empty file", "not a video", "no video stream", "truncated", "too few frames",
    "timeout" or "ffmpeg failed".
    """
    _require_nonempty_file(path)
    args = [
        ffmpeg_binary(), "-nostdin", "-hide_banner", "-nostats",
        # Frames as stored, the way PyAV and decode_clips see them.
        "-noautorotate",
        "-i", str(path),
        "-map", f"0:{_VIDEO_STREAM}",
        "-c", "copy",
        "-f", "null",
        "-progress", "pipe:1",
        "-",
    ]  # fmt: skip
    result = _run(args, path, timeout_s)
    stderr = _checked_stderr(result.returncode, result.stderr, path)
    stream = _parse_video_stream(stderr)
    if stream is None:
        raise VideoError(path, "no video stream", "the file has no video stream.")
    codec, width, height, fps = stream
    counts = re.findall(r"^frame=(\d+)\s*$", result.stdout.decode("ascii", errors="replace"), re.M)
    num_frames = int(counts[-1]) if counts else 0
    if num_frames < 1:
        raise VideoError(path, "too few frames", "the video stream has no frame.")
    return VideoInfo(width=width, height=height, fps=fps, num_frames=num_frames, codec=codec)


def decode_clips(
    path: Path,
    indices: np.ndarray,
    appearance_size: int,
    motion_size: int,
    timeout_s: float,
    threads: int = 1,
    scaler: Scaler = "bicubic",
) -> DecodedClips:
    """Decode the frames `indices` [c, f] of `path`, each resized to a square at two sizes with `scaler`.

    One ffmpeg run decodes the whole video once, keeps only the distinct requested frames (select on
    the decoder's frame number, timing passed through so nothing is duplicated or dropped), scales each
    at both sizes and sends both pictures stacked in one raw frame, read straight into one preallocated
    buffer; a repeated index reuses the same decoded frame. `threads` bounds ffmpeg's decoding and
    filtering threads: the clip stage runs one ffmpeg per worker, so more than one only competes.
    Raises FramesMissing (reason "truncated") when ffmpeg delivers fewer frames than requested,
    VideoError "truncated" when it reports a cut file, "ffmpeg failed" when it gives no frame count,
    and the other reasons of probe_video when the file cannot be opened.
    """
    _require_frame_indices(indices)
    for name, size in (("appearance_size", appearance_size), ("motion_size", motion_size)):
        if size < 1:
            raise ValueError(f"{name} must be a positive number of pixels, got {size}.")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    if scaler not in SCALERS:
        raise ValueError(f"scaler must be one of {', '.join(SCALERS)}, got {scaler!r}.")
    _require_nonempty_file(path)
    wanted = np.unique(indices)  # [u] sorted distinct frame numbers
    width = max(appearance_size, motion_size)
    height = appearance_size + motion_size
    stacked = np.empty((len(wanted), height, width, 3), dtype=np.uint8)  # [u, A + M, max(A, M), 3]

    command = _decode_command(path, wanted, appearance_size, motion_size, threads, scaler)
    got_bytes, extra_bytes, returncode, stderr = _run_into(command, stacked, path, timeout_s)
    stderr = _checked_stderr(returncode, stderr, path)
    got = got_bytes // stacked[0].nbytes
    frames_decoded = _frames_decoded(stderr)
    if extra_bytes:
        raise VideoError(path, "ffmpeg failed", f"ffmpeg sent {extra_bytes} bytes more than the requested frames.")
    if got < len(wanted):
        raise FramesMissing(
            path,
            f"ffmpeg decoded {got} of the {len(wanted)} requested frames (last requested: "
            f"{int(wanted[-1])}), so the file is truncated or shorter than planned.",
            frames_decoded,
        )
    if frames_decoded is None:
        raise VideoError(path, "ffmpeg failed", "ffmpeg did not report how many frames it decoded.")
    appearance = stacked[:, :appearance_size, :appearance_size]  # [u, A, A, 3]
    motion = stacked[:, appearance_size:, :motion_size]  # [u, M, M, 3]
    clips, frames = indices.shape
    if len(wanted) == indices.size and np.array_equal(wanted, indices.ravel()):
        # Distinct frames in order (clips that neither overlap nor pad): views, no copy.
        return DecodedClips(appearance.reshape(clips, frames, *appearance.shape[1:]),
                            motion.reshape(clips, frames, *motion.shape[1:]), frames_decoded)
    position = np.searchsorted(wanted, indices)  # [c, f] row of each requested frame in `wanted`
    return DecodedClips(appearance[position], motion[position], frames_decoded)


def _decode_command(
    path: Path, wanted: np.ndarray, appearance_size: int, motion_size: int, threads: int, scaler: Scaler
) -> list[str]:
    width = max(appearance_size, motion_size)
    # ffmpeg-python escapes the expression's commas for the filtergraph.
    source = ffmpeg.input(str(path), noautorotate=None, threads=threads)[_VIDEO_STREAM]
    source = source.filter("select", _select_expression(wanted))
    branches = source.split()
    sized = []
    for branch, size in ((branches[0], appearance_size), (branches[1], motion_size)):
        scaled = rgb_at_size(branch, size, scaler)
        if size < width:
            # Both pictures travel in one frame, so the narrower one is padded (on the right) to the wider.
            scaled = scaled.filter("pad", width, size, 0, 0)
        sized.append(scaled)
    # No early stop after the last wanted frame: decoding to the end is what yields the exact frame count.
    output = ffmpeg.filter(sized, "vstack").output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    args = output.compile(cmd=ffmpeg_binary())
    # Global options must precede the input; ffmpeg-python would append them after the output. The
    # verbose level is what makes ffmpeg print its "N frames decoded" summary. ffmpeg-python writes the
    # graph as -filter_complex, whose thread count is -filter_complex_threads (-filter_threads is for
    # simple graphs only): left at its default, ffmpeg starts a pool of filter threads per graph whose
    # hand-offs cost the clip stage about a fifth of ffmpeg's CPU time (benchmarks/clips.py).
    return [args[0], "-nostdin", "-hide_banner", "-nostats", "-loglevel", "verbose",
            "-filter_complex_threads", str(threads), *args[1:]]


def rgb_at_size(stream: ffmpeg.nodes.FilterableStream, size: int, scaler: Scaler) -> ffmpeg.nodes.FilterableStream:
    """`stream` resized to size x size with `scaler` in its own planar format, then converted to rgb24.

    libswscale resizes planar YUV (or RGB) with vectorised code but writes packed RGB while resizing only
    with its generic C path; two steps, resize then an unscaled conversion, cost the clip stage about a
    quarter of ffmpeg's CPU time less (112 -> 82-85 ms per benchmark video). Chroma is resized at its own
    resolution, as video scalers do.
    """
    planar = stream.filter("scale", size, size, flags=scaler).filter("format", "|".join(_PLANAR_FORMATS))
    return planar.filter("scale").filter("format", "rgb24")


def _frames_decoded(stderr: str) -> int | None:
    """The decoder's frame count from ffmpeg's closing summary of its input streams."""
    match = re.search(r"Input stream #0:\d+ \(video\): \d+ packets read \(\d+ bytes\); (\d+) frames decoded", stderr)
    return int(match.group(1)) if match else None


def _run_into(
    args: list[str], buffer: np.ndarray, path: Path, timeout_s: float
) -> tuple[int, int, int, bytes]:
    """Run ffmpeg with its stdout read into `buffer`: (bytes read, bytes beyond it, exit code, stderr).

    Reading into a preallocated array spares the clip stage a copy of every frame and the memory of
    holding ffmpeg's output twice; stderr goes to a temporary file, so neither pipe can fill and stall.
    """
    view = memoryview(buffer).cast("B")
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(timeout_s, stop)
        timer.start()
        try:
            got = 0
            while got < len(view):
                count = process.stdout.readinto(view[got:])
                if not count:
                    break
                got += count
            extra = len(process.stdout.read())
            returncode = process.wait()
        finally:
            timer.cancel()
            process.stdout.close()
            if process.poll() is None:
                process.kill()
                process.wait()
        if timed_out.is_set():
            raise VideoError(path, "timeout", f"ffmpeg took longer than {timeout_s:g} s and was stopped.")
        errors.seek(0)
        return got, extra, returncode, errors.read()


def _select_expression(wanted: np.ndarray) -> str:
    """An ffmpeg expression that is 1 exactly on the frame numbers in `wanted` (sorted, distinct)."""
    run_starts = np.flatnonzero(np.diff(wanted, prepend=wanted[0] - 2) != 1)  # where a consecutive run begins
    run_ends = np.append(run_starts[1:], len(wanted)) - 1
    terms = [
        f"eq(n,{int(wanted[a])})" if a == b else f"between(n,{int(wanted[a])},{int(wanted[b])})"
        for a, b in zip(run_starts.tolist(), run_ends.tolist())
    ]
    return _balanced_sum(terms)


def _balanced_sum(terms: list[str]) -> str:
    # ffmpeg rejects expressions nested more than 100 deep, which a flat a+b+c+... of 101 terms is.
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    return f"({_balanced_sum(terms[:middle])})+({_balanced_sum(terms[middle:])})"


def _require_frame_indices(indices: np.ndarray) -> None:
    if indices.ndim != 2 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"indices must be a non-empty 2-D integer array [clips, frames], got {indices.dtype} {indices.shape}."
        )
    if indices.min() < 0:
        raise ValueError(f"Frame indices must be non-negative, got {int(indices.min())}.")


def _require_nonempty_file(path: Path) -> None:
    if not path.is_file():
        raise VideoError(path, "not found", "no such file.")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file", "the file is empty (0 bytes).")


def _run(args: list[str], path: Path, timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    try:
        # subprocess.run kills ffmpeg when the timeout expires, before raising.
        return subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        detail = f"ffmpeg took longer than {timeout_s:g} s and was stopped."
        raise VideoError(path, "timeout", detail) from None


def _checked_stderr(returncode: int, stderr_bytes: bytes, path: Path) -> str:
    """ffmpeg's stderr once the run is known good; a failed or truncated run raises VideoError."""
    stderr = stderr_bytes.decode("utf-8", errors="replace")
    if returncode != 0:
        raise _failure(path, stderr)
    marker = _truncation_marker(stderr)
    if marker is not None:
        raise VideoError(path, "truncated", f"the file is truncated (ffmpeg: {marker}).")
    return stderr


def _failure(path: Path, stderr: str) -> VideoError:
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


def _parse_video_stream(stderr: str) -> tuple[str, int, int, float] | None:
    """Codec, width, height and fps of the first non-cover-art video stream in ffmpeg's input report."""
    # Only the "Input #0" report: the output report after it lists streams too.
    report = re.split(r"^(?:Stream mapping:|Output #0)", stderr, maxsplit=1, flags=re.M)[0]
    for match in re.finditer(r"^\s*Stream #0:\d+\S*: Video: (.*)$", report, re.M):
        description = match.group(1)
        if "attached pic" in description:
            continue
        # e.g. "h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 320x240 [SAR 1:1 DAR 4:3], 15 fps, ..."
        fields = _split_top_level(description)
        codec = fields[0].split()[0]
        size = next((m for m in (re.match(r"(\d+)x(\d+)\b", f) for f in fields) if m), None)
        if size is None:
            return None
        return codec, int(size.group(1)), int(size.group(2)), _frame_rate(fields)
    return None


def _frame_rate(fields: list[str]) -> float:
    """The stream's "fps" figure, else its "tbr" (ffmpeg writes 1000 as "1k"); 0.0 when neither is given."""
    for unit in ("fps", "tbr"):
        for field in fields:
            rate = re.fullmatch(rf"([\d.]+)(k?) {unit}", field)
            if rate:
                return float(rate.group(1)) * (1000.0 if rate.group(2) else 1.0)
    return 0.0


def _split_top_level(text: str) -> list[str]:
    """Split ffmpeg's stream description at the commas that are outside () and []."""
    fields, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            fields.append(text[start:position].strip())
            start = position + 1
    fields.append(text[start:].strip())
    return fields
