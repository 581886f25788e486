"""Answer a free-form question about one video file with a model bundle: decode, extract, encode, predict.

Every step reuses the training pipeline's own functions with the bundle's recorded settings, so a video
is seen exactly as the training videos were (same sampling, sizes, backbones, weights and statistics).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from configs.errors import UserError
from configs.loader import resolve_paths
from configs.schema import FeaturesConfig, PipelineConfig
from models.types import Batch
from tasks.serving.bundle import Bundle, load_bundle
from tasks.video.clips import ClipJob, clip_spec, decode_one
from tasks.device import resolve_device
from tasks.features.extract import extract_video
from tasks.text.vocabulary import ANSWER_UNK_EVAL, ANSWER_UNK_TRAIN, QUESTION_UNK, Vocabularies, tokenize
from tasks.video.decode import DecodedClips
from tasks.video.ffmpeg_run import VideoError
from tasks.digest import file_sha256

_ANSWER_SLOTS = (ANSWER_UNK_TRAIN, ANSWER_UNK_EVAL)  # "some other answer" classes: never shown as answers


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the default config's tracking database under the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or resolve_paths(PipelineConfig(), Path.cwd()).tracking.uri


def open_bundle(model_uri: str, tracking_uri: str | None = None) -> Bundle:
    """A bundle from a local path or from MLflow (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID)."""
    from tasks.tracking.artifacts import download_bundle, is_mlflow_uri

    if not is_mlflow_uri(model_uri):
        return load_bundle(Path(model_uri))
    with tempfile.TemporaryDirectory(prefix="msvqa-bundle-") as tmp:
        path = download_bundle(model_uri, tracking_uri or default_tracking_uri(), Path(tmp))
        return load_bundle(path, source=model_uri)


@dataclass(frozen=True)
class EncodedQuestion:
    tokens: list[str]
    ids: torch.Tensor  # [L] int64, unknown words as <UNK>
    unknown_words: list[str]  # distinct, in question order


def encode_question(question: str, vocab: Vocabularies) -> EncodedQuestion:
    """HCRN tokens of `question` mapped through the bundle's vocabulary; unusable questions raise UserError."""
    text = question.strip()
    # tokenize() drops the last character as the reference does (the '?'); a typed question may lack it.
    if text and not text.endswith("?"):
        text += "?"
    tokens = tokenize(text) if text else []
    if not tokens:
        raise UserError("--question is empty: ask a question such as 'what is the man doing?'")
    index = vocab.question_token_to_idx
    unknown = list(dict.fromkeys(token for token in tokens if token not in index))
    if len(unknown) == len(set(tokens)):
        raise UserError(f"--question has no word the model knows (unknown: {', '.join(unknown)})")
    ids = torch.tensor([index.get(token, index[QUESTION_UNK]) for token in tokens], dtype=torch.int64)
    return EncodedQuestion(tokens=tokens, ids=ids, unknown_words=unknown)


def answer_mask(vocab: Vocabularies) -> torch.Tensor:
    """[A] bool, True on real answers (False on the <UNK0>/<UNK1> slots)."""
    mask = torch.ones(len(vocab.answer_token_to_idx), dtype=torch.bool)
    for slot in _ANSWER_SLOTS:
        if slot in vocab.answer_token_to_idx:
            mask[vocab.answer_token_to_idx[slot]] = False
    return mask


