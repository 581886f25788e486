"""Which ffmpeg binary msvqa runs: a system ffmpeg on PATH, else the one bundled by imageio-ffmpeg."""

from __future__ import annotations

import functools
import shutil


@functools.cache
def ffmpeg_binary() -> str:
    """Absolute path of the ffmpeg executable to use."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg  # bundled binary; it ships no ffprobe, so nothing here relies on one

    return imageio_ffmpeg.get_ffmpeg_exe()
