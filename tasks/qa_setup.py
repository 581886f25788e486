"""Everything training and evaluation need from the store, resolved once from the config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from configs.errors import UserError
from configs.schema import ModelConfig, PipelineConfig
from models.input_norm import StandardizedInputs
from models.registry import build_model, build_msvqa
from storage.qa_dataset import QADataset, VideoArrays, available_memory, group_nbytes, load_split
from storage.store import SpecGroup, Store, spec_hash
from tasks.clips import clip_spec
from tasks.features import feature_spec
from tasks.layout import SPLITS
from tasks.text import Vocabularies
from tasks.text_store import read_vocabularies, text_spec
from tasks.weights import load_backbone_weights


@dataclass
class QAData:
    """The three splits over one text group, one clip group and one feature group."""

    text: SpecGroup
    clips: SpecGroup | None
    features: SpecGroup | None
    vocab: Vocabularies
    splits: dict[str, QADataset]
    dropped: dict[str, int]  # questions per split whose video has no stored features
    glove: torch.Tensor | None

    @property
    def spec_hashes(self) -> dict[str, str]:
        groups = {"text": self.text, "clips": self.clips, "features": self.features}
        return {name: g.ref.spec_hash for name, g in groups.items() if g is not None}


def _complete_group(store: Store, config: PipelineConfig, kind: str, spec: dict, stage: str) -> SpecGroup:
    # Reading must not create an empty group as a side effect, so peek instead of spec_group.
    group = store.peek(config.dataset.name, kind, spec)
    ready = group is not None and (group.attrs.get("complete") if kind == "text" else group.has_array("complete"))
    if not ready:
        raise UserError(f"store {config.store.path} has no {kind} for this config yet: run `msvqa {stage}` first")
    return group


def load_qa_data(config: PipelineConfig, *, with_video: bool = True, with_clips: bool = False) -> QAData:
    """Open the groups this config names; questions whose video is not stored are set aside and counted."""
    store = Store(config.store.path)
    text = _complete_group(store, config, "text", text_spec(config.text, config.dataset.root), "text")
    clips = features = None
    video_ids = usable = None
    if with_video:
        clips = _complete_group(store, config, "clips", clip_spec(config.clips), "clips")
        features = _complete_group(store, config, "features", feature_spec(config.features, clips.ref.spec_hash),
                                   "features")
        video_ids = list(features.attrs["video_ids"])
        usable = np.flatnonzero(features.completed())
        if len(usable) == 0:
            raise UserError(f"feature group {features.ref.path} holds no complete video: run `msvqa features`")
    feature_arrays = None
    if features is not None:
        names = ("appearance", "motion")
        feature_arrays = VideoArrays(features.ref, names, in_memory=features_in_memory(config, features.ref, names))
    clip_arrays = VideoArrays(clips.ref, ("appearance", "motion"), in_memory=False) if (with_clips and clips) else None
    splits, dropped = {}, {}
    for split in SPLITS:
        arrays = load_split(text.ref, split, video_ids, usable)
        if with_video:
            keep = arrays.video_rows >= 0
            dropped[split] = int((~keep).sum())
            arrays = arrays.subset(keep)
        else:
            dropped[split] = 0
        splits[split] = QADataset(arrays, feature_arrays if with_video else None, clip_arrays)
    glove = torch.from_numpy(text.read("glove")) if text.has_array("glove") else None
    return QAData(text, clips, features, read_vocabularies(text.ref), splits, dropped, glove)


def features_in_memory(config: PipelineConfig, ref, names: tuple[str, ...]) -> bool:
    """In memory when asked for and it fits in half the free memory; else read lazily from Zarr."""
    if not config.train.features_in_memory:
        return False
    return group_nbytes(ref, names) * 2 < available_memory()  # x2: float32 copies while batching


def feature_dims(data: QAData) -> tuple[int, int]:
    if data.features is None:
        return 1, 1
    return data.features.shape("appearance")[-1], data.features.shape("motion")[-1]


def make_model(model_cfg: ModelConfig, config: PipelineConfig, data: QAData, seed: int) -> torch.nn.Module:
    """Build the configured model; feature models get input standardisation from the training videos."""
    torch.manual_seed(seed)
    if model_cfg.name == "msvqa":
        return make_msvqa(model_cfg, config, data)
    app_dim, mot_dim = feature_dims(data)
    model = build_model(
        model_cfg,
        question_vocab_size=len(data.vocab.question_token_to_idx),
        answer_vocab_size=len(data.vocab.answer_token_to_idx),
        appearance_dim=app_dim,
        motion_dim=mot_dim,
        num_clips=config.clips.num_clips,
        frames_per_clip=config.clips.frames_per_clip,
        word_dim=config.text.word_dim,
        glove=data.glove,
    )
    if not (model_cfg.standardize_features and model.uses_video and data.features is not None):
        return model
    wrapped = StandardizedInputs(model, app_dim, mot_dim)
    train = data.splits["train"]
    rows = np.unique(train.arrays.video_rows)
    with torch.no_grad():
        for name in ("appearance", "motion"):
            mean, std = _feature_statistics(train.features, name, rows)
            getattr(wrapped, f"{name}_mean").copy_(mean)
            getattr(wrapped, f"{name}_std").copy_(std.clamp_min(1e-6))
    return wrapped


def make_msvqa(model_cfg: ModelConfig, config: PipelineConfig, data: QAData) -> torch.nn.Module:
    """MSVQA on the configured backbones, their weights loaded from the configured files (if any)."""
    feats = config.features
    model = build_msvqa(
        model_cfg,
        appearance_backbone=feats.appearance.backbone,
        motion_backbone=feats.motion.backbone,
        appearance_normalization=feats.appearance.normalization,
        motion_normalization=feats.motion.normalization,
        question_vocab_size=len(data.vocab.question_token_to_idx),
        answer_vocab_size=len(data.vocab.answer_token_to_idx),
        num_clips=config.clips.num_clips,
        frames_per_clip=config.clips.frames_per_clip,
        word_dim=config.text.word_dim,
        glove=data.glove,
    )
    for backbone, settings in ((model.appearance_backbone, feats.appearance), (model.motion_backbone, feats.motion)):
        if settings.weights is not None:
            load_backbone_weights(backbone, settings.weights)
    return model


def _feature_statistics(arrays: VideoArrays, name: str, rows: np.ndarray,
                        chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and (unbiased) std over every vector of `rows`, read `chunk` videos at a time.

    Chunks are merged with Chan's formula in float64: exact enough even for features on a large
    offset, without holding every training video's features at once (lazy mode).
    """
    mean, m2, count = 0.0, 0.0, 0
    for start in range(0, len(rows), chunk):
        block = arrays.rows(name, rows[start:start + chunk])
        flat = block.reshape(-1, block.shape[-1]).astype(np.float64)  # [n, D]
        n, block_mean = flat.shape[0], flat.mean(0)
        block_m2 = ((flat - block_mean) ** 2).sum(0)
        delta = block_mean - mean
        total = count + n
        mean = mean + delta * n / total
        m2 = m2 + block_m2 + delta ** 2 * count * n / total
        count = total
    variance = np.asarray(m2) / max(count - 1, 1)
    return torch.from_numpy(mean).float(), torch.from_numpy(np.sqrt(variance)).float()


def training_dir(config: PipelineConfig, data: QAData, model_cfg: ModelConfig) -> Path:
    """Checkpoints are keyed by everything that shapes training, so a rerun of the same config resumes."""
    # Settings that change speed or logging but not the numbers stay out of the key.
    ignored = {"device", "num_workers", "checkpoint_dir", "baseline", "compile", "features_in_memory"}
    train = config.train.model_dump(mode="json", exclude=ignored)
    key = spec_hash({"model": model_cfg.model_dump(mode="json"), "train": train, "data": data.spec_hashes})
    return Path(config.train.checkpoint_dir) / f"{model_cfg.name}-{key}"
