"""The synthetic MSVD-QA generator: layout, schema, balance, determinism and real video content."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from tasks.ingest.layout import has_dataset
from tasks.text.vocabulary import tokenize
from tasks.ingest.synth import (
    COLORS,
    DISTRACTOR_WORDS,
    TEMPLATES,
    SynthError,
    VideoPlan,
    object_mask,
    plan_videos,
    questions_for,
)
from tasks.ingest.synth_dataset import SPLITS, SynthSummary, generate_dataset, split_sizes

VIDEOS, SEED, WIDTH, HEIGHT, FRAMES, FPS, GLOVE_DIM = 12, 7, 64, 48, 24, 8, 6
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{11}_(\d+)_(\d+)$")
PROGRESS_CALLS: list[tuple[int, int]] = []


def _generate(out: Path, seed: int = SEED) -> SynthSummary:
    return generate_dataset(
        out, VIDEOS, seed, width=WIDTH, height=HEIGHT, frames=FRAMES, fps=FPS, glove_dim=GLOVE_DIM,
        progress=lambda done, total: PROGRESS_CALLS.append((done, total)),
    )  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    PROGRESS_CALLS.clear()
    return _generate(tmp_path_factory.mktemp("synth") / "msvd")


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return _generate(tmp_path_factory.mktemp("synth_twin") / "msvd")


def _records(root: Path, split: str) -> list[dict]:
    return json.loads((root / f"{split}_qa.json").read_text())


def test_layout_and_progress(dataset: SynthSummary) -> None:
    root = dataset.root
    assert has_dataset(root)
    assert sorted(p.name for p in root.iterdir()) == [
        "glove.txt", "test_qa.json", "train_qa.json", "val_qa.json", "video", "youtube_mapping.txt",
    ]  # fmt: skip
    assert sorted(p.name for p in (root / "video").iterdir()) == sorted(f"{p.name}.avi" for p in dataset.plans)
    assert PROGRESS_CALLS == [(done, VIDEOS) for done in range(1, VIDEOS + 1)]


def test_is_msvd_layout_needs_every_part(dataset: SynthSummary, tmp_path: Path) -> None:
    assert not has_dataset(tmp_path)
    for name in ("train_qa.json", "val_qa.json", "test_qa.json", "youtube_mapping.txt"):
        (tmp_path / name).write_text("[]")
    assert not has_dataset(tmp_path)  # no video/ folder yet
    (tmp_path / "video").mkdir()
    assert has_dataset(tmp_path)
    (tmp_path / "val_qa.json").unlink()
    assert not has_dataset(tmp_path)


def test_names_and_mapping(dataset: SynthSummary) -> None:
    lines = (dataset.root / "youtube_mapping.txt").read_text().splitlines()
    assert len(lines) == VIDEOS
    names = []
    for number, line in enumerate(lines, start=1):
        name, vid = line.split(" ")
        assert vid == f"vid{number}"
        match = NAME_PATTERN.match(name)
        assert match is not None, name
        assert int(match.group(1)) < int(match.group(2))
        names.append(name)
    assert len(set(names)) == VIDEOS
    assert names == [plan.name for plan in dataset.plans]


def test_qa_schema_ids_and_split_by_video(dataset: SynthSummary) -> None:
    sizes = split_sizes(VIDEOS)
    assert sizes == {"train": 7, "val": 2, "test": 3}
    assert dataset.videos_per_split == sizes
    expected_id = 0
    first_vid = 1
    for split in SPLITS:
        records = _records(dataset.root, split)
        assert len(records) == dataset.questions_per_split[split] == sizes[split] * len(TEMPLATES)
        for record in records:
            assert list(record) == ["answer", "id", "question", "video_id"]
            assert [type(record[key]) for key in record] == [str, int, str, int]
            assert record["id"] == expected_id
            expected_id += 1
            assert record["question"] == record["question"].lower() and record["question"].endswith("?")
            assert re.fullmatch(r"[a-z]+", record["answer"])
        # Each split holds a contiguous block of whole videos, in MSVD-QA order.
        assert sorted({r["video_id"] for r in records}) == list(range(first_vid, first_vid + sizes[split]))
        first_vid += sizes[split]


def test_qa_matches_plans(dataset: SynthSummary) -> None:
    records = [r for split in SPLITS for r in _records(dataset.root, split)]
    by_video: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for record in records:
        by_video[record["video_id"]].append((record["question"], record["answer"]))
    for plan in dataset.plans:
        assert by_video[plan.vid] == [(qa.question, qa.answer) for qa in questions_for(plan)]
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for plan in dataset.plans:
        for qa in questions_for(plan):
            counts[qa.template][qa.answer] += 1
    assert dataset.answer_counts == {t: dict(sorted(counts[t].items())) for t in TEMPLATES}


def test_questions_of_one_plan() -> None:
    plan = VideoPlan(
        vid=3, name="abcdefghijk_1_2", shape="square", color_start="red", color_end="purple", change_frame=10,
        direction="up", speed="fast", asked_color="end", size=12, start_center=(30.0, 40.0),
        end_center=(30.0, 10.0), frames=24,
    )  # fmt: skip
    assert [(qa.template, qa.question, qa.answer) for qa in questions_for(plan)] == [
        ("what_color_start", "what color is the square at the beginning?", "red"),
        ("what_color_end", "what color does the square turn into?", "purple"),
        ("who", "who is moving across the screen?", "square"),
        ("where", "where does the red object move?", "up"),
        ("how", "how does the square move?", "quickly"),
        ("when", "when is the square purple?", "later"),
    ]
    assert plan.color(9) == "red" and plan.color(10) == "purple"
    assert plan.center(0) == (30.0, 40.0) and plan.center(23) == (30.0, 10.0)


@pytest.mark.parametrize("videos", [240, 241])
def test_answers_balanced_per_template(videos: int) -> None:
    plans = plan_videos(videos, seed=3, frames=48)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for plan in plans:
        for qa in questions_for(plan):
            counts[qa.template][qa.answer] += 1
    expected_values = {
        "what_color_start": set(COLORS), "what_color_end": set(COLORS), "who": {"circle", "square", "triangle"},
        "where": {"left", "right", "up", "down"}, "how": {"slowly", "quickly"}, "when": {"first", "later"},
    }  # fmt: skip
    for template, values in expected_values.items():
        assert set(counts[template]) == values
        mean = videos / len(values)
        assert all(math.floor(mean) <= n <= math.ceil(mean) for n in counts[template].values()), counts[template]
    assert all(plan.color_start != plan.color_end for plan in plans)


def test_question_only_majority_is_near_chance() -> None:
    # The best a question-only model can do is answer the majority for each exact question text.
    plans = plan_videos(2400, seed=11, frames=48)
    answers: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for plan in plans:
        for qa in questions_for(plan):
            answers[qa.template][qa.question][qa.answer] += 1
    for template, by_question in answers.items():
        classes = len({a for counter in by_question.values() for a in counter})
        correct = sum(max(counter.values()) for counter in by_question.values())
        total = sum(sum(counter.values()) for counter in by_question.values())
        assert correct / total < 1 / classes + 0.05, template


def test_plans_stay_in_frame_and_change_in_middle_third() -> None:
    width, height, frames = 128, 96, 48
    plans = plan_videos(60, seed=5, frames=frames, width=width, height=height)
    travels = {"slow": set(), "fast": set()}
    for plan in plans:
        assert plan.size == 24
        assert 16 <= plan.change_frame < 32
        for frame in (0, frames - 1):
            x, y = plan.center(frame)
            half = plan.size / 2
            assert half <= x <= width - half and half <= y <= height - half
            # Nothing is clipped: the same shape drawn on a canvas padded by 8 px covers as many pixels.
            padded = replace(plan, start_center=(plan.start_center[0] + 8, plan.start_center[1] + 8),
                             end_center=(plan.end_center[0] + 8, plan.end_center[1] + 8))  # fmt: skip
            drawn = object_mask(plan, frame, width, height).sum()
            assert drawn > 0 and drawn == object_mask(padded, frame, width + 16, height + 16).sum()
        (x0, y0), (x1, y1) = plan.start_center, plan.end_center
        travels[plan.speed].add(round(abs(x1 - x0) + abs(y1 - y0), 6))
    assert len(travels["slow"]) == len(travels["fast"]) == 1
    slow, fast = travels["slow"].pop(), travels["fast"].pop()
    assert fast / slow == pytest.approx(2.5)
    assert slow >= width / 5


def test_glove_covers_every_token(dataset: SynthSummary) -> None:
    lines = dataset.glove_path.read_text().splitlines()
    words = [line.split(" ")[0] for line in lines]
    assert len(set(words)) == len(words)
    for line in lines:
        values = line.split(" ")[1:]
        assert len(values) == GLOVE_DIM
        assert all(re.fullmatch(r"-?\d+\.\d{5}", v) for v in values)
    tokens = {
        token
        for split in SPLITS
        for record in _records(dataset.root, split)
        for token in tokenize(record["question"]) + [record["answer"]]
    }
    assert "screen" in tokens and "?" not in "".join(tokens)
    assert tokens <= set(words)
    assert set(DISTRACTOR_WORDS) <= set(words) - tokens


def test_same_seed_gives_identical_files(dataset: SynthSummary, twin: SynthSummary) -> None:
    files = sorted(p.relative_to(dataset.root) for p in dataset.root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(twin.root) for p in twin.root.rglob("*") if p.is_file())
    for relative in files:
        assert (dataset.root / relative).read_bytes() == (twin.root / relative).read_bytes(), relative


def test_videos_carry_no_version_strings(dataset: SynthSummary) -> None:
    # Bitexact muxing/encoding omits the Lavf/Lavc version tags, so another ffmpeg build gives the same bytes.
    for path in (dataset.root / "video").iterdir():
        assert b"Lav" not in path.read_bytes(), path.name


def test_other_seed_gives_other_plans() -> None:
    first = plan_videos(VIDEOS, SEED, FRAMES, width=WIDTH, height=HEIGHT)
    assert first == plan_videos(VIDEOS, SEED, FRAMES, width=WIDTH, height=HEIGHT)
    other = plan_videos(VIDEOS, SEED + 1, FRAMES, width=WIDTH, height=HEIGHT)
    assert [p.name for p in first] != [p.name for p in other]


def _nearest_color(rgb: np.ndarray) -> str:
    return min(COLORS, key=lambda name: float(np.sum((np.array(COLORS[name]) - rgb) ** 2)))


def _eroded(mask: np.ndarray, steps: int) -> np.ndarray:
    # Chroma is subsampled 2x2, so keep only pixels away from the shape's edge.
    for _ in range(steps):
        inner = mask.copy()
        inner[1:] &= mask[:-1]
        inner[:-1] &= mask[1:]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        inner[0] = inner[-1] = False
        inner[:, 0] = inner[:, -1] = False
        mask = inner
    return mask


def _centroid(frame: np.ndarray) -> np.ndarray:
    moving = np.abs(frame.astype(int) - 40).sum(axis=2) > 90
    ys, xs = np.nonzero(moving)
    return np.array([xs.mean(), ys.mean()])


def test_decoded_videos_show_the_plan(dataset: SynthSummary) -> None:
    for plan in dataset.plans:
        with av.open(str(dataset.root / "video" / f"{plan.name}.avi")) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(frames) == FRAMES
        assert frames[0].shape == (HEIGHT, WIDTH, 3)
        for index, expected in ((0, plan.color_start), (FRAMES - 1, plan.color_end)):
            inside = _eroded(object_mask(plan, index, WIDTH, HEIGHT), 2)
            assert inside.sum() >= 4
            mean = frames[index][inside].mean(axis=0)
            assert _nearest_color(mean) == expected
            assert np.abs(mean - COLORS[expected]).max() < 30
        # The shape's pixel centroid moves along the planned axis by the planned distance.
        moved = _centroid(frames[-1]) - _centroid(frames[0])
        planned = np.subtract(plan.end_center, plan.start_center)
        assert np.abs(moved - planned).max() < 1.0, (plan.direction, moved, planned)
        axis = 0 if plan.direction in ("left", "right") else 1
        sign = 1 if plan.direction in ("right", "down") else -1
        assert sign * moved[axis] > WIDTH / 6


def test_bad_parameters_raise() -> None:
    with pytest.raises(SynthError, match="videos must be at least 3"):
        plan_videos(2, seed=0, frames=24)
    with pytest.raises(SynthError, match="even"):
        plan_videos(6, seed=0, frames=24, width=65, height=48)
    with pytest.raises(SynthError, match="frames must be at least 6"):
        plan_videos(6, seed=0, frames=5)


def _object_pixels(frame: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - 40).sum(axis=2) > 90  # [H, W]: not the dark-grey background


def _answers_seen_in(frames: list[np.ndarray], question: str) -> str:
    """The answer to one templated question, read off the decoded frames alone (never from the plan)."""
    first, last = _object_pixels(frames[0]), _object_pixels(frames[-1])

    def colour(frame: np.ndarray, mask: np.ndarray) -> str:
        return _nearest_color(frame[_eroded(mask, 1)].mean(axis=0))

    def fill(mask: np.ndarray) -> float:  # share of its bounding box the shape covers
        ys, xs = np.nonzero(mask)
        return mask.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))

    moved = _centroid(frames[-1]) - _centroid(frames[0])
    if question.startswith("what color is"):
        return colour(frames[0], first)
    if question.startswith("what color does"):
        return colour(frames[-1], last)
    if question.startswith("who"):
        ratio = (fill(first) + fill(last)) / 2  # square 1, circle pi/4, triangle 1/2
        return "square" if ratio > 0.9 else "circle" if ratio > 0.65 else "triangle"
    if question.startswith("where"):
        if abs(moved[0]) > abs(moved[1]):
            return "right" if moved[0] > 0 else "left"
        return "down" if moved[1] > 0 else "up"
    if question.startswith("how"):
        # Both speeds are the same distance on either axis: ~0.71 of the short side fast, ~0.28 slow.
        return "quickly" if np.abs(moved).max() > 0.5 * min(WIDTH, HEIGHT) else "slowly"
    if question.startswith("when"):
        asked = question.rstrip("?").split()[-1]
        return "first" if asked == colour(frames[0], first) else "later"
    raise AssertionError(f"no template for {question!r}")


def test_every_answer_in_the_files_is_what_the_video_shows(dataset: SynthSummary) -> None:
    names = dict(line.split()[::-1] for line in (dataset.root / "youtube_mapping.txt").read_text().splitlines())
    records = [r for split in SPLITS for r in _records(dataset.root, split)]
    for vid in sorted({r["video_id"] for r in records}):
        with av.open(str(dataset.root / "video" / f"{names[f'vid{vid}']}.avi")) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        for record in (r for r in records if r["video_id"] == vid):
            assert record["answer"] == _answers_seen_in(frames, record["question"]), record
