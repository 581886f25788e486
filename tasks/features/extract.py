"""The feature stage's unit of work: run stored clips through the backbones, one video per row."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from configs.schema import BackboneConfig, FeaturesConfig
from models.backbones import NormalizeClips, NormalizeInput, build_backbone
from storage.store import GroupRef, SpecGroup, open_group, row_writer
from tasks.video.clips import APPEARANCE, MOTION
from tasks.device import resolve_device, tune_kernels_for
from tasks.digest import file_sha256
from tasks.features.weights import load_backbone_weights

FEATURE_DTYPE = "float16"


def backbone_spec(cfg: BackboneConfig) -> dict:
    return {
        "backbone": cfg.backbone,
        "weights_sha256": file_sha256(cfg.weights) if cfg.weights else None,
        "normalization": cfg.normalization,
    }


def feature_spec(cfg: FeaturesConfig, clip_hash: str) -> dict:
    """What determines the stored features; random-init backbones depend on the seed too."""
    return {
        "clips": clip_hash,
        "appearance": backbone_spec(cfg.appearance),
        "motion": backbone_spec(cfg.motion),
        "seed": cfg.seed,
        "dtype": FEATURE_DTYPE,
    }


# Threads of one process (local runner, multi-threaded Dask workers) would otherwise seed torch's global
# generator at the same time and build random-init backbones with different weights.
_BUILD_LOCK = threading.Lock()


# (name, weights sha256 or None, seed, device) -> built backbone. Keyed by the file's checksum, not its
# path: a long-lived worker must notice a weights file replaced in place, whose features the driver
# stores under the new checksum's group. A handful at most (two per feature config).
_BACKBONES: OrderedDict[tuple, torch.nn.Module] = OrderedDict()
_MAX_BACKBONES = 4


def load_backbone(name: str, weights: str | None, seed: int, device: str) -> torch.nn.Module:
    """Build a backbone once per process; without weights its init is seeded so every worker agrees."""
    with _BUILD_LOCK:
        # file_sha256 rereads the file only when its size or mtime changed.
        key = (name, file_sha256(Path(weights)) if weights else None, seed, device)
        if key in _BACKBONES:
            _BACKBONES.move_to_end(key)
            return _BACKBONES[key]
        torch.manual_seed(seed)
        model = build_backbone(name)
        if weights:
            load_backbone_weights(model, Path(weights))
        _BACKBONES[key] = model = model.eval().to(device)
        while len(_BACKBONES) > _MAX_BACKBONES:
            _BACKBONES.popitem(last=False)
        return model


def clear_backbone_cache() -> None:
    """Forget the built backbones, as a fresh worker process would, and hand their GPU memory back."""
    with _BUILD_LOCK:
        _BACKBONES.clear()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()  # the allocator keeps freed blocks for this process otherwise


def backbone_out_dims(cfg: FeaturesConfig) -> tuple[int, int]:
    return build_backbone(cfg.appearance.backbone).out_dim, build_backbone(cfg.motion.backbone).out_dim


def prepare_feature_group(group: SpecGroup, num_videos: int, clips: int, frames: int, dims: tuple[int, int]) -> None:
    app_dim, mot_dim = dims
    group.ensure_array(APPEARANCE, (num_videos, clips, frames, app_dim), FEATURE_DTYPE, chunks=(1, clips, frames, app_dim))
    group.ensure_array(MOTION, (num_videos, clips, mot_dim), FEATURE_DTYPE, chunks=(1, clips, mot_dim))
    group.ensure_array("complete", (num_videos,), "uint8", chunks=(1,), fill_value=0)


@torch.inference_mode()
def _run_batches(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    outputs = [model(inputs[start:start + batch_size]) for start in range(0, inputs.shape[0], batch_size)]
    return torch.cat(outputs).float().cpu()


def extract_video(appearance: np.ndarray, motion: np.ndarray, cfg: FeaturesConfig, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Features of one video: appearance [c, f, Da] per frame, motion [c, Dm] per clip."""
    app_model = load_backbone(cfg.appearance.backbone, str(cfg.appearance.weights or ""), cfg.seed, device)
    mot_model = load_backbone(cfg.motion.backbone, str(cfg.motion.weights or ""), cfg.seed, device)
    c, f = appearance.shape[:2]
    app_norm = NormalizeInput(cfg.appearance.normalization).to(device)
    mot_norm = NormalizeClips(cfg.motion.normalization).to(device)
    frames = torch.from_numpy(appearance).to(device).flatten(0, 1)  # [c*f, A, A, 3] uint8
    frames = app_norm(frames)  # [c*f, 3, A, A]
    app = _run_batches(app_model, frames, cfg.appearance.batch_size).reshape(c, f, -1)  # [c, f, Da]
    clips = mot_norm(torch.from_numpy(motion).to(device))  # [c, 3, f, M, M], channels-last like the 3D backbone
    mot = _run_batches(mot_model, clips, cfg.motion.batch_size)  # [c, Dm]
    return app.numpy().astype(FEATURE_DTYPE), mot.numpy().astype(FEATURE_DTYPE)


def extract_feature_batch(clip_ref: GroupRef, feature_ref: GroupRef, rows: list[int], cfg: FeaturesConfig) -> dict:
    """Extract and write features for `rows`: {"rows": written, "fork": the writes for the driver's commit}.

    With a forked `feature_ref` (`Store.fork`) the driver commits the rows with their completion; with a
    plain one they are committed here, without completion.
    """
    clips = open_group(clip_ref, mode="r")
    device = resolve_device(cfg.device)
    tune_kernels_for(device)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    written = []
    with row_writer(feature_ref, stage="features") as features:
        for row in rows:
            app, mot = extract_video(clips.read(APPEARANCE, row), clips.read(MOTION, row), cfg, device)
            features.write(APPEARANCE, app, row=row)
            features.write(MOTION, mot, row=row)
            written.append(row)
    return {"rows": written, "fork": features.handoff()}


def process_feature_rows(clip_ref: GroupRef, feature_ref: GroupRef, rows: list[int], cfg: FeaturesConfig) -> list[int]:
    """`extract_feature_batch` for a plain reference; returns the rows written (the driver marks them complete)."""
    return extract_feature_batch(clip_ref, feature_ref, rows, cfg)["rows"]
