"""The tracking adapter: the only module that imports mlflow.

Runs are addressed by id (never through the thread-local "active run"), because Prefect runs tasks in
worker threads and stage runs must still land under their pipeline's parent run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import mlflow
import pandas as pd
from filelock import FileLock
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from configs.errors import UserError
from configs.schema import TrackingConfig
from tasks.tracking.views import COMPARE_VIEW_TAG, compare_view_json, experiment_url

_PARAM_LIMIT = 6000  # MLflow refuses longer param values
CHAMPION = "champion"  # the best video model of a registered name; what `answer` and `search` default to
BASELINE_ALIAS = "baseline"  # the question-only baseline's best version: a floor, never a champion
# MLflow 3's UI opens an experiment by this tag: without it a new experiment shows the GenAI overview
# (traces, token cost) instead of the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
PROMOTION_LOCK_TIMEOUT_S = 300.0
PROMOTION_SETTLE_S = 0.5  # on a tracking server: how long a move waits before checking it still stands
REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


def git_commit(repo: Path = REPO) -> str:
    """HEAD of the checkout the code runs from, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def prefect_flow_run_id() -> str:
    """The Prefect flow run this code runs in, or "" outside one (e.g. under torchrun)."""
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id or "")
    except Exception:  # noqa: BLE001 - a tag is never worth failing a run for
        return ""


def experiment_tags() -> dict[str, str]:
    """What every experiment of the project carries: the model-training kind and the comparison view
    (`tasks.tracking.views`: the compared metrics as runs-table columns, best test accuracy first)."""
    return {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, COMPARE_VIEW_TAG: compare_view_json()}


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
        tags = experiment_tags()
        if found is None:
            location = self.cfg.artifact_location
            if isinstance(location, Path):
                location.mkdir(parents=True, exist_ok=True)
            try:
                self.experiment_id = self.client.create_experiment(
                    self.experiment_name,
                    artifact_location=location.resolve().as_uri() if isinstance(location, Path) else location,
                    tags=tags,
                )
                return
            except MlflowException:  # created meanwhile by a run starting at the same time
                found = self.client.get_experiment_by_name(self.experiment_name)
                if found is None:
                    raise
        self.experiment_id = found.experiment_id
        # An experiment made before these tags gets them; a kind set by hand stays, the comparison view
        # follows the project's (written only when it differs, so opening an experiment changes nothing).
        for key, value in tags.items():
            if key not in found.tags or (key == COMPARE_VIEW_TAG and found.tags[key] != value):
                self.client.set_experiment_tag(self.experiment_id, key, value)

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

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_table(self, run_id: str, frame: pd.DataFrame, artifact_file: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path, index=False)
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(run_id, str(path), None if parent == "." else parent)

    def log_input(self, run_id: str, frame: pd.DataFrame, *, name: str, digest: str, source: str,
                  context: str = "training") -> None:
        """Record a dataset (here: a table of store groups) as the run's input, with a digest, for lineage."""
        with warnings.catch_warnings():
            # A local path matches MLflow's "" and "file" sources alike, which are the same class.
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = mlflow.data.from_pandas(frame, source=source, name=name, digest=digest)
        entity = dataset._to_mlflow_entity()  # what mlflow.log_input sends, without needing an active run
        self.client.log_inputs(run_id, [DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])])

    @contextlib.contextmanager
    def system_metrics(self, run_id: str, interval_s: float = 10.0) -> Iterator[None]:
        """CPU, memory, disk, network (and GPU where NVML is installed) as system/* metrics of the run.

        Skipped quietly where the monitor cannot start (it needs psutil); it never fails the run.
        """
        monitor = None
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, tracking_uri=self.cfg.uri)
            monitor.start()
        except Exception as exc:  # noqa: BLE001
            log.debug("system metrics unavailable: %s", exc)
            monitor = None
        try:
            yield
        finally:
            if monitor is not None:
                monitor.finish()

    def log_model(self, run_id: str, model: Any, registered_name: str | None = None,
                  metadata: dict[str, Any] | None = None) -> tuple[str, str | None]:
        """Log a torch module as an MLflow model (optionally registered); returns (model URI, version)."""
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
        version = info.registered_model_version
        return info.model_uri, None if version is None else str(version)

    def set_model_version_tags(self, name: str, version: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))

    def champion(self, name: str, alias: str = CHAMPION) -> tuple[str, float] | None:
        """(version, val_acc) of the registered model's `alias` (default `champion`), or None when unset."""
        try:
            version = self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
        value = version.tags.get("val_acc")
        if value is None and version.run_id:
            value = self.client.get_run(version.run_id).data.metrics.get("best_val_acc")
        return str(version.version), float(value) if value is not None else -math.inf

    def _promotion_lock(self) -> contextlib.AbstractContextManager[Any] | None:
        """An exclusive lock beside a local tracking database (sqlite or folder); None for a tracking server."""
        uri = self.cfg.uri
        if uri.startswith("sqlite:///"):
            return FileLock(uri[len("sqlite:///"):] + ".promote.lock", timeout=PROMOTION_LOCK_TIMEOUT_S)
        if uri.startswith("file:") or "://" not in uri:
            folder = Path(uri.removeprefix("file://").removeprefix("file:"))
            folder.mkdir(parents=True, exist_ok=True)
            return FileLock(str(folder / ".promote.lock"), timeout=PROMOTION_LOCK_TIMEOUT_S)
        return None

    def promote_if_best(self, name: str, version: str, val_acc: float, alias: str = CHAMPION,
                        attempts: int = 5) -> bool:
        """Move `alias` to `version` only if it beats the holder at the moment of the move (compare-and-set).

        MLflow sets an alias unconditionally, so two trainings finishing together could each read the old
        champion and the worse one set last. On a local tracking store the read and the move happen under
        one file lock. A tracking server offers no lock: the move is checked after it settles and repeated
        while a worse version holds the alias (a concurrent mover can still win a window of about
        PROMOTION_SETTLE_S; the Prefect concurrency limit of the writer deployments keeps trainings apart).
        """
        self.set_model_version_tags(name, version, {"val_acc": val_acc})
        if not math.isfinite(val_acc):
            return False
        lock = self._promotion_lock()
        with lock if lock is not None else contextlib.nullcontext():
            for _ in range(attempts):
                current = self.champion(name, alias)  # read right before the move
                if current is not None and current[0] == version:
                    return True
                if current is not None and val_acc <= current[1]:
                    return False
                self.client.set_registered_model_alias(name, alias, version)
                if lock is not None:
                    return True
                time.sleep(PROMOTION_SETTLE_S)
        return bool((held := self.champion(name, alias)) and held[0] == version)

    # Queries
    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def search_runs(self, filter_string: str = "") -> pd.DataFrame:
        return mlflow.search_runs(experiment_ids=[self.experiment_id], filter_string=filter_string)


