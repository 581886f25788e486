"""Rank the videos already in the feature store by how a model bundle answers one question about each.

No video is decoded: the stored features of the group the model was trained on (same feature spec hash)
go through the model in batches.
"""

from __future__ import annotations

import time
from collections.abc import Collection

import numpy as np
import torch

from configs.errors import UserError
from configs.schema import PipelineConfig, StoreConfig
from storage.store import SpecGroup, open_store
from tasks.serving.bundle import Bundle
from tasks.device import resolve_device
from tasks.serving.inference import answer_mask, answer_probabilities, encode_question, open_bundle


def _describe_spec(spec: dict) -> str:
    def backbone(name: str) -> str:
        part = spec.get(name) or {}
        sha = part.get("weights_sha256")
        return f"{name} {part.get('backbone')} ({'weights ' + sha[:12] if sha else 'random init'})"

    return f"clips {spec.get('clips')}, {backbone('appearance')}, {backbone('motion')}, seed {spec.get('seed')}"


def feature_group(bundle: Bundle, store_cfg: StoreConfig, dataset: str) -> SpecGroup:
    """The dataset's feature group with the bundle's feature spec, at store.snapshot; any other spec raises UserError."""
    store_path = store_cfg.path
    try:
        store = open_store(store_cfg, mode="r")
    except FileNotFoundError as exc:
        raise UserError(f"store.path {store_path} does not exist: there are no stored features to search") from exc
    groups = store.find(dataset, "features")
    wanted = bundle.feature_hash
    for group in groups:
        if group.ref.spec_hash == wanted:
            if "video_ids" not in group.attrs or not group.has_array("complete") or not group.completed().any():
                raise UserError(f"feature group {group.ref.path} in {store_path} holds no complete video yet: "
                                "run `msvqa features` first")
            return group
    held = "; ".join(f"{g.ref.spec_hash} ({_describe_spec(g.spec)})" for g in groups) or "none"
    raise UserError(f"store {store_path} has no {dataset} features with the model's feature spec {wanted} "
                    f"({_describe_spec(bundle.feature_spec)}); it holds: {held}")


def _read_rows(group: SpecGroup, name: str, rows: np.ndarray) -> np.ndarray:
    # A run of consecutive rows (the usual case) reads as a slice: about twice as fast as a row selection.
    if rows[-1] - rows[0] + 1 == len(rows):
        return group.read(name, slice(int(rows[0]), int(rows[-1]) + 1))
    return group.read(name, rows)


@torch.inference_mode()
def score_rows(bundle: Bundle, group: SpecGroup, rows: np.ndarray, question: torch.Tensor, answer: int | None,
               batch_size: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """(score [N], top answer index [N]) of the stored videos `rows` [N] for one encoded question [L].

    The score is the probability of class `answer`, or of each video's own top answer when `answer` is None.
    """
    real = answer_mask(bundle.vocab)  # [A]
    model = bundle.model.to(device)
    scores, tops = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        appearance = torch.from_numpy(_read_rows(group, "appearance", chunk))  # [B, C, F, Da] f16
        motion = torch.from_numpy(_read_rows(group, "motion", chunk))  # [B, C, Dm] f16
        probabilities = answer_probabilities(model, question, appearance, motion, device)  # [B, A]
        best_p, best = probabilities.masked_fill(~real, -1.0).max(dim=-1)  # [B], [B]
        scores.append((best_p if answer is None else probabilities[:, answer]).numpy())
        tops.append(best.numpy())
    if not scores:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(scores), np.concatenate(tops)


def search_bundle(bundle: Bundle, question: str, *, answer: str | None = None, top: int = 10,
                  store: StoreConfig | None = None, dataset: str | None = None, batch_size: int = 256,
                  device: str = "cpu", video_ids: Collection[int] | None = None) -> dict:
    """The `top` stored videos ranked by score (see score_rows); `video_ids` limits the search to those videos."""
    if top < 1:
        raise UserError(f"--top must be at least 1, got {top}")
    if bundle.uses_clips:
        # Searching would mean running both trained backbones over every stored clip for each question.
        raise UserError(f"--model {bundle.source} is an end-to-end {bundle.config.model.name} model: search ranks "
                        "the stored features, so it needs a feature model (e.g. dualvgr); `answer` takes this one")
    encoded = encode_question(question, bundle.vocab)
    answer_index = None
    if answer is not None:
        answer_index = bundle.vocab.answer_token_to_idx.get(answer)
        if answer_index is None or not bool(answer_mask(bundle.vocab)[answer_index]):
            raise UserError(f"--answer {answer!r} is not one of the model's {int(answer_mask(bundle.vocab).sum())} "
                            "answers")
    store = store or bundle.config.store
    dataset = dataset or bundle.config.dataset.name
    group = feature_group(bundle, store, dataset)
    ids = np.asarray(group.attrs["video_ids"], dtype=np.int64)  # [V]
    names = list(group.attrs.get("names", [str(i) for i in ids]))
    keep = group.completed()  # [V]
    if video_ids is not None:
        keep &= np.isin(ids, np.fromiter(video_ids, dtype=np.int64))
    rows = np.flatnonzero(keep)
    started = time.perf_counter()
    scores, tops = score_rows(bundle, group, rows, encoded.ids, answer_index, batch_size, resolve_device(device))
    seconds = time.perf_counter() - started
    order = np.argsort(-scores, kind="stable")[:top]
    words = bundle.vocab.answer_words
    return {
        "model": bundle.source,
        "question": question,
        "answer": answer,
        "unknown_words": encoded.unknown_words,
        "store": str(store.path),
        "snapshot": group.snapshot_id,
        "feature_group": group.ref.path,
        "videos_scored": int(len(rows)),
        "seconds": round(seconds, 4),
        "rows": [{"video": names[rows[i]], "video_id": int(ids[rows[i]]), "score": float(scores[i]),
                  "top_answer": words[int(tops[i])]} for i in order],
    }


def search_videos(model_uri: str, question: str, *, answer: str | None = None, top: int = 10,
                  config: PipelineConfig | None = None, tracking_uri: str | None = None, device: str = "auto",
                  batch_size: int = 256) -> dict:
    """search_bundle over the store of `config` (default: the bundle's own config) with a bundle from a URI."""
    tracking_uri = tracking_uri or (config.tracking.uri if config is not None else None)
    bundle = open_bundle(model_uri, tracking_uri)
    source = config or bundle.config
    return search_bundle(bundle, question, answer=answer, top=top, store=source.store,
                         dataset=source.dataset.name, batch_size=batch_size, device=device)
