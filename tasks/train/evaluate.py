"""The inference loop over a split, and the predictions table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from storage.qa_dataset import QADataset, collate, loader_context
from tasks.text.vocabulary import QTYPES
from tasks.train.metrics import EvalResult
from tasks.train.precision import mixed_precision


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, dataset: QADataset, batch_size: int, device: str,
                   num_workers: int = 0, indices: np.ndarray | None = None, amp: bool = False) -> torch.Tensor:
    """Logits [N, A] in dataset order (or `indices` order); the model is left in train mode."""
    model.eval()
    source = dataset if indices is None else Subset(dataset, indices.tolist())
    pin = device.startswith("cuda")
    loader = DataLoader(source, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers,
                        multiprocessing_context=loader_context(num_workers, source),
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
