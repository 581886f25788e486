"""Stage one: the decoders reconstruct each stream's clips from the fused clip features."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from models.decoders import Autoencoder, make_reconstruction_target, normalise_target, reconstruction_loss
from models.types import Batch
from storage.qa_dataset import collate, loader_context
from tasks.train.distributed import DistContext, shard
from tasks.train.precision import mixed_precision

# Targets live in [-1, 1]: the decoders have no output activation, so any fixed affine map works.
TARGET_MEAN = (0.5, 0.5, 0.5)
TARGET_STD = (0.5, 0.5, 0.5)


def reconstruction_targets(batch: Batch, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised on the device: [B, C, F, 3, S, S] for each stream.

    From the stored targets when the batch carries them (already resized), else from the uint8 clips;
    on CPU the two give the same bits (both resize with models.decoders.resize_clips).
    """
    if batch.appearance_targets is not None and batch.motion_targets is not None:
        return (normalise_target(batch.appearance_targets, TARGET_MEAN, TARGET_STD),
                normalise_target(batch.motion_targets, TARGET_MEAN, TARGET_STD))
    app = make_reconstruction_target(batch.appearance_clips, size, TARGET_MEAN, TARGET_STD)
    mot = make_reconstruction_target(batch.motion_clips, size, TARGET_MEAN, TARGET_STD)
    return app, mot


def autoencoder_loss_fn(size: int) -> Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    def loss_fn(autoencoder: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        recon = autoencoder(batch)
        app_target, mot_target = reconstruction_targets(batch, size)
        # float32 losses even under autocast: the decoders' bf16 outputs [B, C, F, 3, S, S] are upcast.
        app_loss = reconstruction_loss(recon.appearance.float(), app_target)
        mot_loss = reconstruction_loss(recon.motion.float(), mot_target)
        return app_loss + mot_loss, {"appearance": app_loss.detach(), "motion": mot_loss.detach()}

    return loss_fn


@torch.inference_mode()
def autoencoder_val_loss(autoencoder: Autoencoder, dataset: Dataset, batch_size: int, size: int, device: str,
                         num_workers: int = 0, amp: bool = False, ctx: DistContext = DistContext()) -> float:
    """Mean reconstruction loss over the split; under DDP each rank scores its shard and sums are reduced."""
    autoencoder.eval()
    loss_fn = autoencoder_loss_fn(size)
    source = Subset(dataset, shard(len(dataset), ctx).tolist()) if ctx.enabled else dataset
    total, seen = 0.0, 0
    pin = device.startswith("cuda")
    loader = DataLoader(source, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers,
                        multiprocessing_context=loader_context(num_workers, source),
                        pin_memory=pin)
    for batch in loader:
        batch = batch.to(device, non_blocking=pin)
        with mixed_precision(device, amp):
            loss, _ = loss_fn(autoencoder, batch)
        total += float(loss) * batch.question.shape[0]
        seen += batch.question.shape[0]
    autoencoder.train()
    total, seen = ctx.all_reduce_sum([total, seen])
    return total / max(seen, 1)


def _video_ids(dataset: Dataset) -> np.ndarray | None:
    """Each item's video id, where the dataset knows them (a QADataset does)."""
    return getattr(getattr(dataset, "arrays", None), "video_ids", None)


def distinct_video_items(dataset: Dataset, count: int) -> list[int]:
    """The first `count` items about different videos (questions come grouped by video, so the first few
    items are often one video asked several times)."""
    video_ids = _video_ids(dataset)
    if video_ids is None:
        return list(range(min(count, len(dataset))))
    _, first = np.unique(np.asarray(video_ids), return_index=True)
    return sorted(first.tolist())[:count]


@torch.inference_mode()
def reconstruction_samples(autoencoder: Autoencoder, dataset: Dataset, size: int, device: str,
                           count: int = 4) -> tuple[dict[str, np.ndarray], list[int]]:
    """First frame of each clip, input above reconstruction, for `count` items of different videos.

    Returns uint8 [count*2, C, S, S, 3] per stream and the items' video ids (None where unknown).
    """
    autoencoder.eval()
    items = distinct_video_items(dataset, count)
    batch = collate([dataset[i] for i in items]).to(device)
    recon = autoencoder(batch)
    app_target, mot_target = reconstruction_targets(batch, size)
    autoencoder.train()
    video_ids = _video_ids(dataset)
    ids = [int(video_ids[i]) if video_ids is not None else None for i in items]

    def to_uint8(x: torch.Tensor) -> np.ndarray:  # [B, C, 3, S, S] normalised -> [B, C, S, S, 3] uint8
        x = x * torch.tensor(TARGET_STD, device=x.device).view(1, 1, 3, 1, 1) + torch.tensor(
            TARGET_MEAN, device=x.device).view(1, 1, 3, 1, 1)
        return (x.clamp(0, 1) * 255).round().byte().permute(0, 1, 3, 4, 2).cpu().numpy()

    out = {}
    for name, target, pred in (("appearance", app_target, recon.appearance), ("motion", mot_target, recon.motion)):
        first = slice(None), slice(None), 0  # first frame of every clip
        pairs = np.stack([to_uint8(target[first]), to_uint8(pred[first])], axis=1)  # [B, 2, C, S, S, 3]
        out[name] = pairs.reshape(-1, *pairs.shape[2:])  # [B*2, C, S, S, 3]
    return out, ids
