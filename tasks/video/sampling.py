"""Which frames of a video feed each clip: HCRN's original sampling and a clean uniform variant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SamplingMode = Literal["hcrn", "uniform"]


@dataclass(frozen=True)
class FrameSampling:
    """Frame indices for every clip, and whether any frame had to be reused to fill them."""

    indices: np.ndarray  # [num_clips, frames_per_clip] int64, each in [0, num_frames - 1]
    padded: bool


def sample_frames(
    num_frames: int, num_clips: int, frames_per_clip: int, mode: SamplingMode
) -> FrameSampling:
    """Choose the frames of `num_clips` clips of `frames_per_clip` frames from a video of `num_frames` frames.

    mode "hcrn" reproduces HCRN's preprocess_features.py (extract_clips_with_consecutive_frames) index
    for index, quirks included:
      * centres are np.linspace(0, n, c + 2, dtype=np.int32)[1:-1], i.e. truncated towards zero;
      * a clip is the slice [centre - f//2, centre + f//2) of consecutive frames;
      * a negative start is clamped to 0 and the clip is filled at the front with copies of frame 0;
      * an end past n (strictly: an end of exactly n is kept) is set to n - 1, so the slice stops at
        frame n - 2 and the clip is filled at the back with copies of frame n - 1;
      * when both edges are clamped (n < f), both fills happen and only the first f frames are kept,
        so frame n - 1 never appears: the clip is [0] * (f - n + 1) + [0, ..., n - 2];
      * an odd f would give f - 1 frames for an unclamped clip (the reference then fails with an
        IndexError), so hcrn mode accepts only an even frames_per_clip.
    `padded` is True when any clip was clamped at an edge.

    mode "uniform" cuts the video into c equal segments and takes f frames evenly spaced within each
    clip's segment: frame m = k * f + j (clip k, frame j) is the one under the centre of the m-th of
    c * f equal bins, floor((m + 0.5) * n / (c * f)). Indices are non-decreasing, stay in [0, n - 1]
    and repeat only when n < c * f; `padded` is True exactly then.
    """
    if num_frames < 1:
        raise ValueError(f"A video needs at least one frame to sample from, got num_frames={num_frames}.")
    if num_clips < 1 or frames_per_clip < 1:
        raise ValueError(
            f"num_clips and frames_per_clip must be positive, got {num_clips} and {frames_per_clip}."
        )
    if mode == "hcrn":
        return _sample_hcrn(num_frames, num_clips, frames_per_clip)
    if mode == "uniform":
        return _sample_uniform(num_frames, num_clips, frames_per_clip)
    raise ValueError(f"Unknown sampling mode {mode!r}; expected 'hcrn' or 'uniform'.")


def sample_frame_indices(
    num_frames: int, num_clips: int, frames_per_clip: int, mode: SamplingMode
) -> np.ndarray:
    """Frame indices [num_clips, frames_per_clip] int64 chosen by `sample_frames` (see it for the modes)."""
    return sample_frames(num_frames, num_clips, frames_per_clip, mode).indices


def _sample_hcrn(n: int, c: int, f: int) -> FrameSampling:
    if f % 2:
        raise ValueError(
            f"hcrn sampling needs an even frames_per_clip (its clips span 2 * (f // 2) frames), got {f}."
        )
    half = f // 2
    centres = np.linspace(0, n, c + 2, dtype=np.int32)[1:-1]
    clips: list[list[int]] = []
    padded = False
    for centre in centres.tolist():
        start, end = centre - half, centre + half
        if start < 0:
            start = 0
        if end > n:
            end = n - 1
        clip = list(range(start, end))
        # Same two fills, in the same order, as the reference; they test the clamped values, so a
        # clip that starts at frame 0 or ends at n - 1 naturally takes them too, with a zero shortage.
        if start == 0:
            front = f - (end - start)
            clip = [0] * front + clip
            padded |= front > 0
        if end == n - 1:
            back = f - (end - start)
            clip = clip + [n - 1] * back
            padded |= back > 0
        clips.append(clip[:f])
    return FrameSampling(indices=np.asarray(clips, dtype=np.int64).reshape(c, f), padded=padded)


def _sample_uniform(n: int, c: int, f: int) -> FrameSampling:
    total = c * f
    bins = np.arange(total, dtype=np.int64)
    # Integer form of floor((m + 0.5) * n / total): exact, so no float rounding can shift a frame.
    indices = ((2 * bins + 1) * n) // (2 * total)  # [c * f]
    return FrameSampling(indices=indices.reshape(c, f), padded=n < total)
