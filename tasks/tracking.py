"""The tracking adapter: the only module that imports mlflow.

Runs are addressed by id (never through the thread-local "active run"), because Prefect runs tasks in
worker threads and stage runs must still land under their pipeline's parent run.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from configs.errors import UserError
from configs.schema import TrackingConfig

_PARAM_LIMIT = 6000  # MLflow refuses longer param values


@dataclass
class Tracker:
    """A tracking server (or sqlite file) and one experiment in it."""

    cfg: TrackingConfig
    experiment_name: str

    def __post_init__(self) -> None:
        if self.cfg.uri.startswith("sqlite:///"):
            Path(self.cfg.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.cfg.uri)
        self.client = MlflowClient(tracking_uri=self.cfg.uri)
        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is None:
            self.cfg.artifact_location.mkdir(parents=True, exist_ok=True)
            self.experiment_id = self.client.create_experiment(
                self.experiment_name, artifact_location=self.cfg.artifact_location.as_uri()
            )
        else:
            self.experiment_id = found.experiment_id

    # Runs
    def start_run(self, name: str, tags: dict[str, str] | None = None, parent_run_id: str | None = None) -> str:
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def end_run(self, run_id: str, failed: bool = False) -> None:
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    # Values
    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(key, str(value)[:_PARAM_LIMIT]) for key, value in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start:start + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step or 0) for key, value in metrics.items()
                 if value is not None and math.isfinite(float(value))]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    # Artifacts
    def log_artifact(self, run_id: str, path: Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_dir)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_dict(self, run_id: str, data: dict, artifact_file: str) -> None:
        self.client.log_text(run_id, json.dumps(data, indent=2, sort_keys=False), artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_table(self, run_id: str, frame: pd.DataFrame, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path, index=False)
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(run_id, str(path), None if parent == "." else parent)

    def log_model(self, run_id: str, model: Any, registered_name: str | None = None,
                  metadata: dict[str, Any] | None = None) -> str | None:
        """Log a torch module as an MLflow model (optionally registered); returns its model URI."""
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pytorch.log_model(
                model.cpu(),
                name="model",
                registered_model_name=registered_name,
                metadata=metadata,
                pip_requirements=["torch==2.14.1"],
                # The model takes a Batch dataclass, which the traced 'pt2' format cannot express.
                serialization_format="pickle",
                await_registration_for=0,
            )
        return info.model_uri

    def run_url_hint(self, run_id: str) -> str:
        return f"{self.cfg.uri} experiment {self.experiment_name!r} run {run_id}"

    # Queries
    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def child_runs(self, parent_run_id: str) -> list[Any]:
        return self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")

    def search_runs(self) -> pd.DataFrame:
        return mlflow.search_runs(experiment_ids=[self.experiment_id])


def open_tracker(cfg: TrackingConfig, dataset_name: str) -> Tracker:
    try:
        return Tracker(cfg, cfg.experiment or dataset_name)
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(f"tracking.uri {cfg.uri!r} could not be opened: {exc.message}") from exc
