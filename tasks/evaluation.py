"""Accuracy overall and per question type; unknown answers count as wrong, never dropped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from storage.qa_dataset import QADataset, collate
from tasks.text import QTYPES


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


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, dataset: QADataset, batch_size: int, device: str,
                   num_workers: int = 0) -> torch.Tensor:
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
    outputs = [model(batch.to(device)).logits.float().cpu() for batch in loader]  # each [B, A]
    model.train()
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def evaluate(model: torch.nn.Module, dataset: QADataset, batch_size: int, device: str,
             num_workers: int = 0) -> EvalResult:
    arrays = dataset.arrays
    logits = predict_logits(model, dataset, batch_size, device, num_workers)  # [N, A]
    predictions = logits.argmax(-1).numpy() if len(arrays) else np.zeros(0, dtype=np.int64)
    correct = (predictions == arrays.answers) & arrays.answer_known
    return EvalResult(predictions=predictions, correct=correct, qtypes=arrays.qtypes)


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
