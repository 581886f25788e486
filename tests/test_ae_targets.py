"""The autoencoder stage's reconstruction targets, stored once at the decoder's size (tasks/train/targets.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from configs.loader import resolve_paths, validate_config
from configs.schema import PipelineConfig
from storage.store import Store, open_store

TINY = Path(__file__).with_name("tiny.yaml")
VIDEOS = 6
DIMS = (6, 5)  # appearance, motion feature sizes
WORDS = ("what", "who", "is", "the", "red", "blue", "square", "circle", "moving")


def tiny_config(tmp_path: Path, model: str = "dualvgr", **train) -> PipelineConfig:
    """tests/tiny.yaml at 32 px appearance / 16 px motion clips and an 8 px decoder, every path in tmp_path."""
    data = yaml.safe_load(TINY.read_text())
    data["dataset"]["root"] = str(tmp_path / "dataset")
    data["store"] = {"path": str(tmp_path / "store.zarr")}
    data["model"]["name"] = model
    data["train"].update(train, checkpoint_dir=str(tmp_path / "ckpt"))
    data["tracking"].update(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", register_model=False)
    return resolve_paths(validate_config(data), tmp_path)


def write_annotations(root: Path) -> None:
    """A few MSVD-QA records per split about videos 1..VIDEOS."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    qid = 0
    for split, count in (("train", 24), ("val", 8), ("test", 8)):
        records = []
        for _ in range(count):
            words = rng.choice(WORDS[2:], size=3)
            records.append({"id": qid, "video_id": int(rng.integers(1, VIDEOS + 1)),
                            "question": f"{WORDS[qid % 2]} {' '.join(words)}?", "answer": str(rng.choice(WORDS[4:6]))})
            qid += 1
        (root / f"{split}_qa.json").write_text(json.dumps(records))


def write_clip_rows(config: PipelineConfig, rows: range, seed: int) -> None:
    """Random uint8 clips for `rows` of the clip group (grown to hold them), marked complete in one commit."""
    from tasks.video.clips import clip_spec, prepare_clip_group

    store = open_store(config.store)
    group = store.spec_group(config.dataset.name, "clips", clip_spec(config.clips))
    cfg, rng = config.clips, np.random.default_rng(seed)
    c, f = cfg.num_clips, cfg.frames_per_clip

    def write(tx) -> None:
        clips = tx.open(group.ref)
        total = max(rows.stop, clips.num_rows)
        if clips.num_rows:
            clips.grow(total)
        prepare_clip_group(clips, cfg, total)
        for row in rows:
            for name, size in (("appearance", cfg.appearance_size), ("motion", cfg.motion_size)):
                clips.write(name, rng.integers(0, 256, size=(c, f, size, size, 3), dtype=np.uint8), row=row)
        clips.update_attrs(video_ids=list(range(1, total + 1)), names=[f"v{i}" for i in range(1, total + 1)])
        clips.mark_complete(rows)

    store.transact(write, stage="clips", message="test clips")


def write_features(config: PipelineConfig) -> None:
    """Random float16 features for every clip row, marked complete."""
    from tasks.features.extract import FEATURE_DTYPE, feature_spec, prepare_feature_group
    from tasks.video.clips import clip_spec

    store = open_store(config.store)
    clips = store.peek(config.dataset.name, "clips", clip_spec(config.clips))
    group = store.spec_group(config.dataset.name, "features", feature_spec(config.features, clips.ref.spec_hash))
    n, c, f = clips.num_rows, config.clips.num_clips, config.clips.frames_per_clip
    rng = np.random.default_rng(1)

    def write(tx) -> None:
        features = tx.open(group.ref)
        prepare_feature_group(features, n, c, f, DIMS)
        features.write("appearance", rng.normal(size=(n, c, f, DIMS[0])).astype(FEATURE_DTYPE))
        features.write("motion", rng.normal(size=(n, c, DIMS[1])).astype(FEATURE_DTYPE))
        features.update_attrs(video_ids=clips.attrs["video_ids"], names=clips.attrs["names"], clips=clips.ref.path)
        features.mark_complete(range(n))

    store.transact(write, stage="features", message="test features")


