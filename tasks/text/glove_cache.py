"""`build_glove_matrix` remembered on disk, keyed by the file's path, size and mtime and the vocabulary."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np

from tasks.text.glove import GloveResult, build_glove_matrix
from tasks.text.annotations import TextInputError
from tasks.text.vocabulary import QUESTION_NULL

CACHE_FORMAT = 1  # bump when the builder's output for the same inputs changes


def _cache_key(
    path: Path, vocab: Sequence[str], dim: int, seed: int, skip_malformed: bool, zero_words: Collection[str]
) -> str:
    # The file is identified by path, size and mtime so a cache hit never rereads gigabytes; its sha256 is
    # recorded in the report for provenance.
    stat = path.stat()
    vocab_hash = hashlib.sha256("\n".join(vocab).encode("utf-8")).hexdigest()
    parts = {
        "format": CACHE_FORMAT,
        "file": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "vocab_sha256": vocab_hash,
        "dim": dim,
        "seed": seed,
        "skip_malformed": skip_malformed,
        "zero_words": sorted(zero_words),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def cached_glove_matrix(
    path: Path,
    vocab: Sequence[str],
    dim: int,
    cache_dir: Path,
    *,
    seed: int = 0,
    skip_malformed: bool = False,
    zero_words: Collection[str] = (QUESTION_NULL,),
    progress: Callable[[int], None] | None = None,
) -> GloveResult:
    """`build_glove_matrix`, remembered in `cache_dir` as `glove-<key>.npy` + `.json`.

    The key covers the file's path, size and modification time, the vocabulary, dim, seed and options, so an
    edited file or a new vocabulary rebuilds. An unreadable cache entry is rebuilt, not trusted.
    """
    path = Path(path)
    if not path.is_file():
        raise TextInputError(f"GloVe file {path} does not exist.")
    key = _cache_key(path, vocab, dim, seed, skip_malformed, zero_words)
    matrix_path = Path(cache_dir) / f"glove-{key}.npy"
    report_path = matrix_path.with_suffix(".json")
    cached = _read_cache(matrix_path, report_path, (len(vocab), dim))
    if cached is not None:
        return cached
    result = build_glove_matrix(
        path, vocab, dim, seed=seed, skip_malformed=skip_malformed, zero_words=zero_words, progress=progress
    )
    matrix_path.parent.mkdir(parents=True, exist_ok=True)
    # Write to temporary names and rename, the report last: a crash never leaves an entry that looks complete.
    temporary = matrix_path.with_name(f".{matrix_path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        np.save(file, result.matrix)
    os.replace(temporary, matrix_path)
    report = {
        "source": str(path.resolve()),
        "sha256": result.sha256,
        "found": result.found,
        "missing": result.missing,
        "matched_by_case": result.matched_by_case,
        "skipped_lines": result.skipped_lines,
        "lines_read": result.lines_read,
    }
    temporary = report_path.with_name(f".{report_path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(report, indent=1), encoding="utf-8")
    os.replace(temporary, report_path)
    return result


def _read_cache(matrix_path: Path, report_path: Path, shape: tuple[int, int]) -> GloveResult | None:
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        matrix = np.load(matrix_path)
        result = GloveResult(
            matrix=matrix,
            found=int(report["found"]),
            missing=list(report["missing"]),
            skipped_lines=int(report["skipped_lines"]),
            lines_read=int(report["lines_read"]),
            sha256=str(report["sha256"]),
            matched_by_case=list(report["matched_by_case"]),
            from_cache=True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if matrix.shape != shape or matrix.dtype != np.float32 or not math.isfinite(float(np.abs(matrix).sum())):
        return None
    return result
