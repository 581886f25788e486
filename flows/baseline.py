"""The language-prior floor: the question-only model, trained and tested from the text store alone.

No clips or features are needed, so it runs on the annotations of a dataset whose videos are absent.
"""

from __future__ import annotations

import time

from prefect import flow

from configs.schema import PipelineConfig
from flows.naming import flow_run_name
from flows.text import build_text_for
from flows.train import train_model_task
from tasks.train.run import BASELINE_MODEL as BASELINE, train_model
from tasks.text.store import build_text


def _summary(result: dict, started: float) -> dict:
    keys = ("run_id", "val_acc", "test_acc", "test_acc_by_type", "counts_by_type")
    return {key: result.get(key) for key in keys} | {"seconds": round(time.monotonic() - started, 1)}


def run_baseline(config: PipelineConfig) -> dict:
    """Build the text stage when missing, then train and test the question-only model (plain Python)."""
    started = time.monotonic()
    build_text(config.text, config.dataset.root, config.store, config.dataset.name, config.seed)
    return _summary(train_model(config, None, BASELINE), started)


@flow(name="baseline", flow_run_name=flow_run_name)
def baseline_flow(config: PipelineConfig) -> dict:
    """Question-only accuracy overall and per type: {test_acc, test_acc_by_type, val_acc, run_id}."""
    started = time.monotonic()
    build_text_for(config)
    return _summary(train_model_task(config, None, BASELINE), started)
