"""Ingest flow: bring the dataset into `dataset.root` and validate its layout in one report."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from configs.errors import UserError
from configs.schema import PipelineConfig
from flows.clips import artifact_key
from flows.retries import retry_unless_user_error
from flows.naming import flow_run_name
from tasks.ingest.sources import ensure_dataset
from tasks.ingest.layout import validate_layout
from tasks.progress import Progress


@task(name="ensure-dataset", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5],
      retry_condition_fn=retry_unless_user_error)
def ensure_dataset_task(config: PipelineConfig) -> str:
    # Downloads report bytes, a generated dataset videos: one bar (and progress artifact) per file.
    with Progress("dataset", unit="bytes or videos", artifact_key=artifact_key("ingest-progress", config.dataset.name)) \
            as progress:
        return ensure_dataset(config.dataset, progress=progress)


@task(name="validate-layout", cache_policy=NO_CACHE)
def validate_layout_task(config: PipelineConfig) -> dict:
    report = validate_layout(config.dataset.root, config.dataset.max_videos)
    if not report.ok:
        raise UserError(f"dataset.root {config.dataset.root}: {report.summary()}")
    # Questions about unmapped video ids never get a video row, so later stages set them aside;
    # the run goes on and this table says which and how many.
    create_table_artifact(report.unmapped_table(), key=artifact_key("ingest-unmapped", config.dataset.name),
                          description=f"video ids that questions in {config.dataset.root} name but "
                                      "youtube_mapping.txt lacks; their questions are set aside")
    if report.unmapped_video_ids:
        get_run_logger().warning("dataset %s: %s", config.dataset.root, report.summary())
    return report.to_dict()


@flow(name="ingest", flow_run_name=flow_run_name, log_prints=True)
def ingest_flow(config: PipelineConfig) -> dict:
    """Ensure the dataset exists (copy or generate), then report what it holds and what is missing."""
    action = ensure_dataset_task(config)
    report = validate_layout_task(config)
    report["action"] = action
    get_run_logger().info("dataset %s: %s, %d videos, %d missing", config.dataset.root, action,
                          report["videos"], len(report["missing_videos"]))
    return report
