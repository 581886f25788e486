"""The question-only baseline from the text store alone, on tiny annotations and on real MSVD-QA."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from configs.loader import resolve_paths, validate_config
from configs.schema import PipelineConfig

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "msvd-qa"


def write_annotations(root: Path, videos: int = 40, seed: int = 0) -> None:
    """MSVD-QA style question files (no videos): five templated questions per video, 70/15/15 split."""
    rng = random.Random(seed)
    shapes, colors = ["circle", "square", "triangle", "star"], ["red", "green", "blue", "yellow"]
    root.mkdir(parents=True, exist_ok=True)
    splits = {"train": range(0, int(videos * 0.7)), "val": range(int(videos * 0.7), int(videos * 0.85)),
              "test": range(int(videos * 0.85), videos)}
    next_id = 0
    for split, vids in splits.items():
        records = []
        for vid in vids:
            shape, color = rng.choice(shapes), rng.choice(colors)
            for question, answer in (
                (f"what color is the {shape}?", color),
                ("who is moving across the screen?", shape),
                (f"where does the {color} object move?", rng.choice(["left", "right"])),
                (f"how does the {shape} move?", rng.choice(["slowly", "quickly"])),
                (f"when is the {shape} {color}?", rng.choice(["first", "later"])),
            ):
                records.append({"answer": answer, "id": next_id, "question": question, "video_id": vid})
                next_id += 1
        (root / f"{split}_qa.json").write_text(json.dumps(records))


def tiny_config(tmp_path: Path, root: Path | None = None, **sections: dict) -> PipelineConfig:
    """A text-only config with every path in tmp_path; `sections` update config sections."""
    data = {
        "dataset": {"name": "tinytext", "root": str(root or tmp_path / "dataset")},
        "store": {"path": str(tmp_path / "store.zarr")},
        "text": {"word_dim": 8},
        "model": {"name": "question_only", "module_dim": 16, "dropout": 0.0},
        "train": {"device": "cpu", "checkpoint_dir": str(tmp_path / "ckpt"), "baseline": False,
                  "autoencoder": {"epochs": 0}, "qa": {"epochs": 3, "batch_size": 16, "lr": 0.01}},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifact_location": str(tmp_path / "mlartifacts"),
                     "experiment": "tiny", "register_model": False},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return resolve_paths(validate_config(data), tmp_path)


def test_baseline_trains_from_text_alone_and_logs_its_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from flows.baseline import run_baseline

    write_annotations(tmp_path / "dataset")
    config = tiny_config(tmp_path)
    result = run_baseline(config)

    assert set(result) >= {"run_id", "val_acc", "test_acc", "test_acc_by_type"}
    assert 0.0 <= result["test_acc"] <= 1.0 and 0.0 <= result["val_acc"] <= 1.0
    assert set(result["test_acc_by_type"]) == {"what", "who", "where", "how", "when"}
    # Three templates have two answers only, so even a question-only model beats chance.
    assert result["test_acc"] > 0.2
    run = MlflowClient(config.tracking.uri).get_run(result["run_id"])
    assert run.data.tags["model"] == "question_only"
    assert run.data.metrics["test_acc"] == pytest.approx(result["test_acc"])
    assert {"val_acc_what", "best_val_acc", "test_acc_who"} <= set(run.data.metrics)
    assert run.inputs.dataset_inputs[0].dataset.name == "tinytext-store"
    assert not (tmp_path / "store.zarr" / "tinytext" / "features").exists()  # no video stage ran


@pytest.mark.slow
@pytest.mark.realdata
def test_baseline_on_real_msvd_qa_beats_the_first_word_prior(tmp_path):
    if not (REAL / "train_qa.json").exists():
        pytest.skip(f"real data {REAL} is absent")
    from flows.baseline import run_baseline

    config = tiny_config(tmp_path, root=REAL, dataset={"name": "msvd_qa"}, text={"word_dim": 300},
                         model={"module_dim": 256, "dropout": 0.15},
                         train={"qa": {"epochs": 1, "batch_size": 256, "lr": 0.002}})
    result = run_baseline(config)
    assert result["test_acc"] > 0.1886, result  # most frequent answer per first word
