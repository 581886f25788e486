"""Accuracy overall and per question type; unknown answers count as wrong, never dropped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.text.vocabulary import QTYPES


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
