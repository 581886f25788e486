"""Streaming per-dimension statistics of stored features (input standardisation of feature models)."""

from __future__ import annotations

import numpy as np
import torch

from storage.qa_dataset import VideoArrays


def feature_statistics(arrays: VideoArrays, name: str, rows: np.ndarray,
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
