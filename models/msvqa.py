"""MSVQA: DualVGR whose appearance and motion encoders are trainable backbones fed with raw clips.

The backbones see the uint8 clips as stored, normalised on the device (inside the model, so a saved
model normalises exactly as in training). Which layers train is decided by the caller through
`set_backbones_trainable`, by stage (e.g. frozen in the autoencoder stage, fine-tuned in QA).
"""

from __future__ import annotations

import contextlib
import types
from typing import ClassVar, ContextManager, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from configs.schema import ModelConfig
from models.backbones import NormalizeClips, NormalizeInput, build_backbone
from models.dualvgr import DualVGR
from models.registry import ModelSizes, build_model, register_model
from models.types import Batch, ModelOutput


def _float32_where_cpu_bf16_conv3d_fails(clips: torch.Tensor) -> ContextManager:
    """Autocast off for a 3D backbone that trains under CPU bf16 autocast.

    oneDNN's bf16 Conv3d weight gradient on CPU is wrong when the time extent is 2 and the kernel spans 3
    frames (torch 2.14.1: off by up to 1e37, differing from run to run), a shape the 3D ResNeXt's third
    stage has on 16 frames. Forward passes and CUDA are correct, so only CPU training pays the float32.
    """
    if clips.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.is_grad_enabled():
        return torch.autocast("cpu", enabled=False)
    return contextlib.nullcontext()


def _stages(backbone: nn.Module) -> list[nn.Module]:
    """The units whose activations checkpointing drops: ResNet stages (layer1-4), else the tiny ones' trunk.

    Whole stages, never single layers: an in-place ReLU must stay in the unit of the layer whose output it
    overwrites, or the recomputation finds its saved input changed.
    """
    stages = [getattr(backbone, f"layer{i}") for i in range(1, 5) if hasattr(backbone, f"layer{i}")]
    if not stages and isinstance(getattr(backbone, "features", None), nn.Sequential):
        stages = [backbone.features]
    if not stages:
        raise ValueError(f"model.checkpoint_activations: no stages found in {type(backbone).__name__}")
    return stages


@contextlib.contextmanager
def _buffers_kept(module: nn.Module) -> Iterator[None]:
    """Undo buffer updates inside: the recomputation must not count a batch twice in BatchNorm's statistics."""
    saved = [buffer.clone() for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(module.buffers(), saved):
                buffer.copy_(value)


def _checkpoint_forward(stage: nn.Module) -> None:
    """Make `stage` keep only its input for the backward pass and recompute its activations there.

    A bound method on the instance: parameter names (and saved weights) stay as they are, and a deep copy
    binds it to the copy.
    """
    stage.forward = types.MethodType(_checkpointed_forward, stage)


def _checkpointed_forward(stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
    plain = type(stage).forward
    if not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in stage.parameters()))):
        return plain(stage, x)
    calls = 0

    def run(inputs: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            return plain(stage, inputs)
        with _buffers_kept(stage):  # the backward pass's recomputation
            return plain(stage, inputs)

    # Non-reentrant: works when only the parameters, not the input, need gradients; RNG state is
    # restored for the recomputation, so dropout draws the same masks.
    return checkpoint(run, x, use_reentrant=False)


class MSVQA(nn.Module):
    """Backbones -> DualVGR, end to end. Takes `batch.appearance_clips` and `batch.motion_clips`."""

    uses_video: ClassVar[bool] = True
    uses_clips: ClassVar[bool] = True

    def __init__(self, qa: DualVGR, appearance_backbone: nn.Module, motion_backbone: nn.Module,
                 appearance_normalization: str, motion_normalization: str, checkpoint_activations: bool = False) -> None:
        super().__init__()
        self.qa = qa
        self.appearance_backbone = appearance_backbone
        self.motion_backbone = motion_backbone
        self.appearance_input = NormalizeInput(appearance_normalization)
        self.motion_input = NormalizeClips(motion_normalization)
        self.backbones_trainable = True
        if checkpoint_activations:
            for backbone in (appearance_backbone, motion_backbone):
                for stage in _stages(backbone):
                    _checkpoint_forward(stage)

    def set_backbones_trainable(self, trainable: bool) -> None:
        """Frozen backbones also stay in eval mode, so training steps leave their BatchNorm statistics alone."""
        self.backbones_trainable = trainable
        for backbone in (self.appearance_backbone, self.motion_backbone):
            backbone.requires_grad_(trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> "MSVQA":
        super().train(mode)
        if not self.backbones_trainable:
            self.appearance_backbone.eval()
            self.motion_backbone.eval()
        return self

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame appearance [B, C, F, Da] and per-clip motion [B, C, Dm] features of the raw clips."""
        if batch.appearance_clips is None or batch.motion_clips is None:
            raise ValueError("MSVQA needs batch.appearance_clips and batch.motion_clips (uint8 clips)")
        b, c, f = batch.appearance_clips.shape[:3]
        frames = self.appearance_input(batch.appearance_clips.flatten(0, 2))  # [B*C*F, 3, H, W]
        appearance = self.appearance_backbone(frames).view(b, c, f, -1)  # [B, C, F, Da]
        clips = self.motion_input(batch.motion_clips.flatten(0, 1))  # [B*C, 3, F, h, w]
        with _float32_where_cpu_bf16_conv3d_fails(clips):
            motion = self.motion_backbone(clips).view(b, c, -1)  # [B, C, Dm]
        return appearance, motion

    def forward(self, batch: Batch) -> ModelOutput:
        appearance, motion = self.encode(batch)
        return self.qa.forward_features(batch.question, batch.question_len, appearance, motion)


@register_model("msvqa", reads="clips", model_class=MSVQA, init_like_reference=False,
                description="MSVQA: DualVGR on backbones trained end to end from the stored clips")
def build_msvqa(cfg: ModelConfig, sizes: ModelSizes) -> MSVQA:
    """DualVGR on trainable backbones (named as in the feature config), clips in, answers out.

    Backbone weights are loaded by the caller (tasks.features.weights), keeping this function free of I/O.
    """
    if sizes.appearance_backbone is None or sizes.motion_backbone is None:
        raise ValueError("msvqa needs appearance_backbone and motion_backbone")
    app, mot = build_backbone(sizes.appearance_backbone), build_backbone(sizes.motion_backbone)
    inner = {**sizes.__dict__, "appearance_dim": app.out_dim, "motion_dim": mot.out_dim}
    qa = build_model(cfg.model_copy(update={"name": "dualvgr"}), **inner)
    return MSVQA(qa, app, mot, sizes.appearance_normalization, sizes.motion_normalization,
                 checkpoint_activations=cfg.checkpoint_activations)
