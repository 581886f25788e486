"""Describe a video before decoding it: its first real video stream and its packet count (ffmpeg alone, no ffprobe)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tasks.video.ffmpeg_bin import ffmpeg_binary
from tasks.video.ffmpeg_run import _VIDEO_STREAM, VideoError, checked_stderr, require_nonempty_file, run_ffmpeg


@dataclass(frozen=True)
class VideoInfo:
    """What msvqa needs to know about a video before sampling it."""

    width: int
    height: int
    fps: float  # as ffmpeg reports it (rounded to about 4 digits); 0.0 when the file states no rate
    # Video packets in the container, counted without decoding: the frame count to plan from. The decoder
    # produces one frame per packet for every codec met so far; decode_clips reports what it really
    # produced, so a file where the two differ is caught (tasks.video.clips decodes it again from the true count).
    num_frames: int
    codec: str


def probe_video(path: Path, timeout_s: float) -> VideoInfo:
    """Describe the first video stream of `path` and count its packets, without decoding.

    Reading packets costs a fraction of a decode (demuxing only), which matters because the clip stage
    must know the frame count before one decoding pass can select frames. Raises VideoError with
    reason "not found", "empty file", "not a video", "no video stream", "truncated", "too few frames",
    "timeout" or "ffmpeg failed".
    """
    require_nonempty_file(path)
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
    result = run_ffmpeg(args, path, timeout_s)
    stderr = checked_stderr(result.returncode, result.stderr, path)
    stream = _parse_video_stream(stderr)
    if stream is None:
        raise VideoError(path, "no video stream", "the file has no video stream.")
    codec, width, height, fps = stream
    counts = re.findall(r"^frame=(\d+)\s*$", result.stdout.decode("ascii", errors="replace"), re.M)
    num_frames = int(counts[-1]) if counts else 0
    if num_frames < 1:
        raise VideoError(path, "too few frames", "the video stream has no frame.")
    return VideoInfo(width=width, height=height, fps=fps, num_frames=num_frames, codec=codec)


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