@pytest.fixture
def store_config(tmp_path: Path) -> PipelineConfig:
    """A store holding text, clips and features (no targets yet) for tiny_config."""
    from tasks.text.store import build_text

    config = tiny_config(tmp_path)
    write_annotations(Path(config.dataset.root))
    build_text(config.text, config.dataset.root, config.store, config.dataset.name)
    write_clip_rows(config, range(VIDEOS), seed=0)
    write_features(config)
    return config


def block_means(clip: np.ndarray, size: int) -> np.ndarray:
    """Oracle: uint8 [C, F, H, W, 3] with H = W = k * size -> [C, F, 3, size, size], means of k x k blocks of /255."""
    c, f, h, w, _ = clip.shape
    k = h // size
    blocks = (clip.astype(np.float64) / 255).reshape(c, f, size, k, size, k, 3)
    return blocks.mean(axis=(3, 5)).transpose(0, 1, 4, 2, 3)


def targets_group(config: PipelineConfig, store: Store | None = None):
    from tasks.train.targets import KIND, config_targets_spec
    from tasks.video.clips import clip_spec

    store = store or open_store(config.store, mode="r")
    clips = store.peek(config.dataset.name, "clips", clip_spec(config.clips))
    return clips, store.peek(config.dataset.name, KIND, config_targets_spec(config, clips.ref.spec_hash))


def test_stored_targets_are_the_block_means_of_the_clips(store_config):
    from tasks.train.targets import build_targets

    built = build_targets(store_config)
    assert built["built"] == list(range(VIDEOS))
    clips, targets = targets_group(store_config)
    size = store_config.model.decoder_size
    assert targets.completed().all() and targets.attrs["clips"] == clips.ref.path
    for row in (0, VIDEOS - 1):
        for name in ("appearance", "motion"):  # 32 px -> 8 px (4 x 4 blocks), 16 px -> 8 px (2 x 2)
            stored = targets.read(name, row)
            assert stored.dtype == np.float32 and stored.shape == (2, 2, 3, size, size)
            np.testing.assert_allclose(stored, block_means(clips.read(name, row), size), rtol=0, atol=1e-6)


def test_a_second_build_commits_nothing_and_new_clips_build_only_their_rows(store_config):
    from tasks.train.targets import build_targets

    build_targets(store_config)
    tip = Store(store_config.store.path, mode="r").snapshot_id
    again = build_targets(store_config)
    # No commit: the snapshot (part of every checkpoint key) stays, so an interrupted training resumes.
    assert again["built"] == [] and Store(store_config.store.path, mode="r").snapshot_id == tip == again["snapshot"]
    _, before = targets_group(store_config)
    kept = before.read("appearance", 0)

    write_clip_rows(store_config, range(VIDEOS, VIDEOS + 2), seed=5)
    grown = build_targets(store_config)
    assert grown["built"] == [VIDEOS, VIDEOS + 1]
    clips, targets = targets_group(store_config)
    assert targets.num_rows == VIDEOS + 2 and targets.completed().all()
    assert np.array_equal(targets.read("appearance", 0), kept)
    np.testing.assert_allclose(targets.read("motion", VIDEOS + 1), block_means(clips.read("motion", VIDEOS + 1), 8),
                               rtol=0, atol=1e-6)


def test_a_changed_video_loses_its_targets_until_they_are_built_again(store_config):
    from flows.clips import apply_index_plan
    from tasks.ingest.changes import IndexPlan
    from tasks.train.targets import build_targets

    build_targets(store_config)
    clips, _ = targets_group(store_config)
    attrs = clips.attrs
    # What the clip flow does when video 2's file changed: its derived rows are stale until decoded again.
    plan = IndexPlan(video_ids=attrs["video_ids"], names=attrs["names"], files={}, changed_rows=[2])
    store = open_store(store_config.store)
    store.transact(lambda tx: apply_index_plan(tx, tx.open(clips.ref.path), plan, store_config.dataset.name),
                   stage="clips", message="test index")
    _, targets = targets_group(store_config)
    assert np.flatnonzero(~targets.completed()).tolist() == [2]
    write_clip_rows(store_config, range(2, 3), seed=9)  # decoded again: new pixels, complete again
    assert build_targets(store_config)["built"] == [2]
    clips, targets = targets_group(store_config)
    np.testing.assert_allclose(targets.read("appearance", 2), block_means(clips.read("appearance", 2), 8),
                               rtol=0, atol=1e-6)


