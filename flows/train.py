"""Train flow: the configured model and its comparison models (train.compare_with), each as a Prefect task.

The orchestration itself is plain Python in tasks.train.run, shared with torchrun ranks.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from configs.schema import PipelineConfig
from flows.naming import flow_run_name
from flows.writer_slot import writer_flow_slot
from tasks.train.run import train_model, train_with_baseline


@task(name="train-model", cache_policy=NO_CACHE)
def train_model_task(config: PipelineConfig, parent_run_id: str | None, model_name: str | None = None) -> dict:
    """Train one model (its own child run) and evaluate it on test; returns its figures."""
    return train_model(config, parent_run_id, model_name)


def train_flow_body(config: PipelineConfig, parent_run_id: str | None = None) -> dict:
    """The configured model, then each comparison model, each as a task of the running flow."""
    return train_with_baseline(config, parent_run_id, train_one=train_model_task)


@flow(name="train", flow_run_name=flow_run_name)
def train_flow(config: PipelineConfig) -> dict:
    """Train the configured model (and its comparison models) from the store, evaluate on test."""
    with writer_flow_slot(config):  # a deployment run holds the store's writer slot (flows/writer_slot.py)
        return train_flow_body(config)
