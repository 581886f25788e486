"""The demo's model on a world the demo does not use: it must still beat the question-only floor widely."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
WORLD = "fast"  # other speeds than the demo's: fast objects travel 0.8 of the free room, slow 0.45
MARGIN = 0.25  # the demo's own gap is ~0.6; a model that ignores the video stays near the floor


@pytest.mark.slow
def test_demo_model_beats_question_only_on_an_unseen_world(tmp_path):
    data = tmp_path / "data"
    overrides = {
        "data_dir": data, "dataset.root": data / "dataset", "store.path": data / "store",
        "text.glove_path": data / "dataset" / "glove.txt", "train.checkpoint_dir": data / "checkpoints",
        "tracking.uri": f"sqlite:///{data / 'mlflow.db'}", "tracking.artifact_location": data / "mlartifacts",
        # A sixth of the demo's videos, for the suite's time; more epochs make up part of the steps. Measured
        # on dev-2c (AMD EPYC): MSVQA 0.725 against the question-only model's 0.287, pipeline 181 s, on one
        # thread; with torch's default threads (eighth session) 0.702 against 0.287, the test 149 s.
        "dataset.synthetic.world": WORLD, "dataset.synthetic.videos": 160,
        "train.qa.epochs": 30,
        # The demo's model and sizes; only the comparison with DualVGR is left out, to keep the test short.
        "train.compare_with": "[question_only]",
    }
    args = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    done = subprocess.run([sys.executable, "-m", "cli.app", "run", str(DEMO), *args, "--json"], capture_output=True,
                          text=True, cwd=REPO, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["test_acc"] >= result["baseline_test_acc"] + MARGIN, result
