"""Synthetic worlds other than the default: each a valid, balanced MSVD-QA dataset whose videos show what
its questions ask, and the default world exactly as it always was."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import av
import numpy as np
import pytest

from configs.errors import UserError
from configs.schema import DatasetConfig
from tasks.ingest.layout import has_dataset
from tasks.ingest.sources import ensure_dataset
from tasks.ingest.synth import (
    COLORS,
    object_mask,
    plan_videos,
    questions_for,
    render_frames,
)
from tasks.ingest.synth_dataset import SPLITS, generate_dataset
from tasks.ingest.synth_worlds import WORLDS, shape_mask

WIDTH, HEIGHT, FRAMES = 64, 48, 12


@pytest.mark.parametrize("world", [name for name in WORLDS if name != "default"])
def test_each_world_writes_a_valid_msvd_qa_dataset(tmp_path: Path, world: str) -> None:
    summary = generate_dataset(tmp_path / world, 6, 3, width=WIDTH, height=HEIGHT, frames=FRAMES, fps=8, glove_dim=4,
                               world=world)
    assert has_dataset(summary.root) and summary.world == world
    records = [r for split in SPLITS for r in json.loads((summary.root / f"{split}_qa.json").read_text())]
    assert len(records) == 6 * 6
    assert {r["answer"] for r in records if r["question"] == "who is moving across the screen?"} <= set(
        WORLDS[world].shapes)
    assert len(list((summary.root / "video").glob("*.avi"))) == 6


@pytest.mark.parametrize("world", list(WORLDS))
def test_answers_are_balanced_in_every_world(world: str) -> None:
    videos = 241
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for plan in plan_videos(videos, seed=4, frames=48, world=world):
        for qa in questions_for(plan):
            counts[qa.template][qa.answer] += 1
    assert set(counts["who"]) == set(WORLDS[world].shapes)
    assert set(counts["what_color_end"]) == set(COLORS)
    for template, answers in counts.items():
        mean = videos / len(answers)
        assert all(math.floor(mean) <= n <= math.ceil(mean) for n in answers.values()), (template, answers)


def test_default_world_is_unchanged() -> None:
    # Digests taken from the generator before worlds existed (seed 7, 12 videos, 64x48, 24 frames).
    plans = plan_videos(12, 7, 24, width=64, height=48)
    assert plans == plan_videos(12, 7, 24, width=64, height=48, world="default")
    frames = hashlib.sha256(b"".join(render_frames(p, 64, 48).tobytes() for p in plans)).hexdigest()
    questions = hashlib.sha256(json.dumps([[qa.answer for qa in questions_for(p)] for p in plans]).encode()).hexdigest()
    assert (frames, questions) == (DEFAULT_FRAMES_SHA, DEFAULT_QUESTIONS_SHA)


DEFAULT_FRAMES_SHA = "cafa6d09593f92bdfbfcb06dd6ff7ddfab0945b92cbb1e05cefd2d7f09844b07"
DEFAULT_QUESTIONS_SHA = "912710f0c7f20e26f97a99b6e61ca28bd74e2eec35656f112c986069a5792bbc"


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _inside(mask: np.ndarray) -> np.ndarray:
    # Keep pixels two away from the edge: chroma is subsampled 2x2, edges blend with the background.
    for _ in range(2):
        inner = mask.copy()
        inner[1:] &= mask[:-1]
        inner[:-1] &= mask[1:]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        mask = inner
    return mask


@pytest.mark.parametrize("world", ["textured", "mixed"])
def test_textured_backgrounds_differ_from_flat_and_keep_the_object_visible(tmp_path: Path, world: str) -> None:
    width, height = 128, 96
    summary = generate_dataset(tmp_path / world, 4, 5, width=width, height=height, frames=FRAMES, fps=8,
                               glove_dim=4, world=world)
    for plan in summary.plans:
        frames = _decoded(summary.root / "video" / f"{plan.name}.avi")
        assert plan.background in ("noise", "texture")
        drawn = render_frames(plan, width, height)[0]
        background = ~object_mask(plan, 0, width, height)
        if plan.distractor is not None:
            d = plan.distractor
            background &= ~shape_mask(d.shape, d.size, *d.center, width, height)
        pixels = drawn[background].astype(int)
        # Not the flat grey: many distinct values, spread out, yet dark enough for the six colours to stand out.
        assert (np.abs(pixels - 40).sum(axis=1) > 12).mean() > 0.5
        assert pixels.std(axis=0).min() > 4 and pixels.max() <= 130
        for index, expected in ((0, plan.color_start), (FRAMES - 1, plan.color_end)):
            inside = _inside(object_mask(plan, index, width, height))
            mean = frames[index][inside].mean(axis=0)
            nearest = min(COLORS, key=lambda name: float(np.sum((np.array(COLORS[name]) - mean) ** 2)))
            assert nearest == expected, (plan.name, index, mean)


def test_distractors_are_still_and_never_share_the_moving_shape_or_colours() -> None:
    plans = plan_videos(60, seed=2, frames=FRAMES, width=128, height=96, world="distractors")
    for plan in plans:
        d = plan.distractor
        assert d is not None and d.shape != plan.shape and d.color not in (plan.color_start, plan.color_end)
        video = render_frames(plan, 128, 96)
        still = shape_mask(d.shape, d.size, *d.center, 128, 96)
        for frame in (0, FRAMES - 1):
            visible = still & ~object_mask(plan, frame, 128, 96)
            assert (video[frame][visible] == COLORS[d.color]).all()
            # The moving shape is drawn on top: all of it shows its own colour.
            assert (video[frame][object_mask(plan, frame, 128, 96)] == COLORS[plan.color(frame)]).all()


def test_new_shapes_cover_their_geometric_area() -> None:
    size, canvas = 200, 220  # large, so the pixel grid's edge effects stay under 2%
    area = {name: shape_mask(name, size, 110.0, 110.0, canvas, canvas).sum() for name in ("diamond", "cross", "ring")}
    half, arm = size / 2, size / 3
    assert area["diamond"] == pytest.approx(2 * half * half, rel=0.03)
    assert area["cross"] == pytest.approx(2 * size * arm - arm * arm, rel=0.03)
    assert area["ring"] == pytest.approx(math.pi * half * half * (1 - 0.55**2), rel=0.03)


def test_shapes_world_varies_sizes_and_fast_world_other_travel() -> None:
    sizes = {plan.size for plan in plan_videos(60, seed=1, frames=FRAMES, world="shapes")}
    assert len(sizes) > 5 and min(sizes) >= round(96 * 0.18) and max(sizes) <= round(96 * 0.33)
    travels: dict[str, set[float]] = defaultdict(set)
    for plan in plan_videos(60, seed=1, frames=FRAMES, world="fast"):
        (x0, y0), (x1, y1) = plan.start_center, plan.end_center
        travels[plan.speed].add(round(abs(x1 - x0) + abs(y1 - y0), 6))
    room = 96 - 24
    assert travels == {"fast": {round(0.8 * room, 6)}, "slow": {round(0.45 * room, 6)}}


def test_unknown_world_is_a_user_error_and_config_passes_the_world(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown synthetic world 'moon'"):
        plan_videos(6, 0, FRAMES, world="moon")
    config = DatasetConfig(root=tmp_path / "ds", synthetic={"videos": 6, "width": 64, "height": 48, "frames": 12,
                                                            "glove_dim": 4, "world": "shapes"})
    assert ensure_dataset(config) == "generated"
    answers = {r["answer"] for split in SPLITS for r in json.loads((tmp_path / "ds" / f"{split}_qa.json").read_text())}
    assert answers & {"diamond", "cross", "ring"} and not answers & {"circle", "square", "triangle"}
