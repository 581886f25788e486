"""Part of the tracking adapter (with tasks/tracking/mlflow_adapter.py, the only modules that import mlflow): fetch a
model bundle that a training run logged, by MLflow model or run URI.

A registered model version points at its training run; the run's tag `bundle_artifact` (default
`bundle/bundle.pt`) names the bundle file among its artifacts.
"""

from __future__ import annotations

import os
from pathlib import Path

from configs.errors import UserError

BUNDLE_TAG = "bundle_artifact"
DEFAULT_BUNDLE_ARTIFACT = "bundle/bundle.pt"


def is_mlflow_uri(uri: str) -> bool:
    return uri.startswith(("models:/", "runs:/"))


def _check_tracking_uri(tracking_uri: str) -> None:
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        # MLflow would silently create an empty database and then report the model as missing.
        if not db.is_file():
            raise UserError(f"tracking database {db} does not exist: pass the tracking URI the model was logged to")


def _run_and_artifact(client, uri: str) -> tuple[str, str | None]:
    """(run id, artifact path or None for the run's tagged bundle) of a models:/ or runs:/ URI."""
    if uri.startswith("runs:/"):
        run_id, _, artifact = uri[len("runs:/"):].strip("/").partition("/")
        if not run_id:
            raise UserError(f"model URI {uri!r} names no run: use runs:/<run_id>")
        return run_id, artifact or None
    ref = uri[len("models:/"):].strip("/")
    if "@" in ref:
        name, _, alias = ref.partition("@")
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, _, number = ref.rpartition("/")
        if not name or not number.isdigit():
            raise UserError(f"model URI {uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
        version = client.get_model_version(name, number)
    if not version.run_id:
        raise UserError(f"model URI {uri!r} has no training run, so no bundle to answer with")
    return version.run_id, None


def download_bundle(uri: str, tracking_uri: str, dst_dir: Path) -> Path:
    """Download the bundle file behind `uri` (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID[/PATH])."""
    _check_tracking_uri(tracking_uri)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # The download's progress bar would land on stderr around `--json` output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Imported here: mlflow takes seconds to import, and local bundle paths never need it.
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run_id, artifact = _run_and_artifact(client, uri)
        if artifact is None:
            artifact = client.get_run(run_id).data.tags.get(BUNDLE_TAG, DEFAULT_BUNDLE_ARTIFACT)
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(dst_dir),
                                                    tracking_uri=tracking_uri)
    except MlflowException as exc:
        message = exc.message.splitlines()[0] if exc.message else type(exc).__name__
        raise UserError(f"model {uri} could not be fetched from {tracking_uri}: {message}") from exc
    except OSError as exc:
        raise UserError(f"model {uri}: its bundle artifact could not be downloaded ({exc})") from exc
    return Path(local)


def model_run(uri: str, tracking_uri: str) -> tuple[str, dict[str, str]]:
    """(run id, run tags) behind a models:/ or runs:/ URI: e.g. `store.snapshot`, the data it was trained on."""
    _check_tracking_uri(tracking_uri)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run_id, _ = _run_and_artifact(client, uri)
        return run_id, dict(client.get_run(run_id).data.tags)
    except MlflowException as exc:
        raise UserError(f"--model {uri}: {exc.message}") from exc
