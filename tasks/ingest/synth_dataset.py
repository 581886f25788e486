"""A small synthetic dataset in the exact MSVD-QA layout, with balanced answers: videos, question files,
the YouTube mapping and a GloVe-format file."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tasks.ingest.synth import (DISTRACTOR_WORDS, TEMPLATES, SynthError, VideoPlan, _rng, encode_avi, plan_videos,
                                questions_for, render_frames)
from tasks.text.vocabulary import tokenize

# MSVD-QA: train vids 1-1200, val 1201-1450, test 1451-1970.
_TRAIN_SHARE = 1200 / 1970
_VAL_SHARE = 250 / 1970
SPLITS: tuple[str, ...] = ("train", "val", "test")


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
    world: str = "default"


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
    world: str = "default",
) -> SynthSummary:
    """Write a synthetic MSVD-QA dataset of `world` (videos, QA json, mapping, GloVe) into `out`."""
    if fps < 1:
        raise SynthError(f"fps must be at least 1, got {fps}.")
    if glove_dim < 1:
        raise SynthError(f"glove_dim must be at least 1, got {glove_dim}.")
    plans = plan_videos(videos, seed, frames, width=width, height=height, world=world)
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
        world=world,
    )
