"""Ablate flow: the stages the store still misses, then the four ablation variants, each as a Prefect task.

The orchestration itself is plain Python in tasks.train.ablation.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from configs.schema import PipelineConfig
from flows.clips import run_clips
from flows.features import run_features
from flows.ingest import ingest_flow
from flows.text import text_flow
from tasks.train.ablation import run_ablation
from tasks.train.run import train_model


@task(name="train-variant", cache_policy=NO_CACHE)
def train_variant_task(config: PipelineConfig, parent_run_id: str, model_name: str, run_name: str) -> dict:
    """Train one ablation variant (its own child run, named after the variant) and test it."""
    return train_model(config, parent_run_id, model_name, run_name=run_name)


@flow(name="ablate")
def ablate_flow(config: PipelineConfig, seeds: int = 1) -> dict:
    """dualvgr, msvqa_no_ae, msvqa and question_only on one store and split, `seeds` seeds each."""
    # Each stage skips what the store already holds, so on a built store these only check.
    ingest_flow(config)
    run_clips(config)
    run_features(config)
    text_flow(config)
    return run_ablation(config, seeds, train_one=train_variant_task)
