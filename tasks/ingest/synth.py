"""The synthetic world: videos planned and drawn, and the questions asked of them (tasks.ingest.synth_dataset
writes them as a dataset in MSVD-QA layout).

Every video shows one filled shape on a dark background that moves in a straight line and
changes colour once; six fixed question templates ask about it. What the videos look like
(background, shapes, sizes, speeds, a still distractor) is set by a world (tasks.ingest.synth_worlds);
the "default" world is a dark-grey background with circles, squares and triangles of one size. Each attribute is drawn
from its own seeded stream of shuffled blocks, so every answer of every template occurs
equally often (within one); the streams are independent, so a question-only model stays
close to chance.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from configs.errors import UserError
from tasks.ingest.synth_worlds import (
    FLAT_BACKGROUND,
    WORLDS,
    Distractor,
    background_image,
    plan_distractor,
    plan_sizes,
    shape_mask,
    world_named,
)
from tasks.video.ffmpeg_bin import ffmpeg_binary

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "purple": (160, 32, 240),
}
BACKGROUND: tuple[int, int, int] = FLAT_BACKGROUND
SHAPES: tuple[str, ...] = WORLDS["default"].shapes
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
SPEEDS: tuple[str, ...] = ("slow", "fast")
ASKED_COLORS: tuple[str, ...] = ("start", "end")  # which colour the "when" question names

TEMPLATES: tuple[str, ...] = ("what_color_start", "what_color_end", "who", "where", "how", "when")
DISTRACTOR_WORDS: tuple[str, ...] = ("orange", "pink", "hexagon", "jumps", "dog", "table", "sometimes")

# Per-axis unit vectors in image coordinates (y grows downwards).
_DIRECTION_STEP: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# Default world: fast objects cross 0.95 of the free room; slow ones 1/2.5 of that (~0.28 of the short side).
_NAME_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_ENCODE_TIMEOUT_S = 120.0


class SynthError(UserError, ValueError):
    """A synthetic dataset could not be made from the given parameters."""


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to draw one video and ask its questions."""

    vid: int  # the N of "vidN", 1-based
    name: str  # YouTube-like clip name, e.g. "-4wsuPCjDBc_5_15"
    shape: str
    color_start: str
    color_end: str
    change_frame: int  # first frame drawn in color_end
    direction: str
    speed: str
    asked_color: str  # "start" or "end": the colour named by the "when" question
    size: int  # diameter / side / base and height of the shape, pixels
    start_center: tuple[float, float]  # (x, y) at frame 0
    end_center: tuple[float, float]  # (x, y) at the last frame
    frames: int
    background: str = "flat"  # a kind of tasks.ingest.synth_worlds.BACKGROUNDS
    background_seed: int = 0  # seeds a noise or texture background
    distractor: Distractor | None = None

    def center(self, frame: int) -> tuple[float, float]:
        """Centre (x, y) of the shape's bounding box at `frame`."""
        t = frame / (self.frames - 1)
        (x0, y0), (x1, y1) = self.start_center, self.end_center
        return x0 + t * (x1 - x0), y0 + t * (y1 - y0)

    def color(self, frame: int) -> str:
        """Name of the shape's colour at `frame`."""
        return self.color_start if frame < self.change_frame else self.color_end


@dataclass(frozen=True)
class QuestionAnswer:
    """One templated question about a video."""

    template: str
    question: str
    answer: str


def _rng(seed: int, stream: int) -> np.random.Generator:
    # A separate stream per attribute, so one attribute's draws never shift another's.
    return np.random.default_rng([abs(seed), int(seed < 0), stream])


def _balanced_stream(values: Sequence[str], count: int, rng: np.random.Generator) -> list[str]:
    """`count` values, each whole block of len(values) a fresh shuffle of all of them."""
    out: list[str] = []
    while len(out) < count:
        out.extend(values[i] for i in rng.permutation(len(values)))
    return out[:count]


