"""The pipeline's stages on the real data in ../shared/data (skipped, saying why, where it is absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata


def _config(tmp_path: Path, root: Path) -> Path:
    data = {
        "data_dir": str(tmp_path),
        "dataset": {"name": "msvd_mini", "root": str(root)},
        "store": {"path": str(tmp_path / "store.zarr")},
        "clips": {"num_clips": 8, "frames_per_clip": 16, "sampling": "hcrn", "appearance_size": 224,
                  "motion_size": 112, "videos_per_task": 3},
        "text": {"glove_path": None},
        "runner": {"kind": "local", "workers": 2},
    }
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "cli.app", *args], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_real_msvd_clips_and_text_on_the_mini_dataset(tmp_path):
    root = shared_data("msvd-mini")
    config = str(_config(tmp_path, root))
    layout = _cli("ingest", config, "--json")
    assert layout["videos_present"] == 5 and len(layout["missing_videos"]) == 1965
    clips = _cli("clips", config, "--json")
    # The 5 real clips decode; the 1,965 mapped videos without a file are quarantined, not stored as zeros.
    assert clips["complete"] == 5
    assert clips["quarantined"] == 1965
    text = _cli("text", config, "--json")
    assert text["questions"] == {"train": 102, "val": 22, "test": 23}
    assert text["glove_found"] == 0
    info = _cli("store", "info", config, "--json")
    group = next(g for g in info["groups"] if g["kind"] == "clips")
    assert group["complete"] == 5
    reasons = {q["reason"] for q in group["quarantined"]}
    assert reasons == {"missing file"}
    out = tmp_path / "clip.npy"
    shown = _cli("store", "show", config, "3qqEKTPxLNs_1_15", "--out", str(out), "--json")
    frames = np.load(out)
    assert frames.shape == (8, 16, 224, 224, 3) and frames.dtype == np.uint8
    assert frames.std() > 10  # real footage, not a zero-filled row
    assert shown["video"] == "3qqEKTPxLNs_1_15"