def test_autoencoder_losses_are_identical_with_stored_and_derived_targets(store_config, tmp_path):
    from tasks.tracking.mlflow_adapter import NullTracker
    from tasks.train.autoencoder import reconstruction_targets
    from tasks.train.data import load_qa_data
    from tasks.train.distributed import DistContext
    from tasks.train.factory import make_model
    from tasks.train.loop import make_loader
    from tasks.train.run import _autoencoder_stage
    from tasks.train.targets import build_targets

    before = Store(store_config.store.path, mode="r").snapshot_id  # holds no targets: the fallback reads it
    build_targets(store_config)
    pinned = store_config.model_copy(update={"store": store_config.store.model_copy(update={"snapshot": before})})
    stored = load_qa_data(store_config, with_targets=True)
    derived = load_qa_data(pinned, with_targets=True)
    assert stored.splits["train"].clips is None and stored.splits["train"].targets is not None
    assert derived.splits["train"].targets is None and derived.splits["train"].clips is not None

    size = store_config.model.decoder_size
    for a, b in zip(make_loader(stored.splits["train"], 8, shuffle=True, seed=1),
                    make_loader(derived.splits["train"], 8, shuffle=True, seed=1)):
        assert all(torch.equal(x, y) for x, y in zip(reconstruction_targets(a, size), reconstruction_targets(b, size)))

    config = store_config.model_copy(update={"train": store_config.train.model_copy(
        update={"autoencoder": store_config.train.autoencoder.model_copy(update={"epochs": 2})})})

    def stage(data, folder: str) -> list[dict]:
        model = make_model(config.model, config, data, seed=0)
        return _autoencoder_stage(config, data, model, NullTracker(), "", "cpu", tmp_path / folder, DistContext(),
                                  "dualvgr").history

    losses = stage(stored, "stored")
    assert len(losses) == 2 and losses == stage(derived, "derived")  # each epoch's train and val loss, bit for bit


@pytest.mark.parametrize("model", ["dualvgr", "msvqa"])
def test_a_training_run_reads_clip_rows_only_where_its_model_reads_clips(store_config, monkeypatch, model):
    from storage.qa_dataset import VideoArrays
    from tasks.tracking.mlflow_adapter import NullTracker
    from tasks.train import run

    read: list[str] = []  # the kind of every group a training item was read from
    real_row = VideoArrays.row
    monkeypatch.setattr(VideoArrays, "row", lambda self, name, row: read.append(self.ref.path.split("/")[1])
                        or real_row(self, name, row))
    monkeypatch.setattr(run, "open_tracker", lambda *args, **kwargs: NullTracker())
    config = store_config.model_copy(update={"model": store_config.model.model_copy(update={"name": model})})
    if model == "msvqa":  # the end-to-end model trains its backbones from the clips; keep it to one QA epoch
        config = config.model_copy(update={"train": config.train.model_copy(
            update={"qa": config.train.qa.model_copy(update={"epochs": 1})})})
    figures = run.train_model(config, None)
    assert np.isfinite(figures["histories"]["autoencoder"][0]["ae_val_loss"])
    assert "targets" in read  # the autoencoder stage read the stored targets (built by this run)
    assert ("clips" in read) is (model == "msvqa")  # DualVGR: features and targets only, never a clip row
    _, targets = targets_group(config)
    assert targets is not None and targets.completed().all()


def test_training_data_of_a_feature_model_holds_no_clips(store_config):
    from tasks.train.run import training_data

    data = training_data(store_config, uses_video=True, uses_clips=False, with_autoencoder=True)
    assert all(split.clips is None and split.targets is not None for split in data.splits.values())
    qa = data.for_qa(clips=False)
    assert all(split.clips is None and split.targets is None for split in qa.splits.values())
    assert data.spec_hashes.keys() == {"text", "clips", "features"}  # stored or derived: the same checkpoint key


@pytest.mark.parametrize("available_kb, wanted, said", [(10**7, True, "in memory"), (1, True, "do not fit"),
                                                         (10**7, False, "train.clips_in_memory is off")])
def test_the_memory_decision_for_clips_is_logged(store_config, tmp_path, monkeypatch, caplog, available_kb, wanted,
                                                  said):
    from tasks.train import data

    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 20000000 kB\nMemFree: 0 kB\nMemAvailable: {available_kb} kB\n")
    real = data.available_memory
    monkeypatch.setattr(data, "available_memory", lambda: real(meminfo))
    config = store_config.model_copy(update={"train": store_config.train.model_copy(
        update={"clips_in_memory": wanted})})
    with caplog.at_level(logging.INFO, logger="msvqa.train"):
        loaded = data.load_qa_data(config, with_clips=True)
    clips = loaded.splits["train"].clips
    assert clips.in_memory is (said == "in memory")
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("clips of "))
    assert said in line and clips.ref.path in line


