"""The autoencoder stage's reconstruction targets, stored once per video at the decoder's size.

Deriving them on the fly reads every full-size clip row once per question and epoch (about 24 MB
decompressed per row on MSVD-QA) only to shrink it to a few pixels. This stage shrinks each clip row
once, with the same function the fallback uses (models.decoders.resize_clips), into a derived group:

    <dataset>/targets/<spec-hash>/{appearance, motion [N, C, F, 3, S, S] float32 in [0, 1], complete [N]}

keyed by the clip group, the decoder's size S and the method. Rows follow the clip group's rows (the
clip flow grows them and marks a changed video's row incomplete, as for features). Building is
incremental and commits nothing when nothing is missing: checkpoints are keyed by the store snapshot,
so a commit without data would stop an interrupted training from resuming.
"""

from __future__ import annotations

import numpy as np
import torch

from configs.schema import PipelineConfig
from models.decoders import resize_clips
from storage.store import SpecGroup, Store, open_group, open_store, row_writer
from tasks.train.distributed import DistContext
from tasks.train.log import run_logger
from tasks.video.clips import APPEARANCE, MOTION, clip_spec

KIND = "targets"
STREAMS = (APPEARANCE, MOTION)
TARGET_DTYPE = "float32"
# Rows per commit: an interrupted build keeps what its finished commits hold; each row is its own chunk.
ROWS_PER_COMMIT = 64


def targets_spec(clip_hash: str, size: int) -> dict:
    """What determines the stored targets; its hash names the group."""
    return {"clips": clip_hash, "size": size, "method": "area", "dtype": TARGET_DTYPE, "range": [0, 1]}


def config_targets_spec(config: PipelineConfig, clip_hash: str) -> dict:
    return targets_spec(clip_hash, config.model.decoder_size)


def compute_targets(clips: np.ndarray, size: int) -> np.ndarray:
    """uint8 clips [C, F, H, W, 3] -> float32 [C, F, 3, S, S] in [0, 1], as the training path resizes them."""
    with torch.inference_mode():
        return resize_clips(torch.from_numpy(clips)[None], size)[0].numpy()  # [C, F, 3, S, S]


def _prepare(group: SpecGroup, clips: SpecGroup, size: int) -> None:
    """Arrays sized like the clip group (grown when it grew), one clip per chunk as the clips are."""
    rows = clips.num_rows
    if group.num_rows:
        group.grow(rows)
    group.update_attrs(video_ids=clips.attrs["video_ids"], names=clips.attrs.get("names", []), clips=clips.ref.path)
    c, f = clips.shape(APPEARANCE)[1:3]
    for name in STREAMS:
        group.ensure_array(name, (rows, c, f, 3, size, size), TARGET_DTYPE, chunks=(1, 1, f, 3, size, size))
    group.ensure_array("complete", (rows,), "uint8", chunks=(1,), fill_value=0)


def missing_rows(clips: SpecGroup, targets: SpecGroup | None) -> np.ndarray:
    """Rows whose clips are complete and whose targets are not (yet, or no longer)."""
    clip_done = clips.completed()
    done = targets.completed(len(clip_done)) if targets is not None else np.zeros_like(clip_done)
    return np.flatnonzero(clip_done & ~done)


def build_targets(config: PipelineConfig, flow_run: str | None = None) -> dict:
    """Store the targets of every complete clip row that has none; commits only when rows are missing.

    Returns the group's path (None without clips), the rows built now and the store's snapshot after.
    """
    store = open_store(config.store)
    logger = run_logger()
    clips = store.peek(config.dataset.name, "clips", clip_spec(config.clips))
    if clips is None or "video_ids" not in clips.attrs or not clips.num_rows:
        return {"group": None, "built": [], "snapshot": store.snapshot_id}  # training will say what is missing
    size = config.model.decoder_size
    spec = config_targets_spec(config, clips.ref.spec_hash)
    targets = store.peek(config.dataset.name, KIND, spec)
    todo = missing_rows(clips, targets).tolist()
    if targets is not None and not todo:
        logger.info("reconstruction targets %s: complete, nothing to build", targets.ref.path)
        return {"group": targets.ref.path, "built": [], "snapshot": store.snapshot_id}
    if not todo:  # no complete clip row yet: nothing to store, and no empty group either
        return {"group": None, "built": [], "snapshot": store.snapshot_id}
    # Read the clips at the snapshot planned from, whatever is committed meanwhile.
    clip_ref = store.read_ref(clips.ref)
    clips = open_group(clip_ref, mode="r")

    def prepare(tx) -> str:
        group = tx.spec_group(config.dataset.name, KIND, spec)
        _prepare(group, tx.open(clips.ref.path), size)
        return group.ref.path

    path = store.transact(prepare, stage=KIND, message=f"prepare reconstruction targets at {size} px",
                          flow_run=flow_run, counts={"videos": clips.num_rows})
    logger.info("reconstruction targets %s: %d videos to build at %d px", path, len(todo), size)
    for start in range(0, len(todo), ROWS_PER_COMMIT):
        rows = todo[start:start + ROWS_PER_COMMIT]
        _build_rows(store, path, clips, rows, size, flow_run)
    return {"group": path, "built": todo, "snapshot": store.snapshot_id}


def _build_rows(store: Store, path: str, clips: SpecGroup, rows: list[int], size: int, flow_run: str | None) -> None:
    """One commit: the rows' targets (written into a fork) with their completion."""
    with row_writer(store.fork(path), stage=KIND) as targets:
        for row in rows:
            for name in STREAMS:
                targets.write(name, compute_targets(clips.read(name, row), size), row=row)
    store.transact(lambda tx: tx.open(path).mark_complete(rows), stage=KIND, message=f"built into {path}",
                   flow_run=flow_run, forks=[targets.handoff()], counts={"built": len(rows)})


def ensure_targets(config: PipelineConfig, ctx: DistContext = DistContext(), flow_run: str | None = None) -> None:
    """Before training loads its data: rank 0 builds what is missing, the other ranks wait for it.

    A pinned `store.snapshot` is read-only, so nothing is built; training then uses the targets that
    snapshot holds, or derives them from the clips.
    """
    if ctx.is_main:
        if config.store.snapshot:
            run_logger().info("store.snapshot %s is read-only: reconstruction targets are not built",
                              config.store.snapshot)
        else:
            build_targets(config, flow_run)
    ctx.barrier()
