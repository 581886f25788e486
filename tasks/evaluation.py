"""Accuracy overall and per question type; unknown answers count as wrong, never dropped."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from storage.qa_dataset import QADataset, collate
from tasks.text import QTYPES


def bf16_supported(device: str) -> bool:
    """Native bfloat16 math: Ampere+ GPUs; CPUs with AVX512-BF16 or AMX (elsewhere it is emulated, slower)."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def mixed_precision(device: str, enabled: bool) -> ContextManager:
    """bf16 autocast when enabled and the device has native bf16; otherwise float32.

    The flows enable it on CUDA by default and on CPU only when asked: a float32 CPU run is exact to the
    reference numbers. (CPU bf16 runs of the end-to-end model once differed between runs and turned NaN:
    a oneDNN Conv3d bug, worked around in models/msvqa.py.)
    """
    if enabled and bf16_supported(device):
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device: str, amp: bool) -> str:
    """What mixed_precision(device, amp) computes in: "bf16-autocast" or "float32"."""
    return "bf16-autocast" if amp and bf16_supported(device) else "float32"


@dataclass
class EvalResult:
    predictions: np.ndarray  # [N] answer index
    correct: np.ndarray  # [N] bool
    qtypes: np.ndarray  # [N] question type code

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.correct) else float("nan")

    def by_type(self) -> dict[str, float]:
        """Accuracy per question type that occurs in the split."""
        out = {}
        for code, name in enumerate(QTYPES):
            mask = self.qtypes == code
            if mask.any():
                out[name] = float(self.correct[mask].mean())
        return out

    def counts_by_type(self) -> dict[str, int]:
        return {name: int((self.qtypes == code).sum()) for code, name in enumerate(QTYPES) if (self.qtypes == code).any()}

    def count_vector(self) -> list[float]:
        """[correct per type..., questions per type...]: sums over ranks give the whole split's accuracy."""
        correct = [float(self.correct[self.qtypes == code].sum()) for code in range(len(QTYPES))]
        total = [float((self.qtypes == code).sum()) for code in range(len(QTYPES))]
        return correct + total


def accuracy_metrics(counts: list[float], prefix: str) -> dict[str, float]:
    """`prefix` (overall) and `prefix_<type>` for every type present, from `EvalResult.count_vector` sums."""
    types = len(QTYPES)
    correct, total = np.asarray(counts[:types]), np.asarray(counts[types:])
    metrics = {prefix: float(correct.sum() / total.sum()) if total.sum() else float("nan")}
    metrics.update({f"{prefix}_{name}": float(correct[code] / total[code])
                    for code, name in enumerate(QTYPES) if total[code]})
    return metrics


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, dataset: QADataset, batch_size: int, device: str,
                   num_workers: int = 0, indices: np.ndarray | None = None, amp: bool = False) -> torch.Tensor:
    """Logits [N, A] in dataset order (or `indices` order); the model is left in train mode."""
    model.eval()
    source = dataset if indices is None else Subset(dataset, indices.tolist())
    pin = device.startswith("cuda")
    loader = DataLoader(source, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers,
                        pin_memory=pin)
    outputs = []
    with mixed_precision(device, amp):
        for batch in loader:
            outputs.append(model(batch.to(device, non_blocking=pin)).logits.float().cpu())  # [B, A]
    model.train()
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def evaluate(model: torch.nn.Module, dataset: QADataset, batch_size: int, device: str,
             num_workers: int = 0, indices: np.ndarray | None = None, amp: bool = False) -> EvalResult:
    """Predictions of every question (or of `indices` only: one rank's shard)."""
    rows = np.arange(len(dataset)) if indices is None else indices
    arrays = dataset.arrays
    logits = predict_logits(model, dataset, batch_size, device, num_workers, indices, amp)  # [n, A]
    predictions = logits.argmax(-1).numpy() if len(rows) else np.zeros(0, dtype=np.int64)
    correct = (predictions == arrays.answers[rows]) & arrays.answer_known[rows]
    return EvalResult(predictions=predictions, correct=correct, qtypes=arrays.qtypes[rows])


def predictions_table(result: EvalResult, dataset: QADataset, answer_words: list[str],
                      records: dict[int, tuple[str, str]]) -> pd.DataFrame:
    """One row per question: id, video, question, true answer (as written), prediction, correct."""
    a = dataset.arrays
    texts = [records.get(int(q), ("", "")) for q in a.question_ids]
    return pd.DataFrame({
        "question_id": a.question_ids,
        "video_id": a.video_ids,
        "question": [question for question, _ in texts],
        "qtype": [QTYPES[int(t)] for t in a.qtypes],
        "answer": [answer for _, answer in texts],
        "prediction": [answer_words[int(i)] for i in result.predictions],
        "correct": result.correct,
    })