@pytest.mark.parametrize("ranks, in_memory", [(None, True), ("4", False)])
def test_every_rank_on_a_machine_needs_room_for_its_own_copy_of_the_clips(store_config, tmp_path, monkeypatch,
                                                                           caplog, ranks, in_memory):
    from tasks.train import data
    from tasks.train.distributed import context_from_env

    clips = open_store(store_config.store, mode="r").find(store_config.dataset.name, "clips")[0]
    twice = 2 * sum(clips.read(name).nbytes for name in ("appearance", "motion"))  # both streams, every row
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemAvailable: {2 * twice // 1024} kB\n")  # room for two copies, not four
    real = data.available_memory
    monkeypatch.setattr(data, "available_memory", lambda: real(meminfo))
    if ranks:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", ranks)  # as torchrun sets it for each rank
    ctx = context_from_env()
    with caplog.at_level(logging.INFO, logger="msvqa.train"):
        loaded = data.load_qa_data(store_config, with_clips=True, ranks_here=ctx.local_world_size)
    kept = loaded.splits["train"].clips.in_memory
    assert kept is in_memory
    assert ("for each of 4 ranks" in caplog.text) is bool(ranks)


@pytest.mark.parametrize("in_memory, method", [(True, None), (False, "forkserver")])
def test_loader_workers_fork_only_when_nothing_is_read_lazily(store_config, in_memory, method):
    from torch.utils.data import Subset

    from storage.qa_dataset import loader_context
    from tasks.train.run import training_data

    config = store_config.model_copy(update={"train": store_config.train.model_copy(
        update={"clips_in_memory": in_memory})})
    train = training_data(config, uses_video=True, uses_clips=True, with_autoencoder=True).splits["train"]
    assert train.clips.in_memory is train.targets.in_memory is in_memory
    # Lazy reads open the store in each worker, which a forked copy of this process must not do.
    assert loader_context(2, train) == loader_context(2, Subset(train, [0, 1])) == method
    assert loader_context(0, train) is None


# Two gloo ranks load a feature model's data with the autoencoder stage, as train_model does under torchrun.
RANKS_JOB = """
import json, sys
from pathlib import Path
from configs.loader import load_config
from tasks.train.distributed import init_distributed, shutdown
from tasks.train.run import training_data

work = Path(sys.argv[1])
ctx, _ = init_distributed("cpu")
data = training_data(load_config(work / "config.yaml"), True, False, True, ctx)
train = data.splits["train"]
(work / f"rank{ctx.rank}.json").write_text(json.dumps(
    {"snapshot": data.snapshot, "clips": train.clips is not None, "targets": train.targets is not None}))
shutdown()
"""


def test_under_torchrun_rank_0_builds_the_targets_once_before_any_rank_reads(store_config, tmp_path):
    import os
    import subprocess
    import sys

    from configs.loader import config_to_yaml

    (tmp_path / "config.yaml").write_text(config_to_yaml(store_config))
    script = tmp_path / "job.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(TINY.parents[1])!r})\n" + RANKS_JOB)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tmp_path)], capture_output=True, text=True, timeout=300,
                          cwd=TINY.parents[1], env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    store = Store(store_config.store.path)
    builds = [commit for commit in store.log() if commit["stage"] == "targets"]
    assert len(builds) == 2  # one "prepare", one with the rows: rank 1 built nothing
    # Both ranks read the snapshot with the targets in it, and no clips.
    assert reports[0] == reports[1] == {"snapshot": store.snapshot_id, "clips": False, "targets": True}


def test_reconstruction_pictures_show_different_videos():
    from types import SimpleNamespace

    from tasks.train.autoencoder import distinct_video_items

    # Questions come grouped by video: the first four items would show video 5 four times.
    dataset = SimpleNamespace(arrays=SimpleNamespace(video_ids=np.array([5, 5, 5, 7, 7, 9, 2, 9])))
    assert distinct_video_items(dataset, 3) == [0, 3, 5]
    assert distinct_video_items(dataset, 10) == [0, 3, 5, 6]
