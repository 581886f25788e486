"""Frame sampling: hand-computed index tables for HCRN's sampling and the uniform variant."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.video.sampling import sample_frame_indices, sample_frames

# (n, c, f, expected indices, padded), each worked out by hand from the rules in sample_frames' docstring.
HCRN_CASES = [
    # centres trunc(linspace(0, 100, 4))[1:-1] = [33, 66]; clips [centre - 2, centre + 2)
    (100, 2, 4, [[31, 32, 33, 34], [64, 65, 66, 67]], False),
    # n == c * f: centres [2, 5]; the second clip ends at n - 1 = 7 naturally, so frame 7 is never used
    (8, 2, 4, [[0, 1, 2, 3], [3, 4, 5, 6]], False),
    # n < c * f: centres [1, 3]; clip 1 starts at -1 -> front fill; clip 2 ends at exactly n = 5, kept
    (5, 2, 4, [[0, 0, 1, 2], [1, 2, 3, 4]], True),
    # centres [2, 4, 6, 8]: front fill on clip 1, clip 3 ends at n - 1 naturally, clip 4 ends at 11 > 10
    # -> end 9, slice 5..8, then two copies of frame 9
    (10, 4, 6, [[0, 0, 1, 2, 3, 4], [1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8], [5, 6, 7, 8, 9, 9]], True),
    # both edges clamped (centre 1, window [-3, 5)): six copies of frame 0, slice 0..1; frame 2 never used
    (3, 1, 8, [[0, 0, 0, 0, 0, 0, 0, 1]], True),
    # n = 1: every centre is 0, the slice is empty, the front fill is all of the clip
    (1, 3, 4, [[0, 0, 0, 0]] * 3, True),
    # n = 2, f = 2: centre trunc(2 / 2) = 1, window [0, 2) fits exactly
    (2, 1, 2, [[0, 1]], False),
]

UNIFORM_CASES = [
    # floor((2m + 1) * 100 / 16) for m = 0..7
    (100, 2, 4, [[6, 18, 31, 43], [56, 68, 81, 93]], False),
    # n == c * f: bin m is exactly frame m
    (8, 2, 4, [[0, 1, 2, 3], [4, 5, 6, 7]], False),
    # n < c * f: floor((2m + 1) * 5 / 16)
    (5, 2, 4, [[0, 0, 1, 2], [2, 3, 4, 4]], True),
    # n < c * f with no repeat inside a clip: frame 3 is shared by the two clips
    (7, 2, 4, [[0, 1, 2, 3], [3, 4, 5, 6]], True),
    (1, 3, 4, [[0, 0, 0, 0]] * 3, True),
    # odd frames_per_clip is fine here: floor((2m + 1) * 9 / 12)
    (9, 2, 3, [[0, 2, 3], [5, 6, 8]], False),
]


@pytest.mark.parametrize(("n", "c", "f", "expected", "padded"), HCRN_CASES)
def test_hcrn_sampling_table(n: int, c: int, f: int, expected: list[list[int]], padded: bool) -> None:
    sampling = sample_frames(n, c, f, "hcrn")
    assert sampling.indices.dtype == np.int64
    np.testing.assert_array_equal(sampling.indices, np.array(expected))
    assert sampling.padded is padded


@pytest.mark.parametrize(("n", "c", "f", "expected", "padded"), UNIFORM_CASES)
def test_uniform_sampling_table(n: int, c: int, f: int, expected: list[list[int]], padded: bool) -> None:
    sampling = sample_frames(n, c, f, "uniform")
    assert sampling.indices.dtype == np.int64
    np.testing.assert_array_equal(sampling.indices, np.array(expected))
    assert sampling.padded is padded


def test_hcrn_long_video_takes_consecutive_frames_around_each_centre() -> None:
    # trunc(k * 1000 / 9) for k = 1..8, minus f // 2 = 8
    starts = np.array([103, 214, 325, 436, 547, 658, 769, 880])
    indices = sample_frame_indices(1000, 8, 16, "hcrn")
    np.testing.assert_array_equal(indices, starts[:, None] + np.arange(16)[None, :])
    assert not sample_frames(1000, 8, 16, "hcrn").padded


def test_uniform_long_video_is_the_first_clip_shifted_by_one_segment() -> None:
    # floor((2j + 1) * 1000 / 256) for j = 0..15; each segment is 1000 / 8 = 125 frames long
    first_clip = np.array([3, 11, 19, 27, 35, 42, 50, 58, 66, 74, 82, 89, 97, 105, 113, 121])
    indices = sample_frame_indices(1000, 8, 16, "uniform")
    np.testing.assert_array_equal(indices, first_clip[None, :] + 125 * np.arange(8)[:, None])
    assert not sample_frames(1000, 8, 16, "uniform").padded


@pytest.mark.parametrize("mode", ["hcrn", "uniform"])
@pytest.mark.parametrize("num_frames", [0, -3])
def test_a_video_without_frames_is_rejected(mode: str, num_frames: int) -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        sample_frame_indices(num_frames, 8, 16, mode)  # type: ignore[arg-type]


def test_hcrn_rejects_odd_frames_per_clip() -> None:
    with pytest.raises(ValueError, match="even frames_per_clip"):
        sample_frame_indices(100, 8, 15, "hcrn")


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="Unknown sampling mode"):
        sample_frame_indices(100, 8, 16, "random")  # type: ignore[arg-type]