@torch.inference_mode()
def answer_probabilities(model: torch.nn.Module, question: torch.Tensor, appearance: torch.Tensor | None,
                         motion: torch.Tensor | None, device: str, *, appearance_clips: torch.Tensor | None = None,
                         motion_clips: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over every answer class [B, A] for one question [L] asked of B videos' features or clips."""
    videos = next((x for x in (appearance, appearance_clips) if x is not None), None)
    size = 1 if videos is None else videos.shape[0]
    batch = Batch(
        question=question.unsqueeze(0).expand(size, -1),  # [B, L]
        question_len=torch.full((size,), question.numel(), dtype=torch.int64),  # [B]
        appearance=None if appearance is None else appearance.float(),  # [B, C, F, Da]
        motion=None if motion is None else motion.float(),  # [B, C, Dm]
        appearance_clips=appearance_clips,  # [B, C, F, H, W, 3] uint8 (end-to-end models)
        motion_clips=motion_clips,  # [B, C, F, h, w, 3] uint8
    ).to(device)
    return torch.softmax(model(batch).logits.float(), dim=-1).cpu()  # [B, A]


def check_backbone_weights(bundle: Bundle) -> None:
    """The configured weights files must be the very files the bundle's features came from."""
    for stream in ("appearance", "motion"):
        expected = bundle.feature_spec[stream]["weights_sha256"]
        weights = getattr(bundle.config.features, stream).weights
        if expected is None:
            continue  # seeded random init: load_backbone rebuilds the same net
        if weights is None or not Path(weights).is_file():
            raise UserError(f"features.{stream}.weights {weights} recorded in the model bundle does not exist here")
        if file_sha256(Path(weights)) != expected:
            raise UserError(f"features.{stream}.weights {weights} is not the file the model was trained with "
                            f"(sha256 differs from the bundle's {expected[:12]})")


def decode_video(bundle: Bundle, video: Path) -> DecodedClips:
    """The clips of `video` [c, f, H, W, 3] uint8, sampled and scaled as the bundle's training clips were."""
    cfg = bundle.config.clips
    here = clip_spec(cfg)
    if here != bundle.clip_spec:
        differing = sorted(key for key in here.keys() | bundle.clip_spec.keys()
                           if here.get(key) != bundle.clip_spec.get(key))
        trained = ", ".join(f"{key}={bundle.clip_spec.get(key)}" for key in differing)
        now = ", ".join(f"{key}={here.get(key)}" for key in differing)
        raise UserError(f"model bundle {bundle.source} was trained on clips made with {trained}; "
                        f"this msvqa makes them with {now}")
    try:
        decoded, _ = decode_one(ClipJob(0, 0, video.stem, str(video)), cfg)
    except VideoError as exc:
        detail = str(exc).removeprefix(f"Video {exc.path}: ")
        raise UserError(f"--video {video} cannot be used ({exc.reason}): {detail}") from exc
    return decoded


def video_features(bundle: Bundle, video: Path, device: str) -> tuple[np.ndarray, np.ndarray]:
    """appearance [C, F, Da] and motion [C, Dm] float16 features of `video`, as the feature stage makes them."""
    check_backbone_weights(bundle)
    decoded = decode_video(bundle, video)
    features: FeaturesConfig = bundle.config.features.model_copy(update={"device": device})
    return extract_video(decoded.appearance, decoded.motion, features, device)


def top_answers(probabilities: torch.Tensor, vocab: Vocabularies, k: int) -> list[dict[str, float | str]]:
    """The k most probable real answers of one probability row [A], with their probabilities."""
    masked = probabilities.masked_fill(~answer_mask(vocab), -1.0)  # [A]
    values, indices = masked.topk(min(k, int(answer_mask(vocab).sum())))
    words = vocab.answer_words
    return [{"answer": words[i], "probability": float(p)} for p, i in zip(values.tolist(), indices.tolist())]


def answer_video(model_uri: str, video: Path, question: str, *, top_k: int = 5, tracking_uri: str | None = None,
                 device: str = "auto") -> dict:
    """The top-k answers to `question` about `video` with their probabilities, and the question's unknown words."""
    if top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {top_k}")
    started = time.perf_counter()
    bundle = open_bundle(model_uri, tracking_uri)
    encoded = encode_question(question, bundle.vocab)
    device = resolve_device(device)
    appearance = motion = appearance_clips = motion_clips = None
    if bundle.uses_clips:
        decoded = decode_video(bundle, Path(video))
        appearance_clips = torch.from_numpy(np.ascontiguousarray(decoded.appearance)).unsqueeze(0)  # [1, C, F, H, W, 3]
        motion_clips = torch.from_numpy(np.ascontiguousarray(decoded.motion)).unsqueeze(0)  # [1, C, F, h, w, 3]
    elif bundle.uses_video:
        app, mot = video_features(bundle, Path(video), device)
        appearance, motion = torch.from_numpy(app).unsqueeze(0), torch.from_numpy(mot).unsqueeze(0)  # [1, ...]
    probabilities = answer_probabilities(bundle.model.to(device), encoded.ids, appearance, motion, device,
                                         appearance_clips=appearance_clips, motion_clips=motion_clips)[0]  # [A]
    return {
        "model": bundle.source,
        "model_name": bundle.config.model.name,
        "video": str(video),
        "question": question,
        "tokens": encoded.tokens,
        "unknown_words": encoded.unknown_words,
        "answers": top_answers(probabilities, bundle.vocab, top_k),
        "seconds": round(time.perf_counter() - started, 3),
    }
