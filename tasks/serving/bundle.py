"""A self-contained inference bundle: one file with everything `answer` and `search` need.

The file is a plain dict of tensors and JSON-able values written with torch.save, so it loads with
weights_only=True (no code runs from it): the validated config, the vocabularies, the model's name, sizes
and state dict, and the clip and feature specs (backbone weights' sha256 included) the model was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from configs.errors import UserError
from configs.loader import validate_config
from configs.schema import PipelineConfig
from models.input_norm import StandardizedInputs
from models.registry import build_model, entry_of, model_entry
from storage.store import spec_hash
from tasks.atomic import save_atomic
from tasks.video.clips import clip_spec
from tasks.features.extract import backbone_out_dims, feature_spec
from tasks.text.annotations import TextInputError
from tasks.text.vocabulary import Vocabularies

BUNDLE_FORMAT = "msvqa-bundle"
BUNDLE_VERSION = 1
_NORM_BUFFERS = ("appearance_mean", "appearance_std", "motion_mean", "motion_std")


@dataclass
class Bundle:
    """A loaded bundle: the model is rebuilt, on CPU, in eval mode."""

    config: PipelineConfig  # config.model.name is the bundled model's own name
    vocab: Vocabularies
    model: nn.Module
    sizes: dict[str, int]
    clip_spec: dict[str, Any]
    feature_spec: dict[str, Any]
    spec_hashes: dict[str, str]
    metrics: dict[str, float]
    created: str
    source: str  # the path or model URI it was read from

    @property
    def uses_video(self) -> bool:
        return model_entry(self.config.model.name).uses_video

    @property
    def uses_clips(self) -> bool:
        """End to end (MSVQA): the model reads decoded clips; its backbones' weights are in the bundle."""
        return model_entry(self.config.model.name).uses_clips

    @property
    def feature_hash(self) -> str:
        """The feature group the model was trained on (its recorded hash, else the hash of its spec)."""
        return self.spec_hashes.get("features") or spec_hash(self.feature_spec)


def _model_name(model: nn.Module) -> str:
    inner = model.model if isinstance(model, StandardizedInputs) else model
    return entry_of(inner).name


def _feature_dims(model: nn.Module, config: PipelineConfig) -> tuple[int, int]:
    if isinstance(model, StandardizedInputs):
        return model.appearance_mean.numel(), model.motion_mean.numel()
    if not entry_of(model).uses_video:
        return 1, 1  # as tasks.train.data.feature_dims for question-only models
    return backbone_out_dims(config.features)


def save_bundle(path: Path, *, config: PipelineConfig, vocab: Vocabularies, model: torch.nn.Module,
                spec_hashes: dict[str, str], metrics: dict[str, float]) -> Path:
    """Write the bundle atomically to `path` and return it; the model may live on any device."""
    path = Path(path)
    name = _model_name(model)
    # The config's model section names the main model; a baseline bundled from the same config names itself.
    config = config.model_copy(update={"model": config.model.model_copy(update={"name": name})})
    clips = clip_spec(config.clips)
    features = feature_spec(config.features, spec_hash(clips))
    recorded = spec_hashes.get("features")
    # An end-to-end model carries its own (trained) backbones: no feature group stands behind it.
    if not model_entry(name).uses_clips and recorded is not None and recorded != spec_hash(features):
        # The weights files changed since the features were extracted: the bundle could not reproduce them.
        raise ValueError(f"feature spec of {config.features} hashes to {spec_hash(features)}, but the model was "
                         f"trained on feature group {recorded}: were the backbone weights replaced?")
    app_dim, mot_dim = _feature_dims(model, config)
    state = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.model_dump(mode="json"),
        "vocab": vocab.to_json(),
        "model_name": name,
        "sizes": {
            "question_vocab_size": len(vocab.question_token_to_idx),
            "answer_vocab_size": len(vocab.answer_token_to_idx),
            "appearance_dim": int(app_dim),
            "motion_dim": int(mot_dim),
            "num_clips": config.clips.num_clips,
            "frames_per_clip": config.clips.frames_per_clip,
            "word_dim": config.text.word_dim,
        },
        "standardized": isinstance(model, StandardizedInputs),
        "state_dict": {key: value.detach().cpu().clone() for key, value in model.state_dict().items()},
        "clip_spec": clips,
        "feature_spec": features,
        "spec_hashes": {str(k): str(v) for k, v in spec_hashes.items()},
        "metrics": {str(k): float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))},
    }
    save_atomic(state, path)
    return path


def _build(config: PipelineConfig, sizes: dict[str, int]) -> nn.Module:
    """The bundled model's architecture, randomly initialised (its weights are loaded next)."""
    features = config.features
    return build_model(config.model, **sizes, appearance_backbone=features.appearance.backbone,
                       motion_backbone=features.motion.backbone,
                       appearance_normalization=features.appearance.normalization,
                       motion_normalization=features.motion.normalization)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"model bundle {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bytes that are not a torch file
        raise UserError(f"model bundle {path} is not a readable msvqa bundle ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or state.get("format") != BUNDLE_FORMAT:
        raise UserError(f"model bundle {path} is a torch file but not an msvqa bundle")
    if state.get("version") != BUNDLE_VERSION:
        raise UserError(f"model bundle {path} has version {state.get('version')}; this msvqa reads {BUNDLE_VERSION}")
    return state


def load_bundle(path: Path, source: str | None = None) -> Bundle:
    """Read and check a bundle, rebuild its model on CPU in eval mode; a bad file raises UserError."""
    path = Path(path)
    state = _read(path)
    config = validate_config(state["config"], source=f"model bundle {path}")
    try:
        vocab = Vocabularies.from_json(state["vocab"], source=f"vocabulary of model bundle {path}")
    except TextInputError as exc:
        raise UserError(str(exc)) from exc
    sizes = {key: int(value) for key, value in state["sizes"].items()}
    model = _build(config, sizes)
    weights = state["state_dict"]
    if all(key in weights for key in _NORM_BUFFERS):
        model = StandardizedInputs(model, sizes["appearance_dim"], sizes["motion_dim"])
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"model bundle {path}: the weights do not fit the recorded model sizes ({first})") from exc
    model.eval()
    return Bundle(config=config, vocab=vocab, model=model, sizes=sizes, clip_spec=dict(state["clip_spec"]),
                  feature_spec=dict(state["feature_spec"]), spec_hashes=dict(state["spec_hashes"]),
                  metrics=dict(state["metrics"]), created=str(state.get("created", "")),
                  source=source or str(path))
