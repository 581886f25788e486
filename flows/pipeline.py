"""The whole job: ingest -> clips -> features -> text -> train (autoencoder, QA) -> evaluate, one MLflow parent run."""

from __future__ import annotations

import time

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from configs.loader import config_to_yaml, flatten
from configs.schema import PipelineConfig
from flows.clips import artifact_key, run_clips
from flows.features import run_features
from flows.ingest import ingest_flow
from flows.naming import flow_run_name
from flows.summary import pipeline_markdown
from flows.text import text_flow
from flows.train import train_flow_body
from flows.writer_slot import writer_flow_slot
from tasks.tracking.mlflow_adapter import open_tracker


@flow(name="pipeline", flow_run_name=flow_run_name)
def pipeline_flow(config: PipelineConfig) -> dict:
    """Run every stage in data-flow order; each stage skips what the store already holds."""
    # A deployment run holds the store's writer slot; the stage flows below find it held (flows/writer_slot.py).
    with writer_flow_slot(config):
        return _pipeline(config)


def _pipeline(config: PipelineConfig) -> dict:
    started = time.monotonic()
    tracker = open_tracker(config.tracking, config.dataset.name)
    parent = tracker.start_run("pipeline", tags={"stage": "pipeline", "prefect.flow_run_id": str(flow_run.id or "")})
    try:
        tracker.log_params(parent, flatten(config.model_dump(mode="json")))
        tracker.log_text(parent, config_to_yaml(config), "config.yaml")
        layout = ingest_flow(config)
        clips = run_clips(config)
        features = run_features(config)
        text = text_flow(config)
        tracker.set_tags(parent, {"spec.clips": clips["spec_hash"], "spec.features": features["spec_hash"],
                                  "spec.text": text["ref"].rsplit("/", 1)[-1],
                                  "features.random_init": ",".join(features["random_init"]) or "none"})
        tracker.log_metrics(parent, {"videos": layout["videos"], "videos_complete": clips["complete"],
                                     "videos_quarantined": clips["quarantined"]})
        trained = train_flow_body(config, parent_run_id=parent)
        tracker.end_run(parent)
    except BaseException:
        tracker.end_run(parent, failed=True)
        raise
    summary = pipeline_markdown(config.dataset.name, config.tracking.uri, tracker.experiment_id, parent,
                                config.model.name, trained, {"videos": layout["videos"], "decoded": clips["complete"],
                                                             "quarantined": clips["quarantined"]})
    create_markdown_artifact(summary, key=artifact_key("pipeline-summary", config.dataset.name),
                             description="Test accuracy beside the comparison models, videos, MLflow links")
    return {
        "run_id": parent,
        **trained,
        "store": str(config.store.path),
        "tracking_uri": config.tracking.uri,
        "clips": clips,
        "features": features,
        "text": {k: text[k] for k in ("question_vocab_size", "answer_vocab_size", "glove_found", "glove_missing")},
        "seconds": round(time.monotonic() - started, 1),
    }
