"""Ingest flow: bring the dataset into `dataset.root` and validate its layout in one report."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from configs.errors import UserError
from configs.schema import PipelineConfig
from tasks.ingest import ensure_dataset
from tasks.layout import validate_layout


@task(name="ensure-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def ensure_dataset_task(config: PipelineConfig) -> str:
    return ensure_dataset(config.dataset)


@task(name="validate-layout", cache_policy=NO_CACHE)
def validate_layout_task(config: PipelineConfig) -> dict:
    report = validate_layout(config.dataset.root, config.dataset.max_videos)
    if not report.ok:
        raise UserError(f"dataset.root {config.dataset.root}: {report.summary()}")
    return report.to_dict()


@flow(name="ingest", log_prints=True)
def ingest_flow(config: PipelineConfig) -> dict:
    """Ensure the dataset exists (copy or generate), then report what it holds and what is missing."""
    action = ensure_dataset_task(config)
    report = validate_layout_task(config)
    report["action"] = action
    get_run_logger().info("dataset %s: %s, %d videos, %d missing", config.dataset.root, action,
                          report["videos"], len(report["missing_videos"]))
    return report
