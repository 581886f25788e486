"""Decode chosen frames of a video at two square sizes in one ffmpeg pass."""

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

from tasks.video.ffmpeg_bin import ffmpeg_binary
from tasks.video.ffmpeg_run import (_VIDEO_STREAM, FramesMissing, VideoError, checked_stderr, require_nonempty_file)

# libswscale filters offered for resizing: bicubic is what the reference preprocessing used (PIL's, through
# scipy's imresize); area averages the covered pixels and costs ffmpeg ~10% less CPU per video.
Scaler = Literal["bicubic", "area", "bilinear"]
SCALERS: tuple[str, ...] = get_args(Scaler)
# Formats the resize step may keep; ffmpeg negotiates the one that loses least from the decoder's output.
_PLANAR_FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gbrp", "gray")


@dataclass(frozen=True)
class DecodedClips:
    """The requested frames at both sizes, and how many frames the whole video decoded to."""

    appearance: np.ndarray  # [c, f, A, A, 3] uint8 RGB
    motion: np.ndarray  # [c, f, M, M, 3] uint8 RGB
    frames_decoded: int  # every frame the decoder produced, selected or not: the video's exact length


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
    require_nonempty_file(path)
    wanted = np.unique(indices)  # [u] sorted distinct frame numbers
    width = max(appearance_size, motion_size)
    height = appearance_size + motion_size
    stacked = np.empty((len(wanted), height, width, 3), dtype=np.uint8)  # [u, A + M, max(A, M), 3]

    command = _decode_command(path, wanted, appearance_size, motion_size, threads, scaler)
    got_bytes, extra_bytes, returncode, stderr = _run_into(command, stacked, path, timeout_s)
    stderr = checked_stderr(returncode, stderr, path)
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