class NullTracker:
    """Stands in for a Tracker on DDP ranks other than 0: every call does nothing."""

    def start_run(self, *args: Any, **kwargs: Any) -> str:
        return ""

    @contextlib.contextmanager
    def system_metrics(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        yield

    def log_model(self, *args: Any, **kwargs: Any) -> tuple[str, None]:
        return "", None

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def experiment_name(cfg: TrackingConfig, dataset_name: str, experiment: str | None = None) -> str:
    """The experiment a command means: the one it names, else tracking.experiment, else the dataset's name."""
    return experiment or cfg.experiment or dataset_name


def open_tracker(cfg: TrackingConfig, dataset_name: str, experiment: str | None = None) -> Tracker:
    try:
        return Tracker(cfg, experiment_name(cfg, dataset_name, experiment))
    except MlflowException as exc:
        raise UserError(f"tracking.uri {cfg.uri!r} could not be opened: {exc.message}") from exc


def experiment_exists(cfg: TrackingConfig, name: str) -> bool:
    """Whether the tracking store holds experiment `name` (without creating it)."""
    try:
        return MlflowClient(tracking_uri=cfg.uri).get_experiment_by_name(name) is not None
    except MlflowException as exc:
        raise UserError(f"tracking.uri {cfg.uri!r} could not be opened: {exc.message}") from exc


def comparison_link(cfg: TrackingConfig, dataset_name: str, ui_url: str, experiment: str | None = None) -> str:
    """The MLflow UI link (`ui_url`: the UI over `cfg.uri`) to the experiment's runs in the comparison view.

    The experiment is opened as a run opens it: created when missing (so the link works before the first
    run; a link to the experiments list would open it in MLflow's GenAI view), its tags brought up to date.
    """
    return experiment_url(ui_url, open_tracker(cfg, dataset_name, experiment).experiment_id)