def _balanced_color_pairs(count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(start, end) colour pairs, start != end, with both starts and ends balanced.

    Rounds of six use every start colour once and end = start shifted by a fixed offset, so
    the ends of a round are a permutation too; a shuffled block of the five offsets then
    covers all 30 ordered pairs.
    """
    names = list(COLORS)
    k = len(names)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        for offset in rng.permutation(np.arange(1, k)):
            for start in rng.permutation(k):
                pairs.append((names[start], names[(start + int(offset)) % k]))
    return pairs[:count]


def _clip_names(count: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        chars = "".join(_NAME_ALPHABET[i] for i in rng.integers(0, len(_NAME_ALPHABET), size=11))
        start = int(rng.integers(0, 400))
        end = start + int(rng.integers(3, 30))
        name = f"{chars}_{start}_{end}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _check_parameters(videos: int, frames: int, width: int, height: int) -> None:
    if videos < 3:  # one per split
        raise SynthError(f"videos must be at least 3 (one per split), got {videos}.")
    if frames < 6:
        raise SynthError(f"frames must be at least 6 so the colour can change in the middle third, got {frames}.")
    if width % 2 or height % 2:
        raise SynthError(f"width and height must be even for yuv420p encoding, got {width}x{height}.")
    if min(width, height) < 16:
        raise SynthError(f"width and height must be at least 16 pixels, got {width}x{height}.")


def _straight_path(
    direction: str, travel: float, size: int, width: int, height: int, rng: np.random.Generator
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end centres of a `travel`-pixel move that keeps the whole shape inside the frame."""
    half = size / 2
    step_x, step_y = _DIRECTION_STEP[direction]
    moving_extent, still_extent = (width, height) if step_x else (height, width)
    begin = half + float(rng.uniform(0.0, moving_extent - size - travel))
    finish = begin + travel
    if step_x + step_y < 0:
        begin, finish = finish, begin
    still = float(rng.uniform(half, still_extent - half))
    if step_x:
        return (begin, still), (finish, still)
    return (still, begin), (still, finish)


def plan_videos(videos: int, seed: int, frames: int, *, width: int = 128, height: int = 96,
                world: str = "default") -> list[VideoPlan]:
    """The attributes, timing and path of every video of `world`, without drawing anything."""
    _check_parameters(videos, frames, width, height)
    spec = world_named(world)
    names = _clip_names(videos, _rng(seed, 0))
    color_pairs = _balanced_color_pairs(videos, _rng(seed, 1))
    shapes = _balanced_stream(spec.shapes, videos, _rng(seed, 2))
    directions = _balanced_stream(DIRECTIONS, videos, _rng(seed, 3))
    speeds = _balanced_stream(SPEEDS, videos, _rng(seed, 4))
    asked = _balanced_stream(ASKED_COLORS, videos, _rng(seed, 5))
    placement = _rng(seed, 6)
    # What only other worlds vary draws from streams of its own, after the default world's.
    sizes = plan_sizes(spec, videos, min(width, height), _rng(seed, 8))
    extras = _rng(seed, 9)
    backgrounds = _balanced_stream(spec.backgrounds, videos, _rng(seed, 10))
    background_seeds = _rng(seed, 11).integers(0, 2**31, size=videos)
    # The change frame falls in the middle third: [ceil(F/3), floor(2F/3)).
    first_change = -(-frames // 3)
    change_stop = max(first_change + 1, (2 * frames) // 3)

    plans: list[VideoPlan] = []
    for i in range(videos):
        size = sizes[i]
        room = min(width, height) - size  # free travel along the shorter axis
        fast_travel = spec.fast_travel * room
        travel = fast_travel if speeds[i] == "fast" else fast_travel / spec.fast_over_slow
        start_center, end_center = _straight_path(directions[i], travel, size, width, height, placement)
        plans.append(
            VideoPlan(
                vid=i + 1,
                name=names[i],
                shape=shapes[i],
                color_start=color_pairs[i][0],
                color_end=color_pairs[i][1],
                change_frame=int(placement.integers(first_change, change_stop)),
                direction=directions[i],
                speed=speeds[i],
                asked_color=asked[i],
                size=size,
                start_center=start_center,
                end_center=end_center,
                frames=frames,
                background=backgrounds[i],
                background_seed=int(background_seeds[i]),
                distractor=plan_distractor(spec, shapes[i], list(COLORS), color_pairs[i], size,
                                           (start_center, end_center), width, height, extras)
                if spec.distractor else None,
            )
        )
    return plans


def questions_for(plan: VideoPlan) -> list[QuestionAnswer]:
    """The six templated questions about one video, in TEMPLATES order."""
    asked_color = plan.color_start if plan.asked_color == "start" else plan.color_end
    return [
        QuestionAnswer("what_color_start", f"what color is the {plan.shape} at the beginning?", plan.color_start),
        QuestionAnswer("what_color_end", f"what color does the {plan.shape} turn into?", plan.color_end),
        QuestionAnswer("who", "who is moving across the screen?", plan.shape),
        QuestionAnswer("where", f"where does the {plan.color_start} object move?", plan.direction),
        QuestionAnswer("how", f"how does the {plan.shape} move?", "slowly" if plan.speed == "slow" else "quickly"),
        QuestionAnswer(
            "when",
            f"when is the {plan.shape} {asked_color}?",
            "first" if plan.asked_color == "start" else "later",
        ),
    ]


def object_mask(plan: VideoPlan, frame: int, width: int, height: int) -> np.ndarray:
    """[height, width] bool: the pixels the shape covers at `frame`."""
    cx, cy = plan.center(frame)
    return shape_mask(plan.shape, plan.size, cx, cy, width, height)


def render_frames(plan: VideoPlan, width: int, height: int) -> np.ndarray:
    """[frames, height, width, 3] uint8 RGB frames of one video."""
    video = np.empty((plan.frames, height, width, 3), dtype=np.uint8)
    video[:] = BACKGROUND if plan.background == "flat" else background_image(plan.background, plan.background_seed,
                                                                              width, height)
    if plan.distractor is not None:  # still, and under the moving shape: it may hide the distractor, never the reverse
        d = plan.distractor
        video[:, shape_mask(d.shape, d.size, *d.center, width, height)] = COLORS[d.color]
    for frame in range(plan.frames):
        video[frame][object_mask(plan, frame, width, height)] = COLORS[plan.color(frame)]
    return video


def encode_avi(frames: np.ndarray, fps: int, path: Path) -> None:
    """Encode [T, H, W, 3] uint8 RGB frames as MPEG-4 in an AVI at `path`, atomically and bit-exactly."""
    count, height, width, _ = frames.shape
    partial = path.with_name(path.name + ".partial")
    command = [
        ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
        "-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p",
        # One thread and bitexact flags: the same frames give the same bytes on any machine.
        "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
        "-f", "avi", str(partial),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True, timeout=_ENCODE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as error:
        partial.unlink(missing_ok=True)
        raise SynthError(f"ffmpeg took over {_ENCODE_TIMEOUT_S:.0f} s to encode {path}.") from error
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        message = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise SynthError(f"ffmpeg failed to encode {path}: {message[0]}")
    os.replace(partial, path)
