"""A small synthetic dataset in the exact MSVD-QA layout, with balanced answers.

Every video shows one filled shape on a dark-grey background that moves in a straight line
and changes colour once; six fixed question templates ask about it. Each attribute is drawn
from its own seeded stream of shuffled blocks, so every answer of every template occurs
equally often (within one); the streams are independent, so a question-only model stays
close to chance.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from configs.errors import UserError
from tasks.ffmpeg_bin import ffmpeg_binary
from tasks.text import tokenize

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "purple": (160, 32, 240),
}
BACKGROUND: tuple[int, int, int] = (40, 40, 40)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
SPEEDS: tuple[str, ...] = ("slow", "fast")
ASKED_COLORS: tuple[str, ...] = ("start", "end")  # which colour the "when" question names

TEMPLATES: tuple[str, ...] = ("what_color_start", "what_color_end", "who", "where", "how", "when")
DISTRACTOR_WORDS: tuple[str, ...] = ("orange", "pink", "hexagon", "jumps", "dog", "table", "sometimes")

# Per-axis unit vectors in image coordinates (y grows downwards).
_DIRECTION_STEP: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# Fast objects cross almost all the free room; slow ones 1/2.5 of that (still ~0.28 of the short side).
_FAST_TRAVEL_OF_ROOM = 0.95
_FAST_OVER_SLOW = 2.5
_NAME_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
# MSVD-QA: train vids 1-1200, val 1201-1450, test 1451-1970.
_TRAIN_SHARE = 1200 / 1970
_VAL_SHARE = 250 / 1970
SPLITS: tuple[str, ...] = ("train", "val", "test")
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


@dataclass(frozen=True)
class SynthSummary:
    """What `generate_dataset` wrote."""

    root: Path
    videos: int
    videos_per_split: dict[str, int]
    questions_per_split: dict[str, int]
    answer_counts: dict[str, dict[str, int]]  # template -> answer -> count, over all splits
    glove_path: Path
    plans: list[VideoPlan] = field(repr=False)


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
    if videos < len(SPLITS):
        raise SynthError(f"videos must be at least {len(SPLITS)} (one per split), got {videos}.")
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


def plan_videos(videos: int, seed: int, frames: int, *, width: int = 128, height: int = 96) -> list[VideoPlan]:
    """The attributes, timing and path of every video, without drawing anything."""
    _check_parameters(videos, frames, width, height)
    names = _clip_names(videos, _rng(seed, 0))
    color_pairs = _balanced_color_pairs(videos, _rng(seed, 1))
    shapes = _balanced_stream(SHAPES, videos, _rng(seed, 2))
    directions = _balanced_stream(DIRECTIONS, videos, _rng(seed, 3))
    speeds = _balanced_stream(SPEEDS, videos, _rng(seed, 4))
    asked = _balanced_stream(ASKED_COLORS, videos, _rng(seed, 5))
    placement = _rng(seed, 6)

    size = round(min(width, height) / 4)
    room = min(width, height) - size  # free travel along the shorter axis
    fast_travel = _FAST_TRAVEL_OF_ROOM * room
    # The change frame falls in the middle third: [ceil(F/3), floor(2F/3)).
    first_change = -(-frames // 3)
    change_stop = max(first_change + 1, (2 * frames) // 3)

    plans: list[VideoPlan] = []
    for i in range(videos):
        travel = fast_travel if speeds[i] == "fast" else fast_travel / _FAST_OVER_SLOW
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
    half = plan.size / 2
    # Pixel centres sit at integer + 0.5.
    dx = (np.arange(width) + 0.5 - cx)[None, :]
    dy = (np.arange(height) + 0.5 - cy)[:, None]
    if plan.shape == "circle":
        return dx * dx + dy * dy <= half * half
    if plan.shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if plan.shape == "triangle":
        # Apex up, base down: the half-width grows linearly from 0 at the top to `half` at the base.
        return (dy >= -half) & (dy <= half) & (np.abs(dx) <= (dy + half) / 2)
    raise SynthError(f"unknown shape {plan.shape!r}.")


def render_frames(plan: VideoPlan, width: int, height: int) -> np.ndarray:
    """[frames, height, width, 3] uint8 RGB frames of one video."""
    video = np.empty((plan.frames, height, width, 3), dtype=np.uint8)
    video[:] = BACKGROUND
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


def split_sizes(videos: int) -> dict[str, int]:
    """Videos per split in MSVD-QA proportions, at least one each."""
    train = max(1, round(videos * _TRAIN_SHARE))
    val = max(1, round(videos * _VAL_SHARE))
    train = min(train, videos - val - 1)  # leave the test split at least one video
    return {"train": train, "val": val, "test": videos - train - val}


def _split_of_videos(plans: list[VideoPlan]) -> Iterator[tuple[str, list[VideoPlan]]]:
    begin = 0
    for split, size in split_sizes(len(plans)).items():
        yield split, plans[begin : begin + size]
        begin += size


def _write_text_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _glove_text(words: Sequence[str], dim: int, seed: int) -> str:
    vectors = _rng(seed, 7).normal(0.0, 0.5, size=(len(words), dim))
    lines = (word + " " + " ".join(f"{v:.5f}" for v in row) for word, row in zip(words, vectors, strict=True))
    return "\n".join(lines) + "\n"


def generate_dataset(
    out: Path,
    videos: int,
    seed: int,
    *,
    width: int = 128,
    height: int = 96,
    frames: int = 48,
    fps: int = 16,
    glove_dim: int = 300,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic MSVD-QA dataset (videos, QA json, mapping, GloVe) into `out`."""
    if fps < 1:
        raise SynthError(f"fps must be at least 1, got {fps}.")
    if glove_dim < 1:
        raise SynthError(f"glove_dim must be at least 1, got {glove_dim}.")
    plans = plan_videos(videos, seed, frames, width=width, height=height)
    out = Path(out)
    video_dir = out / "video"
    video_dir.mkdir(parents=True, exist_ok=True)

    for done, plan in enumerate(plans, start=1):
        encode_avi(render_frames(plan, width, height), fps, video_dir / f"{plan.name}.avi")
        if progress is not None:
            progress(done, len(plans))

    _write_text_atomic(out / "youtube_mapping.txt", "".join(f"{p.name} vid{p.vid}\n" for p in plans))

    next_id = 0
    questions_per_split: dict[str, int] = {}
    videos_per_split: dict[str, int] = {}
    answer_counts: dict[str, Counter[str]] = {template: Counter() for template in TEMPLATES}
    words: set[str] = set()
    for split, split_plans in _split_of_videos(plans):
        records = []
        for plan in split_plans:
            for qa in questions_for(plan):
                records.append({"answer": qa.answer, "id": next_id, "question": qa.question, "video_id": plan.vid})
                next_id += 1
                answer_counts[qa.template][qa.answer] += 1
                words.update(tokenize(qa.question))  # the tokens the text stage will look up
                words.add(qa.answer)
        _write_text_atomic(out / f"{split}_qa.json", json.dumps(records))
        questions_per_split[split] = len(records)
        videos_per_split[split] = len(split_plans)

    glove_words = sorted(words) + [word for word in DISTRACTOR_WORDS if word not in words]
    glove_path = out / "glove.txt"
    _write_text_atomic(glove_path, _glove_text(glove_words, glove_dim, seed))

    return SynthSummary(
        root=out,
        videos=videos,
        videos_per_split=videos_per_split,
        questions_per_split=questions_per_split,
        answer_counts={template: dict(sorted(counts.items())) for template, counts in answer_counts.items()},
        glove_path=glove_path,
        plans=plans,
    )

