"""Compare training runs of one experiment: accuracy overall, per question type, and beside the baseline."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from configs.errors import UserError
from configs.schema import PipelineConfig
from tasks.text.vocabulary import QTYPES
from tasks.tracking.mlflow_adapter import Tracker, experiment_exists, experiment_name, open_tracker

TYPE_COLUMNS = [f"test_acc_{t}" for t in QTYPES]
COLUMNS = ["run_name", "model", "val_acc", "test_acc", *TYPE_COLUMNS, "baseline_test_acc", "start_time", "run_id"]


def _tracker(source: Tracker | PipelineConfig, experiment: str | None) -> Tracker:
    if isinstance(source, Tracker):
        if experiment is None or experiment == source.experiment_name:
            return source
        cfg, dataset = source.cfg, source.experiment_name
    else:
        cfg, dataset = source.tracking, source.dataset.name
    name = experiment_name(cfg, dataset, experiment)
    if not experiment_exists(cfg, name):
        raise UserError(f"experiment {name!r} does not exist in tracking.uri {cfg.uri}")
    return open_tracker(cfg, dataset, name)


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs else pd.Series(math.nan, index=runs.index)


def compare_runs(source: Tracker | PipelineConfig, experiment: str | None = None) -> pd.DataFrame:
    """One row per trained model run, newest first; baseline_test_acc is its sibling question-only run's."""
    runs = _tracker(source, experiment).search_runs("tags.stage = 'train'")
    if runs.empty or "tags.model" not in runs:
        return pd.DataFrame(columns=COLUMNS)
    runs = runs[runs["tags.model"].notna()]
    frame = pd.DataFrame({
        "run_name": _column(runs, "tags.mlflow.runName"),
        "model": runs["tags.model"],
        "val_acc": _column(runs, "metrics.best_val_acc"),
        "test_acc": _column(runs, "metrics.test_acc"),
        **{name: _column(runs, f"metrics.{name}") for name in TYPE_COLUMNS},
        "start_time": runs["start_time"],
        "run_id": runs["run_id"],
    })
    parents = _column(runs, "tags.mlflow.parentRunId")
    baseline_of = {parent: acc for parent, model, acc in zip(parents, frame["model"], frame["test_acc"])
                   if model == "question_only" and isinstance(parent, str)}
    frame["baseline_test_acc"] = [baseline_of.get(parent, math.nan) if isinstance(parent, str) else math.nan
                                  for parent in parents]
    return frame[COLUMNS].sort_values("start_time", ascending=False).reset_index(drop=True)


def runs_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: times as ISO strings, missing values as None."""
    out = frame.astype(object).where(frame.notna(), None)
    out["start_time"] = [t.isoformat() if t is not None else None for t in out["start_time"]]
    return out.to_dict(orient="records")


def runs_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The table people read, as strings: accuracies in percent, empty type columns left out, '-' where missing."""
    shown = frame.drop(columns=["run_id"]).dropna(axis=1, how="all").copy()
    shown["start_time"] = [t.strftime("%Y-%m-%d %H:%M") for t in shown["start_time"]]
    for column in shown.columns:
        if column.endswith("acc") or "_acc_" in column:
            shown[column] = [f"{100 * v:.1f}" if pd.notna(v) else "-" for v in shown[column]]
    return shown.rename(columns=lambda c: c.replace("test_acc_", "")).astype(str)


def runs_text(frame: pd.DataFrame) -> str:
    """runs_display as plain text."""
    if frame.empty:
        return "no training runs"
    return runs_display(frame).to_string(index=False)
